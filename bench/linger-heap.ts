/**
 * GC pressure of the linger table under a steady REGISTER load, on a simulated clock.
 *
 *   node --expose-gc --import tsx bench/linger-heap.ts [rate=1000] [seconds=60]       one run, JSON out
 *   node --import tsx bench/linger-heap.ts sweep [rate] [seconds]                      one child per V8 flag set
 *                                          (default, --max-semi-space-size=16/32/64, and the same with
 *                                          --min-semi-space-size equal), a table out
 *
 * What one run does: `rate` REGISTER+auth operations per simulated second for `seconds` simulated
 * seconds, through the real transaction layer (fake transport, `manualClock`: Timer J fires after
 * 32 simulated seconds, so the linger table holds rate × 32 entries at steady state, as in sipd).
 * One operation is what sipd does for SIPp's REGISTER / 401 / REGISTER / 200: the first REGISTER
 * parsed from its own Buffer and answered 401 statelessly, the second (new branch, Authorization)
 * parsed, read the way the registrar reads it, answered 200 (two Contacts) through a server
 * transaction, which ends into a `resend` linger entry. The simulated clock advances 1 ms between
 * requests spread evenly over each second; pending promises settle every 10 simulated ms.
 * `ALLOC=<bytes>` adds that much short-lived garbage per request (the rest of sipd's per-request
 * work — auth, registrar, metrics — that the bench does not do; default 0).
 *
 * Reported (GC counts and bytes are deterministic enough on a busy machine; durations are
 * indicative only — the machine they were taken on was shared):
 * - `scavenges` / `markSweeps` (+ `incremental` steps): count and total ms, from PerformanceObserver
 *   'gc' entries during the load phase only;
 * - `oldSpaceMB` / `heapUsedMB` at the end of the load (no forced GC) and their peaks (sampled every
 *   simulated second), `arrayBuffersMB` (off-heap Buffer memory: where the ring keeps the bytes);
 * - `retainedPerEntry`: after the load, forced GCs, (heapUsed − baseline) / linger entries, and the
 *   same for arrayBuffers (off heap);
 * - after a further 40 simulated seconds without load: entries left, heap used after a forced GC;
 * - with `--trace-gc-nvp` (the sweep passes it): promoted bytes and semi-space-copied bytes of all
 *   scavenges during the load, parsed from V8's output by the sweep parent.
 */
import { spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { buildResponse, parseMessage, type SipRequest } from '../src/sip/index.js';
import { createTransactionLayer, manualClock } from '../src/transaction/index.js';
import { responseTarget } from '../src/transport/index.js';
import type { Source, Target, TransportName } from '../src/transport/types.js';
import { BENCH_LOCAL, BENCH_TIMERS, requireGc } from './bench-common.js';

const args = process.argv.slice(2);
if (args[0] === 'sweep') {
  sweep(args.slice(1));
  process.exit(0);
}

const gc = requireGc('bench/linger-heap.ts');
const RATE = Number(args[0] ?? 1000);
const SECONDS = Number(args[1] ?? 60);
const ALLOC = Number(process.env.ALLOC ?? 0);
const T = BENCH_TIMERS;
const LOCAL = BENCH_LOCAL;

function register(i: number, auth: boolean): Buffer {
  const host = `192.0.2.${i % 250}`;
  const lines = [
    'REGISTER sip:example.com SIP/2.0',
    `Via: SIP/2.0/UDP ${host}:5060;branch=z9hG4bK${auth ? 'a' : 'c'}${i.toString(36)}x7a9c3f21;rport=5060;received=198.51.100.7`,
    'Max-Forwards: 70',
    `To: <sip:user${i}@example.com>`,
    `From: <sip:user${i}@example.com>;tag=${(i * 7919).toString(16)}a4b2`,
    `Call-ID: ${(i * 104729).toString(36)}-843817637684230@998sdasdh09`,
    `CSeq: ${auth ? 2 : 1} REGISTER`,
    `Contact: <sip:user${i}@${host}:5060;transport=udp>;expires=3600`,
    ...(auth
      ? [
          `Authorization: Digest username="user${i}", realm="example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359${i}", uri="sip:example.com", ` +
            'response="dfe56131d1958046689d83306477ecc0", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001',
        ]
      : []),
    'User-Agent: ExamplePhone/5.1.2',
    'Expires: 3600',
    'Content-Length: 0',
    '',
    '',
  ];
  const text = lines.join('\r\n');
  const b = Buffer.allocUnsafe(text.length);
  b.write(text, 0, 'latin1');
  return b;
}

const clock = manualClock(1_000_000);
let sends = 0;
let sink = 0;
const layer = createTransactionLayer({
  transport: {
    send: (d: Buffer, _t: Target) => {
      sends++;
      sink += d.length;
      return Promise.resolve();
    },
    endpoints: () => [LOCAL.udp, LOCAL.tcp],
    endpointFor: (t: TransportName) => (t === 'udp' || t === 'tcp' ? LOCAL[t] : undefined),
  },
  clock,
  timers: T,
  user: { request: (req, src) => registrar(req, src), strayResponse: () => undefined },
  responseTarget,
});

function garbage(): void {
  if (ALLOC <= 0) return;
  // short-lived objects and strings, roughly what a request's other work leaves behind
  const xs: Array<{ a: number; s: string }> = [];
  for (let k = 0; k < ALLOC / 64; k++) xs.push({ a: k, s: 'x' + k });
  sink += xs.length;
}

function registrar(req: SipRequest, src: Source): void {
  garbage();
  req.topVia();
  req.callId();
  req.cseq();
  req.fromTag();
  req.header('to');
  req.headerValues('contact');
  const authz = req.header('authorization');
  req.header('expires');
  if (authz === undefined) {
    const res = buildResponse(req, 401, {
      toTag: 'ch' + (sends % 1000).toString(36),
      headers: [['WWW-Authenticate', `Digest realm="example.com", nonce="${(sends * 2654435761).toString(16)}0123456789abcdef", qop="auth", algorithm=MD5`]],
    });
    layer.respondStateless(res, src);
    return;
  }
  const st = layer.createServer(req, src);
  const c = req.header('contact') ?? '';
  st.respond(
    buildResponse(req, 200, {
      toTag: 'reg' + (sends % 1000).toString(36),
      headers: [
        ['Contact', `${c.split(';')[0]};expires=3600`],
        ['Contact', `<sip:other@192.0.2.77:5060;transport=udp>;expires=1200`],
        ['Date', 'Mon, 01 Jan 2024 00:00:00 GMT'],
      ],
    }),
  );
}

const src = (i: number): Source => ({ transport: 'udp', address: `192.0.2.${i % 250}`, port: 5060, local: LOCAL.udp });
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function op(i: number): void {
  layer.receiveRequest(parseMessage(register(i, false)) as SipRequest, src(i));
  layer.receiveRequest(parseMessage(register(i, true)) as SipRequest, src(i));
}

function oldSpace(): { used: number; size: number } {
  const s = getHeapSpaceStatistics().find((x) => x.space_name === 'old_space');
  return { used: s?.space_used_size ?? 0, size: s?.space_size ?? 0 };
}

async function forcedHeap(): Promise<{ heap: number; buffers: number; old: number }> {
  await settle();
  for (let k = 0; k < 4; k++) gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers, old: oldSpace().used };
}

// warm-up (JIT), then everything it left expires
for (let i = 0; i < 2000; i++) op(1e9 + i);
await settle();
clock.advance(64 * T.t1 + 1);
if (layer.stats().lingering !== 0) throw new Error('warm-up entries left');
const base = await forcedHeap();

const gcs = { scavenges: 0, scavengeMs: 0, markSweeps: 0, markSweepMs: 0, incremental: 0, incrementalMs: 0, maxPauseMs: 0 };
let measuring = true;
const obs = new PerformanceObserver((list) => {
  if (!measuring) return;
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
    gcs.maxPauseMs = Math.max(gcs.maxPauseMs, e.duration);
    if (kind === 1) {
      gcs.scavenges++;
      gcs.scavengeMs += e.duration;
    } else if (kind === 4) {
      gcs.markSweeps++;
      gcs.markSweepMs += e.duration;
    } else if (kind === 8) {
      gcs.incremental++;
      gcs.incrementalMs += e.duration;
    }
  }
});
obs.observe({ entryTypes: ['gc'] });
console.log('LOAD-START'); // for the sweep parent: --trace-gc-nvp lines after this belong to the load

const perMs = RATE / 1000;
let n = 0;
let carry = 0;
let peakOld = 0;
let peakHeap = 0;
const started = process.hrtime.bigint();
for (let ms = 0; ms < SECONDS * 1000; ms++) {
  carry += perMs;
  while (carry >= 1) {
    op(n++);
    carry--;
  }
  clock.advance(1);
  if (ms % 10 === 9) await settle();
  if (ms % 1000 === 999) {
    peakOld = Math.max(peakOld, oldSpace().size);
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
  }
}
await settle();
await settle();
const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
measuring = false;
console.log('LOAD-END');
const end = process.memoryUsage();
const endOld = oldSpace();
const entries = layer.stats().lingering;
const held = await forcedHeap();
clock.advance(40_000);
await settle();
const idle = await forcedHeap();
obs.disconnect();

const MB = (b: number): number => +(b / 1048576).toFixed(1);
console.log(
  'RESULT ' +
    JSON.stringify({
      rate: RATE,
      seconds: SECONDS,
      alloc: ALLOC,
      ops: n,
      flags: process.execArgv.filter((a) => a.startsWith('--max-semi') || a.startsWith('--min-semi')).join(' ') || 'default',
      lingerEntries: entries,
      ...gcs,
      scavengeMs: +gcs.scavengeMs.toFixed(1),
      markSweepMs: +gcs.markSweepMs.toFixed(1),
      incrementalMs: +gcs.incrementalMs.toFixed(1),
      maxPauseMs: +gcs.maxPauseMs.toFixed(2),
      heapUsedMB: MB(end.heapUsed),
      peakHeapUsedMB: MB(peakHeap),
      oldSpaceUsedMB: MB(endOld.used),
      oldSpaceSizeMB: MB(endOld.size),
      peakOldSpaceSizeMB: MB(peakOld),
      arrayBuffersMB: MB(end.arrayBuffers),
      rssMB: MB(end.rss),
      retainedHeapPerEntry: Math.round((held.heap - base.heap) / Math.max(1, entries)),
      retainedOffHeapPerEntry: Math.round((held.buffers - base.buffers) / Math.max(1, entries)),
      afterIdle40s: { entries: layer.stats().lingering, heapUsedMB: MB(idle.heap), arrayBuffersMB: MB(idle.buffers), baseHeapUsedMB: MB(base.heap) },
      wallMs: Math.round(wallMs),
      node: process.version,
      sink: sink > 0,
    }),
);

/** parent: one child per flag set, with --trace-gc-nvp for promoted bytes */
function sweep(rest: string[]): void {
  const sets = [
    [],
    ['--max-semi-space-size=16'],
    ['--max-semi-space-size=32'],
    ['--max-semi-space-size=64'],
    // V8 grows the young generation only while many objects survive: with little surviving, the
    // max alone may never be reached, so also with the semi-space fixed at that size
    ['--min-semi-space-size=16', '--max-semi-space-size=16'],
    ['--min-semi-space-size=32', '--max-semi-space-size=32'],
    ['--min-semi-space-size=64', '--max-semi-space-size=64'],
  ];
  const rows: string[] = [];
  rows.push('| flags | scavenges | scavenge ms (total) | promoted MB (scavenges) | survived in new space MB (sum over scavenges) | mark-sweeps | mark-sweep ms | old space end MB | heap used end MB | RSS end MB | retained B/entry heap + off-heap |');
  rows.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const flags of sets) {
    const r = spawnSync(process.execPath, [...flags, '--expose-gc', '--trace-gc-nvp', '--import', 'tsx', new URL(import.meta.url).pathname, ...rest], {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      env: process.env,
    });
    const out = r.stdout ?? '';
    const a = out.indexOf('LOAD-START');
    const b = out.indexOf('LOAD-END');
    const load = a >= 0 && b > a ? out.slice(a, b) : '';
    let promoted = 0;
    let copied = 0;
    for (const line of load.split('\n')) {
      if (!/\bgc=s\b/.test(line)) continue;
      promoted += Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? 0);
      copied += Number(/\bnew_space_survived=(\d+)/.exec(line)?.[1] ?? 0);
    }
    const res = /^RESULT (.*)$/m.exec(out)?.[1];
    if (res === undefined) {
      rows.push(`| ${flags.join(' ') || 'default'} | failed: ${(r.stderr ?? '').slice(0, 200).replace(/\n/g, ' ')} |`);
      continue;
    }
    const j = JSON.parse(res) as Record<string, number>;
    rows.push(
      `| ${flags.join(' ') || 'default'} | ${j.scavenges} | ${j.scavengeMs} | ${(promoted / 1048576).toFixed(1)} | ${(copied / 1048576).toFixed(1)} | ${j.markSweeps} | ${j.markSweepMs} | ${j.oldSpaceSizeMB} | ${j.heapUsedMB} | ${j.rssMB} | ${j.retainedHeapPerEntry} + ${j.retainedOffHeapPerEntry} |`,
    );
    console.error(res);
  }
  console.log(rows.join('\n'));
}
