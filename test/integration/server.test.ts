/**
 * sipd as a real subprocess (`node --import tsx src/cli/sipd.ts`) on 127.0.0.1 with random free
 * ports: start-up errors, /healthz and /metrics, one log line per request and no credentials in the
 * logs, garbage input, SIGTERM/SIGINT with the registration kept in SQLite across a restart.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerChallenge, SipClient } from '../helpers/sip-client.js';
import { freePort, runSipd, sipctl, SipdProcess, type LogLine, type Run } from '../helpers/sipd-process.js';

const HOST = '127.0.0.1';

/** README "Metrics and health": every family named there. */
const METRIC_FAMILIES = [
  'sipd_requests_received_total',
  'sipd_responses_sent_total',
  'sipd_transactions_active',
  'sipd_registered_aors',
  'sipd_registered_contacts',
  'sipd_auth_challenges_total',
  'sipd_auth_failures_total',
  'sipd_parse_errors_total',
  'sipd_dropped_total',
  'sipd_request_processing_seconds',
  'sipd_store_query_seconds',
  'sipd_flood_bans_total',
  'sipd_flood_banned_sources',
  'sipd_flood_tracked_sources',
  'sipd_flood_dropped_total',
  'sipd_transport_dropped_total',
  'sipd_transport_connections',
  'sipd_location_write_failures_total',
  'sipd_location_write_backlog',
  'sipd_event_loop_delay_p99_seconds',
  'sipd_event_loop_delay_max_seconds',
  'sipd_event_loop_delay_mean_seconds',
  'sipd_kernel_udp_total',
  // default process metrics (prom-client collectDefaultMetrics)
  'process_cpu_user_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_eventloop_lag_seconds',
];

function expectOneLineError(r: Run, pattern: RegExp): void {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBe(0);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^sipd: /);
  expect(lines[0]).toMatch(pattern);
}

let seq = 0;
const uniq = (p: string): string => `${p}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}`;

function options(c: SipClient, serverPort: number, callId = uniq('opt')): string {
  return [
    `OPTIONS sip:${HOST}:${serverPort} SIP/2.0`,
    `Via: SIP/2.0/UDP ${HOST}:${c.port};branch=z9hG4bK${uniq('b')};rport`,
    'Max-Forwards: 70',
    `From: <sip:ping@${HOST}>;tag=${uniq('t')}`,
    `To: <sip:${HOST}:${serverPort}>`,
    `Call-ID: ${callId}`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

function register(c: SipClient, serverPort: number, user: string, callId: string, cseq: number, authorization?: string): string {
  return [
    `REGISTER sip:${HOST} SIP/2.0`,
    `Via: SIP/2.0/UDP ${HOST}:${c.port};branch=z9hG4bK${uniq('b')};rport`,
    'Max-Forwards: 70',
    `From: <sip:${user}@${HOST}>;tag=${uniq('t')}`,
    `To: <sip:${user}@${HOST}>`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} REGISTER`,
    `Contact: <sip:${user}@${HOST}:${c.port}>`,
    'Expires: 3600',
    ...(authorization !== undefined ? [`Authorization: ${authorization}`] : []),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

// ------------------------------------------------------------------------------- /metrics

async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${HOST}:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}

/** Value of one sample (`name{labels}` exactly as prom-client prints it, or a bare name); 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) got[kv[1]!] = kv[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

/** Sum of every sample of a family (all label sets). */
function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}

// ================================================================================ start-up errors

describe('sipd start-up errors: exit non-zero with one line on stderr', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sipd-start-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const env = (port: number, extra: Record<string, string> = {}): Record<string, string> => ({
    SIPD_LISTEN: `udp:${HOST}:${port},tcp:${HOST}:${port}`,
    SIPD_DB: `sqlite:${join(dir, `db-${port}.sqlite`)}`,
    SIPD_DOMAINS: HOST,
    SIPD_METRICS: 'off',
    SIPD_LOG_LEVEL: 'info',
    ...extra,
  });

  it('the UDP port is in use', async () => {
    const port = await freePort();
    const blocker = dgram.createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(port, HOST, () => r()));
    try {
      const r = await runSipd({ env: env(port) });
      expectOneLineError(r, new RegExp(`${port}`));
      expect(r.stderr).toMatch(/in use|EADDRINUSE/i);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  it('the metrics port is in use', async () => {
    const port = await freePort();
    const mport = await freePort();
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(mport, HOST, () => r()));
    try {
      const r = await runSipd({ env: env(port, { SIPD_METRICS: `${HOST}:${mport}` }) });
      expectOneLineError(r, new RegExp(`metrics.*${mport}`));
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  it('SIPD_LISTEN=bogus', async () => {
    const r = await runSipd({ env: env(await freePort(), { SIPD_LISTEN: 'bogus' }) });
    expectOneLineError(r, /^sipd: config: .*(SIPD_LISTEN|listen)/);
    expect(r.stderr).toContain('bogus');
  });

  it('a config file with an unknown key', async () => {
    const file = join(dir, 'unknown-key.yaml');
    writeFileSync(file, 'registrar:\n  min_expirez: 60\n');
    const r = await runSipd({ env: env(await freePort()), args: ['--config', file] });
    expectOneLineError(r, /^sipd: config: .*min_expirez/);
  });

  it('a config value of the wrong type', async () => {
    const file = join(dir, 'bad-type.yaml');
    writeFileSync(file, 'registrar:\n  min_expires: soon\n');
    const r = await runSipd({ env: env(await freePort()), args: ['--config', file] });
    expectOneLineError(r, /^sipd: config: registrar\.min_expires: /);
  });

  it('a config file that does not exist', async () => {
    const r = await runSipd({ env: env(await freePort()), args: ['--config', join(dir, 'missing.yaml')] });
    expectOneLineError(r, /missing\.yaml/);
  });

  it('the database is unreachable (MySQL on a closed port)', async () => {
    const r = await runSipd({ env: env(await freePort(), { SIPD_DB: 'mysql://root:@127.0.0.1:1/x' }) });
    expectOneLineError(r, /database/i);
    expect(r.stderr).toMatch(/127\.0\.0\.1:1|ECONNREFUSED|connect/i);
  });
});

// ================================================================================ a running server

describe('sipd running', () => {
  let dir = '';
  let port = 0;
  let mport = 0;
  let dbEnv: Record<string, string> = {};
  let env: Record<string, string> = {};
  let config = '';
  let sipd: SipdProcess | undefined;
  let client: SipClient;
  const user = `alice${randomBytes(2).toString('hex')}`;
  const password = `pw-${randomBytes(9).toString('hex')}`;
  /** every secret the REGISTER exchange involved: none may appear in the logs. */
  const secrets: string[] = [password];
  const sent: Array<{ method: string; callId: string }> = [];
  let before = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sipd-run-'));
    port = await freePort();
    mport = await freePort();
    dbEnv = { SIPD_DB: `sqlite:${join(dir, 'sipd.sqlite')}`, SIPD_DOMAINS: HOST, SIPD_STATE_DIR: join(dir, 'state') };
    env = { ...dbEnv, SIPD_LISTEN: `udp:${HOST}:${port},tcp:${HOST}:${port}`, SIPD_METRICS: `${HOST}:${mport}`, SIPD_LOG_LEVEL: 'info' };
    // write-back location store that flushes only at shutdown: the binding survives only if SIGTERM flushes
    config = join(dir, 'sipd.yaml');
    writeFileSync(config, ['limits:', '  max_message_size: 16384', 'location:', '  db_mode: write-back', '  flush_interval_ms: 3600000', ''].join('\n'));
    const add = await sipctl(dbEnv, ['add', `${user}@${HOST}`, password]);
    expect(add.code, add.stderr).toBe(0);
    sipd = await SipdProcess.start({ env, args: ['--config', config] });
    client = await new SipClient().open();
    before = (await httpGet(mport, '/metrics')).body;
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    if (sipd?.exit === undefined) await sipd?.kill('SIGKILL').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('/healthz answers 200', async () => {
    const r = await httpGet(mport, '/healthz');
    expect(r.status).toBe(200);
  });

  it('/metrics has every family named in the README', async () => {
    const r = await httpGet(mport, '/metrics');
    expect(r.status).toBe(200);
    for (const f of METRIC_FAMILIES) expect(r.body, f).toMatch(new RegExp(`^# TYPE ${f} `, 'm'));
  });

  it('/metrics: open connections by transport and direction (sipd_transport_connections)', async () => {
    const before = (await httpGet(mport, '/metrics')).body;
    expect(before).toMatch(/^sipd_transport_connections\{transport="udp",direction="inbound"\} 0$/m);
    const base = sample(before, 'sipd_transport_connections', { transport: 'tcp', direction: 'inbound' });
    const sock = net.connect({ host: HOST, port });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    try {
      let seen = base;
      for (let i = 0; i < 100 && seen !== base + 1; i++) {
        seen = sample((await httpGet(mport, '/metrics')).body, 'sipd_transport_connections', { transport: 'tcp', direction: 'inbound' });
        if (seen !== base + 1) await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen).toBe(base + 1);
    } finally {
      sock.destroy();
    }
  });

  it('/metrics: the event-loop delay gauges are finite seconds, mean and p99 within max (plus HDR rounding)', async () => {
    // a pause so that the histogram sampled something since the previous scrape
    await new Promise((r) => setTimeout(r, 100));
    const body = (await httpGet(mport, '/metrics')).body;
    const v = (n: string): number => {
      const m = new RegExp(`^sipd_event_loop_delay_${n}_seconds (\\S+)$`, 'm').exec(body);
      expect(m, n).not.toBeNull();
      return Number(m![1]);
    };
    const [p99, max, mean] = [v('p99'), v('max'), v('mean')];
    for (const x of [p99, max, mean]) {
      expect(Number.isFinite(x)).toBe(true);
      expect(x).toBeGreaterThan(0);
    }
    // every sample is at least one 10 ms tick
    expect(max).toBeGreaterThanOrEqual(0.009);
    expect(mean).toBeLessThanOrEqual(max);
    expect(p99).toBeLessThanOrEqual(max * 1.01);
  });

  it('OPTIONS to the server: 200 with Allow', async () => {
    const callId = uniq('opt');
    const res = await client.request(options(client, port, callId), port);
    sent.push({ method: 'OPTIONS', callId });
    expect(res.status).toBe(200);
    expect(res.header('allow')).toContain('REGISTER');
  });

  it('REGISTER: 401, then 200 with the digest; a wrong password is refused', async () => {
    const callId = uniq('reg');
    const r1 = await client.request(register(client, port, user, callId, 1), port);
    expect(r1.status).toBe(401);
    const a = answerChallenge(r1, user, password);
    secrets.push(a.ha1, a.response);
    const r2 = await client.request(register(client, port, user, callId, 2, a.header), port);
    expect(r2.status).toBe(200);
    expect(r2.contacts()).toHaveLength(1);

    const badId = uniq('bad');
    const b1 = await client.request(register(client, port, user, badId, 1), port);
    expect(b1.status).toBe(401);
    const b = answerChallenge(b1, user, 'not-the-password');
    const b2 = await client.request(register(client, port, user, badId, 2, b.header), port);
    expect([401, 403]).toContain(b2.status);
    sent.push({ method: 'REGISTER', callId }, { method: 'REGISTER', callId }, { method: 'REGISTER', callId: badId }, { method: 'REGISTER', callId: badId });

  });

  it('garbage does not crash it and is counted as parse errors', async () => {
    const p0 = total((await httpGet(mport, '/metrics')).body, 'sipd_parse_errors_total');
    await client.send('this is not SIP\r\n\r\n', port);
    await client.send(randomBytes(500), port);
    // a request with a broken header: 400 back to us
    const broken = options(client, port, uniq('broken')).replace('CSeq: 1 OPTIONS', 'CSeq: x OPTIONS').replace('Content-Length: 0', 'Content-Length: 99');
    const res = await client.request(broken, port);
    expect(res.status).toBe(400);
    // random datagrams of random sizes
    for (let i = 0; i < 300; i++) await client.send(randomBytes(1 + Math.floor(Math.random() * 1400)), port);
    // an oversized datagram (limits.max_message_size is 16384 here): a SIP-looking OPTIONS with a huge header
    const big = options(client, port).replace('Content-Length: 0', `X-Padding: ${'a'.repeat(60_000)}\r\nContent-Length: 0`);
    await client.send(big, port);
    // 10 000 tiny datagrams, in bounded batches
    const tiny = [Buffer.from('x'), Buffer.from('\r\n'), Buffer.from('SIP'), Buffer.from([0xff]), Buffer.from('INVITE'), Buffer.from('A\r\n\r\n')];
    for (let batch = 0; batch < 100; batch++) {
      const sends: Array<Promise<void>> = [];
      for (let i = 0; i < 100; i++) sends.push(client.send(tiny[(batch * 100 + i) % tiny.length]!, port));
      await Promise.all(sends);
    }
    // still alive and answering
    const ok = await client.request(options(client, port), port);
    expect(ok.status).toBe(200);
    expect(sipd!.exit).toBeUndefined();
    const m = (await httpGet(mport, '/metrics')).body;
    expect(total(m, 'sipd_parse_errors_total')).toBeGreaterThan(p0 + 2);
  }, 60_000);

  it('the counters moved: requests by method, responses by code, challenges, failures, parse errors, contacts', async () => {
    const after = (await httpGet(mport, '/metrics')).body;
    const d = (name: string, labels: Record<string, string> = {}): number => sample(after, name, labels) - sample(before, name, labels);
    expect(d('sipd_requests_received_total', { method: 'OPTIONS' })).toBeGreaterThanOrEqual(2);
    expect(d('sipd_requests_received_total', { method: 'REGISTER' })).toBe(4);
    expect(d('sipd_responses_sent_total', { code: '200' })).toBeGreaterThanOrEqual(3);
    expect(d('sipd_responses_sent_total', { code: '401' })).toBeGreaterThanOrEqual(2);
    expect(d('sipd_responses_sent_total', { code: '400' })).toBeGreaterThanOrEqual(1);
    expect(d('sipd_auth_challenges_total', { kind: 'www' })).toBeGreaterThanOrEqual(2);
    expect(total(after, 'sipd_auth_failures_total') - total(before, 'sipd_auth_failures_total')).toBe(1);
    expect(total(after, 'sipd_parse_errors_total') - total(before, 'sipd_parse_errors_total')).toBeGreaterThan(0);
    expect(sample(after, 'sipd_registered_contacts')).toBe(1);
    expect(sample(after, 'sipd_registered_aors')).toBe(1);
    expect(sample(after, 'sipd_request_processing_seconds_count', { method: 'REGISTER' })).toBeGreaterThanOrEqual(4);
  });

  it('logs one info line per handled request (method, callId, from, to, src, result, ms)', () => {
    const lines = sipd!.logs().filter((l) => l.msg === 'request');
    for (const s of sent) {
      const mine = lines.filter((l) => l.callId === s.callId && l.method === s.method);
      const expected = sent.filter((x) => x.callId === s.callId && x.method === s.method).length;
      expect(mine, `${s.method} ${s.callId}`).toHaveLength(expected);
      for (const l of mine) {
        expect(l.level).toBe(30);
        expect(typeof l.from).toBe('string');
        expect(typeof l.to).toBe('string');
        expect(l.src).toBe(`udp:${HOST}:${client.port}`);
        expect(l.result === 'relayed' || l.result === 'dropped' || typeof l.result === 'number').toBe(true);
        expect(typeof l.ms).toBe('number');
      }
    }
    const reg = lines.filter((l: LogLine) => l.method === 'REGISTER').map((l) => l.result);
    expect(reg).toContain(200);
    expect(reg).toContain(401);
  });

  it('never logs the password, the HA1, the digest response or the Authorization header', () => {
    expect(secrets.length).toBe(3);
    for (const s of secrets) expect(sipd!.stdout).not.toContain(s);
    expect(sipd!.stderr).toBe('');
    expect(sipd!.stdout).not.toMatch(/Digest username=/i);
  });

  it('SIGTERM: exit 0, the registration is in the database, and a restarted sipd has it (then SIGINT: exit 0)', async () => {
    const exit = await sipd!.kill('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    for (const s of secrets) expect(sipd!.stdout).not.toContain(s);

    const ul = await sipctl(dbEnv, ['ul', 'show', `${user}@${HOST}`]);
    expect(ul.code, ul.stderr).toBe(0);
    expect(ul.stdout).toContain(`${user}@${HOST}`);
    expect(ul.stdout).toContain(`sip:${user}@${HOST}:${client.port}`);

    sipd = await SipdProcess.start({ env, args: ['--config', config] });
    expect((await httpGet(mport, '/healthz')).status).toBe(200);
    const m = (await httpGet(mport, '/metrics')).body;
    expect(sample(m, 'sipd_registered_contacts')).toBe(1);
    const ok = await client.request(options(client, port), port);
    expect(ok.status).toBe(200);

    const exit2 = await sipd.kill('SIGINT');
    expect(exit2).toEqual({ code: 0, signal: null });
    const ul2 = await sipctl(dbEnv, ['ul', 'show', `${user}@${HOST}`]);
    expect(ul2.code, ul2.stderr).toBe(0);
    expect(ul2.stdout).toContain(`sip:${user}@${HOST}:${client.port}`);
  }, 60_000);

  it('sipctl ul rm removes the registrations in the running server too (like kamctl ul rm over RPC)', async () => {
    sipd = await SipdProcess.start({ env, args: ['--config', config] });
    expect(sample((await httpGet(mport, '/metrics')).body, 'sipd_registered_contacts')).toBe(1);
    const rm = await sipctl({ ...dbEnv, SIPD_METRICS: `${HOST}:${mport}` }, ['ul', 'rm', `${user}@${HOST}`]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain('removed 1 contact');
    // the running server no longer has the binding: it is neither counted nor written back at shutdown
    expect(sample((await httpGet(mport, '/metrics')).body, 'sipd_registered_contacts')).toBe(0);
    const exit = await sipd.kill('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    const ul = await sipctl(dbEnv, ['ul', 'show', `${user}@${HOST}`]);
    expect(ul.code).not.toBe(0);
    expect(ul.stderr).toContain('no registrations');
  }, 60_000);
});
