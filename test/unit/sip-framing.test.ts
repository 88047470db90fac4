/** src/sip/framing.ts StreamFramer: the messagePending flag behind the TCP message deadline. */
import { describe, expect, it } from 'vitest';
import { StreamFramer } from '../../src/sip/index.js';

const MSG = 'OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody';

describe('StreamFramer.messagePending', () => {
  it('is false when nothing or only (part of) a CRLF keep-alive is buffered', () => {
    const f = new StreamFramer({ maxMessageSize: 4096 });
    expect(f.messagePending).toBe(false);
    for (const part of ['\r', '\n', '\r']) {
      f.push(Buffer.from(part, 'latin1'));
      expect(f.messagePending, JSON.stringify(part)).toBe(false);
    }
    expect(f.push(Buffer.from('\n', 'latin1'))).toEqual([{ type: 'ping' }]);
    expect(f.messagePending).toBe(false);
    f.push(Buffer.from('\r\n', 'latin1'));
    expect(f.messagePending).toBe(false);
  });
  it('is true from the first byte of a message to its last, then false again', () => {
    const f = new StreamFramer({ maxMessageSize: 4096 });
    f.push(Buffer.from('O', 'latin1'));
    expect(f.messagePending).toBe(true);
    f.push(Buffer.from(MSG.slice(1, -1), 'latin1'));
    expect(f.messagePending).toBe(true);
    const ev = f.push(Buffer.from(MSG.slice(-1), 'latin1'));
    expect(ev.map((e) => e.type)).toEqual(['message']);
    expect(f.messagePending).toBe(false);
  });
  it('is true after a pong when a message follows in the same chunk, and for a CR not followed by LF', () => {
    const f = new StreamFramer({ maxMessageSize: 4096 });
    expect(f.push(Buffer.from('\r\nOPT', 'latin1')).map((e) => e.type)).toEqual(['pong']);
    expect(f.messagePending).toBe(true);
    const g = new StreamFramer({ maxMessageSize: 4096 });
    g.push(Buffer.from('\rX', 'latin1'));
    expect(g.messagePending).toBe(true);
  });
  it('is false after a framing error', () => {
    const f = new StreamFramer({ maxMessageSize: 4096 });
    expect(f.push(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n', 'latin1')).map((e) => e.type)).toEqual(['error']);
    expect(f.messagePending).toBe(false);
  });
});
