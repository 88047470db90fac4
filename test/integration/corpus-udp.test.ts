/**
 * The RFC 4475 / RFC 5118 torture corpus (test/fixtures/conformance) sent over UDP to a running sipd,
 * one test per corpus file, each asserting the reply the manifest's `expected` describes.
 *
 * Isolation: sipd and the sender run in a network namespace of this test with only `lo` up. Many
 * corpus requests name foreign hosts (example.net, 192.0.2.x, 2001:db8::...) that sipd tries to relay
 * to; inside the namespace those sends fail locally (no route / no DNS), so nothing leaves loopback.
 * Without root or `ip netns` the file is skipped with a printed reason, unless CI is set: then it fails.
 *
 * Set-up, as a proxy/registrar for the corpus's own domains:
 * - SIPD_DOMAINS=example.com,[2001:db8::10]: requests for example.com users (and the RFC 5118 host
 *   [2001:db8::10]) are ours: REGISTER goes to the registrar, other requests to the location table
 *   (404, nobody is registered under those users). Every other domain is foreign: relayed.
 * - auth.trusted_ips 127.0.0.0/8 (the sender's addresses): the corpus tests parsing and validation,
 *   not digest auth, so trusted peers skip the challenge (Kamailio's trusted-address path). That lets
 *   the REGISTER messages reach the registrar (cparam01 "should succeed") and foreign requests be
 *   relayed rather than answered 403.
 * - A relayed request finds no route out of the namespace: RFC 3261 §16.9 treats the transport error
 *   as a 503 from that branch, and §16.7 step 6 turns a best response of 503 into 500. So "the proxy
 *   forwards it" shows here as a 500 reply plus a `result: "relayed"` line in sipd's log.
 *
 * How each message is sent (test/helpers/udp-send.ts, inside the namespace): from its own address
 * 127.0.x.y, listening there on UDP and TCP at 5060, 5061 and the top Via's port, since sipd answers
 * at the source address and the Via sent-by port, over TCP when the Via says TCP/TLS (§18.2.2). A
 * fence OPTIONS to sipd follows each message; the message's replies are those collected until the
 * fence is answered and then a final reply arrives (or 500 ms pass with none: "no reply").
 *
 * The corpus reuses transaction identifiers (e.g. cparam01 and cparam02 share Via sent-by, branch and
 * method); §17.2.3 makes the second a retransmission of the first. Messages are therefore spread over
 * "lanes", one sipd each, so that no lane sees a transaction identifier twice.
 *
 * Three RFC 5118 messages declare a Content-Length that does not fit their body (see the fixture
 * README: 268 for a 251-octet body in ipv6-in-sdp ...). Those tests are about IPv6, not framing, so
 * the README's advice is followed: their Content-Length is set to `body_bytes` before sending.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMessage, SipRequest, SipResponse } from '../../src/sip/index.js';
import { createNetns, netnsAvailable, type Netns } from '../helpers/netns.js';
import { baseEnv, ROOT, SipdProcess } from '../helpers/sipd-process.js';

interface ManifestEntry {
  file: string;
  name: string;
  rfc: string;
  verdict: string;
  expected: string;
  body_bytes: number | null;
  content_length: string[];
}

interface Expectation {
  /** status code of the (first) final reply, or null: no reply at all. */
  code: number | null;
  /** sipd logged the request as relayed (the 500 is then the unreachable next hop, §16.9). */
  relayed?: boolean;
  /** why, citing the manifest's `expected`. */
  why: string;
  /** further checks on the final reply. */
  check?: (reply: SipResponse, text: string) => void;
}

const CORPUS = join(ROOT, 'test', 'fixtures', 'conformance');
const manifest = JSON.parse(readFileSync(join(CORPUS, 'manifest.json'), 'utf8')) as ManifestEntry[];

const contactUris = (res: SipResponse): string[] => res.contacts().flatMap((c) => ('uri' in c ? [c.uri.raw] : []));

/** One entry per corpus file; the key is the manifest's `name`. */
const EXPECTED: Record<string, Expectation> = {
  // ---------------------------------------------------------------- RFC 4475 3.1.1 valid
  wsinv: {
    code: 500,
    relayed: true,
    why: 'expected: "Parse as a well-formed request ... Proxies forward". It has a To tag and a Route to services.example.com: in-dialog, loose-routed onward (unreachable here → 500).',
  },
  intmeth: {
    code: 404,
    why: 'expected: "If the unusual Request-URI is defined at a proxy it forwards normally, otherwise a proxy returns 404". Its user at example.com (ours) has no binding.',
  },
  esc01: {
    code: 500,
    relayed: true,
    why: 'expected: "Parse as well formed". Request-URI host example.net is foreign: relayed.',
  },
  escnull: {
    code: 200,
    why: 'expected: "the request registers two distinct contacts (user parts \'%00\' and \'%00%00\')".',
    check: (res) => {
      const uris = contactUris(res);
      expect(uris).toHaveLength(2);
      expect(uris.some((u) => u.startsWith('sip:%00@'))).toBe(true);
      expect(uris.some((u) => u.startsWith('sip:%00%00@'))).toBe(true);
    },
  },
  esc02: {
    code: 500,
    relayed: true,
    why: 'expected: "Method RE%47IST%45R is an unknown method, NOT REGISTER ... A proxy forwards or rejects depending on the Request-URI": registrar.example.com is foreign, so it is relayed, not registered.',
  },
  lwsdisp: { code: 404, why: 'expected: "Accept as well formed" (caller<sip:...>); user@example.com has no binding: 404.' },
  longreq: { code: 404, why: 'expected: "Parse as well formed" (34 Vias, long values); user@example.com has no binding: 404.' },
  dblreq: {
    code: 200,
    why: 'expected: "Handle the REGISTER (Content-Length: 0) normally and ignore the octets after its empty body": one 200 for the REGISTER, nothing for the trailing INVITE.',
    check: (res) => expect(res.cseq()?.method).toBe('REGISTER'),
  },
  semiuri: { code: 404, why: 'expected: "Parse as well formed. The Request-URI user part is \'user;par=u@example.net\'; host example.com": no such user, 404.' },
  transports: { code: 404, why: 'expected: "process the request exactly as if the second and later values named a known transport": location lookup, 404.' },
  mpart01: {
    code: 500,
    relayed: true,
    why: 'expected: "Parse as well formed even if the application does not support the multipart body": it is followed along its Route (127.0.0.1:5080, nobody listens: 500).',
  },
  unreason: { code: null, why: 'A 200 response ("Parse as a well-formed 200 response"): its top Via is not ours, so a proxy drops it; a response is never answered.' },
  noreason: { code: null, why: 'A 100 response ("Parse as a well-formed 100 response"): not for us, dropped; no reply.' },

  // ---------------------------------------------------------------- RFC 4475 3.1.2 invalid
  badinv01: { code: 400, why: 'expected: "Respond 400 Bad Request: the Via value has empty parameters and empty comma-separated values".' },
  clerr: { code: 400, why: 'expected: "Over UDP (as sent), respond 400 Bad Request because Content-Length (9999) exceeds the bytes present".' },
  ncl: { code: 400, why: 'expected: "Respond with an error (400)" for Content-Length -999.' },
  scalar02: { code: 400, why: 'expected: "Respond 400 Bad Request because the CSeq number exceeds 2**32-1".' },
  scalarlg: { code: null, why: 'expected: "Discard the response": no reply.' },
  quotbal: { code: 400, why: 'expected: "Respond 400 Bad Request (To display name has no closing quote)".' },
  ltgtruri: { code: 400, why: 'expected: "Respond 400 Bad Request (Request-URI enclosed in <>)".' },
  lwsruri: { code: 400, why: 'expected: "Respond 400 Bad Request (LWS inside the Request-URI)".' },
  lwsstart: { code: 400, why: 'expected: "Reject as malformed (400)" (extra SP in the Request-Line).' },
  trws: { code: 400, why: 'expected: "Reject as malformed (400)" (SP after SIP-Version).' },
  escruri: { code: 400, why: 'expected: "Reject with 400 Bad Request (escaped headers \'?Route=...\' in the SIP Request-URI)".' },
  baddate: {
    code: 404,
    why: 'expected: "an element should only [reject] if it actually needs the Date; otherwise ignore the value": sipd does not read Date, so the INVITE proceeds to the location lookup (404).',
  },
  regbadct: { code: 400, why: 'expected: "Registrar responds 400 Bad Request: the Contact URI carries an escaped header ... so it must be in name-addr form".' },
  badaspec: { code: 400, why: 'expected: "Reasonable to reject with 400 Bad Request (spaces inside <> around the To addr-spec)".' },
  baddn: { code: 400, why: 'expected: "Respond 400 Bad Request: unquoted To/From display names contain non-token characters".' },
  badvers: { code: 505, why: 'expected: "Respond 505 Version Not Supported (SIP/7.0 in the Request-Line and Via)".' },
  mismatch01: { code: 400, why: 'expected: "Respond 400 Bad Request (Request-Line method OPTIONS, CSeq method INVITE)".' },
  mismatch02: { code: 501, why: 'expected: "Respond 501 Not Implemented (preferred, especially at proxies)" for NEWMETHOD with CSeq INVITE.' },
  bigcode: { code: null, why: 'expected: "Drop the response silently (status code 4294967301 > 699)".' },

  // ---------------------------------------------------------------- RFC 4475 3.3 / 3.4 unusual
  badbranch: {
    code: 404,
    why: 'expected: "either reject with 400 ... or fall back to RFC 2543-style transaction matching": sipd accepts the bare z9hG4bK branch and processes the OPTIONS (no binding: 404).',
  },
  insuf: { code: 400, why: 'expected: "Respond 400 Bad Request: no Call-ID, From or To header fields".' },
  unkscm: { code: 416, why: 'expected: "respond 416 Unsupported URI Scheme. Do not route on the To header field".' },
  novelsc: { code: 416, why: 'expected: "An element that never accepts the soap.beep scheme in a Request-URI responds 416".' },
  unksm2: { code: 400, why: 'expected: "a registrar rejects with 400 Bad Request because the To header field must hold a SIP or SIPS AOR".' },
  bext01: {
    code: 420,
    why: 'expected: "Respond 420 Bad Extension with an Unsupported header listing the unsupported option-tags: from Proxy-Require when acting as a proxy".',
    check: (res) => {
      const tags = res.headerValues('unsupported').flatMap((v) => v.split(',').map((t) => t.trim()));
      expect(tags.sort()).toEqual(['noProxiesSupportThis', 'norDoAnyProxiesSupportThis']);
    },
  },
  invut: { code: 404, why: 'expected: "A proxy processes it like any other INVITE" (415 is for endpoints): location lookup, 404.' },
  regaut01: {
    code: 200,
    why: 'expected: "A registrar that ignores authentication processes it as if the header were absent": the sender is a trusted address here, so the REGISTER succeeds.',
  },
  multi01: { code: 400, why: 'expected: "Respond 400 Bad Request: multiple Call-ID, To, From, Max-Forwards and CSeq values".' },
  mcl01: { code: 400, why: 'expected: "Respond with an error (400): two conflicting Content-Length values".' },
  bcast: { code: null, why: 'expected: "A proxy must not forward it to 255.255.255.255 (second Via sent-by); it should drop it": a response, top Via not ours, dropped.' },
  zeromf: { code: 483, why: 'expected: "A proxy must not forward it and responds 483 Too Many Hops".' },
  cparam01: {
    code: 200,
    why: 'expected: "The REGISTER should succeed ... \'unknownparam\' is a contact-param, not a url-parameter" of the binding.',
    check: (res) => {
      const uris = contactUris(res);
      expect(uris).toHaveLength(1);
      expect(uris[0]).not.toContain('unknownparam');
    },
  },
  cparam02: {
    code: 200,
    why: 'expected: "The REGISTER should succeed; \'unknownparam\' is inside <> so it is a url-parameter and must appear in the binding\'s URI in the response".',
    check: (res) => {
      const uris = contactUris(res);
      expect(uris).toHaveLength(1);
      expect(uris[0]).toContain('unknownparam');
    },
  },
  regescrt: {
    code: 200,
    why: 'expected: "The REGISTER should succeed; later retrievals of the binding must include the escaped Route header" in the contact URI.',
    check: (res) => {
      const uris = contactUris(res);
      expect(uris).toHaveLength(1);
      expect(uris[0]).toContain('?Route=%3Csip:sip.example.com%3E');
    },
  },
  sdp01: {
    code: 404,
    why: 'expected: 406 (or 400) is what the answering UA sends, since only it produces SDP; a proxy does not read Accept: location lookup, 404.',
  },
  inv2543: { code: 404, why: 'expected: "Treat as a legal RFC 2543 message": accepted without branch, From tag, Max-Forwards or Content-Length; UserB has no binding: 404.' },

  // ---------------------------------------------------------------- RFC 5118
  'ipv6-good': { code: 200, why: 'expected: "Parse as well formed: bracketed IPv6 references ... A registrar processes it normally" ([2001:db8::10] is ours here).' },
  'ipv6-bad': { code: 400, why: 'expected: "Respond 400 Bad Request: the Request-URI host 2001:db8::10 is an IPv6 address without the mandatory \'[\' \']\'".' },
  'port-ambiguous': {
    code: 500,
    relayed: true,
    why: 'expected: "the host is the IPv6 address 2001:db8::10:5070 with no port ... must not guess port 5070": that host is not ours, so the REGISTER is relayed to it, not registered here.',
  },
  'port-unambiguous': { code: 200, why: 'expected: "Parse as well formed: host [2001:db8::10], port 5070": our host, the registrar accepts it.' },
  'via-received-param-with-delim': {
    code: 404,
    why: 'expected: "Accept" (received=[...] with brackets). The BYE has a To tag and no Route: an in-dialog request that is not ours to route gets 404 (Kamailio\'s stock "Not here").',
  },
  'via-received-param-no-delim': {
    code: 200,
    why: 'expected: "Accept: received=2001:db8::9:255 ... the parameter after it (branch) must still be parsed": an OPTIONS to our host without a user part is answered 200 by sipd itself.',
  },
  'ipv6-in-sdp': { code: 404, why: 'expected: "Accept as a valid INVITE whose SDP uses IN IP6 addresses": user@[2001:db8::10] has no binding, 404.' },
  'mult-ip-in-header': {
    code: 404,
    why: 'expected: "Accept as a valid BYE" with mixed IPv6/IPv4 Vias; it is in-dialog (To tag) without a Route: 404 "Not here", answered at the first Via port 6050.',
  },
  'mult-ip-in-sdp': { code: 404, why: 'expected: "Accept as a valid INVITE": user@[2001:db8::10] has no binding, 404.' },
  'ipv4-mapped-ipv6': { code: 404, why: 'expected: "Accept as valid: IPv4-mapped IPv6 addresses ... are legal": user@example.com has no binding, 404 (at Via port 19823).' },
  'ipv6-bug-abnf-3-colons': {
    code: 500,
    relayed: true,
    why: 'expected: "Tolerate: 2001:db8:::192.0.2.1 (three colons)": accepted and relayed to that foreign host.',
  },
  'ipv6-correct-abnf-2-colons': { code: 500, relayed: true, why: 'expected: "Accept: 2001:db8::192.0.2.1 is the correct form": accepted and relayed to that foreign host.' },
};

/** The RFC 5118 messages whose Content-Length does not fit the CRLF body (fixture README). */
const FIX_CONTENT_LENGTH = new Set(['ipv6-in-sdp', 'mult-ip-in-sdp', 'ipv4-mapped-ipv6']);

function messageBytes(e: ManifestEntry): Buffer {
  const raw = readFileSync(join(CORPUS, e.file));
  if (!FIX_CONTENT_LENGTH.has(e.name) || e.body_bytes === null) return raw;
  const text = raw.toString('latin1');
  const fixed = text.replace(/^(Content-Length|l)([ \t]*:[ \t]*)\d+/im, `$1$2${e.body_bytes}`);
  if (fixed === text) throw new Error(`${e.name}: no Content-Length to fix`);
  return Buffer.from(fixed, 'latin1');
}

/** Transaction identity of §17.2.3 (branch, sent-by, method; ACK as INVITE), when the message parses as a request. */
function txIdentity(b: Buffer): string | undefined {
  try {
    const m = parseMessage(b);
    if (!(m instanceof SipRequest)) return undefined;
    const v = m.topVia();
    const method = m.method === 'ACK' ? 'INVITE' : m.method;
    return `${v?.branch ?? `2543:${m.callId()}`}|${v?.host}:${v?.port ?? ''}|${method}`;
  } catch {
    return undefined;
  }
}

function isRegister(b: Buffer): boolean {
  return b.subarray(0, 9).toString('latin1') === 'REGISTER ';
}

/** Top Via sent-by port, read loosely (it is where sipd answers), when it is not the default. */
function viaPort(b: Buffer): number | undefined {
  const m = /^(?:via|v)[ \t]*:[ \t]*SIP[ \t]*\/[ \t]*[\d.]+[ \t]*\/[ \t]*\w+[ \t]+(?:\[[^\]]*\]|[^\s;:,]+)[ \t]*:[ \t]*(\d+)/im.exec(b.toString('latin1'));
  return m ? Number(m[1]) : undefined;
}

interface Reply {
  transport: 'udp' | 'tcp';
  port: number;
  status: number;
  reason: string;
  callId: string | undefined;
  text: string;
}

interface Item {
  entry: ManifestEntry;
  bytes: Buffer;
  bind: string;
  ports: number[];
  lane: number;
}

const CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const avail = netnsAvailable();
if (!avail.ok) {
  if (CI) console.error(`corpus-udp: network namespaces are required under CI: ${avail.reason}`);
  else console.warn(`corpus-udp: SKIPPED (not counted as passed): ${avail.reason}`);
}

describe.runIf(avail.ok || CI)('RFC 4475/5118 corpus over UDP (sipd in a private network namespace)', () => {
  const items: Item[] = manifest.map((entry, i) => {
    const bytes = messageBytes(entry);
    const ports = [5060, 5061];
    const vp = viaPort(bytes);
    if (vp !== undefined && !ports.includes(vp)) ports.push(vp);
    return { entry, bytes, bind: `127.0.1.${i + 2}`, ports, lane: 0 };
  });
  {
    // lanes: REGISTERs apart from the other requests (so that what one message registers is not
    // found by the location lookup of a later one: the order of the corpus is not a call flow), and a
    // further lane whenever a transaction identity repeats
    const seen = new Map<string, number>();
    const laneIds = new Map<string, number>();
    for (const it of items) {
      const id = txIdentity(it.bytes);
      const n = id === undefined ? 0 : (seen.get(id) ?? 0);
      if (id !== undefined) seen.set(id, n + 1);
      const key = `${isRegister(it.bytes) ? 'register' : 'other'}/${n}`;
      if (!laneIds.has(key)) laneIds.set(key, laneIds.size);
      it.lane = laneIds.get(key)!;
    }
  }
  const lanes = Math.max(...items.map((i) => i.lane)) + 1;

  let ns: Netns | undefined;
  let dir = '';
  const servers: SipdProcess[] = [];
  const results = new Map<string, { replies: Reply[]; fenced: boolean }>();
  const logs: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    const made = await createNetns('sipd-test');
    if (!made.ok) throw new Error(`cannot create a network namespace: ${made.reason}`);
    ns = made.ns;
    dir = mkdtempSync(join(tmpdir(), 'sipd-corpus-'));
    writeFileSync(join(dir, 'corpus.yaml'), ['auth:', '  trusted_ips: [127.0.0.0/8]', 'shutdown_grace_ms: 200', ''].join('\n'));
    for (let lane = 0; lane < lanes; lane++) {
      servers.push(
        await SipdProcess.start({
          prefix: ns.prefix,
          args: ['--config', join(dir, 'corpus.yaml')],
          env: {
            SIPD_LISTEN: `udp:127.0.0.1:${5160 + lane},tcp:127.0.0.1:${5160 + lane}`,
            SIPD_DB: `sqlite:${join(dir, `lane${lane}.sqlite`)}`,
            SIPD_DOMAINS: 'example.com,[2001:db8::10]',
            SIPD_METRICS: 'off',
            SIPD_LOG_LEVEL: 'info',
          },
        }),
      );
    }
    for (let lane = 0; lane < lanes; lane++) {
      const plan = {
        server: { host: '127.0.0.1', port: 5160 + lane },
        items: items.filter((i) => i.lane === lane).map((i) => ({ id: i.entry.name, payload: i.bytes.toString('base64'), bind: i.bind, ports: i.ports })),
        settleMs: 500,
        maxWaitMs: 10_000,
      };
      const out = await runSender(ns, JSON.stringify(plan), 120_000);
      for (const line of out.split('\n')) {
        if (line.trim() === '') continue;
        const r = JSON.parse(line) as { id: string; replies: Reply[]; fenced: boolean };
        results.set(r.id, { replies: r.replies, fenced: r.fenced });
      }
    }
    for (const s of servers) {
      await s.kill('SIGTERM');
      logs.push(...s.logs());
    }
  }, 300_000);

  afterAll(async () => {
    for (const s of servers) if (s.exit === undefined) await s.kill('SIGKILL').catch(() => undefined);
    await ns?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the expectation table covers exactly the manifest', () => {
    expect(Object.keys(EXPECTED).sort()).toEqual(manifest.map((e) => e.name).sort());
  });

  for (const item of items) {
    const { entry } = item;
    const exp = EXPECTED[entry.name];
    const title = `${entry.rfc} ${entry.name} (${entry.verdict}) → ${exp?.code ?? 'no reply'}`;
    it(title, () => {
      expect(exp, `no expectation for ${entry.name}`).toBeDefined();
      const r = results.get(entry.name);
      expect(r, 'the sender reported nothing for this message').toBeDefined();
      // sipd answered the fence sent after the message: it is alive and read the message first
      expect(r!.fenced).toBe(true);
      const finals = r!.replies.filter((x) => x.status >= 200);
      if (exp!.code === null) {
        expect(r!.replies.map((x) => `${x.status} ${x.reason}`)).toEqual([]);
        return;
      }
      expect(finals.length, `no final reply; got ${JSON.stringify(r!.replies.map((x) => x.status))}`).toBeGreaterThan(0);
      // retransmissions of the final reply may follow; they are the same reply
      expect(new Set(finals.map((x) => x.status))).toEqual(new Set([exp!.code]));
      const first = finals[0]!;
      const callIds = [...item.bytes.toString('latin1').matchAll(/^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)/gim)].map((m) => m[1]!.trim());
      if (callIds.length > 0) expect(callIds).toContain(first.callId);
      const parsed = parseMessage(Buffer.from(first.text, 'latin1'));
      expect(parsed).toBeInstanceOf(SipResponse);
      exp!.check?.(parsed as SipResponse, first.text);
      const handled = logs.filter((l) => l.msg === 'request' && l.src === `udp:${item.bind}:${item.ports[0]}` && l.callId !== undefined && !String(l.callId).startsWith('fence-'));
      if (exp!.relayed === true) expect(handled.map((l) => l.result)).toEqual(['relayed']);
      else expect(handled.map((l) => l.result)).not.toContain('relayed');
    });
  }
});

function runSender(ns: Netns, input: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '--import', 'tsx', join(ROOT, 'test', 'helpers', 'udp-send.ts')], {
      cwd: ROOT,
      env: baseEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`udp-send exited ${code}: ${err}`));
    });
    child.stdin.end(input);
  });
}
