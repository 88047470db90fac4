/**
 * Seed messages of the wire fuzzer: realistic requests (REGISTER, INVITE, ACK, BYE, CANCEL, OPTIONS,
 * MESSAGE and a few more) and responses (1xx, 2xx, 4xx), each built fresh with new Call-ID, branch and
 * tags from the fuzzer's PRNG, plus the RFC 4475 / RFC 5118 torture corpus (test/fixtures/conformance)
 * as it is. Text is latin1 (one char per octet).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Rng } from './mutate.js';

export interface SeedContext {
  /** Via sent-by transport of the sender. */
  transport: 'UDP' | 'TCP';
  /** the sender's own address (Via sent-by, Contact). */
  self: { host: string; port: number };
  /** sipd's address. */
  sipd: { host: string; port: number };
  /** the domain sipd serves (registrar, realm). */
  domain: string;
}

type Template = (r: Rng, c: SeedContext) => string;

const CRLF = '\r\n';

function msg(lines: readonly string[], body = ''): string {
  return [...lines, `Content-Length: ${Buffer.byteLength(body, 'latin1')}`, '', body].join(CRLF);
}

const branch = (r: Rng): string => `z9hG4bK${r.hex(8)}`;
const tag = (r: Rng): string => r.hex(5);
const callId = (r: Rng): string => `${r.hex(10)}@${r.pick(['127.0.0.1', 'fuzz.invalid', 'host'])}`;
const via = (r: Rng, c: SeedContext): string => `Via: SIP/2.0/${c.transport} ${c.self.host}:${c.self.port};branch=${branch(r)}${r.chance(0.8) ? ';rport' : ''}`;
const sipdUri = (c: SeedContext): string => `sip:${c.sipd.host}:${c.sipd.port}`;
const USERS = ['alice', 'bob', 'carol', 'dave', 'nobody'] as const;
const user = (r: Rng): string => r.pick(USERS);
const contact = (r: Rng, c: SeedContext, u: string): string =>
  `Contact: <sip:${u}@${c.self.host}:${c.self.port}${c.transport === 'TCP' ? ';transport=tcp' : ''}>${r.chance(0.3) ? `;expires=${r.pick([0, 30, 60, 3600])}` : ''}${r.chance(0.3) ? `;q=${r.pick(['0.1', '0.5', '1.0'])}` : ''}`;

const sdp = (c: SeedContext, r: Rng): string =>
  [
    'v=0',
    `o=fuzz ${r.range(1, 99999)} 1 IN IP4 ${c.self.host}`,
    's=-',
    `c=IN IP4 ${c.self.host}`,
    't=0 0',
    `m=audio ${r.range(1024, 65000)} RTP/AVP 0 8 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    'a=sendrecv',
    '',
  ].join(CRLF);

/** Credentials with a nonce sipd never issued (answered 401/407 again, or 403). */
const digest = (r: Rng, c: SeedContext, u: string, uri: string, proxy: boolean): string =>
  `${proxy ? 'Proxy-Authorization' : 'Authorization'}: Digest username="${u}", realm="${c.domain}", nonce="${r.hex(16)}", uri="${uri}", response="${r.hex(16)}", algorithm=${r.pick(['MD5', 'SHA-256', 'MD5-sess'])}, qop=auth, nc=${r.pick(['00000001', '00000002', 'ffffffff'])}, cnonce="${r.hex(4)}"`;

/** Request templates: to our domain, to sipd itself, or to a foreign host (relayed). */
const REQUESTS: Record<string, Template> = {
  register(r, c) {
    const u = user(r);
    const lines = [
      `REGISTER sip:${c.domain} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      `From: <sip:${u}@${c.domain}>;tag=${tag(r)}`,
      `To: <sip:${u}@${c.domain}>`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} REGISTER`,
      r.chance(0.3)
        ? `${contact(r, c, u)};reg-id=${r.range(1, 3)};+sip.instance="<urn:uuid:${r.hex(4)}-${r.hex(2)}-${r.hex(2)}-${r.hex(2)}-${r.hex(6)}>"`
        : contact(r, c, u),
      `Expires: ${r.pick([0, 60, 300, 3600])}`,
      'Supported: path, outbound, gruu',
      'User-Agent: wire-fuzz',
    ];
    if (r.chance(0.4)) lines.push(digest(r, c, u, `sip:${c.domain}`, false));
    return msg(lines);
  },
  registerStar(r, c) {
    const u = user(r);
    return msg([
      `REGISTER sip:${c.domain} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      `From: <sip:${u}@${c.domain}>;tag=${tag(r)}`,
      `To: <sip:${u}@${c.domain}>`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} REGISTER`,
      'Contact: *',
      'Expires: 0',
    ]);
  },
  registerQuery(r, c) {
    const u = user(r);
    return msg([
      `REGISTER sip:${c.domain} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      `From: "${u}" <sip:${u}@${c.domain}>;tag=${tag(r)}`,
      `To: "${u}" <sip:${u}@${c.domain}>`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} REGISTER`,
      `Contact: <sip:${u}@${c.self.host}:${c.self.port}>;q=0.7;expires=120, <sip:${u}@${c.self.host}:${c.self.port + 1}>;q=0.3`,
    ]);
  },
  invite(r, c) {
    const from = user(r);
    const to = r.chance(0.7) ? `sip:${user(r)}@${c.domain}` : r.pick(['sip:carol@example.net', 'sip:+15551234567@192.0.2.10;user=phone', 'tel:+15551234567', `sip:bob@${c.sipd.host}:${c.sipd.port}`]);
    const lines = [
      `INVITE ${to} SIP/2.0`,
      via(r, c),
      `Max-Forwards: ${r.pick([70, 70, 1, 0])}`,
      `From: "${from}" <sip:${from}@${c.domain}>;tag=${tag(r)}`,
      `To: <${to}>`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} INVITE`,
      `Contact: <sip:${from}@${c.self.host}:${c.self.port}>`,
      'Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, UPDATE, PRACK',
      'Supported: timer, 100rel, replaces',
      `Session-Expires: ${r.pick([90, 1800])};refresher=uac`,
      'Content-Type: application/sdp',
    ];
    if (r.chance(0.2)) lines.push(`Route: <${sipdUri(c)};lr>`);
    if (r.chance(0.3)) lines.push(digest(r, c, from, to, true));
    return msg(lines, sdp(c, r));
  },
  ack(r, c) {
    const u = user(r);
    return msg([
      `ACK sip:${u}@${r.chance(0.5) ? c.domain : `${c.self.host}:${c.self.port}`} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      ...(r.chance(0.5) ? [`Route: <${sipdUri(c)};lr;ftag=${tag(r)}>`] : []),
      `From: <sip:${user(r)}@${c.domain}>;tag=${tag(r)}`,
      `To: <sip:${u}@${c.domain}>${r.chance(0.8) ? `;tag=${tag(r)}` : ''}`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} ACK`,
    ]);
  },
  bye(r, c) {
    const u = user(r);
    return msg([
      `BYE sip:${u}@${c.self.host}:${c.self.port} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      ...(r.chance(0.6) ? [`Route: <${sipdUri(c)};lr>`, ...(r.chance(0.5) ? ['Route: <sip:192.0.2.1;lr>'] : [])] : []),
      `From: <sip:${user(r)}@${c.domain}>;tag=${tag(r)}`,
      `To: <sip:${u}@${c.domain}>;tag=${tag(r)}`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} BYE`,
      'Reason: SIP;cause=200;text="Call completed elsewhere"',
    ]);
  },
  cancel(r, c) {
    const u = user(r);
    return msg([
      `CANCEL sip:${u}@${c.domain} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      `From: <sip:${user(r)}@${c.domain}>;tag=${tag(r)}`,
      `To: <sip:${u}@${c.domain}>`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} CANCEL`,
    ]);
  },
  options(r, c) {
    const target = r.pick([sipdUri(c), `sip:${c.domain}`, `sip:${user(r)}@${c.domain}`, 'sip:example.net']);
    return msg([
      `OPTIONS ${target} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      `From: <sip:${user(r)}@${c.domain}>;tag=${tag(r)}`,
      `To: <${target}>`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} OPTIONS`,
      'Accept: application/sdp',
    ]);
  },
  message(r, c) {
    const to = r.chance(0.8) ? `sip:${user(r)}@${c.domain}` : 'sip:someone@example.org';
    const from = user(r);
    return msg(
      [
        `MESSAGE ${to} SIP/2.0`,
        via(r, c),
        'Max-Forwards: 70',
        `From: <sip:${from}@${c.domain}>;tag=${tag(r)}`,
        `To: <${to}>`,
        `Call-ID: ${callId(r)}`,
        `CSeq: ${r.range(1, 1000)} MESSAGE`,
        'Content-Type: text/plain;charset=utf-8',
        ...(r.chance(0.3) ? [digest(r, c, from, to, true)] : []),
      ],
      r.pick(['hello', 'gr\xc3\xbc\xc3\x9fe', 'x'.repeat(200), '']),
    );
  },
  other(r, c) {
    const method = r.pick(['SUBSCRIBE', 'NOTIFY', 'INFO', 'UPDATE', 'PRACK', 'REFER', 'PUBLISH']);
    const u = user(r);
    return msg([
      `${method} sip:${u}@${c.domain} SIP/2.0`,
      via(r, c),
      'Max-Forwards: 70',
      `From: <sip:${user(r)}@${c.domain}>;tag=${tag(r)}`,
      `To: <sip:${u}@${c.domain}>${r.chance(0.5) ? `;tag=${tag(r)}` : ''}`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} ${method}`,
      `Contact: <sip:${u}@${c.self.host}:${c.self.port}>`,
      ...(method === 'SUBSCRIBE' || method === 'NOTIFY' || method === 'PUBLISH' ? ['Event: presence', 'Expires: 600'] : []),
      ...(method === 'NOTIFY' ? ['Subscription-State: active;expires=599'] : []),
      ...(method === 'PRACK' ? ['RAck: 1 1 INVITE'] : []),
      ...(method === 'REFER' ? [`Refer-To: <sip:${user(r)}@${c.domain}?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>`] : []),
    ]);
  },
};

/** Response templates: their top Via looks like one of sipd's (a stray response) or is the sender's own. */
const RESPONSES: Record<string, Template> = {
  response(r, c) {
    const [code, reason] = r.pick([
      [100, 'Trying'], [180, 'Ringing'], [183, 'Session Progress'], [200, 'OK'], [202, 'Accepted'], [401, 'Unauthorized'],
      [404, 'Not Found'], [407, 'Proxy Authentication Required'], [486, 'Busy Here'], [487, 'Request Terminated'],
    ] as const);
    const method = r.pick(['INVITE', 'REGISTER', 'OPTIONS', 'BYE', 'MESSAGE', 'CANCEL']);
    const u = user(r);
    const lines = [
      `SIP/2.0 ${code} ${reason}`,
      r.chance(0.6) ? `Via: SIP/2.0/${c.transport} ${c.sipd.host}:${c.sipd.port};branch=z9hG4bKsd${r.hex(8)}.${r.hex(8)}` : via(r, c),
      via(r, c),
      `From: <sip:${user(r)}@${c.domain}>;tag=${tag(r)}`,
      `To: <sip:${u}@${c.domain}>${code > 100 ? `;tag=${tag(r)}` : ''}`,
      `Call-ID: ${callId(r)}`,
      `CSeq: ${r.range(1, 1000)} ${method}`,
    ];
    if (code >= 180 && code < 300 && method === 'INVITE') lines.push(`Contact: <sip:${u}@${c.self.host}:${c.self.port}>`, `Record-Route: <${sipdUri(c)};lr>`);
    if (code === 401) lines.push(`WWW-Authenticate: Digest realm="${c.domain}", nonce="${r.hex(16)}", algorithm=MD5, qop="auth"`);
    if (code === 407) lines.push(`Proxy-Authenticate: Digest realm="${c.domain}", nonce="${r.hex(16)}", algorithm=MD5, qop="auth"`);
    if (code === 200 && method === 'INVITE') {
      lines.push('Content-Type: application/sdp');
      return msg(lines, sdp(c, r));
    }
    return msg(lines);
  },
};

export const TEMPLATE_NAMES = [...Object.keys(REQUESTS), ...Object.keys(RESPONSES)];
const TEMPLATES: Template[] = [...Object.values(REQUESTS), ...Object.values(RESPONSES)];
/** how often each template is chosen (REGISTER and INVITE most). */
const TEMPLATE_WEIGHTS = TEMPLATE_NAMES.map((n) => ({ register: 5, registerStar: 1, registerQuery: 1, invite: 5, ack: 2, bye: 2, cancel: 2, options: 2, message: 2, other: 2, response: 4 })[n] ?? 1);

/** One fresh seed message from the templates. */
export function templateSeed(r: Rng, c: SeedContext): string {
  return r.weighted(TEMPLATES, TEMPLATE_WEIGHTS)(r, c);
}

/** Every template once (tests). */
export function everyTemplate(r: Rng, c: SeedContext): Array<{ name: string; text: string }> {
  return TEMPLATE_NAMES.map((name, i) => ({ name, text: TEMPLATES[i]!(r, c) }));
}

/** The RFC 4475 / RFC 5118 messages of test/fixtures/conformance, as latin1 text. */
export function corpusSeeds(root: string): Array<{ name: string; text: string }> {
  const dir = join(root, 'test', 'fixtures', 'conformance');
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Array<{ file: string; name: string }>;
  return manifest.map((e) => ({ name: e.name, text: readFileSync(join(dir, e.file)).toString('latin1') }));
}

/** A clean REGISTER (no mutation) binding `u` to the sender, for set-up and refresh. */
export function cleanRegister(r: Rng, c: SeedContext, u: string, contactParams = ''): string {
  return msg([
    `REGISTER sip:${c.domain} SIP/2.0`,
    via(r, c),
    'Max-Forwards: 70',
    `From: <sip:${u}@${c.domain}>;tag=${tag(r)}`,
    `To: <sip:${u}@${c.domain}>`,
    `Call-ID: ${callId(r)}`,
    'CSeq: 1 REGISTER',
    `Contact: <sip:${u}@${c.self.host}:${c.self.port}${contactParams}>`,
    'Expires: 3600',
  ]);
}

/** An OPTIONS to sipd itself whose Call-ID is `id` (the fences of the fuzzer). */
export function fence(c: SeedContext, id: string): string {
  return msg([
    `OPTIONS ${sipdUri(c)} SIP/2.0`,
    `Via: SIP/2.0/${c.transport} ${c.self.host}:${c.self.port};branch=z9hG4bK${id};rport`,
    'Max-Forwards: 70',
    `From: <sip:fence@${c.self.host}>;tag=${id}`,
    `To: <${sipdUri(c)}>`,
    `Call-ID: ${id}`,
    'CSeq: 1 OPTIONS',
  ]);
}

/**
 * A response to a request sipd forwarded to the fuzzer (its Via, From, To, Call-ID and CSeq copied),
 * so that the proxy's response path is fuzzed too.
 */
export function answer(r: Rng, request: string, code: number, reason: string): string | undefined {
  const head = request.slice(0, Math.max(0, request.indexOf('\r\n\r\n')));
  const lines = head.split('\r\n');
  const pick = (names: readonly string[]): string[] => lines.filter((l) => names.includes(l.slice(0, Math.max(0, l.indexOf(':'))).trim().toLowerCase()));
  const vias = pick(['via', 'v']);
  const cseq = pick(['cseq'])[0];
  if (vias.length === 0 || cseq === undefined || lines[0]?.startsWith('SIP/') !== false) return undefined;
  const to = pick(['to', 't'])[0];
  const out = [
    `SIP/2.0 ${code} ${reason}`,
    ...vias,
    ...pick(['record-route']),
    ...pick(['from', 'f']),
    ...(to === undefined ? [] : [code > 100 && !/;\s*tag=/i.test(to) ? `${to};tag=${r.hex(4)}` : to]),
    ...pick(['call-id', 'i']),
    cseq,
  ];
  if (code >= 180 && code < 300) out.push('Contact: <sip:answer@127.0.0.2>');
  return msg(out);
}
