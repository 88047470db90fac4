import { SipParseError } from './errors.js';

export type FrameEvent =
  | { readonly type: 'message'; readonly data: Buffer }
  /** RFC 5626 §3.5.1: a CRLFCRLF ping; answer with a single CRLF pong. */
  | { readonly type: 'ping' }
  /** a lone CRLF (a pong from the peer, or stray line end between messages). */
  | { readonly type: 'pong' }
  /** unrecoverable framing error: the connection must be closed. */
  | { readonly type: 'error'; readonly error: SipParseError };

export interface FramerLimits {
  /** largest message accepted (headers + body), octets. */
  maxMessageSize: number;
}

/**
 * Cuts a byte stream (TCP, TLS) into SIP messages. Content-Length is mandatory on streams.
 * Buffering is bounded by maxMessageSize; the work per received byte is constant (no rescanning).
 */
export class StreamFramer {
  private buf: Buffer;
  private len = 0;
  private scanFrom = 0;
  private failed = false;
  private readonly max: number;

  constructor(limits: FramerLimits) {
    this.max = limits.maxMessageSize;
    this.buf = Buffer.allocUnsafe(Math.min(4096, this.max + 4));
  }

  /** bytes currently buffered (for limits and metrics). */
  get buffered(): number {
    return this.len;
  }

  /**
   * Whether the buffered bytes are part of a message (its first byte has arrived, its last not
   * yet), as opposed to nothing or the start of a CRLF keep-alive. For a per-message deadline.
   */
  get messagePending(): boolean {
    if (this.failed || this.len === 0) return false;
    if (this.len <= 3) {
      for (let i = 0; i < this.len; i++) if (this.buf[i] !== (i % 2 === 0 ? 0x0d : 0x0a)) return true;
      return false;
    }
    return true;
  }

  push(chunk: Buffer): FrameEvent[] {
    if (this.failed) return [];
    const events: FrameEvent[] = [];
    let off = 0;
    while (off < chunk.length) {
      const room = this.max + 4 - this.len;
      const take = Math.min(room, chunk.length - off);
      if (take <= 0) {
        this.failed = true;
        events.push({ type: 'error', error: new SipParseError('TOO_LARGE', 'Message too large') });
        return events;
      }
      this.append(chunk, off, take);
      off += take;
      if (!this.drain(events)) return events;
    }
    return events;
  }

  private append(chunk: Buffer, off: number, n: number): void {
    if (this.len + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.len + n) cap *= 2;
      const nb = Buffer.allocUnsafe(Math.min(cap, this.max + 4));
      this.buf.copy(nb, 0, 0, this.len);
      this.buf = nb;
    }
    chunk.copy(this.buf, this.len, off, off + n);
    this.len += n;
  }

  private consume(n: number): void {
    this.buf.copy(this.buf, 0, n, this.len);
    this.len -= n;
    this.scanFrom = 0;
  }

  /** Emit every complete unit in the buffer; returns false after a fatal error. */
  private drain(events: FrameEvent[]): boolean {
    for (;;) {
      const b = this.buf;
      // keep-alives between messages
      if (this.len >= 2 && b[0] === 0x0d && b[1] === 0x0a) {
        if (this.len >= 4 && b[2] === 0x0d && b[3] === 0x0a) {
          this.consume(4);
          events.push({ type: 'ping' });
          continue;
        }
        if (this.len === 3 && b[2] === 0x0d) return true; // wait: could become CRLFCRLF
        if (this.len === 2) return true;
        this.consume(2);
        events.push({ type: 'pong' });
        continue;
      }
      if (this.len === 1 && b[0] === 0x0d) return true;
      // header terminator
      let end = -1;
      for (let i = Math.max(0, this.scanFrom); i + 3 < this.len; i++) {
        if (b[i] === 0x0d && b[i + 1] === 0x0a && b[i + 2] === 0x0d && b[i + 3] === 0x0a) {
          end = i;
          break;
        }
      }
      if (end === -1) {
        this.scanFrom = Math.max(0, this.len - 3);
        if (this.len > this.max) return this.fail(events, 'TOO_LARGE', 'Header section too large');
        return true;
      }
      const head = b.toString('latin1', 0, end);
      const cl = contentLengthOf(head);
      if (typeof cl === 'string') return this.fail(events, 'FRAMING', cl);
      const total = end + 4 + cl;
      if (total > this.max) return this.fail(events, 'TOO_LARGE', 'Message too large');
      if (this.len < total) {
        this.scanFrom = end; // header already found; rescan is O(1) from here
        return true;
      }
      const msg = Buffer.from(b.subarray(0, total));
      this.consume(total);
      events.push({ type: 'message', data: msg });
    }
  }

  private fail(events: FrameEvent[], code: 'TOO_LARGE' | 'FRAMING', reason: string): false {
    this.failed = true;
    this.len = 0;
    events.push({ type: 'error', error: new SipParseError(code, reason) });
    return false;
  }
}

/** Content-Length from a header section, or an error string. */
function contentLengthOf(head: string): number | string {
  let value: string | undefined;
  const lines = head.split('\r\n');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name !== 'content-length' && name !== 'l') continue;
    let v = line.slice(colon + 1);
    while (i + 1 < lines.length && (lines[i + 1]!.charCodeAt(0) === 0x20 || lines[i + 1]!.charCodeAt(0) === 0x09)) v += ' ' + lines[++i];
    v = v.trim();
    if (value !== undefined && value !== v) return 'Conflicting Content-Length';
    value = v;
  }
  if (value === undefined) return 'Content-Length required on streams';
  if (!/^\d{1,10}$/.test(value)) return 'Bad Content-Length';
  return Number(value);
}
