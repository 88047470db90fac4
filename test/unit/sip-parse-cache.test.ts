/**
 * The parsed-header caches of SipMessage give what a fresh parse of the message's current text gives: after
 * setViaReceived (which updates the cached top Via in place of a re-parse), after the other Via edits, in a response
 * built from a request (which takes the request's parsed top Via), and after the header list is replaced.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildResponse, parseMessage, parseVia, splitList, SipParseError, type SipMessageAny, type SipRequest, type SipResponse, type Via } from '../../src/sip/index.js';

function parseReq(d: Buffer | string): SipRequest {
  const m = parseMessage(typeof d === 'string' ? Buffer.from(d, 'latin1') : d);
  if (!m.isRequest) throw new Error('not a request');
  return m;
}

const plain = (v: Via | undefined): unknown => (v === undefined ? undefined : { ...v, params: [...v.params] });

/** topVia() and vias() of m, or the parse error's code. */
function viaView(m: SipMessageAny): unknown {
  try {
    return { top: plain(m.topVia()), all: m.vias().map(plain) };
  } catch (e) {
    if (!(e instanceof SipParseError)) throw e;
    return e.code;
  }
}

/** What a fresh parse of m's bytes gives. */
const reparsed = (m: SipMessageAny): unknown => viaView(parseMessage(m.toBuffer()));

const req = (via: string, extra = ''): string =>
  `OPTIONS sip:b@example.com SIP/2.0\r\n${via}From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n${extra}Content-Length: 0\r\n\r\n`;

describe('cached top Via', () => {
  it('after setViaReceived, equals a fresh parse of the edited message (random parameter lists)', () => {
    const param = fc.constantFrom(';rport', ';RPORT', '; rport = 5060 ', ';rport=', ';rport=abc', ';rportx', ';x-rport', ';received=1.2.3.4', ';Received = [2001:db8::1] ',
      ';received', ';receivedx=1', ';branch=z9hG4bKa', ';Branch=z9hG4bKb', ';maddr=10.0.0.1', ';ttl=3', ';lr', ' ;rport', ';rport ;', ';rport=5070', ';x="a;rport"',
      ';x="a;received=1"', ';y=[::1]', ';rport=123456');
    const received = fc.constantFrom(undefined, '198.51.100.1', '2001:db8::99', '[2001:db8::9]', 'a;b', 'a b', 'a,b', '"q"', '');
    const rport = fc.constantFrom(undefined, 4242, 0, 65535, 123456, 1.5, -1);
    const second = fc.constantFrom('', ', SIP/2.0/TCP x.example.com;branch=z9hG4bKr', 'Via: SIP/2.0/TCP y.example.com;branch=z9hG4bKs\r\n');
    fc.assert(
      fc.property(fc.array(param, { maxLength: 6 }), received, rport, second, fc.boolean(), (params, rc, rp, next, readFirst) => {
        const top = `SIP/2.0/UDP a.example.com:5060${params.join('')}`;
        const via = next.startsWith(',') ? `Via: ${top}${next}\r\n` : `Via: ${top}\r\n${next}`;
        const m = parseReq(req(via));
        if (readFirst) {
          try {
            m.topVia();
          } catch (e) {
            if (!(e instanceof SipParseError)) throw e;
          }
        }
        m.setViaReceived(rc, rp);
        expect(viaView(m)).toEqual(reparsed(m));
      }),
      { numRuns: 3000 },
    );
  });

  it('setViaReceived on the usual request: the cache holds the new received and rport', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\n'));
    expect(m.topVia()!.rport).toBe(true);
    m.setViaReceived('192.0.2.7', 5099);
    expect([m.topVia()!.received, m.topVia()!.rport, m.topVia()!.raw]).toEqual(['192.0.2.7', 5099, 'SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5099;received=192.0.2.7']);
    expect(m.topVia()!.params.get('rport')).toBe('5099');
    expect(viaView(m)).toEqual(reparsed(m));
  });

  it('two Via lines: removing the first gives the second as the top Via', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n'));
    expect(m.topVia()!.branch).toBe('z9hG4bK1');
    m.setViaReceived('192.0.2.1', undefined);
    expect(m.topVia()!.received).toBe('192.0.2.1');
    m.removeFirstValue('via');
    expect(m.topVia()!.branch).toBe('z9hG4bK2');
    expect(m.topVia()!.received).toBeUndefined();
    expect(viaView(m)).toEqual(reparsed(m));
  });

  it('a Via added on top after the top Via was read (and edited) becomes the top Via', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport\r\n'));
    m.topVia();
    m.setViaReceived('192.0.2.1', 1234);
    m.addHeader('via', 'SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp', 'before');
    expect(m.topVia()!.branch).toBe('z9hG4bKp');
    expect(m.vias().map((v) => v.branch)).toEqual(['z9hG4bKp', 'z9hG4bK1']);
    expect(m.vias()[1]!.rport).toBe(1234);
    expect(viaView(m)).toEqual(reparsed(m));
  });

  it('replacing the header list makes the accessors read the new lines', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n', 'Authorization: Digest username="u", realm="r"\r\n'));
    expect(m.topVia()!.branch).toBe('z9hG4bK1');
    expect(m.from()!.uri).toMatchObject({ host: 'example.com' });
    expect(m.auth('authorization')).toHaveLength(1);
    m.headers = m.headers
      .filter((h) => h.key !== 'authorization')
      .map((h) => (h.key === 'via' ? { name: 'Via', key: 'via', value: 'SIP/2.0/UDP c.example.com;branch=z9hG4bK3', raw: null } : h.key === 'from' ? { name: 'From', key: 'from', value: '<sip:z@example.org>;tag=9', raw: null } : h));
    expect(m.topVia()!.branch).toBe('z9hG4bK3');
    expect(m.vias()).toHaveLength(1);
    expect(m.from()!.uri).toMatchObject({ host: 'example.org' });
    expect(m.auth('authorization')).toHaveLength(0);
  });
});

describe('replacing the header list', () => {
  it('keeps the parsed values of the headers whose lines stay, and forgets those of the others', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n', 'X-Foo: 1\r\nContact: <sip:a@192.0.2.1>\r\n'));
    const top = m.topVia();
    expect(m.vias()).toHaveLength(2);
    const to = m.to();
    expect(m.contacts()).toHaveLength(1);
    m.headers = m.headers.filter((h) => h.key !== 'x-foo');
    expect(m.topVia()).toBe(top);
    expect(m.to()).toBe(to);
    let seen = 0;
    m.headers = m.headers.filter((h) => h.key !== 'via' || ++seen === 1).filter((h) => h.key !== 'contact');
    expect(plain(m.topVia())).toEqual(plain(top));
    expect(m.vias()).toHaveLength(1);
    expect(m.contacts()).toHaveLength(0);
    m.headers = m.headers.filter((h) => h.key !== 'via');
    expect(m.topVia()).toBeUndefined();
  });
});

describe('a response built from a request', () => {
  it('has the top Via of the request as the request has it now (edited after it was read)', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport\r\nVia: SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n'));
    m.topVia();
    m.setViaReceived('192.0.2.1', 1234);
    const res = buildResponse(m, 200, { toTag: 't' });
    expect(res.topVia()!.rport).toBe(1234);
    expect(viaView(res)).toEqual(reparsed(res));
  });

  it('editing the response Via does not change the request, nor the other way round', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport\r\nVia: SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n'));
    m.setViaReceived('192.0.2.1', 1234);
    m.topVia();
    const res = buildResponse(m, 200);
    res.removeFirstValue('via');
    expect(res.topVia()!.branch).toBe('z9hG4bK2');
    expect(m.topVia()!.branch).toBe('z9hG4bK1');
    const res2 = buildResponse(m, 180);
    m.setViaReceived('192.0.2.2', 4321);
    expect(res2.topVia()!.rport).toBe(1234);
    expect(m.topVia()!.rport).toBe(4321);
    expect(viaView(res2)).toEqual(reparsed(res2));
    expect(viaView(m)).toEqual(reparsed(m));
  });

  it('a request whose top Via was never read: the response parses its own', () => {
    const m = parseReq(req('Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n'));
    const res = buildResponse(m, 200);
    expect(viaView(res)).toEqual(reparsed(res));
    expect(res.topVia()!.branch).toBe('z9hG4bK1');
  });
});

/** The second Via element as a fresh parse of m's bytes gives it (undefined: none), or the parse error's code. */
function secondOf(m: SipMessageAny): unknown {
  const again = parseMessage(m.toBuffer());
  const es = again.headerValues('via').flatMap((l) => splitList(l));
  if (es.length < 2) return undefined;
  try {
    return plain(parseVia(es[1]!));
  } catch (e) {
    if (!(e instanceof SipParseError)) throw e;
    return e.code;
  }
}

function secondView(m: SipMessageAny): unknown {
  try {
    return plain(m.secondVia());
  } catch (e) {
    if (!(e instanceof SipParseError)) throw e;
    return e.code;
  }
}

const res = (via: string): SipResponse => {
  const m = parseMessage(Buffer.from(`SIP/2.0 180 Ringing\r\n${via}From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`, 'latin1'));
  if (m.isRequest) throw new Error('not a response');
  return m;
};

describe('second Via (a response relayed upstream)', () => {
  it('removing the top Via line after reading the second gives it as the top Via, in a clone as in the message', () => {
    const m = res('Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport=5062;received=192.0.2.1\r\n');
    expect(m.secondVia()!.branch).toBe('z9hG4bK1');
    const up = m.clone();
    up.removeFirstValue('via');
    expect(up.topVia()!.branch).toBe('z9hG4bK1');
    expect(up.secondVia()).toBeUndefined();
    expect(viaView(up)).toEqual(reparsed(up));
    // the original keeps its Vias
    expect(m.topVia()!.branch).toBe('z9hG4bKp');
    expect(m.secondVia()!.branch).toBe('z9hG4bK1');
    m.removeFirstValue('via');
    expect(viaView(m)).toEqual(reparsed(m));
  });

  it('a malformed second Via is a parse error, after the top one is removed too', () => {
    const m = res('Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP ;branch=x\r\n');
    expect(secondView(m)).toBe('BAD_VIA');
    m.removeFirstValue('via');
    expect(viaView(m)).toBe('BAD_VIA');
  });

  it('after any sequence of reads, edits and clones, the parsed Vias are those of a fresh parse', () => {
    const via1 = fc.constantFrom('SIP/2.0/UDP p.example.net;branch=z9hG4bKp', 'SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport', 'SIP/2.0/TCP b.example.com:5070;received=10.0.0.1',
      'SIP/2.0/UDP ;branch=bad', ' SIP/2.0/UDP c.example.com ', 'SIP/2.0/UDP d.example.com;x="q;rport"');
    const line = fc.array(via1, { minLength: 1, maxLength: 3 }).map((es) => `Via: ${es.join(', ')}\r\n`);
    const op = fc.constantFrom('top', 'second', 'all', 'remove', 'clone', 'received', 'add', 'response', 'filter');
    fc.assert(
      fc.property(fc.array(line, { minLength: 1, maxLength: 4 }), fc.array(op, { maxLength: 10 }), fc.boolean(), (lines, ops, asRequest) => {
        let m: SipMessageAny = asRequest ? parseReq(req(lines.join(''))) : res(lines.join(''));
        const read = (f: () => unknown): void => {
          try {
            f();
          } catch (e) {
            if (!(e instanceof SipParseError)) throw e;
          }
        };
        for (const o of ops) {
          if (o === 'top') read(() => m.topVia());
          else if (o === 'second') read(() => m.secondVia());
          else if (o === 'all') read(() => m.vias());
          else if (o === 'remove') m.removeFirstValue('via');
          else if (o === 'clone') m = m.clone();
          else if (o === 'received') m.setViaReceived('192.0.2.9', 4000);
          else if (o === 'add') m.addHeader('via', 'SIP/2.0/UDP q.example.net;branch=z9hG4bKq', 'before');
          else if (o === 'filter') m.headers = m.headers.filter((h) => h.key !== 'from');
          else if (m.isRequest) m = buildResponse(m, 200);
        }
        expect(viaView(m)).toEqual(reparsed(m));
        expect(secondView(m)).toEqual(secondOf(m));
      }),
      { numRuns: 3000 },
    );
  });
});
