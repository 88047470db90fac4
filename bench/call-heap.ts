/**
 * Heap held per completed call by sipd's core (transaction layer + router + auth + registrar +
 * proxy, as src/server.ts `buildCore` wires them), under a steady call load on a simulated clock.
 *
 *   node --expose-gc --import tsx bench/call-heap.ts [rate=1000] [seconds=45]        one run, JSON out
 *   node --import tsx bench/call-heap.ts gc [rate] [seconds]                          the same in a child with
 *                                                    --trace-gc-nvp: + bytes promoted by scavenges during the load
 *   SNAPSHOT=/tmp/x.heapsnapshot ...    a heap snapshot at the end of the load (after forced GCs; see heap-top.ts)
 *   SNAPSHOT_BASE=… SNAPSHOT_MID=…      snapshots after the warm-up and at simulated second MID_S (default 40) of
 *                                       the load, for `heap-top.ts MID BASE`: what a call in flight holds
 *   RING_MS=200 ...                     the callee answers 180/200 that long after the INVITE (default 0, as
 *                                       uas.xml): calls stay in flight across scavenges, as in an overloaded sipd
 *   PROMOTED=40 ...                     sampling heap profile of the load keeping objects not collected by a
 *                                       scavenge, top 40 allocating frames (indicative only: V8 also keeps the
 *                                       samples of young objects a mark-compact collects; tsx maps no lines)
 *
 * One call is SIPp's uac-call.xml against uas.xml, through the real core with memory stores, a fake
 * transport and a `manualClock`: INVITE → 407 → ACK → INVITE + Proxy-Authorization → 100 (ours),
 * forwarded to the callee's registered contact, which answers 100, 180, 200 (SDP, Record-Route
 * copied) → 180 and 200 relayed → ACK (Route set of the 200) relayed statelessly → 20 simulated ms
 * later BYE (Route set) relayed → 200 relayed. Every message sipd receives is parsed from a Buffer
 * of its own, as the UDP transport hands it over; what sipd sends is read back by the simulated UAs
 * (the fake transport parses it). 2,000 callers (as the SIPp runs), one callee.
 *
 * Reported:
 * - `retainedPerCall`: (heap used after forced GCs at the end of the load − baseline) / calls
 *   completed in the last 32 simulated seconds (the longest linger window: Timers L and J), and the
 *   same for `arrayBuffers` (off-heap: the linger table's byte store);
 * - `inFlight`: heap used (forced GC) at second MID_S of the load − baseline, per call in progress;
 * - `heldAfter`: heap used (forced GC) at +1, +6, +33 and +70 simulated seconds without load, to
 *   tell which timer releases what is held;
 * - GC counts during the load (PerformanceObserver), heap/old space at the end of the load;
 * - in `gc` mode, `promotedMB` / `survivedMB`: sums over the scavenges during the load.
 */
import { spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { loadConfig } from '../src/config.js';
import { digestHa1, digestResponse } from '../src/core/auth.js';
import { buildCore, type CoreSettings } from '../src/server.js';
import { buildResponse, parseMessage, SipRequest, SipResponse } from '../src/sip/index.js';
import { MemoryLocationStore, MemorySubscriberStore } from '../src/store/index.js';
import { manualClock } from '../src/transaction/index.js';
import { responseTarget } from '../src/transport/index.js';
import type { Source, Target, TransportName } from '../src/transport/types.js';
import { BENCH_LOCAL, BENCH_TIMERS, quietEvents, requireGc } from './bench-common.js';

const args = process.argv.slice(2);
if (args[0] === 'gc') {
  const r = spawnSync(process.execPath, ['--expose-gc', '--trace-gc-nvp', '--import', 'tsx', new URL(import.meta.url).pathname, ...args.slice(1)], {
    encoding: 'utf8',
    maxBuffer: 512 * 1024 * 1024,
    env: process.env,
  });
  const out = r.stdout ?? '';
  const a = out.indexOf('LOAD-START');
  const b = out.indexOf('LOAD-END');
  let promoted = 0;
  let survived = 0;
  let scavenges = 0;
  for (const line of (a >= 0 && b > a ? out.slice(a, b) : '').split('\n')) {
    if (!/\bgc=s\b/.test(line)) continue;
    scavenges++;
    promoted += Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? 0);
    survived += Number(/\bnew_space_survived=(\d+)/.exec(line)?.[1] ?? 0);
  }
  const res = /^RESULT (.*)$/m.exec(out)?.[1];
  if (res === undefined) {
    console.error(r.stderr);
    process.exit(1);
  }
  const j = JSON.parse(res) as Record<string, unknown> & { calls: number };
  const MBs = (x: number): number => +(x / 1048576).toFixed(1);
  console.log(JSON.stringify({ ...j, traced: { scavenges, promotedMB: MBs(promoted), survivedMB: MBs(survived), promotedPerCall: Math.round(promoted / j.calls) } }));
  process.exit(0);
}

const gc = requireGc('bench/call-heap.ts');
const RATE = Number(args[0] ?? 1000);
const SECONDS = Number(args[1] ?? 45);
const USERS = 2000;
const CALL_MS = 20;
/** RING_MS: the callee answers 180 and 200 this long after the INVITE (default 0, as uas.xml in the SIPp runs) */
const RING_MS = Number(process.env.RING_MS ?? 0);
const DOMAIN = 'example.com';
const T = BENCH_TIMERS;
const EP = BENCH_LOCAL.udp;
const TCP_EP = BENCH_LOCAL.tcp;
const CALLEE = { address: '198.51.100.9', port: 5070 };
const SDP = 'v=0\r\no=user1 53655765 2353687637 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';

const clock = manualClock(Date.UTC(2026, 0, 1));
const now = (): number => clock.now();

/** what the simulated UAs do next, in simulated time */
interface Action {
  at: number;
  run: () => void;
}
const actions: Action[] = [];
const later = (ms: number, run: () => void): void => void actions.push({ at: clock.now() + ms, run });

function wire(text: string): Buffer {
  const b = Buffer.allocUnsafe(text.length);
  b.write(text, 0, 'latin1');
  return b;
}
const srcOf = (address: string, port: number): Source => ({ transport: 'udp', address, port, local: EP });

interface Call {
  i: number;
  user: number;
  callId: string;
  fromTag: string;
  src: Source;
  toHeader?: string;
  routes?: string[];
  done?: boolean;
}
/** calls by Call-ID while in progress (the UAs' state, not sipd's) */
const calls = new Map<string, Call>();
let completed = 0;
const completedAt: number[] = [];
let failures = 0;
let sends = 0;

function userSrc(u: number): Source {
  return srcOf(`192.0.2.${(u % 250) + 1}`, 5060 + Math.floor(u / 250));
}

function invite(c: Call, cseq: number, branch: string, auth?: string): string {
  const ruri = `sip:bob@${DOMAIN}`;
  return [
    `INVITE ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP ${c.src.address}:${c.src.port};branch=${branch}`,
    'Max-Forwards: 70',
    `From: <sip:user${c.user}@${DOMAIN}>;tag=${c.fromTag}`,
    `To: <${ruri}>`,
    `Call-ID: ${c.callId}`,
    `CSeq: ${cseq} INVITE`,
    `Contact: <sip:user${c.user}@${c.src.address}:${c.src.port};transport=udp>`,
    ...(auth !== undefined ? [auth] : []),
    'Content-Type: application/sdp',
    `Content-Length: ${SDP.length}`,
    '',
    SDP,
  ].join('\r\n');
}

function inDialog(c: Call, method: 'ACK' | 'BYE', cseq: number, branch: string): string {
  return [
    `${method} sip:bob@${CALLEE.address}:${CALLEE.port} SIP/2.0`,
    `Via: SIP/2.0/UDP ${c.src.address}:${c.src.port};branch=${branch}`,
    ...(c.routes ?? []).map((r) => `Route: ${r}`),
    'Max-Forwards: 70',
    `From: <sip:user${c.user}@${DOMAIN}>;tag=${c.fromTag}`,
    `To: ${c.toHeader}`,
    `Call-ID: ${c.callId}`,
    `CSeq: ${cseq} ${method}`,
    `Contact: <sip:user${c.user}@${c.src.address}:${c.src.port};transport=udp>`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

let branchSeq = 0;
const branch = (): string => `z9hG4bK-${(++branchSeq).toString(36)}-a91f`;

function toSipd(text: string, src: Source): void {
  const m = parseMessage(wire(text));
  if (m instanceof SipRequest) {
    // what the UDP transport does on arrival (§18.2.1): received on the top Via
    const v = m.topVia();
    if (v !== undefined && v.host !== src.address) m.setViaReceived(src.address, undefined);
    core.tx.receiveRequest(m, src);
  } else core.tx.receiveResponse(m as SipResponse, src);
}

/** the callee (SIPp uas.xml): 100, 180, 200 to an INVITE; 200 to a BYE; ACK taken */
function callee(data: Buffer): void {
  const from = srcOf(CALLEE.address, CALLEE.port);
  const first = parseMessage(data) as SipRequest;
  if (first.method === 'ACK') return;
  const tag = 'u' + (first.callId() ?? '').slice(0, 8);
  // the UA keeps the bytes while it rings (not a parsed copy: the in-flight figure is sipd's)
  const bytes = Buffer.from(data);
  const send = (status: number): void => {
    const req = parseMessage(bytes) as SipRequest;
    const withSdp = status === 200 && req.method === 'INVITE';
    const r = buildResponse(req, status, {
      toTag: status > 100 ? tag : undefined,
      copyRecordRoute: status > 100 && req.method === 'INVITE',
      headers: status > 100 ? [['Contact', `<sip:bob@${CALLEE.address}:${CALLEE.port}>`], ...(withSdp ? ([['Content-Type', 'application/sdp']] as Array<[string, string]>) : [])] : [],
      ...(withSdp ? { body: Buffer.from(SDP, 'latin1') } : {}),
    });
    toSipd(r.toString(), from);
  };
  if (first.method === 'INVITE') {
    later(0, () => send(100));
    later(RING_MS, () => send(180));
    later(RING_MS, () => send(200));
  } else later(0, () => send(200));
}

/** the caller (SIPp uac-call.xml) reacting to what sipd sent it */
function caller(res: SipResponse): void {
  const c = calls.get(res.callId() ?? '');
  if (c === undefined || c.done === true) return;
  const cseq = res.cseq();
  if (cseq === undefined) return;
  if (cseq.method === 'INVITE' && res.status === 407) {
    const ch = res.header('proxy-authenticate') ?? '';
    const nonce = /nonce="([^"]+)"/.exec(ch)?.[1] ?? '';
    const opaque = /opaque="([^"]+)"/.exec(ch)?.[1];
    const b1 = res.topVia()?.branch ?? '';
    c.toHeader = res.header('to') ?? '';
    later(0, () => {
      toSipd(inDialog({ ...c, routes: [] }, 'ACK', 1, b1).replace(`ACK sip:bob@${CALLEE.address}:${CALLEE.port}`, `ACK sip:bob@${DOMAIN}`), c.src);
      const uri = `sip:bob@${DOMAIN}`;
      const user = `user${c.user}`;
      const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', user, DOMAIN, 'pw'), method: 'INVITE', uri, nonce, qop: 'auth', nc: '00000001', cnonce: 'c0ffee' });
      const auth = `Proxy-Authorization: Digest username="${user}", realm="${DOMAIN}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"${opaque !== undefined ? `, opaque="${opaque}"` : ''}`;
      toSipd(invite(c, 2, branch(), auth), c.src);
    });
    return;
  }
  if (cseq.method === 'INVITE' && res.status === 200) {
    c.toHeader = res.header('to') ?? '';
    c.routes = res.headerValues('record-route');
    later(0, () => toSipd(inDialog(c, 'ACK', 2, branch()), c.src));
    later(CALL_MS, () => toSipd(inDialog(c, 'BYE', 3, branch()), c.src));
    return;
  }
  if (cseq.method === 'BYE' && res.status === 200) {
    c.done = true;
    calls.delete(c.callId);
    completed++;
    completedAt.push(clock.now());
    return;
  }
  if (res.status >= 300) {
    failures++;
    c.done = true;
    calls.delete(c.callId);
  }
}

const transport = {
  send(data: Buffer, target: Target): Promise<void> {
    sends++;
    const m = parseMessage(data);
    if (target.address === CALLEE.address && target.port === CALLEE.port) {
      if (m instanceof SipRequest) callee(data);
    } else if (m instanceof SipResponse) caller(m);
    return Promise.resolve();
  },
  endpoints: () => [EP, TCP_EP],
  endpointFor: (t: TransportName, family: 4 | 6) => (family === 4 ? [EP, TCP_EP].find((e) => e.transport === t) : undefined),
  resolve: (host: string, port: number | undefined, tp: TransportName | undefined): Promise<Target[]> =>
    Promise.resolve(/^[\d.]+$/.test(host) ? [{ transport: tp ?? 'udp', address: host, port: port ?? 5060 }] : []),
};

const d = loadConfig({ env: {} });
const settings: CoreSettings = {
  domains: [DOMAIN],
  auth: { ...d.auth, enabled: true, algorithms: ['MD5'], qop: 'auth', trusted_ips: [] },
  registrar: { ...d.registrar, nat_received: true },
  timers: { t1_ms: T.t1, t2_ms: T.t2, t4_ms: T.t4, timer_c_ms: T.timerC, trying_ms: T.trying },
  limits: { ...d.limits, max_transactions: 200_000 },
  scanners: { enabled: false, user_agents: [] },
};
const subscribers = new MemorySubscriberStore();
for (let u = 0; u < USERS; u++) await subscribers.add(`user${u}`, DOMAIN, 'pw');
await subscribers.add('bob', DOMAIN, 'pw');
const locations = new MemoryLocationStore(now);
let rnd = 0;
let ruid = 0;
const events = quietEvents((obj, msg) => {
  console.error(msg, obj);
  failures++;
});
const core = buildCore({
  settings,
  transport,
  subscribers,
  locations,
  secret: Buffer.from('0123456789abcdef0123456789abcdef'),
  clock,
  now,
  random: {
    branch: () => (++rnd).toString(16).padStart(8, '0'),
    bytes: (n) => {
      const b = Buffer.alloc(n);
      b.writeUInt32BE(++rnd >>> 0, 0);
      b.writeUInt32BE((rnd * 2654435761) >>> 0, 4 % Math.max(1, n - 3));
      return b;
    },
    ruid: () => `ruid-${++ruid}`,
  },
  responseTarget,
  events,
});

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** run every action due (and what they trigger), letting promise chains settle in between */
async function runDue(): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const t = clock.now();
    const due = actions.filter((a) => a.at <= t);
    if (due.length === 0) {
      await settle();
      if (!actions.some((a) => a.at <= clock.now())) return;
      continue;
    }
    for (let k = actions.length - 1; k >= 0; k--) if (actions[k]!.at <= t) actions.splice(k, 1);
    for (const a of due) a.run();
    await settle();
  }
}

// the callee registers (REGISTER → 401 → REGISTER with credentials → 200)
{
  const regSrc = srcOf(CALLEE.address, CALLEE.port);
  const reg = (cseq: number, auth?: string): string =>
    [
      `REGISTER sip:${DOMAIN} SIP/2.0`,
      `Via: SIP/2.0/UDP ${CALLEE.address}:${CALLEE.port};branch=${branch()}`,
      'Max-Forwards: 70',
      `From: <sip:bob@${DOMAIN}>;tag=reg1`,
      `To: <sip:bob@${DOMAIN}>`,
      'Call-ID: reg-bob',
      `CSeq: ${cseq} REGISTER`,
      `Contact: <sip:bob@${CALLEE.address}:${CALLEE.port}>;expires=3600`,
      ...(auth !== undefined ? [auth] : []),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  let challenge = '';
  const prev = transport.send;
  transport.send = (data: Buffer, target: Target): Promise<void> => {
    const m = parseMessage(data);
    if (m instanceof SipResponse && m.status === 401) challenge = m.header('www-authenticate') ?? '';
    return prev(data, target);
  };
  toSipd(reg(1), regSrc);
  await runDue();
  const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1] ?? '';
  const uri = `sip:${DOMAIN}`;
  const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', 'bob', DOMAIN, 'pw'), method: 'REGISTER', uri, nonce, qop: 'auth', nc: '00000001', cnonce: 'c0ffee' });
  toSipd(reg(2, `Authorization: Digest username="bob", realm="${DOMAIN}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`), regSrc);
  await runDue();
  transport.send = prev;
  const b = await locations.lookup(`bob@${DOMAIN}`);
  if (b.length !== 1) throw new Error(`callee not registered (${b.length} bindings)`);
}

let callSeq = 0;
function startCall(): void {
  const i = callSeq++;
  const user = i % USERS;
  const c: Call = { i, user, callId: `${i.toString(36)}-${(i * 7919).toString(16)}@192.0.2.250`, fromTag: `${(i * 104729).toString(36)}C${i}`, src: userSrc(user) };
  calls.set(c.callId, c);
  toSipd(invite(c, 1, branch()), c.src);
}

/** `rate` calls per simulated second for `seconds`, 1 ms steps */
async function load(rate: number, seconds: number, sample?: () => void): Promise<void> {
  let carry = 0;
  for (let ms = 0; ms < seconds * 1000; ms++) {
    carry += rate / 1000;
    while (carry >= 1) {
      startCall();
      carry--;
    }
    await runDue();
    clock.advance(1);
    if (sample !== undefined && ms % 1000 === 999) sample();
  }
}

async function idle(ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    await runDue();
    clock.advance(10);
  }
  await runDue();
}

function oldSpace(): { used: number; size: number } {
  const s = getHeapSpaceStatistics().find((x) => x.space_name === 'old_space');
  return { used: s?.space_used_size ?? 0, size: s?.space_size ?? 0 };
}
async function forced(): Promise<{ heap: number; buffers: number }> {
  await settle();
  for (let k = 0; k < 4; k++) gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

// warm-up (JIT, caches, credential cache for every caller), then let everything expire
await load(Math.min(RATE, 500), 5);
await idle(70_000);
const warmCompleted = completed;
if (core.tx.stats().lingering !== 0 || core.tx.stats().server + core.tx.stats().client !== 0) throw new Error(`warm-up left ${JSON.stringify(core.tx.stats())}`);
const base = await forced();
if (process.env.SNAPSHOT_BASE !== undefined) writeHeapSnapshot(process.env.SNAPSHOT_BASE);

const gcs = { scavenges: 0, scavengeMs: 0, markSweeps: 0, markSweepMs: 0 };
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
    if (kind === 1) {
      gcs.scavenges++;
      gcs.scavengeMs += e.duration;
    } else if (kind === 4) {
      gcs.markSweeps++;
      gcs.markSweepMs += e.duration;
    }
  }
});
obs.observe({ entryTypes: ['gc'] });
let peakHeap = 0;
// PROMOTED=1: sample allocations that were not collected by a scavenge (promoted, then live or
// collected by a mark-compact): where the bytes that reach old space are allocated
const inspector = process.env.PROMOTED !== undefined ? new (await import('node:inspector')).Session() : undefined;
const post = <T>(method: string, params?: object): Promise<T> =>
  new Promise((res, rej) => inspector!.post(method, params ?? {}, (err, r) => (err ? rej(err) : res(r as T))));
if (inspector !== undefined) {
  inspector.connect();
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
}
console.log('LOAD-START');
const started = process.hrtime.bigint();
const c0 = completed;
let inFlight: { calls: number; heapPerCall: number; tx: object } | undefined;
let second = 0;
/** MID_S: the simulated second of the load at which in-flight calls are measured (default 40) */
const MID_S = Number(process.env.MID_S ?? 40);
await load(RATE, SECONDS, () => {
  peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
  if (++second !== MID_S) return;
  // bytes held per call in flight (a forced GC in the middle of the load; with RING_MS calls stay in flight longer)
  for (let k = 0; k < 4; k++) gc!();
  const h = process.memoryUsage().heapUsed;
  inFlight = { calls: calls.size, heapPerCall: Math.round((h - base.heap) / Math.max(1, calls.size)), tx: core.tx.stats() };
  if (process.env.SNAPSHOT_MID !== undefined) writeHeapSnapshot(process.env.SNAPSHOT_MID);
});
// the calls started in the last ms complete (BYE after CALL_MS)
await idle(CALL_MS + 10);
const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
console.log('LOAD-END');
obs.disconnect();
if (inspector !== undefined) {
  interface Node { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: Node[] }
  const { profile } = await post<{ profile: { head: Node } }>('HeapProfiler.stopSampling');
  const by = new Map<string, number>();
  const walk = (n: Node, path: string[]): void => {
    const f = n.callFrame;
    const here = f.url.includes('/src/') || f.url.includes('/bench/') ? `${f.functionName || '(anon)'} ${f.url.replace(/^.*\/(src|bench)\//, '$1/')}:${f.lineNumber + 1}` : undefined;
    const p = here !== undefined ? [...path, here] : path;
    if (n.selfSize > 0) {
      // attribute to the innermost two frames of ours
      const k = p.slice(-2).join(' <- ') + (here === undefined ? ` [${f.functionName || '(native)'}]` : '');
      by.set(k, (by.get(k) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, p);
  };
  walk(profile.head, []);
  const total = [...by.values()].reduce((a, b) => a + b, 0);
  console.error(`sampled bytes not collected by scavenges: ${(total / 1048576).toFixed(1)} MB`);
  for (const [k, v] of [...by.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROMOTED) || 40)) console.error(`${(v / 1048576).toFixed(2).padStart(7)} MB  ${k}`);
}
const endMem = process.memoryUsage();
const endOld = oldSpace();
const loadEnd = clock.now();
const window32 = completedAt.filter((t) => t > loadEnd - 32_000).length;
const stats = core.tx.stats();
const sizes = core.tx.lingerSizes();
const held = await forced();
if (process.env.SNAPSHOT !== undefined) writeHeapSnapshot(process.env.SNAPSHOT);
const heldAfter: Record<string, number> = {};
let t = 0;
for (const at of [1_000, 6_000, 33_000, 70_000]) {
  await idle(at - t);
  t = at;
  heldAfter[`+${at / 1000}s`] = +(((await forced()).heap - base.heap) / 1048576).toFixed(2);
}
const MB = (b: number): number => +(b / 1048576).toFixed(1);
console.log(
  'RESULT ' +
    JSON.stringify({
      rate: RATE,
      seconds: SECONDS,
      calls: completed - c0,
      failures,
      inProgressLeft: calls.size,
      warmupCalls: warmCompleted,
      callsInLast32s: window32,
      ringMs: RING_MS,
      inFlight,
      txAtEnd: stats,
      linger: sizes,
      retainedPerCall: { heap: Math.round((held.heap - base.heap) / window32), offHeap: Math.round((held.buffers - base.buffers) / window32) },
      retainedMB: { heap: MB(held.heap - base.heap), offHeap: MB(held.buffers - base.buffers) },
      heldAfterMB: heldAfter,
      txAfter70s: core.tx.stats(),
      gc: { ...gcs, scavengeMs: Math.round(gcs.scavengeMs), markSweepMs: Math.round(gcs.markSweepMs) },
      endOfLoad: { heapUsedMB: MB(endMem.heapUsed), peakHeapUsedMB: MB(peakHeap), oldSpaceUsedMB: MB(endOld.used), rssMB: MB(endMem.rss), arrayBuffersMB: MB(endMem.arrayBuffers) },
      sends,
      wallMs: Math.round(wallMs),
      node: process.version,
    }),
);
