/**
 * Octets of a header text for the parsers' byte scans. Reading a Uint8Array element is about twice as cheap as
 * String.prototype.charCodeAt, so the parsers look at bytes and slice their results from the string at the same
 * offsets. For a value parsed in place, the bytes are the received datagram itself (same offsets as the latin1 text
 * parseMessage made of it). For a string given on its own, they are written into a scratch buffer here.
 */

/** Buffer's own latin1 writer (what buf.write(s, o, 'latin1') ends in). */
interface Latin1Writable {
  latin1Write(s: string, offset: number): number;
}

/** the scratch buffer grows up to this size; longer strings get a buffer of their own. */
const SCRATCH_MAX = 16384;

let scratch: Buffer = Buffer.allocUnsafe(1024);

function fill(b: Buffer, s: string): Buffer {
  const n = s.length;
  if (n > 0) (b as unknown as Latin1Writable).latin1Write(s, 0);
  // a character above U+00FF is written as its low octet: make it 0xFF, which no scan treats as anything but
  // "some other character" (the string parsers treat such characters the same way)
  if (n > 0 && Buffer.byteLength(s, 'utf8') !== n) for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0xff) b[i] = 0xff;
  b[n] = 0;
  return b;
}

/**
 * The octets of `s` (s.charCodeAt(i) for i < s.length, characters above U+00FF read as 0xFF; b[s.length] = 0) in a
 * scratch buffer that the next call overwrites: only for a parse that does not call scratchBytes again before it
 * has finished reading.
 */
export function scratchBytes(s: string): Uint8Array {
  if (scratch.length <= s.length) {
    if (s.length >= SCRATCH_MAX) return freshBytes(s);
    scratch = Buffer.allocUnsafe(Math.min(SCRATCH_MAX, Math.max(s.length + 1, scratch.length * 2)));
  }
  return fill(scratch, s);
}

/** scratchBytes(s) in a buffer of its own (for the rare nested parse of a string made during another). */
export function freshBytes(s: string): Uint8Array {
  return fill(Buffer.allocUnsafe(s.length + 1), s);
}
