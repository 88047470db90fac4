/**
 * Round trip: parse -> in-place proxy edits -> toBuffer -> parse again. Edited values are as expected and
 * every header line we did not touch is byte-identical (RFC 3261 16.6: forward what you do not understand).
 * Also buildResponse (RFC 3261 8.2.6).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildResponse, checkRequest, formatVia, isSipUri, parseMessage,
  type HeaderField, type SipRequest, type SipResponse,
} from '../../src/sip/index.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'conformance');
interface ManifestEntry { file: string; name: string; verdict: string; content_length: string[]; body_bytes: number | null }
const manifest: ManifestEntry[] = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
const corpus = manifest.map((e) => ({ e, data: readFileSync(join(DIR, e.file)) }));

function parseReq(d: Buffer): SipRequest {
  const m = parseMessage(d);
  if (!m.isRequest) throw new Error('not a request');
  return m;
}

/** Raw header lines of a message as they appear on the wire (re-read from bytes, not from the parser). */
function wireLines(data: Buffer): string[] {
  const s = data.toString('latin1');
  const end = s.indexOf('\r\n\r\n');
  return s.slice(0, end).split(/\r\n(?![ \t])/).slice(1);
}

const keysOf = (hs: HeaderField[], keys: string[]): HeaderField[] => hs.filter((h) => keys.includes(h.key));
const EDITED = ['via', 'route', 'max-forwards', 'record-route', 'content-length'];

interface Snapshot {
  untouched: string[];
  viaLines: string[];
  routeLines: string[];
  rrLines: string[];
  vias: string[];
  routes: string[];
  maxForwards: number | undefined;
  body: Buffer;
}

function snapshot(m: SipRequest): Snapshot {
  return {
    untouched: m.headers.filter((h) => !EDITED.includes(h.key)).map((h) => h.raw!),
    viaLines: keysOf(m.headers, ['via']).map((h) => h.raw!),
    routeLines: keysOf(m.headers, ['route']).map((h) => h.raw!),
    rrLines: keysOf(m.headers, ['record-route']).map((h) => h.raw!),
    vias: m.vias().map((v) => v.raw),
    routes: m.routes().map((r) => r.uri.raw),
    maxForwards: m.maxForwards(),
    body: Buffer.from(m.body),
  };
}

const NEW_VIA = formatVia('UDP', 'proxy.example.org', 5060, 'z9hG4bKproxy1');
const NEW_RR = '<sip:proxy.example.org;lr>';
const NEW_URI = 'sip:bob@203.0.113.7:5080;transport=tcp';

/** The proxy's edits, in the order of RFC 3261 16.6 (plus received/rport on the received top Via, 18.2.1). */
function proxyEdit(m: SipRequest): void {
  m.setViaReceived('198.51.100.9', 40123);
  m.setUri(NEW_URI);
  const mf = m.maxForwards();
  if (mf !== undefined) m.setHeader('max-forwards', String(mf - 1));
  m.addHeader('record-route', NEW_RR, 'before');
  m.removeFirstValue('route');
  m.addHeader('via', NEW_VIA, 'before');
}

function checkEdited(orig: Snapshot, out: Buffer, name: string): void {
  const again = parseReq(out);
  expect(again.uriText).toBe(NEW_URI);
  expect(out.toString('latin1').startsWith(`${again.method} ${NEW_URI} SIP/2.0\r\n`)).toBe(true);
  // Via: ours on top, then the received top Via with received/rport, then the rest unchanged
  const vias = again.vias();
  expect(vias[0]!.raw).toBe(NEW_VIA);
  expect(vias[0]!.branch).toBe('z9hG4bKproxy1');
  expect(vias[1]!.received).toBe('198.51.100.9');
  expect(vias[1]!.host).toBe(parseReq(Buffer.from(`OPTIONS sip:x SIP/2.0\r\nVia: ${orig.vias[0]}\r\n\r\n`)).topVia()!.host);
  if (orig.vias[0]!.match(/;[ \t]*rport/i)) expect(vias[1]!.rport).toBe(40123);
  expect(vias.slice(2).map((v) => v.raw)).toEqual(orig.vias.slice(1));
  // Via lines after the first are byte-identical
  expect(keysOf(again.headers, ['via']).slice(2).map((h) => h.raw)).toEqual(orig.viaLines.slice(1));
  // Route: the first value is gone; lines after the first are byte-identical
  expect(again.routes().map((r) => r.uri.raw)).toEqual(orig.routes.slice(1));
  const firstRouteLineValues = orig.routeLines.length > 0 ? orig.routes.length - (orig.routeLines.length - 1) : 0;
  const keptRouteLines = firstRouteLineValues > 1 ? again.headers.filter((h) => h.key === 'route').slice(1) : again.headers.filter((h) => h.key === 'route');
  expect(keptRouteLines.map((h) => h.raw)).toEqual(orig.routeLines.slice(1));
  // Record-Route: ours first, the received ones unchanged
  expect(again.recordRoutes()[0]!.raw).toBe(NEW_RR);
  expect(keysOf(again.headers, ['record-route']).slice(1).map((h) => h.raw)).toEqual(orig.rrLines);
  expect(again.maxForwards()).toBe(orig.maxForwards === undefined ? undefined : orig.maxForwards - 1);
  // every other header line: byte-identical and in the same order
  expect({ name, lines: again.headers.filter((h) => !EDITED.includes(h.key)).map((h) => h.raw) }).toEqual({ name, lines: orig.untouched });
  expect(again.body.equals(orig.body)).toBe(true);
  expect(again.contentLength()).toBe(orig.body.length);
  expect(checkRequest(again)).toBeNull();
}

// requests from the corpus a proxy would forward (they pass checkRequest and have Max-Forwards > 0)
const forwardable = corpus.filter(({ data }) => {
  try {
    const m = parseMessage(data);
    return m.isRequest && checkRequest(m) === null && (m.maxForwards() ?? 1) > 0;
  } catch {
    return false;
  }
});

describe('round trip without edits', () => {
  it('a well-framed parsed message serialises to exactly the received bytes', () => {
    let n = 0;
    for (const { e, data } of corpus) {
      if (e.content_length.length !== 1 || Number(e.content_length[0]) !== e.body_bytes) continue;
      let m;
      try {
        m = parseMessage(data);
      } catch {
        continue;
      }
      expect({ name: e.name, same: m.toBuffer().equals(data) }).toEqual({ name: e.name, same: true });
      n++;
    }
    expect(n).toBeGreaterThan(40);
  });

  it('serialised header lines equal the wire lines, even for headers we read', () => {
    const data = corpus.find((c) => c.e.name === 'wsinv')!.data;
    const m = parseReq(data);
    m.vias();
    m.contacts();
    m.routes();
    expect(wireLines(m.toBuffer())).toEqual(wireLines(data));
  });
});

describe('round trip with proxy edits', () => {
  it('has corpus requests to forward', () => {
    expect(forwardable.length).toBeGreaterThan(20);
  });

  for (const { e, data } of forwardable) {
    it(`${e.name}: prepend Via, pop Route, decrement Max-Forwards, prepend Record-Route, setUri, setViaReceived`, () => {
      const m = parseReq(data);
      const before = snapshot(m);
      proxyEdit(m);
      checkEdited(before, m.toBuffer(), e.name);
    });
  }

  it('wsinv: folded unknown headers and the untouched Vias of a two-value Via line survive byte for byte', () => {
    const data = corpus.find((c) => c.e.name === 'wsinv')!.data;
    const m = parseReq(data);
    proxyEdit(m);
    const out = m.toBuffer().toString('latin1');
    expect(out).toContain('\r\nNewFangledHeader:   newfangled value\r\n continued newfangled value\r\n');
    expect(out).toContain('\r\nUnknownHeaderWithUnusualValue: ;;,,;;,;\r\n');
    expect(out).toContain('\r\nv:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239\r\n');
    expect(out).toContain('\r\nm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33\r\n');
    // the only Route was removed: no Route line left
    expect(parseReq(m.toBuffer()).has('route')).toBe(false);
    expect(parseReq(m.toBuffer()).maxForwards()).toBe(67);
  });

  it('pops the first value of a multi-value Route line and keeps the others', () => {
    const d = Buffer.from(
      'INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bKa;rport\r\nMax-Forwards: 070\r\n' +
        'Route: <sip:p1.example.org;lr>, <sip:p2.example.org;lr>\r\nRoute: <sip:p3.example.org;lr;x=y>\r\nFrom: <sip:a@example.com>;tag=1\r\n' +
        'To: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nX-Weird :  a,,b ;; "q,\\"" \r\nContent-Length: 4\r\n\r\nbody',
      'latin1',
    );
    const m = parseReq(d);
    const before = snapshot(m);
    proxyEdit(m);
    const out = m.toBuffer();
    checkEdited(before, out, 'multi-route');
    const again = parseReq(out);
    expect(again.routes().map((r) => (isSipUri(r.uri) ? r.uri.host : ''))).toEqual(['p2.example.org', 'p3.example.org']);
    expect(again.topVia()!.host).toBe('proxy.example.org');
    expect(again.vias()[1]!.rport).toBe(40123);
    expect(again.maxForwards()).toBe(69);
    expect(out.toString('latin1')).toContain('\r\nX-Weird :  a,,b ;; "q,\\"" \r\n');
    expect(out.toString('latin1')).toContain('\r\nRoute: <sip:p3.example.org;lr;x=y>\r\n');
  });

  it('setViaReceived replaces an existing received and fills a valueless rport, touching nothing else', () => {
    const d = Buffer.from(
      'OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;rport;received=192.0.2.1;branch=z9hG4bKq, SIP/2.0/TCP x.example.com;branch=z9hG4bKr\r\n' +
        'From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c2\r\nCSeq: 2 OPTIONS\r\nMax-Forwards: 1\r\nContent-Length: 0\r\n\r\n',
      'latin1',
    );
    const m = parseReq(d);
    m.setViaReceived('2001:db8::99', 5062);
    const again = parseReq(m.toBuffer());
    const [top, second] = again.vias();
    expect([top!.host, top!.port, top!.received, top!.rport, top!.branch]).toEqual(['[2001:db8::1]', 5060, '2001:db8::99', 5062, 'z9hG4bKq']);
    expect(second!.raw).toBe('SIP/2.0/TCP x.example.com;branch=z9hG4bKr');
    expect(again.vias()).toHaveLength(2);
  });

  it('setViaReceived agrees with the reference (regex) definition on random Via parameter lists', () => {
    // the definition the editor implements: first ;rport[=digits] (value-less or numeric) is replaced;
    // first ;received=value is replaced up to the next ';', otherwise received is appended
    const reference = (top: string, received: string, rport: number): string => {
      let v = top;
      const rp = /;[ \t]*rport(?:[ \t]*=[ \t]*\d*)?(?=[ \t]*(;|$))/i;
      if (rp.test(v)) v = v.replace(rp, () => `;rport=${rport}`);
      const rc = /;[ \t]*received[ \t]*=[ \t]*[^;]*/i;
      v = rc.test(v) ? v.replace(rc, () => `;received=${received}`) : v + `;received=${received}`;
      return v;
    };
    const param = fc.constantFrom(';rport', ';RPORT', '; rport = 5060 ', ';rport=', ';rport=abc', ';rportx', ';x-rport', ';received=1.2.3.4', ';Received = [2001:db8::1] ',
      ';received', ';receivedx=1', ';branch=z9hG4bKa', ';maddr=10.0.0.1', ';ttl=3', ';lr', ' ;rport', ';rport ;');
    fc.assert(
      fc.property(fc.array(param, { maxLength: 6 }), (params) => {
        const top = `SIP/2.0/UDP a.example.com:5060${params.join('')}`;
        const d = Buffer.from(
          `OPTIONS sip:b@example.com SIP/2.0\r\nVia: ${top}\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`,
          'latin1',
        );
        const m = parseReq(d);
        m.setViaReceived('198.51.100.1', 4242);
        expect(m.headers.find((h) => h.key === 'via')!.value).toBe(reference(top.trim(), '198.51.100.1', 4242));
      }),
      { numRuns: 2000 },
    );
  });

  it('generated messages with random unknown headers: untouched lines byte-identical after the edits', () => {
    const ALPHA = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    const nameArb = fc.array(fc.constantFrom(...(ALPHA + "-.!%*_+`'~").split('')), { minLength: 1, maxLength: 20 }).map((a) => 'X-' + a.join(''));
    // any octet but CR/LF/NUL-free control chars are fine in a value; folding is added separately
    const valueArb = fc.array(fc.constantFrom(...(ALPHA + ' \t;,=:@<>"\\[]/?%&()\x80\xff').split('')), { maxLength: 60 }).map((a) => a.join('').trim());
    const lineArb = fc.tuple(nameArb, fc.constantFrom(':', ' :', ': ', '  :  '), valueArb, fc.option(valueArb, { nil: undefined })).map(
      ([n, c, v, fold]) => `${n}${c}${v}${fold !== undefined && fold.length > 0 ? '\r\n ' + fold : ''}`,
    );
    fc.assert(
      fc.property(fc.array(lineArb, { maxLength: 12 }), fc.array(fc.nat(20), { maxLength: 12 }), fc.nat(3), fc.string({ maxLength: 50 }), (extra, positions, nRoutes, body) => {
        const base = [
          'Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa',
          'Via: SIP/2.0/TCP b.example.com:5070;branch=z9hG4bKb',
          'From: "A" <sip:a@example.com>;tag=1',
          'To: <sip:b@example.com>',
          'Call-ID: gen@example.com',
          'CSeq: 7 MESSAGE',
          'Max-Forwards: 10',
          ...Array.from({ length: nRoutes }, (_, i) => `Route: <sip:r${i}.example.org;lr>`),
        ];
        const lines = [...base];
        extra.forEach((l, i) => lines.splice((positions[i] ?? 0) % (lines.length + 1), 0, l));
        const b = Buffer.from(body, 'utf8');
        const d = Buffer.concat([Buffer.from(['MESSAGE sip:b@example.com SIP/2.0', ...lines, `Content-Length: ${b.length}`].join('\r\n') + '\r\n\r\n', 'latin1'), b]);
        const m = parseReq(d);
        const before = snapshot(m);
        proxyEdit(m);
        const out = m.toBuffer();
        checkEdited(before, out, 'generated');
        // the unknown lines, exactly as generated
        const again = parseReq(out);
        expect(again.headers.filter((h) => h.key.startsWith('x-')).map((h) => h.raw)).toEqual(lines.filter((l) => l.startsWith('X-')));
        expect(again.headers.filter((h) => h.key.startsWith('x-'))).toHaveLength(extra.length);
      }),
      { numRuns: 400 },
    );
  });
});

describe('buildResponse', () => {
  const COPIED = ['via', 'from', 'to', 'call-id', 'cseq'];

  for (const { e, data } of forwardable) {
    it(`${e.name}: copies Via/From/To/Call-ID/CSeq byte for byte and adds a To-tag (not on 100)`, () => {
      const m = parseReq(data);
      const hadTag = m.toTag() !== undefined;
      for (const status of [100, 180, 200, 486]) {
        const r = buildResponse(m, status, { toTag: 'srv7' });
        const again = parseMessage(r.toBuffer()) as SipResponse;
        expect(again.isRequest).toBe(false);
        expect(again.status).toBe(status);
        const copied = (x: SipRequest | SipResponse): Array<string | null> => keysOf(x.headers, COPIED.filter((k) => k !== 'to')).map((h) => h.raw ?? h.value);
        expect(copied(again)).toEqual(copied(m));
        const toRaw = keysOf(m.headers, ['to'])[0]!.raw!;
        const toOut = keysOf(again.headers, ['to'])[0]!;
        if (status === 100 || hadTag) {
          expect(toOut.raw).toBe(toRaw);
          expect(again.toTag()).toBe(m.toTag());
        } else {
          expect(again.toTag()).toBe('srv7');
          expect(again.to()!.uri.raw).toBe(m.to()!.uri.raw);
        }
        expect(again.vias().map((v) => v.raw)).toEqual(m.vias().map((v) => v.raw));
        expect(again.callId()).toBe(m.callId());
        expect(again.cseq()).toEqual(m.cseq());
        expect(again.body.length).toBe(0);
        // nothing else is copied
        expect(again.headers.filter((h) => !COPIED.includes(h.key) && h.key !== 'content-length')).toEqual([]);
      }
    });
  }

  it('keeps an existing To-tag, adds extra headers and a body', () => {
    const d = Buffer.from(
      'BYE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bKa\r\nFrom: <sip:a@example.com>;tag=1\r\n' +
        'To: <sip:b@example.com>;tag=existing\r\nCall-ID: c3\r\nCSeq: 3 BYE\r\nMax-Forwards: 70\r\nRecord-Route: <sip:rr.example.org;lr>\r\nContent-Length: 0\r\n\r\n',
    );
    const m = parseReq(d);
    const r = buildResponse(m, 200, { toTag: 'new', headers: [['Server', 'sipd']], body: Buffer.from('hello'), contentType: 'text/plain', copyRecordRoute: true });
    const again = parseMessage(r.toBuffer()) as SipResponse;
    expect(again.toTag()).toBe('existing');
    expect(again.header('server')).toBe('sipd');
    expect(again.contentType()).toBe('text/plain');
    expect(again.body.toString()).toBe('hello');
    expect(again.contentLength()).toBe(5);
    expect(again.recordRoutes().map((x) => x.raw)).toEqual(['<sip:rr.example.org;lr>']);
    expect(again.reason).toBe('OK');
  });
});
