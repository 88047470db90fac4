/**
 * The octet scans (src/sip/bytes.ts: Via, URI, name-addr, header parameters, auth, list splitting) give exactly what
 * the string scans they replaced give (test/unit/oracle: those files as they were), values and errors alike:
 *  - on strings given alone (scratch octets; characters above U+00FF included, whose low octets are delimiters),
 *  - parsed in place in a message (the datagram's octets), against the oracle on the header's value;
 * and the parsed message's presence mask, lazy lines and lazy body stay right across edits.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseAuthHeader } from '../../src/sip/digest-header.js';
import { splitList } from '../../src/sip/headers.js';
import { freshBytes } from '../../src/sip/bytes.js';
import { checkNameAddrAt, nameAddrParams, parseContact, parseNameAddr } from '../../src/sip/name-addr.js';
import { checkHeaderParams, parseHeaderParams } from '../../src/sip/params.js';
import { checkUriAt, parseHostPort, parseUri } from '../../src/sip/uri.js';
import { parseVia } from '../../src/sip/via.js';
import { parseMessage, SipParseError, SipRequest, type SipResponse } from '../../src/sip/index.js';
import * as oAuth from './oracle/digest-header.js';
import * as oHeaders from './oracle/headers.js';
import * as oNa from './oracle/name-addr.js';
import * as oParams from './oracle/params.js';
import * as oUri from './oracle/uri.js';
import * as oVia from './oracle/via.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'conformance');
const manifest: Array<{ file: string }> = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
const corpus = manifest.map((e) => readFileSync(join(DIR, e.file)));

/** A map by behaviour (Map, or the ReadonlyMap src/sip returns for parameters): compared as its entries in order. */
const isMapLike = (x: unknown): x is ReadonlyMap<unknown, unknown> =>
  x instanceof Map ||
  (typeof x === 'object' && x !== null && typeof (x as ReadonlyMap<unknown, unknown>).get === 'function' && typeof (x as ReadonlyMap<unknown, unknown>).entries === 'function' && typeof (x as ReadonlyMap<unknown, unknown>).size === 'number');

const json = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (isMapLike(x) ? [...x.entries()] : Buffer.isBuffer(x) ? x.toString('latin1') : x === undefined ? '(undefined)' : x));

function attempt(f: () => unknown): string {
  try {
    return json(f());
  } catch (e) {
    if (e instanceof SipParseError) return `threw ${e.code}`;
    throw e;
  }
}

type Pair = readonly [string, (s: string) => unknown, (s: string) => unknown];
const PAIRS: Pair[] = [
  ['parseVia', parseVia, oVia.parseVia],
  ['parseUri', parseUri, oUri.parseUri],
  ['parseNameAddr', parseNameAddr, oNa.parseNameAddr],
  ['parseContact', parseContact, oNa.parseContact],
  ['nameAddrParams', nameAddrParams, oNa.nameAddrParams],
  ['parseHeaderParams', (s) => parseHeaderParams(s, 'BAD_VIA', 'x'), (s) => oParams.parseHeaderParams(s, 'BAD_VIA', 'x')],
  ['parseAuthHeader', parseAuthHeader, oAuth.parseAuthHeader],
  ['parseHostPort', (s) => parseHostPort(s, 0, ';'), (s) => oUri.parseHostPort(s, 0, ';')],
  ['splitList', splitList, oHeaders.splitList],
];

function sameAlone(s: string): void {
  for (const [name, ours, oracle] of PAIRS) expect({ name, s, r: attempt(() => ours(s)) }).toEqual({ name, s, r: attempt(() => oracle(s)) });
}

/** Values of the corpus's headers the parsers read. */
const VALUES = (() => {
  const out = new Set<string>();
  for (const d of corpus) {
    for (const line of d.toString('latin1').split('\r\n')) {
      const c = line.indexOf(':');
      if (c > 0) {
        const v = line.slice(c + 1).trim();
        out.add(v);
        for (const e of oHeaders.splitList(v)) out.add(e);
      }
    }
  }
  return [...out];
})();

// characters that matter to the scans, plus characters above U+00FF whose low octet is one of them
// (U+0122 '"', U+013C '<', U+013B ';', U+0120 ' ', U+012C ',', U+013D '=', U+015C '\\', U+0140 '@', U+013A ':', U+015B '[')
const SPECIAL = [...' \t;=,:@<>"\\[]?%/.-_+*!~\'`&', 'A', 'z', '5', '\xa0', '\xff', '\x00', '\r', '\n', '\u0122', '\u013c', '\u013b', '\u0120', '\u012c', '\u013d', '\u015c', '\u0140', '\u013a', '\u015b', '\u2028'];
const PIECES = ['SIP/2.0/UDP ', 'sip:', 'sips:', 'tel:', 'alice@', 'example.com', '192.0.2.1', ':5060', '[2001:db8::1]', ';branch=z9hG4bK1', ';rport', ';rport=5060', ';received=10.0.0.1', ';tag=abc', ';lr', ';transport=udp', ';ttl=3', '<', '>', '"Bob" ', 'Digest ', 'username="a"', ', ', 'nonce="x,y"', '%41', '?h=v', ';maddr=x'];
const textArb = fc.array(fc.oneof(fc.constantFrom(...SPECIAL), fc.constantFrom(...PIECES)), { maxLength: 14 }).map((a) => a.join(''));

describe('octet scans = the string scans they replaced', () => {
  it('on the corpus header values, given alone', () => {
    for (const v of VALUES) sameAlone(v);
  });

  it('on random edits of corpus values and on generated text (characters above U+00FF included)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VALUES), fc.nat(), textArb, fc.nat(4), (v, at, ins, del) => {
        const p = at % (v.length + 1);
        sameAlone(v.slice(0, p) + ins + v.slice(p + del));
        sameAlone(ins);
      }),
      { numRuns: 1500 },
    );
  }, 120_000);

  it('in place in a message: every accessor equals the oracle on the header value', () => {
    const latin1Text = textArb.map((s) => s.replace(/[^\x20-\xff\t]/g, ''));
    const HEADERS = ['Via', 'From', 'To', 'Contact', 'Route', 'Record-Route', 'Path', 'Authorization'] as const;
    fc.assert(
      fc.property(fc.constantFrom(...HEADERS), fc.constantFrom(...VALUES), fc.nat(), latin1Text, fc.nat(4), (name, v0, at, ins, del) => {
        const p = at % (v0.length + 1);
        const v = (v0.slice(0, p) + ins + v0.slice(p + del)).replace(/[\r\n]/g, '');
        const wire = Buffer.from(`OPTIONS sip:x@example.com SIP/2.0\r\n${name}: ${v}\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n`, 'latin1');
        let m: SipRequest | SipResponse;
        try {
          m = parseMessage(wire);
        } catch (e) {
          if (e instanceof SipParseError) return;
          throw e;
        }
        const value = m.headers[0]!.value;
        const elems = oHeaders.splitList(value);
        const each = (f: (s: string) => unknown): string => attempt(() => elems.map((e) => {
          if (e.length === 0) throw new SipParseError('BAD_VIA', 'empty');
          return f(e);
        }));
        const norm = (r: string): string => r.replace(/threw BAD_\w+/, 'threw');
        switch (name) {
          case 'Via':
            expect(attempt(() => m.vias())).toBe(each(oVia.parseVia));
            expect(attempt(() => m.topVia())).toBe(attempt(() => (elems[0] === '' ? (() => { throw new SipParseError('BAD_VIA', 'empty'); })() : oVia.parseVia(elems[0]!))));
            break;
          case 'From':
          case 'To': {
            const na = attempt(() => oNa.parseNameAddr(value));
            expect(attempt(() => (name === 'From' ? m.from() : m.to()))).toBe(na);
            const params = oNa.nameAddrParams(value);
            const tag = params !== undefined ? (params.get('tag') ?? undefined) : attempt(() => oNa.parseNameAddr(value).params.get('tag') ?? undefined);
            const ours = attempt(() => (name === 'From' ? m.fromTag() : m.toTag()));
            expect(ours).toBe(typeof tag === 'string' && tag.startsWith('threw') ? tag : json(tag));
            break;
          }
          case 'Contact':
            expect(norm(attempt(() => m.contacts()))).toBe(norm(each(oNa.parseContact)));
            break;
          case 'Route':
            expect(norm(attempt(() => m.routes()))).toBe(norm(each(oNa.parseNameAddr)));
            break;
          case 'Record-Route':
            expect(norm(attempt(() => m.recordRoutes()))).toBe(norm(each(oNa.parseNameAddr)));
            break;
          case 'Path':
            expect(norm(attempt(() => m.paths()))).toBe(norm(each(oNa.parseNameAddr)));
            break;
          case 'Authorization':
            expect(attempt(() => m.auth('authorization'))).toBe(attempt(() => [oAuth.parseAuthHeader(value)]));
            break;
        }
      }),
      { numRuns: 3000 },
    );
  }, 120_000);
});

const INVITE = Buffer.from(
  'INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\nRoute: <sip:p.example.com;lr>\r\n' +
    'From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n' +
    'Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n',
  'latin1',
);

/** Everything the accessors give, read from a fresh message with the same lines (no presence mask). */
function unindexed(m: SipRequest): string {
  const c = new SipRequest(m.method, m.uriText, [...m.headers], m.body);
  return readAll(c);
}

function readAll(m: SipRequest | SipResponse): string {
  return json({
    vias: attempt(() => m.vias()), routes: attempt(() => m.routes()), rr: attempt(() => m.recordRoutes()), paths: attempt(() => m.paths()),
    contacts: attempt(() => m.contacts()), from: attempt(() => m.from()), to: attempt(() => m.to()), callId: m.callId(), cseq: attempt(() => m.cseq()),
    mf: attempt(() => m.maxForwards()), expires: attempt(() => m.expires()), allow: m.tokens('allow'), supported: m.tokens('supported'), require: m.tokens('require'),
    auth: attempt(() => m.auth('proxy-authorization')), ua: m.userAgent(), ct: m.contentType(), header: m.header('x-extra'),
  });
}

/** 'ok', or the code and reason of the SipParseError f throws. */
function verdict(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof SipParseError) return `${e.code} ${e.reason}`;
    throw e;
  }
}

/** The check-only scans give the verdicts (code and reason) of the parsers they stand for. */
function sameVerdicts(s: string): void {
  const b = freshBytes(s);
  expect({ s, v: verdict(() => checkNameAddrAt(s, b, 0, s.length)) }).toEqual({ s, v: verdict(() => parseNameAddr(s)) });
  expect({ s, v: verdict(() => checkUriAt(s, b, 0, s.length)) }).toEqual({ s, v: verdict(() => parseUri(s)) });
  expect({ s, v: verdict(() => checkHeaderParams(s, b, 'BAD_NAME_ADDR', 'address', 0, s.length)) }).toEqual({ s, v: verdict(() => parseHeaderParams(s, 'BAD_NAME_ADDR', 'address')) });
  // in place in a message: checkFrom() / checkTo() as from() / to()
  const v = s.replace(/[^\x20-\xff\t]/g, '').trim();
  const wire = Buffer.from(`OPTIONS sip:x@example.com SIP/2.0\r\nFrom: ${v}\r\nTo: ${v}\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n`, 'latin1');
  let m: SipRequest | SipResponse;
  try {
    m = parseMessage(wire);
  } catch (e) {
    if (e instanceof SipParseError) return;
    throw e;
  }
  const fresh = parseMessage(wire);
  expect({ v, from: verdict(() => m.checkFrom()), to: verdict(() => m.checkTo()) }).toEqual({ v, from: verdict(() => fresh.from()), to: verdict(() => fresh.to()) });
}

describe('check-only scans = the parsers they stand for', () => {
  it('on the corpus header values', () => {
    for (const v of VALUES) sameVerdicts(v);
  });

  it('on the edges of the plain URI scan (port digits, empty parts, case, userinfo)', () => {
    const uris = ['sip:a@h:000001', 'sip:a@h:00001', 'sip:a@h:65536', 'sip:a@h:65535', 'sip:a@h:', 'sip:@h', 'sip:a@.h', 'sip:a@-h', 'sip:a@h;', 'sip:a@h;;x', 'sip:a@h;x=',
      'sip:a@h;=x', 'sip:a@h;X=Y', 'sip:a:b@h', 'sip:a@b@h', 'sip::b@h', 'sips:a@H.Example;Transport=TCP', 'sip:a@[::1]:5060', 'sip:h:99999', 'sip:a@h x', 'sip:a@h?x=y',
      'sip:%41@h', 'sip:a@h;lr;ob', 'sip:a@h:5060;', 'sip:', 'sips:', 'sip:a@h:5x', 'tel:+1', 'mailto:a@b'];
    for (const u of uris) for (const v of [u, `<${u}>`, `<${u}>;tag=1`, `"A \\"B\\"" <${u}>;tag=x;q=`, `Bob Smith <${u}> ; tag = 1`, `${u};tag=1`]) sameVerdicts(v);
  });

  it('on random edits of corpus values and on generated text', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VALUES), fc.nat(), textArb, fc.nat(4), (v, at, ins, del) => {
        const p = at % (v.length + 1);
        sameVerdicts(v.slice(0, p) + ins + v.slice(p + del));
        sameVerdicts(ins);
      }),
      { numRuns: 1500 },
    );
  }, 120_000);
});

describe('parsed message: presence mask, lazy lines and body', () => {
  // (the accessors that cache their result (vias, routes, from ...) do not see direct edits of the array made after
  // they were read, as before the mask: the direct edits here add headers whose accessors do not cache)
  it('accessors see the headers added, removed and replaced by any sequence of edits, direct array edits included', () => {
    const EDITS = [
      (m: SipRequest) => m.addHeader('Record-Route', '<sip:rr.example.com;lr>', 'before'),
      (m: SipRequest) => m.addHeader('Path', '<sip:path.example.com;lr>', 'top'),
      (m: SipRequest) => m.addHeader('Contact', '<sip:c@192.0.2.1>'),
      (m: SipRequest) => m.removeFirstValue('route'),
      (m: SipRequest) => m.removeFirstValue('via'),
      (m: SipRequest) => m.removeHeader('to'),
      (m: SipRequest) => m.setHeader('Expires', '60'),
      (m: SipRequest) => m.setHeader('allow', 'INVITE, ACK'),
      (m: SipRequest) => m.replaceFirstValue('via', 'SIP/2.0/TCP b.example.com;branch=z9hG4bK2'),
      (m: SipRequest) => m.headers.push({ name: 'Supported', key: 'supported', value: 'path', raw: null }),
      (m: SipRequest) => m.headers.splice(0, 0, { name: 'Require', key: 'require', value: '100rel', raw: null }),
      (m: SipRequest) => {
        m.headers = [...m.headers, { name: 'User-Agent', key: 'user-agent', value: 'x', raw: null }];
      },
      (m: SipRequest) => m.addHeader('X-Extra', '1'),
      (m: SipRequest) => {
        m.body = Buffer.from('other');
      },
    ];
    fc.assert(
      fc.property(fc.array(fc.nat(EDITS.length - 1), { maxLength: 8 }), fc.boolean(), (seq, cloneFirst) => {
        let m = parseMessage(INVITE) as SipRequest;
        // read everything first, so that caches and the mask are in use before the edits
        readAll(m);
        if (cloneFirst) m = m.clone();
        for (const k of seq) {
          try {
            EDITS[k]!(m);
          } catch {
            // removeFirstValue / replaceFirstValue of a header that is gone: not what is tested here
          }
          expect(readAll(m)).toBe(unindexed(m));
        }
        expect(m.toBuffer().toString('latin1')).toBe(new SipRequest(m.method, m.uriText, [...m.headers], m.body, m.version, `${m.method} ${m.uriText} ${m.version}`).toBuffer().toString('latin1'));
      }),
      { numRuns: 500 },
    );
  });

  it('lines and body read lazily are the received text and octets', () => {
    for (const d of corpus) {
      let m: SipRequest | SipResponse;
      try {
        m = parseMessage(d);
      } catch {
        continue;
      }
      const text = d.toString('latin1');
      for (const h of m.headers) {
        expect(text.includes(h.raw!)).toBe(true);
        expect(JSON.parse(JSON.stringify(h))).toEqual({ name: h.name, key: h.key, value: h.value, raw: h.raw });
      }
      const end = text.indexOf('\r\n\r\n');
      if (end !== -1 && m.body.length > 0) expect(m.body.equals(d.subarray(end + 4, end + 4 + m.body.length))).toBe(true);
      // serialising without reading the body gives what serialising after reading it gives
      const again = parseMessage(d);
      const wire = again.toBuffer();
      void again.body;
      expect(again.toBuffer().equals(wire)).toBe(true);
    }
  });
});
