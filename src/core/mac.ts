/**
 * HMAC-SHA256 (RFC 2104) computed with two one-shot `crypto.hash` calls over preallocated buffers
 * instead of a `createHmac` object per MAC: the key is XORed into the ipad/opad blocks once, per key.
 * The output is exactly HMAC-SHA256's (test/unit/mac.test.ts checks it against createHmac), so
 * nonces, opaques and route tokens keep their format. Digests come out as strings (hex or base64url):
 * native Buffer outputs cost more than the hash itself.
 *
 * The message is written piecewise (`begin().str(…).bytes(…).hex()`), strings as latin1 bytes (SIP
 * text holds bytes as latin1 characters, as `update(s, 'latin1')` did). Synchronous and not
 * re-entrant: begin, write and digest in one go.
 */
import { hash } from 'node:crypto';

const BLOCK = 64;
const DIGEST = 32;

export class HmacSha256 {
  /** ipad block ‖ message */
  private inner: Buffer;
  /** opad block ‖ inner digest */
  private readonly outer: Buffer;
  private len = BLOCK;

  constructor(key: Buffer, initialMessageBytes = 256) {
    const k = key.length > BLOCK ? Buffer.from(hash('sha256', key, 'hex'), 'hex') : key;
    this.inner = Buffer.alloc(BLOCK + Math.max(16, initialMessageBytes));
    this.outer = Buffer.alloc(BLOCK + DIGEST);
    for (let i = 0; i < BLOCK; i++) {
      const b = i < k.length ? k[i]! : 0;
      this.inner[i] = b ^ 0x36;
      this.outer[i] = b ^ 0x5c;
    }
  }

  /** Start a new message. */
  begin(): this {
    this.len = BLOCK;
    return this;
  }

  /** Append a string as latin1 bytes. */
  str(s: string): this {
    this.room(s.length);
    this.len += this.inner.write(s, this.len, 'latin1');
    return this;
  }

  /** Append bytes. */
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.inner.set(b, this.len);
    this.len += b.length;
    return this;
  }

  /** The MAC of the message, hex (64 digits). */
  hex(): string {
    return this.finish('hex');
  }

  /** The MAC of the message, base64url (43 characters; the first 4k characters encode the first 3k bytes). */
  base64url(): string {
    return this.finish('base64url');
  }

  private finish(enc: 'hex' | 'base64url'): string {
    // the inner digest as 32 latin1 ('binary') characters, half the string of hex, straight into the opad block
    const innerDigest = hash('sha256', this.view(this.len), 'binary');
    this.outer.write(innerDigest, BLOCK, 'latin1');
    this.len = BLOCK;
    return hash('sha256', this.outer, enc);
  }

  /** views of `inner` by length: the messages of one key mostly have one or two lengths */
  private views = new Map<number, Buffer>();
  private view(len: number): Buffer {
    let v = this.views.get(len);
    if (v === undefined) {
      v = this.inner.subarray(0, len);
      if (this.views.size < 16) this.views.set(len, v);
    }
    return v;
  }

  private room(n: number): void {
    if (this.len + n <= this.inner.length) return;
    const bigger = Buffer.alloc(Math.max(this.inner.length * 2, this.len + n));
    this.inner.copy(bigger, 0, 0, this.len);
    this.inner = bigger;
    this.views.clear(); // views of the old buffer
  }
}

/** Equal strings, in time that depends on their length only. */
export function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * One-shot hash of a SIP string as latin1 bytes, hex. `crypto.hash` encodes a string as UTF-8, which
 * is the same for ASCII; other text goes through a latin1 Buffer.
 */
export function hashLatin1Hex(algorithm: 'md5' | 'sha256', s: string): string {
  return hash(algorithm, NON_ASCII.test(s) ? Buffer.from(s, 'latin1') : s, 'hex');
}
