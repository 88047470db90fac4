/**
 * The cost of one MySQL store query in the Node process (src/store/mysql.ts through mysql2 to a
 * real MariaDB), in process:
 *
 *   getMany   subscriber getMany() of 1 existing user (what a credential-cache miss asks)
 *   saveMany  location saveMany() of a batch of 16 bindings that are there (one UPDATE statement)
 *
 * each sequentially (one query at a time) and with 8 in flight. Per scenario and round it prints
 * the Node process's CPU µs per query (process.cpuUsage: user + system, so the socket writes and
 * reads count) and heap bytes allocated per query (used-heap growth plus what every GC freed, from
 * v8.GCProfiler, as bench/hotpath.bench.ts). The machine is shared: CPU µs is noisy, B/op is the
 * figure to compare; compare A and B from one run (`--src` alternates them round by round).
 *
 *   SIPD_TEST_DB_PREFIX=bench_ node --expose-gc --import tsx bench/mysql-exec.bench.ts \
 *     [--n 20000] [--rounds 4] [--src DIR]...
 *
 * `--src DIR` (repeatable) loads the stores from DIR/src/store/index.ts instead of this checkout's
 * (DIR: e.g. `git archive main src | tar -x -C DIR`, with DIR/node_modules a symlink to this one's):
 * the runs then alternate between the sources round by round. The database is the test server's
 * (127.0.0.1:3306 root, or SIPD_TEST_MYSQL_URL), one database named SIPD_TEST_DB_PREFIX + random,
 * with the Kamailio schema (sql/mysql), dropped at the end.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import mysql from 'mysql2/promise';
import type { DbUrl } from '../src/config.js';
import type { Binding, Stores } from '../src/store/index.js';
import { requireGc } from './bench-common.js';

const gc = requireGc('bench/mysql-exec.bench.ts');
const argv = process.argv.slice(2);
const num = (name: string, dflt: number): number => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const N = num('n', 20_000);
const ROUNDS = num('rounds', 4);
const BATCH = 16;
const INFLIGHT = 8;
const srcs: string[] = [];
for (let i = 0; i < argv.length; i++) if (argv[i] === '--src') srcs.push(path.resolve(argv[++i]!));
if (srcs.length === 0) srcs.push(path.resolve(import.meta.dirname, '..'));

interface StoreModule {
  initSchema(db: DbUrl): Promise<void>;
  openStores(config: { db: DbUrl; db_pool?: { connections: number; queue_limit: number; query_timeout_ms: number }; location?: { db_mode: 'db-only' } }, opts?: { now?: () => number }): Promise<Stores>;
}

const base = new URL(process.env.SIPD_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306');
const server = { host: base.hostname, port: base.port ? Number(base.port) : 3306, user: decodeURIComponent(base.username || 'root'), password: decodeURIComponent(base.password) };
const prefix = process.env.SIPD_TEST_DB_PREFIX ?? 'bench_';
const dbName = `${prefix}${randomBytes(5).toString('hex')}`;
const db: DbUrl = { kind: 'mysql', host: server.host, port: server.port, user: server.user, password: server.password, database: dbName };

const T0 = Date.UTC(2030, 0, 1);
function binding(i: number): Binding {
  const u = `u${i}`;
  return { aor: `${u}@bench.example`, username: u, domain: 'bench.example', contact: `sip:${u}@10.1.0.${i % 250}:5060`, expires: T0 + 3600_000, q: null, callId: `c-${i}`, cseq: 1, ruid: `ruid-${i}`, lastModified: T0, flags: 0, cflags: 0 };
}

interface Sample {
  cpu: number;
  bytes: number;
}

async function measure(ops: number, run: () => Promise<void>): Promise<Sample> {
  gc();
  const prof = new v8.GCProfiler();
  prof.start();
  const h0 = v8.getHeapStatistics().used_heap_size;
  const c0 = process.cpuUsage();
  await run();
  const c1 = process.cpuUsage(c0);
  const h1 = v8.getHeapStatistics().used_heap_size;
  const r = prof.stop() as { statistics: Array<{ beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }> };
  let freed = 0;
  for (const s of r.statistics) freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
  return { cpu: (c1.user + c1.system) / ops, bytes: (h1 - h0 + freed) / ops };
}

/** `ops` calls of `op(i)`, `width` at a time. */
async function drive(ops: number, width: number, op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < ops) await op(next++);
  };
  await Promise.all(Array.from({ length: width }, lane));
}

type Scenario = { name: string; ops: number; run: (s: Stores) => Promise<void> };
const key = [{ username: 'alice', domain: 'bench.example' }];
const getMany = (s: Stores): Promise<unknown> => (s.subscribers.getMany ? s.subscribers.getMany(key) : s.subscribers.get('alice', 'bench.example'));
const batches = Array.from({ length: 8 }, (_, lane) => Array.from({ length: BATCH }, (_, j) => binding(lane * BATCH + j)));
const saveMany = (s: Stores, b: Binding[]): Promise<void> => (s.locations.saveMany ? s.locations.saveMany(b) : Promise.all(b.map((x) => s.locations.save(x))).then(() => undefined));
const saveOps = Math.max(1, Math.floor(N / 4));
const scenarios: Scenario[] = [
  { name: 'getMany seq', ops: N, run: (s) => drive(N, 1, () => getMany(s)) },
  { name: `getMany x${INFLIGHT}`, ops: N, run: (s) => drive(N, INFLIGHT, () => getMany(s)) },
  { name: `saveMany(${BATCH}) seq`, ops: saveOps, run: (s) => drive(saveOps, 1, (i) => saveMany(s, batches[i % 8]!)) },
  { name: `saveMany(${BATCH}) x${INFLIGHT}`, ops: saveOps, run: (s) => drive(saveOps, INFLIGHT, (i) => saveMany(s, batches[i % 8]!)) },
];

const admin = await mysql.createConnection({ ...server, connectTimeout: 3000 });
await admin.query(`CREATE DATABASE ${admin.escapeId(dbName)}`);
const results = new Map<string, Sample[]>();
try {
  const mods: StoreModule[] = [];
  for (const s of srcs) mods.push((await import(pathToFileURL(path.join(s, 'src/store/index.ts')).href)) as StoreModule);
  await mods[0]!.initSchema(db);
  const opened: Stores[] = [];
  for (const m of mods) opened.push(await m.openStores({ db, db_pool: { connections: 10, queue_limit: 1000, query_timeout_ms: 2000 }, location: { db_mode: 'db-only' } }, { now: () => T0 }));
  await opened[0]!.subscribers.add('alice', 'bench.example', 'secret');
  for (const b of batches.flat()) await opened[0]!.locations.save(b);
  for (let round = 0; round <= ROUNDS; round++) {
    for (const sc of scenarios) {
      for (let k = 0; k < opened.length; k++) {
        const s = opened[round % 2 === 0 ? k : opened.length - 1 - k]!;
        const idx = opened.indexOf(s);
        const ops = round === 0 ? Math.min(sc.ops, 2000) : sc.ops;
        const sample = await measure(ops, () => sc.run(s));
        if (round === 0) continue; // warm-up
        const label = `${sc.name} ${srcs.length > 1 ? `[${path.basename(srcs[idx]!)}]` : ''}`.trim();
        const list = results.get(label) ?? [];
        list.push(sample);
        results.set(label, list);
        console.log(`round ${round}  ${label.padEnd(32)} ${sample.cpu.toFixed(1).padStart(7)} µs/op  ${Math.round(sample.bytes).toString().padStart(7)} B/op`);
      }
    }
  }
  for (const s of opened) await s.close();
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeId(dbName)}`);
  await admin.end();
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
console.log(`\nsummary (N=${N}, ${ROUNDS} rounds after a warm-up): CPU µs/op min / median, heap B/op min / median`);
for (const [label, xs] of results) {
  const cpu = xs.map((x) => x.cpu);
  const b = xs.map((x) => x.bytes);
  console.log(`${label.padEnd(32)} ${Math.min(...cpu).toFixed(1).padStart(7)} / ${median(cpu).toFixed(1).padStart(7)} µs   ${Math.round(Math.min(...b)).toString().padStart(7)} / ${Math.round(median(b)).toString().padStart(7)} B`);
}
