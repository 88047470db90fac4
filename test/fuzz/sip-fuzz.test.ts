/**
 * Robustness of src/sip against hostile input (fast-check):
 *  - parseMessage and every accessor throw nothing but SipParseError, whatever the bytes;
 *  - checkRequest/checkResponse, toBuffer and buildResponse never throw on a parsed message;
 *  - StreamFramer cuts any chunking of a stream into exactly the messages sent, answers keep-alives,
 *    and never buffers more than its limit;
 *  - pathological inputs complete (no catastrophic backtracking / quadratic loops). There are no timed
 *    assertions here: vitest's 30 s timeout is the bound, and bench/parser.bench.ts measures time vs size.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildResponse, checkRequest, checkResponse, parseMessage, SipParseError, StreamFramer,
  type FrameEvent, type ParseOptions, type SipRequest, type SipResponse,
} from '../../src/sip/index.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'conformance');
interface ManifestEntry { file: string; name: string; verdict: string; content_length: string[]; body_bytes: number | null }
const manifest: ManifestEntry[] = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
const corpus = manifest.map((e) => ({ e, data: readFileSync(join(DIR, e.file)) }));
const byName = (n: string): Buffer => corpus.find((c) => c.e.name === n)!.data;

const BIG: ParseOptions = { limits: { maxMessageSize: 1 << 20, maxHeaderLine: 1 << 20, maxHeaders: 100_000, maxVias: 100_000 } };

/** Run f; it may return or throw SipParseError, nothing else. Returns whether it threw. */
function onlyParseErrors(what: string, f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (e) {
    if (!(e instanceof SipParseError)) throw new Error(`${what} threw ${String(e)}`, { cause: e });
    expect(e.reason).toMatch(/^[\x20-\x7e]{0,60}$/);
    return true;
  }
}

const THREW = Symbol('threw');

/** Value of f(), or THREW when it throws SipParseError (anything else fails the test). */
function onlyParseErrorsValue<T>(f: () => T): T | typeof THREW {
  let v: T | typeof THREW = THREW;
  onlyParseErrors('accessor', () => {
    v = f();
  });
  return v;
}

/** Parse and touch everything a caller may touch. */
function exercise(data: Buffer, opts?: ParseOptions): SipRequest | SipResponse | undefined {
  let m: SipRequest | SipResponse | undefined;
  onlyParseErrors('parseMessage', () => {
    m = parseMessage(data, opts);
  });
  if (m === undefined) return undefined;
  const msg = m;
  const accessors: Array<[string, () => unknown]> = [
    ['vias', () => msg.vias()],
    ['topVia', () => msg.topVia()],
    ['from', () => msg.from()],
    ['to', () => msg.to()],
    ['fromTag', () => msg.fromTag()],
    ['toTag', () => msg.toTag()],
    ['callId', () => msg.callId()],
    ['cseq', () => msg.cseq()],
    ['maxForwards', () => msg.maxForwards()],
    ['contentLength', () => msg.contentLength()],
    ['contentType', () => msg.contentType()],
    ['expires', () => msg.expires()],
    ['minExpires', () => msg.minExpires()],
    ['contacts', () => msg.contacts()],
    ['routes', () => msg.routes()],
    ['recordRoutes', () => msg.recordRoutes()],
    ['paths', () => msg.paths()],
    ['tokens', () => ['require', 'proxy-require', 'supported', 'unsupported', 'allow', 'accept'].map((t) => msg.tokens(t))],
    ['auth', () => (['authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate'] as const).map((a) => msg.auth(a))],
    ['userAgent', () => msg.userAgent()],
    ['uri/reason', () => (msg.isRequest ? msg.uri : msg.reason)],
  ];
  for (const [name, f] of accessors) onlyParseErrors(name, f);
  // these never throw at all on a parsed message
  const verdict = msg.isRequest ? checkRequest(msg) : checkResponse(msg);
  const out = msg.toBuffer();
  if (msg.isRequest && verdict === null) {
    const r = buildResponse(msg, 200, { toTag: 'fuzz' });
    expect(r.toBuffer().length).toBeGreaterThan(0);
    // what we would forward parses again
    expect(() => parseMessage(out, opts)).not.toThrow();
  } else onlyParseErrors('reparse', () => parseMessage(out, opts));
  return msg;
}

const corpusArb = fc.constantFrom(...corpus.map((c) => c.data));

/** Offsets of the header lines (after the start line, before the empty line) of a message. */
function headerLines(data: Buffer): string[] {
  const s = data.toString('latin1');
  const end = s.indexOf('\r\n\r\n');
  return s.slice(0, end === -1 ? s.length : end).split('\r\n').slice(1);
}

function rebuild(data: Buffer, f: (lines: string[]) => string[]): Buffer {
  const s = data.toString('latin1');
  const end = s.indexOf('\r\n\r\n');
  const headEnd = end === -1 ? s.length : end;
  const lines = s.slice(0, headEnd).split('\r\n');
  const out = [lines[0]!, ...f(lines.slice(1))].join('\r\n') + s.slice(headEnd);
  return Buffer.from(out, 'latin1');
}

/** Characters that matter to SIP grammars, plus some that never should appear. */
const SIPISH = 'aZ09-.!%*_+`\'~;,=:@<>"\\[]/? \t\r\n\x00\x7f\xff()&$#{}|^';
const sipish = (min: number, max: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...SIPISH.split('')), { minLength: min, maxLength: max }).map((a) => a.join(''));

const KNOWN = ['Via', 'v', 'From', 'To', 'Call-ID', 'CSeq', 'Max-Forwards', 'Contact', 'Route', 'Record-Route', 'Path', 'Content-Length', 'l',
  'Content-Type', 'Expires', 'Min-Expires', 'Authorization', 'Proxy-Authorization', 'WWW-Authenticate', 'Proxy-Authenticate', 'Require',
  'Proxy-Require', 'Supported', 'User-Agent', 'X-Unknown'];

describe('parser: mutations of corpus messages throw only SipParseError', () => {
  it('every corpus message as is', () => {
    for (const { data } of corpus) exercise(data);
  });

  it('bit flips', () => {
    fc.assert(
      fc.property(corpusArb, fc.array(fc.tuple(fc.nat(), fc.nat(7)), { minLength: 1, maxLength: 8 }), (data, flips) => {
        const d = Buffer.from(data);
        for (const [off, bit] of flips) d[off % d.length]! ^= 1 << bit;
        exercise(d);
      }),
      { numRuns: 3000 },
    );
  });

  it('byte replacements with SIP-significant characters', () => {
    fc.assert(
      fc.property(corpusArb, fc.array(fc.tuple(fc.nat(), fc.constantFrom(...SIPISH.split(''))), { minLength: 1, maxLength: 8 }), (data, subs) => {
        const d = Buffer.from(data);
        for (const [off, ch] of subs) d[off % d.length] = ch.charCodeAt(0);
        exercise(d);
      }),
      { numRuns: 3000 },
    );
  });

  it('truncation at every offset (wsinv, intmeth, esc01, longreq, mpart01, unreason, ipv4-mapped-ipv6, regaut01)', () => {
    let parsed = 0;
    let rejected = 0;
    for (const name of ['wsinv', 'intmeth', 'esc01', 'longreq', 'mpart01', 'unreason', 'ipv4-mapped-ipv6', 'regaut01']) {
      const d = byName(name);
      for (let i = 0; i <= d.length; i++) {
        if (exercise(d.subarray(0, i)) === undefined) rejected++;
        else parsed++;
      }
    }
    // both outcomes occur: truncated bodies are BODY_TRUNCATED, truncated headers often still parse
    expect(parsed).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
  });

  it('duplicated header lines', () => {
    fc.assert(
      fc.property(corpusArb, fc.nat(), fc.integer({ min: 1, max: 80 }), (data, which, times) => {
        exercise(rebuild(data, (ls) => {
          if (ls.length === 0) return ls;
          const i = which % ls.length;
          return [...ls.slice(0, i), ...Array<string>(times).fill(ls[i]!), ...ls.slice(i)];
        }));
      }),
      { numRuns: 1000 },
    );
  });

  it('CRLF (and bare CR / LF) injected into header values', () => {
    fc.assert(
      fc.property(corpusArb, fc.nat(), fc.nat(), fc.constantFrom('\r\n', '\r\n ', '\r\n\r\n', '\r', '\n', '\r\nVia: SIP/2.0/UDP evil;branch=z9hG4bKx'), sipish(0, 20),
        (data, which, pos, crlf, tail) => {
          exercise(rebuild(data, (ls) => {
            if (ls.length === 0) return ls;
            const i = which % ls.length;
            const l = ls[i]!;
            const p = pos % (l.length + 1);
            return [...ls.slice(0, i), l.slice(0, p) + crlf + tail + l.slice(p), ...ls.slice(i + 1)];
          }));
        }),
      { numRuns: 2000 },
    );
  });

  it('random SIP-ish values in every known header', () => {
    fc.assert(
      fc.property(corpusArb, fc.constantFrom(...KNOWN), sipish(0, 120), fc.boolean(), (data, name, value, replace) => {
        exercise(rebuild(data, (ls) => {
          const line = `${name}: ${value}`;
          if (!replace) return [line, ...ls];
          const i = ls.findIndex((l) => l.toLowerCase().startsWith(name.toLowerCase() + ':'));
          return i === -1 ? [...ls, line] : [...ls.slice(0, i), line, ...ls.slice(i + 1)];
        }));
      }),
      { numRuns: 4000 },
    );
  });

  it('fromTag()/toTag() (read without parsing the address) equal from()/to() tags whenever those parse', () => {
    let compared = 0;
    fc.assert(
      fc.property(corpusArb, fc.constantFrom('From', 'To', 'f', 't'), sipish(0, 60), fc.nat(), (data, name, junk, pos) => {
        // insert random SIP-ish text somewhere into the From/To value
        const d = rebuild(data, (ls) =>
          ls.map((l) => {
            const colon = l.indexOf(':');
            if (colon === -1 || l.slice(0, colon).trim().toLowerCase() !== name.toLowerCase()) return l;
            const p = colon + 1 + (pos % (l.length - colon));
            return l.slice(0, p) + junk + l.slice(p);
          }),
        );
        let m: SipRequest | SipResponse;
        try {
          m = parseMessage(d);
        } catch {
          return;
        }
        const light = [onlyParseErrorsValue(() => m.fromTag()), onlyParseErrorsValue(() => m.toTag())];
        const fresh = parseMessage(d);
        const full = [onlyParseErrorsValue(() => fresh.from()?.params.get('tag') ?? undefined), onlyParseErrorsValue(() => fresh.to()?.params.get('tag') ?? undefined)];
        for (let k = 0; k < 2; k++) {
          if (full[k] === THREW) continue;
          compared++;
          expect(light[k]).toBe(full[k]);
        }
      }),
      { numRuns: 3000 },
    );
    expect(compared).toBeGreaterThan(1000);
  });

  it('100 KB header values: TOO_LARGE by default, and every accessor survives them with a 1 MB limit', () => {
    fc.assert(
      fc.property(fc.constantFrom(...KNOWN), fc.constantFrom('a', ';', ',', '"', '<', '%', '[', ';a=b', '\\"', 'sip:x@y,', ' '), (name, unit) => {
        const value = unit.repeat(Math.ceil(100_000 / unit.length));
        const d = rebuild(byName('wsinv'), (ls) => [...ls, `${name}: ${value}`]);
        let err: unknown;
        try {
          parseMessage(d);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(SipParseError);
        expect((err as SipParseError).code).toBe('TOO_LARGE');
        exercise(d, BIG);
        // and a header line longer than the line limit (but within the size limit) is HEADER_TOO_LONG
        expect(() => parseMessage(d, { limits: { maxMessageSize: 1 << 20 } })).toThrow(expect.objectContaining({ code: 'HEADER_TOO_LONG' }));
      }),
      { numRuns: 60 },
    );
  });

  it('random bytes, and random bytes after a valid start line', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.constantFrom('', 'INVITE sip:a@b SIP/2.0\r\n', 'SIP/2.0 200 OK\r\n'), (bytes, prefix) => {
        exercise(Buffer.concat([Buffer.from(prefix, 'latin1'), bytes]));
      }),
      { numRuns: 3000 },
    );
  });

  it('random SIP-ish text after a valid start line and headers', () => {
    fc.assert(
      fc.property(sipish(0, 400), corpusArb, (text, base) => {
        const head = base.subarray(0, base.indexOf('\r\n') + 2);
        exercise(Buffer.concat([head, Buffer.from(text, 'latin1')]));
      }),
      { numRuns: 3000 },
    );
  });

  it('rejects with the configured limits, as SipParseError', () => {
    const d = byName('longreq');
    const code = (opts: ParseOptions): string => {
      try {
        parseMessage(d, opts);
        return 'parsed';
      } catch (e) {
        expect(e).toBeInstanceOf(SipParseError);
        return (e as SipParseError).code;
      }
    };
    expect(code({})).toBe('parsed');
    expect(code({ limits: { maxVias: 33 } })).toBe('TOO_MANY_VIAS');
    expect(code({ limits: { maxHeaders: 10 } })).toBe('TOO_MANY_HEADERS');
    expect(code({ limits: { maxHeaderLine: 200 } })).toBe('HEADER_TOO_LONG');
    expect(code({ limits: { maxMessageSize: 3000 } })).toBe('TOO_LARGE');
    expect(code({ limits: { maxMessageSize: d.length } })).toBe('parsed');
  });
});

describe('parser: pathological inputs complete (no super-linear paths)', () => {
  const head = 'INVITE sip:bob@example.com SIP/2.0\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n';
  const build = (extra: string, via = 'Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n'): Buffer =>
    Buffer.from(head + via + extra + 'Content-Length: 0\r\n\r\n', 'latin1');
  const withFrom = (from: string): Buffer => Buffer.from(build('').toString('latin1').replace('From: <sip:a@example.com>;tag=1', `From: ${from}`), 'latin1');
  const cases: Array<[string, Buffer]> = [
    ['100k ; in Via params', build('', `Via: SIP/2.0/UDP h.example.com${';'.repeat(100_000)}\r\n`)],
    ['50k ;a=b Via params', build('', `Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1${';a=b'.repeat(50_000)}\r\n`)],
    ['60 KB of commas in Via', build('', `Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1${','.repeat(60_000)}\r\n`)],
    ['60 KB of commas in Contact', build(`Contact: ${','.repeat(60_000)}\r\n`)],
    ['60 KB of commas in Route', build(`Route: <sip:p.example.com;lr>${','.repeat(60_000)}\r\n`)],
    ['20k Vias in one header', build('', `Via: ${Array(20_000).fill('SIP/2.0/UDP h;branch=z9hG4bKa').join(',')}\r\n`)],
    ['50k nested quotes in From', withFrom(`${'"'.repeat(50_000)} <sip:a@example.com>;tag=1`)],
    ['50k escaped quotes in a display name', build(`Contact: "${'\\"'.repeat(50_000)}" <sip:c@example.com>\r\n`)],
    ['unterminated quote of 100 KB in Contact', build(`Contact: "${'a'.repeat(100_000)} <sip:c@example.com>\r\n`)],
    ['100k < in Contact', build(`Contact: ${'<'.repeat(100_000)}\r\n`)],
    ['100k % in a URI user', build(`Contact: <sip:${'%'.repeat(100_000)}@example.com>\r\n`)],
    ['50k %41 in a URI user', build(`Contact: <sip:${'%41'.repeat(50_000)}@example.com>\r\n`)],
    ['100k [ in a host', build(`Route: <sip:${'['.repeat(100_000)}>\r\n`)],
    ['50k URI params', build(`Route: <sip:p.example.com${';lr'.repeat(50_000)}>\r\n`)],
    ['30k Authorization params', build(`Authorization: Digest ${Array(30_000).fill('a="b,c"').join(', ')}\r\n`)],
    ['100k spaces around Via colon', build('', `Via: SIP/2.0/UDP h.example.com${' '.repeat(100_000)}:5060;branch=z9hG4bK1\r\n`)],
    ['100k folded continuation lines', build(`X-Fold: a${'\r\n b'.repeat(100_000)}\r\n`)],
    ['20k header lines', build('X-A: b\r\n'.repeat(20_000))],
    ['100k CRLF before the start line', Buffer.concat([Buffer.from('\r\n'.repeat(100_000)), build('')])],
  ];

  for (const [name, data] of cases) {
    it(name, () => {
      expect(data.length).toBeGreaterThan(50_000);
      // the default 64 KiB limit may reject it; with a 1 MB limit everything is parsed and read
      exercise(data);
      exercise(data, BIG);
    });
  }
});

// ------------------------------------------------------------------ framing

/** Corpus messages that are well framed for a stream: they parse and Content-Length equals the body. */
const streamable = corpus
  .filter(({ e, data }) => {
    if (e.content_length.length !== 1 || Number(e.content_length[0]) !== e.body_bytes) return false;
    try {
      parseMessage(data);
      return true;
    } catch {
      return false;
    }
  })
  .map((c) => c.data);

function collect(framer: StreamFramer, chunks: Buffer[]): FrameEvent[] {
  const out: FrameEvent[] = [];
  for (const c of chunks) out.push(...framer.push(c));
  return out;
}

function cut(data: Buffer, points: number[]): Buffer[] {
  const ps = [...new Set(points.map((p) => p % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of [...ps, data.length]) {
    chunks.push(data.subarray(prev, p));
    prev = p;
  }
  return chunks;
}

describe('StreamFramer', () => {
  it('has enough well-framed corpus messages to stream', () => {
    expect(streamable.length).toBeGreaterThan(30);
  });

  it('random chunking of concatenated corpus messages with keep-alives in between yields exactly the messages', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...streamable), fc.constantFrom('', '\r\n\r\n', '\r\n')), { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (items, points) => {
          // keep-alive before each message; a message never starts with CR, so a lone CRLF is unambiguous
          const stream = Buffer.concat(items.flatMap(([m, ka]) => [Buffer.from(ka, 'latin1'), m]));
          const events = collect(new StreamFramer({ maxMessageSize: 65536 }), cut(stream, points));
          expect(events.filter((e) => e.type === 'error')).toEqual([]);
          const msgs = events.filter((e) => e.type === 'message').map((e) => (e as { data: Buffer }).data);
          expect(msgs.length).toBe(items.length);
          msgs.forEach((m, i) => expect(m.equals(items[i]![0])).toBe(true));
          expect(events.filter((e) => e.type === 'ping').length).toBe(items.filter(([, k]) => k === '\r\n\r\n').length);
          expect(events.filter((e) => e.type === 'pong').length).toBe(items.filter(([, k]) => k === '\r\n').length);
          // the order of events follows the stream
          const kinds = events.map((e) => e.type).join(',');
          const expected = items.flatMap(([, k]) => (k === '\r\n\r\n' ? ['ping', 'message'] : k === '\r\n' ? ['pong', 'message'] : ['message'])).join(',');
          expect(kinds).toBe(expected);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('byte-at-a-time delivery of the whole streamable corpus', () => {
    const stream = Buffer.concat(streamable);
    const f = new StreamFramer({ maxMessageSize: 65536 });
    const msgs: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) for (const e of f.push(stream.subarray(i, i + 1))) if (e.type === 'message') msgs.push(e.data);
    expect(msgs.length).toBe(streamable.length);
    msgs.forEach((m, i) => expect(m.equals(streamable[i]!)).toBe(true));
    expect(f.buffered).toBe(0);
  });

  it('keep-alive: CRLFCRLF is a ping, a lone CRLF a pong, split across pushes too', () => {
    const f = new StreamFramer({ maxMessageSize: 65536 });
    expect(f.push(Buffer.from('\r\n\r\n'))).toEqual([{ type: 'ping' }]);
    // split CRLFCRLF: nothing until the fourth octet arrives
    expect(f.push(Buffer.from('\r'))).toEqual([]);
    expect(f.push(Buffer.from('\n\r'))).toEqual([]);
    expect(f.push(Buffer.from('\n'))).toEqual([{ type: 'ping' }]);
    expect(f.buffered).toBe(0);
    const m = byName('zeromf');
    // a ping and a message in one chunk
    const ev = f.push(Buffer.concat([Buffer.from('\r\n\r\n'), m]));
    expect(ev.map((e) => e.type)).toEqual(['ping', 'message']);
    const g = new StreamFramer({ maxMessageSize: 65536 });
    expect(g.push(Buffer.from('\r\n'))).toEqual([]);
    expect(g.push(m).map((e) => e.type)).toEqual(['pong', 'message']);
  });

  it('oversize message (Content-Length past the limit) is an error event, then the framer stays closed', () => {
    const f = new StreamFramer({ maxMessageSize: 1000 });
    const big = Buffer.from('MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n' + 'x'.repeat(5000));
    const ev = f.push(big);
    expect(ev).toHaveLength(1);
    expect(ev[0]!.type).toBe('error');
    expect((ev[0] as { error: SipParseError }).error.code).toBe('TOO_LARGE');
    expect(f.push(byName('zeromf'))).toEqual([]);
    expect(f.buffered).toBeLessThanOrEqual(1004);
  });

  it('bad or missing Content-Length on a stream is a FRAMING error', () => {
    for (const name of ['ncl', 'mcl01', 'inv2543']) {
      const ev = new StreamFramer({ maxMessageSize: 65536 }).push(byName(name));
      expect({ name, ev: ev.map((e) => (e.type === 'error' ? e.error.code : e.type)) }).toEqual({ name, ev: ['FRAMING'] });
    }
  });

  it('garbage without CRLFCRLF: no event until the limit, then exactly one error; buffering never exceeds the limit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 64, max: 4096 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 60 }), fc.nat(255), (max, sizes, seed) => {
        const f = new StreamFramer({ maxMessageSize: max });
        let sent = 0;
        const events: FrameEvent[] = [];
        for (const n of sizes) {
          // bytes that never form CRLFCRLF (no CR at all)
          const chunk = Buffer.alloc(n, 0x41 + ((seed + sent) % 26));
          const ev = f.push(chunk);
          sent += n;
          expect(f.buffered).toBeLessThanOrEqual(max + 4);
          if (sent <= max) expect(ev).toEqual([]);
          events.push(...ev);
        }
        if (sent > max + 4) {
          expect(events).toHaveLength(1);
          expect(events[0]!.type).toBe('error');
          expect(f.buffered).toBe(0);
        } else expect(events.length).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });

  it('a 64 KiB header section delivered a byte at a time completes (no rescanning per byte)', () => {
    const f = new StreamFramer({ maxMessageSize: 65536 });
    const one = Buffer.from('a');
    let events: FrameEvent[] = [];
    for (let i = 0; i < 65536 + 8 && events.length === 0; i++) events = f.push(one);
    expect(events.map((e) => e.type)).toEqual(['error']);
  });

  it('random bytes in random chunks never throw and never exceed the buffer limit', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 30 }), (chunks) => {
        const f = new StreamFramer({ maxMessageSize: 2048 });
        for (const c of chunks) {
          for (const e of f.push(Buffer.from(c))) if (e.type === 'message') onlyParseErrors('frame', () => exercise(e.data));
          expect(f.buffered).toBeLessThanOrEqual(2048 + 4);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
