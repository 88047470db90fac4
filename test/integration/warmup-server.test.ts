/**
 * The start-up warm-up (src/warmup.ts) seen from outside, sipd started in this process
 * (startServer, SQLite, UDP on 127.0.0.1): with the default warm-up the server answers a REGISTER
 * and a call over real UDP as with the warm-up off; the warm-up counted nothing in the metrics,
 * left no synthetic subscriber or binding in the stores and logged one info line; a warm-up that
 * throws is one warn line and the server starts all the same.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/server.js';
import { initSchema, openStores } from '../../src/store/index.js';
import { WARMUP_PASSWORD, WARMUP_USER } from '../../src/warmup.js';
import { UdpUa } from '../helpers/sip-ua.js';

const HOST = '127.0.0.1';
const DOMAIN = 'sip.test';
const PW = { alice: 'alice-secret-1', bob: 'bob-secret-1' };

let dir = '';
let dbSeq = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sipd-warmup-'));
});
/** a SQLite file of its own with the test's subscribers */
async function freshDb(): Promise<string> {
  const path = join(dir, `sipd-${++dbSeq}.sqlite`);
  await initSchema({ kind: 'sqlite', path });
  const stores = await openStores({ db: { kind: 'sqlite', path }, location: { db_mode: 'db-only' } });
  for (const [u, p] of Object.entries(PW)) await stores.subscribers.add(u, DOMAIN, p);
  await stores.close();
  return path;
}
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** the default configuration (warm-up included) on an ephemeral UDP port, write-through to the SQLite file. */
function config(dbPath: string, warmup?: Config['warmup']): Config {
  const c = loadConfig({ env: { SIPD_LISTEN: `udp:${HOST}:5060`, SIPD_DOMAINS: DOMAIN, SIPD_DB: `sqlite:${dbPath}`, SIPD_METRICS: 'off', SIPD_LOG_LEVEL: 'info', SIPD_STATE_DIR: join(dir, 'state') } });
  return { ...c, listen: [{ transport: 'udp', host: HOST, port: 0 }], location: { ...c.location, db_mode: 'write-through' }, ...(warmup !== undefined ? { warmup } : {}) };
}

interface Started {
  server: RunningServer;
  lines: Array<Record<string, unknown>>;
}
async function start(c: Config, opts: Omit<StartOptions, 'log'> = {}): Promise<Started> {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const server = await startServer(c, { ...opts, log: createLogger('info', sink) });
  return { server, lines };
}

/** what a REGISTER and a call get: the statuses the UAs saw. */
async function traffic(server: RunningServer): Promise<{ challenge: number; registered: number; callee: number; invite: number; bye: number }> {
  const port = server.endpoints().find((e) => e.transport === 'udp')!.port;
  const alice = await UdpUa.open({ address: HOST, server: { host: HOST, port } });
  const bob = await UdpUa.open({ address: '127.0.0.2', server: { host: HOST, port }, answer: true });
  try {
    const ch = await alice.request(alice.build({ method: 'REGISTER', ruri: `sip:${DOMAIN}`, from: `<sip:alice@${DOMAIN}>;tag=a1`, to: `<sip:alice@${DOMAIN}>`, callId: `reg-probe-${port}`, cseq: 1, extra: [`Contact: <sip:alice@${HOST}:${alice.port}>`] }));
    const reg = await bob.register('bob', DOMAIN, PW.bob);
    const callId = `call-warm-${port}`;
    const inv = await alice.call('alice', DOMAIN, PW.alice, `sip:bob@${DOMAIN}`, callId);
    const to = inv.header('to')!;
    const routes = inv.headerValues('record-route');
    const contact = /<([^>]+)>/.exec(inv.header('contact') ?? '')?.[1] ?? `sip:bob@127.0.0.2:${bob.port}`;
    const from = `<sip:alice@${DOMAIN}>;tag=${/tag=([^;>\s]+)/.exec(inv.header('from') ?? '')?.[1] ?? ''}`;
    const extra = routes.map((r) => `Route: ${r}`);
    await alice.send(alice.build({ method: 'ACK', ruri: contact, from, to, callId, cseq: 2, extra }));
    const bye = await alice.request(alice.build({ method: 'BYE', ruri: contact, from, to, callId, cseq: 3, extra }));
    return { challenge: ch.status, registered: reg.status, callee: bob.received.filter((r) => r.method === 'INVITE').length, invite: inv.status, bye: bye.status };
  } finally {
    await Promise.all([alice.close(), bob.close()]);
  }
}

async function metricsText(server: RunningServer): Promise<string> {
  return server.metrics.registry.metrics();
}

/** the sum of a counter family's samples (0 when it has none). */
function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}

describe('start-up warm-up', () => {
  it('with the default warm-up: nothing counted or stored by it, one info line, and REGISTER and a call answered as with it off', async () => {
    const dbPath = await freshDb();
    const c = config(dbPath);
    expect(c.warmup.calls).toBeGreaterThan(0);
    const on = await start(c);
    let withWarmup;
    try {
      // nothing counted before the first real request
      const before = await metricsText(on.server);
      for (const family of ['sipd_requests_received_total', 'sipd_responses_sent_total', 'sipd_auth_challenges_total', 'sipd_auth_failures_total', 'sipd_dropped_total', 'sipd_parse_errors_total'])
        expect(total(before, family), family).toBe(0);
      expect(total(before, 'sipd_request_processing_seconds_count')).toBe(0);
      // one info line from the warm-up, nothing else logged before 'sipd started'
      const startedAt = on.lines.findIndex((l) => l.msg === 'sipd started');
      const early = on.lines.slice(0, startedAt);
      expect(early.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('warm-up:'))).toHaveLength(1);
      expect(early.filter((l) => l.msg === 'request')).toEqual([]);
      expect(on.lines.filter((l) => (l.level as number) >= 40 && String(l.msg).includes('warm-up'))).toEqual([]);
      const line = early.find((l) => typeof l.msg === 'string' && l.msg.startsWith('warm-up:'))!;
      expect(line.calls as number).toBeGreaterThan(0);
      expect(line.registers as number).toBeGreaterThan(0);

      withWarmup = await traffic(on.server);
      // the first real requests are the only ones counted: REGISTER ×3, INVITE ×2, ACK ×2 (407's, 2xx's),
      // BYE (a UA retransmits after 500 ms unanswered: a few more on a slow machine, not the warm-up's hundreds)
      const after = await metricsText(on.server);
      expect(total(after, 'sipd_requests_received_total')).toBeGreaterThanOrEqual(8);
      expect(total(after, 'sipd_requests_received_total')).toBeLessThan(20);
    } finally {
      await on.server.stop();
    }

    const off = await start(config(await freshDb(), { registers: 0, calls: 0, max_ms: 0 }));
    let without;
    try {
      expect(off.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('warm-up'))).toEqual([]);
      without = await traffic(off.server);
    } finally {
      await off.server.stop();
    }
    expect(withWarmup).toEqual({ challenge: 401, registered: 200, callee: 1, invite: 200, bye: 200 });
    expect(without).toEqual(withWarmup);

    // the stores hold what the test put there and registered, no synthetic subscriber or binding
    const stores = await openStores({ db: { kind: 'sqlite', path: dbPath }, location: { db_mode: 'db-only' } });
    try {
      expect((await stores.subscribers.list()).map((s) => s.username).sort()).toEqual(['alice', 'bob']);
      expect(await stores.locations.lookup(`sipd-warmup@${DOMAIN}`)).toEqual([]);
      const c2 = await stores.locations.counts();
      expect(c2.aors).toBe(1); // bob
    } finally {
      await stores.close();
    }
  }, 60_000);

  it("refuses the warm-up's synthetic subscriber after a default warm-up: its credentials register nothing and call nobody, and a call to it finds no binding", async () => {
    const s = await start(config(await freshDb()));
    const port = s.server.endpoints().find((e) => e.transport === 'udp')!.port;
    const outsider = await UdpUa.open({ address: '127.0.0.3', server: { host: HOST, port } });
    const alice = await UdpUa.open({ address: HOST, server: { host: HOST, port } });
    try {
      expect(s.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('warm-up:'))).toBe(true);
      // someone who read the source: the warm-up's user and password are not a subscriber of the server
      const reg = await outsider.register(WARMUP_USER, DOMAIN, WARMUP_PASSWORD);
      expect(reg.status).not.toBe(200);
      expect([401, 403]).toContain(reg.status);
      const inv = await outsider.call(WARMUP_USER, DOMAIN, WARMUP_PASSWORD, `sip:alice@${DOMAIN}`);
      expect(inv.status).not.toBe(200);
      expect([403, 407]).toContain(inv.status);
      // and the warm-up's binding (its callee's contact in TEST-NET-2) is not the server's
      const toIt = await alice.call('alice', DOMAIN, PW.alice, `sip:${WARMUP_USER}@${DOMAIN}`);
      expect(toIt.status).toBe(404);
      expect(total(await metricsText(s.server), 'sipd_auth_failures_total')).toBeGreaterThan(0);
    } finally {
      await Promise.all([outsider.close(), alice.close()]);
      await s.server.stop();
    }
  }, 60_000);

  it('a warm-up that throws is one warn line; the server starts and answers', async () => {
    const s = await start(config(await freshDb()), {
      warmUp: () => Promise.reject(new Error('injected warm-up failure')),
    });
    try {
      const warns = s.lines.filter((l) => l.level === 40);
      expect(warns).toHaveLength(1);
      expect(warns[0]!.msg).toBe('warm-up failed; starting without it');
      expect(warns[0]!.err).toBe('injected warm-up failure');
      expect(s.lines.some((l) => l.msg === 'sipd started')).toBe(true);
      const r = await traffic(s.server);
      expect(r).toEqual({ challenge: 401, registered: 200, callee: 1, invite: 200, bye: 200 });
    } finally {
      await s.server.stop();
    }
  }, 60_000);
});
