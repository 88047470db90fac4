/**
 * Hot-path micro-benchmark: the real core (Router + Proxy + DigestAuthenticator + Registrar, the
 * real transaction layer, FloodGuard with the default loopback exempt list, the trusted-IP Acl)
 * over a fake transport, driven with REGISTER+auth and authenticated calls, in process.
 *
 *   bash bench/hotpath.sh [--rounds 7] [--batch 500] [--only register|call] [--no-pool] [--alloc-profile]
 *   (--alloc-profile with ALLOC_OUT=file.json also writes the sampled profile: bench/heap-server.ts reads it)
 *   node --expose-gc --import tsx bench/hotpath.bench.ts [same options]      (quicker to start, see below)
 *
 * What one operation is (the SIPp scenarios of bench/sipp):
 *   register: REGISTER (no credentials) → 401, REGISTER with Authorization → 200
 *   call:     INVITE → 407, ACK, INVITE with Proxy-Authorization → 100 + INVITE to the callee,
 *             180 + 200 from the callee → relayed upstream, ACK + BYE (in-dialog, on our Record-Route
 *             token) → relayed, 200 of the BYE → relayed
 * Every message enters as bytes, as the transport hands it up: flood admission of the source (the
 * exempt-list check), parseMessage, received/rport on the top Via (a response: its second Via parsed), then the transaction layer.
 * The UA side (building requests, computing digest responses, reading the responses) runs between
 * the timed phases and is neither timed nor counted: the figures are the server's work only.
 *
 * Per round and scenario it prints µs/op (wall time of the timed phases / ops), heap bytes allocated
 * per op (used-heap growth over the timed phases plus what every GC in them freed, from
 * v8.GCProfiler), and the scavenges / mark-sweeps and GC time in the timed phases. The summary line
 * gives the min and median over the rounds after the warm-up round. The machine this runs on is
 * usually busy: compare A and B from alternating runs (min of several), never single figures:
 * bench/hotpath-ab.sh does that across commits. Results: bench/HOTPATH-RESULTS.md.
 *
 * Time is a manual clock advanced by 1 ms per operation between phases (1,000 ops/s as the clock
 * sees it), so linger entries and timers behave as at that rate (timers fire between phases). The
 * credential cache is the real CachedSubscriberStore (TTL one hour: every lookup after the warm-up
 * is a synchronous hit, as under steady load).
 *
 * Wiring follows src/server.ts: randomness from one RandomPool over randomFillSync (src/core/random.ts);
 * `--no-pool` wires randomBytes per value as server.ts did before it (for A/B runs).
 *
 * tsx compiles with esbuild's keepNames (a `__name()` call per closure made), which production
 * (tsc → dist/) does not: for figures, run the transpiled JS with bench/hotpath.sh.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { isIP } from 'node:net';
import v8 from 'node:v8';
import { Acl } from '../src/core/acl.js';
import { DigestAuthenticator, digestHa1, digestResponse, stripCredentials, type AuthResult } from '../src/core/auth.js';
import { FloodGuard } from '../src/core/flood.js';
import { Proxy } from '../src/core/proxy.js';
import { RandomPool } from '../src/core/random.js';
import { Registrar } from '../src/core/registrar.js';
import { RouteTokens } from '../src/core/route-token.js';
import { Router, type AuthOutcome, type Authenticator } from '../src/core/routing.js';
import { ScannerFilter } from '../src/core/scanner.js';
import { deterministicToTag } from '../src/core/tags.js';
import { buildResponse, parseAuthHeader, parseMessage, parseVia, SipRequest, SipResponse, splitList } from '../src/sip/index.js';
import { CachedSubscriberStore, MemoryLocationStore, MemorySubscriberStore } from '../src/store/index.js';
import { createTransactionLayer, manualClock } from '../src/transaction/index.js';
import { responseTarget, viaReceivedParams } from '../src/transport/index.js';
import type { LocalEndpoint, Source, Target, TransportName } from '../src/transport/types.js';
import { quietEvents } from './bench-common.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const ROUNDS = arg('rounds', 7);
const BATCH = arg('batch', 500);
const onlyIdx = process.argv.indexOf('--only');
const ONLY = onlyIdx >= 0 ? process.argv[onlyIdx + 1] : undefined;

const DOMAIN = 'example.com';
const EP: LocalEndpoint = { transport: 'udp', address: '127.0.0.1', port: 5060, advertise: '127.0.0.1' };
const EPS: readonly LocalEndpoint[] = [EP];
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

// ------------------------------------------------------------------ randomness as server.ts wires it

interface RandomSources {
  /** the Proxy's branch / local-tag suffix */
  token: () => string;
  /** the authenticator's random bytes */
  bytes: (n: number) => Buffer;
  /** the transaction layer's branches (undefined: its default) */
  branch: (() => string) | undefined;
}

/** as src/server.ts wires it; `--no-pool`: randomBytes per value, as before src/core/random.ts. */
function randomSources(): { src: RandomSources; pooled: boolean } {
  if (process.argv.includes('--no-pool')) {
    return { pooled: false, src: { token: () => randomBytes(8).toString('hex'), bytes: (n) => randomBytes(n), branch: undefined } };
  }
  const pool = new RandomPool((b) => randomFillSync(b));
  return { pooled: true, src: { token: () => pool.hex(8), bytes: (n) => pool.bytes(n), branch: () => 'z9hG4bK' + pool.base64url(12) } };
}

// ------------------------------------------------------------------ the core

async function buildCore(rnd: RandomSources) {
  const clock = manualClock(T0);
  const now = (): number => clock.now();
  const sent: Array<{ data: Buffer; target: Target }> = [];
  let want = 0;
  let wake: (() => void) | undefined;
  const transport = {
    send(data: Buffer, target: Target): Promise<void> {
      sent.push({ data, target });
      if (wake !== undefined && sent.length >= want) {
        const w = wake;
        wake = undefined;
        w();
      }
      return Promise.resolve();
    },
    endpoints: () => EPS, // one array, as the transport layer answers (not one per call)
    endpointFor: (t: TransportName, family: 4 | 6) => (t === 'udp' && family === 4 ? EP : undefined),
    resolve(host: string, port: number | undefined, tp: TransportName | undefined): Promise<Target[]> {
      if (isIP(host) === 0) return Promise.resolve([]);
      return Promise.resolve([{ transport: tp ?? 'udp', address: host, port: port ?? 5060 }]);
    },
    // as the transport layer answers an IP literal: at once
    resolveNow(host: string, port: number | undefined, tp: TransportName | undefined): Target[] | undefined {
      if (isIP(host) === 0) return undefined;
      return [{ transport: tp ?? 'udp', address: host, port: port ?? 5060 }];
    },
  };
  /** wait until `n` messages have been sent in all (bounded: 10 s). */
  const sentReach = (n: number): Promise<void> => {
    if (sent.length >= n) return Promise.resolve();
    want = n;
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${sent.length} of ${n} messages sent`)), 10_000);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  };

  const secret = Buffer.from('0123456789abcdef0123456789abcdef');
  const mem = new MemorySubscriberStore();
  const subscribers = new CachedSubscriberStore(mem, { ttlMs: 3_600_000, now });
  const locations = new MemoryLocationStore(now);
  const isOurDomain = (h: string): boolean => h.toLowerCase() === DOMAIN;
  const flood = new FloodGuard({ windowMs: 2000, maxRequests: 60, banMs: 300_000, exempt: new Acl(['127.0.0.1', '::1']), now });
  const trusted = new Acl([]);

  // eslint-disable-next-line prefer-const
  let router: Router;
  let proxy: Proxy;
  const tx = createTransactionLayer({
    transport,
    user: {
      request: (req, src) => router.onRequest(req, src),
      strayResponse: (res) => proxy.strayResponse(res, () => undefined),
    },
    timers: { t1: 500, t2: 4000, t4: 5000, timerC: 180_000, trying: 200 },
    clock,
    responseTarget,
    ...(rnd.branch !== undefined ? { newBranch: rnd.branch } : {}),
  });
  proxy = new Proxy({ tx, transport, random: rnd.token, routeTokens: new RouteTokens(secret), onResponse: () => undefined });
  const authenticator = new DigestAuthenticator({
    subscribers,
    secret,
    nonceLifetimeS: 300,
    algorithms: ['MD5'],
    qop: 'auth',
    checkUri: false,
    ncWindow: 100_000,
    now,
    random: rnd.bytes,
  });
  const outcome = (r: AuthResult): AuthOutcome => (r.ok ? { ok: true, user: r.user } : { ok: false, reason: r.reason, response: r.response });
  const auth: Authenticator = {
    verify: (req, realm, kind) => {
      const r = authenticator.verify(req, realm, kind);
      return r instanceof Promise ? r.then(outcome) : outcome(r);
    },
    stripCredentials: (req, realm) => void stripCredentials(req, realm),
  };
  const registrar = new Registrar({
    locations,
    domains: isOurDomain,
    minExpires: 60,
    defaultExpires: 3600,
    maxExpires: 3600,
    maxContacts: 10,
    natReceived: true,
    now,
    newRuid: () => rnd.token() + rnd.token(),
  });
  router = new Router({
    tx,
    proxy,
    auth,
    registrar,
    locations,
    scanners: new ScannerFilter(['friendly-scanner', 'sipvicious', 'sipcli', 'sip-scan']),
    trusted,
    isOurDomain,
    toTag: (req) => deterministicToTag(req),
    events: quietEvents((obj, msg) => {
      throw new Error(`${msg}: ${JSON.stringify(obj)}`);
    }),
  });

  /** one datagram from `src`, as the transport layer hands it up. */
  const inbound = (data: Buffer, src: Source): void => {
    if (!flood.admit(src.address)) throw new Error('banned');
    const msg = parseMessage(data);
    const top = msg.topVia();
    if (top === undefined) throw new Error('no Via');
    if (msg instanceof SipRequest) {
      const p = viaReceivedParams(top, src.address, src.port);
      if (p.received !== undefined || p.rport !== undefined) msg.setViaReceived(p.received, p.rport);
      tx.receiveRequest(msg, src);
    } else {
      // the second Via parsed (a parse error when malformed), as the transport layer does: with secondVia() where the
      // commit has it, as the transport did before it otherwise (for A/B runs)
      const res = msg as SipResponse & { secondVia?: () => unknown };
      if (typeof res.secondVia === 'function') res.secondVia();
      else legacySecondVia(res);
      tx.receiveResponse(res, src);
    }
  };

  return { clock, sent, sentReach, inbound, mem };
}

/** The transport layer's check of a response's second Via before SipMessage.secondVia() (parsed and dropped). */
function legacySecondVia(res: SipResponse): void {
  let seen = 0;
  for (const line of res.headerValues('via')) {
    for (const v of splitList(line)) {
      if (++seen === 2) {
        parseVia(v);
        return;
      }
    }
  }
}

type Core = Awaited<ReturnType<typeof buildCore>>;

// ------------------------------------------------------------------ UA side (untimed)

const enc = (s: string): Buffer => Buffer.from(s, 'latin1');
let seq = 0;
const branch = (): string => `z9hG4bK-${(++seq).toString(36)}-${(seq * 7919).toString(36)}`;

function req(lines: string[], body = ''): Buffer {
  return enc([...lines, `Content-Length: ${body.length}`, '', body].join('\r\n'));
}

function uaSrc(port: number): Source {
  return { transport: 'udp', address: '127.0.0.1', port, local: EP };
}

function parseRes(b: Buffer): SipResponse {
  const m = parseMessage(b);
  if (!(m instanceof SipResponse)) throw new Error('expected a response');
  return m;
}
function parseReq(b: Buffer): SipRequest {
  const m = parseMessage(b);
  if (!(m instanceof SipRequest)) throw new Error('expected a request');
  return m;
}

function credentials(ch: SipResponse, kind: 'www' | 'proxy', user: string, method: string, uri: string): string {
  const a = parseAuthHeader(ch.headerValues(kind === 'www' ? 'www-authenticate' : 'proxy-authenticate')[0]!);
  const realm = a.params.get('realm')!;
  const nonce = a.params.get('nonce')!;
  const opaque = a.params.get('opaque')!;
  const cnonce = 'c0ffee42';
  const nc = '00000001';
  const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', user, realm, `${user}pw`), method, uri, nonce, qop: 'auth', nc, cnonce });
  const name = kind === 'www' ? 'Authorization' : 'Proxy-Authorization';
  return `${name}: Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, cnonce="${cnonce}", opaque="${opaque}", qop=auth, nc=${nc}`;
}

function registerLines(user: string, port: number, callId: string, cseq: number): string[] {
  return [
    `REGISTER sip:${DOMAIN} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=${branch()};rport`,
    'Max-Forwards: 70',
    `From: <sip:${user}@${DOMAIN}>;tag=${user}-${cseq}`,
    `To: <sip:${user}@${DOMAIN}>`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} REGISTER`,
    `Contact: <sip:${user}@127.0.0.1:${port};transport=udp>`,
    'Expires: 3600',
    'User-Agent: SIPp/Linux',
  ];
}

const SDP = 'v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';

// ------------------------------------------------------------------ timing

interface Sample {
  us: number;
  /** process CPU time (user + system, all threads) per op */
  cpu: number;
  bytes: number;
  scavenges: number;
  marks: number;
  gcMs: number;
}

/**
 * `--count-maps`: Map/Set get/has/set/add/delete calls made in the timed phases, by calling
 * function (a stack per call: only for counting, the timings of such a run mean nothing).
 */
const COUNT_MAPS = process.argv.includes('--count-maps');
const mapCalls = new Map<string, number>();
let counting = false;
if (COUNT_MAPS) {
  const wrap = (proto: object, name: string): void => {
    const o = proto as Record<string, (...a: unknown[]) => unknown>;
    const orig = o[name]!;
    const kind = `${(proto as { constructor: { name: string } }).constructor.name}.${name}`;
    o[name] = function (this: unknown, ...a: unknown[]) {
      if (counting) {
        counting = false;
        const line = (new Error().stack ?? '').split('\n')[2] ?? '';
        const where = /at (?:async )?(\S+) \(?(?:.*\/)?((?:src|bench)\/[^:]+)/.exec(line);
        const k = `${kind} ${where ? `${where[1]} ${where[2]}` : line.trim()}`;
        mapCalls.set(k, (mapCalls.get(k) ?? 0) + 1);
        counting = true;
      }
      return orig.apply(this, a);
    };
  };
  for (const n of ['get', 'has', 'set', 'delete']) wrap(Map.prototype, n);
  for (const n of ['has', 'add', 'delete']) wrap(Set.prototype, n);
}

function printMapCalls(ops: number, what: string): void {
  if (!COUNT_MAPS) return;
  let total = 0;
  for (const v of mapCalls.values()) total += v;
  console.log(`${what}: ${(total / ops).toFixed(1)} Map/Set calls per op in the timed phases; by caller (per op):`);
  for (const [k, v] of [...mapCalls].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${(v / ops).toFixed(2).padStart(6)}  ${k}`);
  mapCalls.clear();
}

class Meter {
  private ns = 0n;
  private cpuUs = 0;
  private bytes = 0;
  private scav = 0;
  private marks = 0;
  private gcUs = 0;

  async timed(run: () => void | Promise<void>): Promise<void> {
    const prof = new v8.GCProfiler();
    prof.start();
    const h0 = v8.getHeapStatistics().used_heap_size;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    counting = COUNT_MAPS;
    await run();
    counting = false;
    const t1 = process.hrtime.bigint();
    const c1 = process.cpuUsage(c0);
    this.cpuUs += c1.user + c1.system;
    const h1 = v8.getHeapStatistics().used_heap_size;
    const r = prof.stop() as { statistics: Array<{ gcType: string; cost: number; beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }> };
    this.ns += t1 - t0;
    let freed = 0;
    for (const s of r.statistics) {
      freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
      if (s.gcType === 'Scavenge') this.scav++;
      else this.marks++;
      this.gcUs += s.cost;
    }
    this.bytes += h1 - h0 + freed;
  }

  sample(ops: number): Sample {
    return { us: Number(this.ns) / 1000 / ops, cpu: this.cpuUs / ops, bytes: this.bytes / ops, scavenges: this.scav, marks: this.marks, gcMs: this.gcUs / 1000 };
  }
}

// ------------------------------------------------------------------ scenarios

async function registerRound(core: Core, users: string[], basePort: number, round: number): Promise<Sample> {
  const m = new Meter();
  const n = users.length;
  const first = users.map((u, i) => req(registerLines(u, basePort + i, `reg-${u}-${round}`, 1)));
  let start = core.sent.length;
  await m.timed(async () => {
    for (let i = 0; i < n; i++) core.inbound(first[i]!, uaSrc(basePort + i));
    await core.sentReach(start + n);
  });
  const challenges = core.sent.slice(start, start + n).map((s) => parseRes(s.data));
  const second = users.map((u, i) => {
    const ch = challenges[i]!;
    if (ch.status !== 401) throw new Error(`expected 401, got ${ch.status}`);
    return req([...registerLines(u, basePort + i, `reg-${u}-${round}`, 2), credentials(ch, 'www', u, 'REGISTER', `sip:${DOMAIN}`)]);
  });
  start = core.sent.length;
  await m.timed(async () => {
    for (let i = 0; i < n; i++) core.inbound(second[i]!, uaSrc(basePort + i));
    await core.sentReach(start + n);
  });
  for (const s of core.sent.slice(start, start + n)) {
    const r = parseRes(s.data);
    if (r.status !== 200) throw new Error(`REGISTER: expected 200, got ${r.status} ${r.reason}`);
  }
  core.sent.length = 0;
  core.clock.advance(n);
  return m.sample(n);
}

async function callRound(core: Core, n: number, round: number): Promise<Sample> {
  const m = new Meter();
  const CALLER = 20000;
  const CALLEE = 30000;
  const calls = Array.from({ length: n }, (_, i) => {
    const callId = `call-${round}-${i}@bench`;
    const from = `"alice${i}" <sip:alice${i}@${DOMAIN}>;tag=ft${round}x${i}`;
    const ruri = `sip:bob${i}@${DOMAIN}`;
    const b1 = branch();
    const base = (method: string, cseq: number, br: string, to: string, r = ruri): string[] => [
      `${method} ${r} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${CALLER + i};branch=${br};rport`,
      'Max-Forwards: 70',
      `From: ${from}`,
      `To: ${to}`,
      `Call-ID: ${callId}`,
      `CSeq: ${cseq} ${method}`,
    ];
    return { i, callId, from, ruri, b1, base };
  });
  const src = (i: number): Source => uaSrc(CALLER + i);
  const calleeSrc = (i: number): Source => uaSrc(CALLEE + i);
  const contact = (i: number): string => `Contact: <sip:alice${i}@127.0.0.1:${CALLER + i}>`;

  // 1. INVITE → 407
  const inv1 = calls.map((c) => req([...c.base('INVITE', 1, c.b1, `<${c.ruri}>`), contact(c.i), 'Content-Type: application/sdp', 'User-Agent: SIPp/Linux'], SDP));
  let start = core.sent.length;
  await m.timed(async () => {
    for (const c of calls) core.inbound(inv1[c.i]!, src(c.i));
    await core.sentReach(start + n);
  });
  const ch = core.sent.slice(start, start + n).map((s) => parseRes(s.data));
  // 2. ACK of the 407, INVITE with credentials → 100 + INVITE to the callee
  const ack1 = calls.map((c) => req([...c.base('ACK', 1, c.b1, ch[c.i]!.header('to')!)]));
  const inv2 = calls.map((c) => {
    if (ch[c.i]!.status !== 407) throw new Error(`expected 407, got ${ch[c.i]!.status}`);
    return req([...c.base('INVITE', 2, branch(), `<${c.ruri}>`), contact(c.i), 'Content-Type: application/sdp', 'User-Agent: SIPp/Linux', credentials(ch[c.i]!, 'proxy', `alice${c.i}`, 'INVITE', c.ruri)], SDP);
  });
  start = core.sent.length;
  await m.timed(async () => {
    for (const c of calls) core.inbound(ack1[c.i]!, src(c.i));
    for (const c of calls) core.inbound(inv2[c.i]!, src(c.i));
    await core.sentReach(start + 2 * n);
  });
  const forwarded: SipRequest[] = [];
  for (const s of core.sent.slice(start, start + 2 * n)) {
    const msg = parseMessage(s.data);
    if (msg instanceof SipRequest) forwarded[Number(/^bob(\d+)$/.exec((msg.uri as { user?: string }).user ?? '')?.[1] ?? -1)] = msg;
  }
  if (forwarded.filter(Boolean).length !== n) throw new Error('not every INVITE was forwarded');
  // 3. 180 and 200 from the callee → upstream
  const r180 = forwarded.map((f, i) => buildResponse(f, 180, { toTag: `tt${round}x${i}`, copyRecordRoute: true, headers: [['Contact', `<sip:bob${i}@127.0.0.1:${CALLEE + i}>`]] }).toBuffer());
  const r200 = forwarded.map((f, i) =>
    buildResponse(f, 200, { toTag: `tt${round}x${i}`, copyRecordRoute: true, headers: [['Contact', `<sip:bob${i}@127.0.0.1:${CALLEE + i}>`], ['Content-Type', 'application/sdp']], body: enc(SDP) }).toBuffer(),
  );
  start = core.sent.length;
  await m.timed(async () => {
    for (let i = 0; i < n; i++) core.inbound(r180[i]!, calleeSrc(i));
    for (let i = 0; i < n; i++) core.inbound(r200[i]!, calleeSrc(i));
    await core.sentReach(start + 2 * n);
  });
  const ok = new Map<string, SipResponse>();
  for (const s of core.sent.slice(start, start + 2 * n)) {
    const r = parseRes(s.data);
    if (r.status === 200) ok.set(r.callId()!, r);
  }
  if (ok.size !== n) throw new Error(`only ${ok.size} of ${n} 200s relayed`);
  // 4. ACK + BYE in the dialog (Route: the Record-Route of the 200) → relayed to the callee
  const inDialog = (c: (typeof calls)[number], method: string, cseq: number): Buffer => {
    const r = ok.get(c.callId)!;
    const routes = r.headerValues('record-route');
    return req([...c.base(method, cseq, branch(), r.header('to')!, `sip:bob${c.i}@127.0.0.1:${CALLEE + c.i}`), ...routes.map((v) => `Route: ${v}`)]);
  };
  const ack2 = calls.map((c) => inDialog(c, 'ACK', 2));
  const bye = calls.map((c) => inDialog(c, 'BYE', 3));
  start = core.sent.length;
  await m.timed(async () => {
    for (const c of calls) core.inbound(ack2[c.i]!, src(c.i));
    for (const c of calls) core.inbound(bye[c.i]!, src(c.i));
    await core.sentReach(start + 2 * n);
  });
  const byes = core.sent
    .slice(start, start + 2 * n)
    .map((s) => parseReq(s.data))
    .filter((r) => r.method === 'BYE');
  if (byes.length !== n) throw new Error(`only ${byes.length} of ${n} BYEs relayed`);
  // 5. 200 of the BYE → upstream
  const byeOk = byes.map((b) => buildResponse(b, 200, {}).toBuffer());
  start = core.sent.length;
  await m.timed(async () => {
    for (let i = 0; i < n; i++) core.inbound(byeOk[i]!, calleeSrc(i));
    await core.sentReach(start + n);
  });
  core.sent.length = 0;
  core.clock.advance(n * 8); // a call costs ~8× a REGISTER; keeps the clock's rate realistic
  return m.sample(n);
}

// ------------------------------------------------------------------ main

async function populate(core: Core, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await core.mem.add(`user${i}`, DOMAIN, `user${i}pw`);
    await core.mem.add(`alice${i}`, DOMAIN, `alice${i}pw`);
    await core.mem.add(`bob${i}`, DOMAIN, `bob${i}pw`);
  }
  // the callees register once (through the core: the same path as the register scenario)
  const bobs = Array.from({ length: n }, (_, i) => `bob${i}`);
  await registerRound(core, bobs, 30000, -1);
}

function fmt(s: Sample): string {
  return `wall ${s.us.toFixed(1).padStart(7)} µs/op  cpu ${s.cpu.toFixed(1).padStart(7)} µs/op ${Math.round(s.bytes).toString().padStart(7)} B/op  scavenges ${String(s.scavenges).padStart(3)}  mark-sweeps ${s.marks}  gc ${s.gcMs.toFixed(1)} ms`;
}

function summary(name: string, list: Sample[]): void {
  const body = list.slice(1); // round 0 is warm-up
  const sorted = (f: (s: Sample) => number): number[] => body.map(f).sort((a, b) => a - b);
  const med = (a: number[]): number => a[Math.floor(a.length / 2)]!;
  const us = sorted((s) => s.us);
  const b = sorted((s) => s.bytes);
  const cpu = sorted((s) => s.cpu);
  console.log(`${name.padEnd(8)} wall min ${us[0]!.toFixed(1)} / median ${med(us).toFixed(1)} µs/op  |  cpu min ${cpu[0]!.toFixed(1)} / median ${med(cpu).toFixed(1)} µs/op  |  min ${Math.round(b[0]!)} B/op  median ${Math.round(med(b))} B/op  (${body.length} rounds × ${BATCH})`);
}

/**
 * `--alloc-profile`: V8's sampling heap profiler over the rounds after the warm-up, collected
 * objects included (allocation sites, not what is retained); prints the top self-allocating
 * functions.
 */
async function allocProfile<T>(run: () => Promise<T>): Promise<T> {
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  const out = await run();
  const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: { head: Node } };
  if (process.env.ALLOC_OUT) (await import('node:fs')).writeFileSync(process.env.ALLOC_OUT, JSON.stringify(profile));
  interface Node { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: Node[] }
  const self = new Map<string, number>();
  let total = 0;
  const walk = (n: Node, parent = ''): void => {
    const url = n.callFrame.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/');
    const me = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
    const k = process.env.ALLOC_PARENT ? `${me} < ${parent}` : me;
    self.set(k, (self.get(k) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c, me);
  };
  walk(profile.head);
  if (process.env.ALLOC_INCL) {
    // inclusive: each node's subtree, counted once per function on a stack
    const incl = new Map<string, number>();
    const sub = (n: Node, onStack: Set<string>): number => {
      const url = n.callFrame.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/');
      const me = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
      const fresh = !onStack.has(me);
      if (fresh) onStack.add(me);
      let t = n.selfSize;
      for (const c of n.children) t += sub(c, onStack);
      if (fresh) {
        onStack.delete(me);
        incl.set(me, (incl.get(me) ?? 0) + t);
      }
      return t;
    };
    sub(profile.head, new Set());
    for (const [k, v] of [...incl].filter(([k]) => k.includes('src/')).sort((a, b) => b[1] - a[1]).slice(0, 60)) console.log(`  incl ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
  }
  console.log(`allocation profile: ${(total / 1e6).toFixed(1)} MB sampled; top self allocations:`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.ALLOC_TOP ?? 40))) console.log(`  ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
  session.disconnect();
  return out;
}

async function main(): Promise<void> {
  const { src, pooled } = randomSources();
  const core = await buildCore(src);
  await populate(core, BATCH);
  mapCalls.clear();
  console.log(`hotpath bench: node ${process.version}, batch ${BATCH}, rounds ${ROUNDS} (first = warm-up), randomness ${pooled ? 'pooled (src/core/random.ts)' : 'randomBytes per call'}`);
  const reg: Sample[] = [];
  const call: Sample[] = [];
  const users = Array.from({ length: BATCH }, (_, i) => `user${i}`);
  const PROFILE = process.argv.includes('--alloc-profile');
  const rounds = async (from: number, to: number): Promise<void> => {
  for (let r = from; r < to; r++) {
    if (ONLY !== 'call') {
      const s = await registerRound(core, users, 10000, r);
      printMapCalls(BATCH, `register round ${r}`);
      reg.push(s);
      console.log(`  register round ${r}: ${fmt(s)}`);
    }
    if (ONLY !== 'register') {
      const s = await callRound(core, BATCH, r);
      printMapCalls(BATCH, `call round ${r}`);
      call.push(s);
      console.log(`  call     round ${r}: ${fmt(s)}`);
    }
  }
  };
  await rounds(0, 1);
  if (PROFILE) await allocProfile(() => rounds(1, ROUNDS));
  else await rounds(1, ROUNDS);
  if (reg.length > 0) summary('register', reg);
  if (call.length > 0) summary('call', call);
}

await main();
