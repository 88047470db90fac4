/**
 * Black-box e2e harness: start a SIP server (sipd, or an already running
 * Kamailio for side-by-side runs), create subscribers with the operator tools,
 * and drive it with real SIPp, returning SIPp's own counters.
 *
 * Environment:
 *   E2E_TARGET=sipd (default) | kamailio
 *   E2E_KAMAILIO=127.0.0.1:5070   address of a running Kamailio (bench/sipp/kamailio/kamailio-e2e.sh start)
 *   E2E_DOMAIN                    SIP domain / digest realm (default 127.0.0.1 for sipd, kamailio.test for Kamailio)
 *   E2E_SIPD_DB                   SIPD_DB for sipd (default sqlite in a fresh temp dir per server)
 *   E2E_KEEP=1                    keep the temp dir with SIPp stat/screen/error files
 *   E2E_TRACE=1                   also write SIPp message traces (-trace_msg)
 *   SIPP=/path/to/sipp            SIPp binary (default: sipp on PATH)
 *
 * Everything binds to 127.0.0.1; every wait is bounded in count and time.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callsCsv, usersCsv, type Credential } from '../../bench/sipp/csv.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const SCENARIO_DIR = join(REPO_ROOT, 'bench/sipp');
export const HOST = '127.0.0.1';

export type TargetKind = 'sipd' | 'kamailio';
export const TARGET: TargetKind = process.env.E2E_TARGET === 'kamailio' ? 'kamailio' : 'sipd';
export const DOMAIN = process.env.E2E_DOMAIN ?? (TARGET === 'kamailio' ? 'kamailio.test' : HOST);

// ---------------------------------------------------------------- SIPp lookup

function findSipp(): string | undefined {
  const candidate = process.env.SIPP ?? 'sipp';
  const r = spawnSync(candidate, ['-v'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error) return undefined;
  return /SIPp v\d/.test(`${r.stdout}${r.stderr}`) ? candidate : undefined;
}

export const SIPP_BIN = findSipp();
/** Why the e2e suite cannot run here, or undefined when it can. */
export const SIPP_MISSING_REASON = SIPP_BIN
  ? undefined
  : `SIPp not found (${process.env.SIPP ?? 'sipp'}); install it with: apt-get install -y sip-tester`;
/**
 * Skip (with a printed reason) when SIPp is missing on a developer machine;
 * on CI a missing SIPp is a failure: the suite runs and requireSipp() throws.
 */
export const SKIP_E2E = SIPP_MISSING_REASON !== undefined && !process.env.CI;
if (SKIP_E2E) console.warn(`[e2e] skipping SIPp end-to-end tests: ${SIPP_MISSING_REASON}`);

export function requireSipp(): string {
  if (!SIPP_BIN) throw new Error(`${SIPP_MISSING_REASON} (CI is set, so this is a failure, not a skip)`);
  return SIPP_BIN;
}

// ---------------------------------------------------------------- ports

const usedPorts = new Set<number>();

async function udpFree(port: number): Promise<boolean> {
  const sock = createSocket('udp4');
  try {
    await new Promise<void>((res, rej) => {
      sock.once('error', rej);
      sock.bind(port, HOST, () => res());
    });
    return true;
  } catch {
    return false;
  } finally {
    try {
      sock.close();
    } catch {
      /* not bound */
    }
  }
}

async function tcpFree(port: number): Promise<boolean> {
  const srv = createServer();
  try {
    await new Promise<void>((res, rej) => {
      srv.once('error', rej);
      srv.listen(port, HOST, () => res());
    });
    return true;
  } catch {
    return false;
  } finally {
    await new Promise<void>((res) => srv.close(() => res()));
  }
}

/** A random port in 20000-40000 that is free for both UDP and TCP on 127.0.0.1. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    if (usedPorts.has(port)) continue;
    if ((await udpFree(port)) && (await tcpFree(port))) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('no free UDP+TCP port found in 20000-40000 after 200 attempts');
}

// ---------------------------------------------------------------- processes

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion with a kill timer. */
export async function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs: number; cwd?: string }): Promise<RunResult> {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout = (stdout + d).slice(-200_000)));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-200_000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
  try {
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    return { code, signal, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Run async jobs with a concurrency limit. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

// ---------------------------------------------------------------- targets

export interface Target {
  kind: TargetKind;
  host: string;
  /** SIP port, same number for UDP and TCP */
  port: number;
  domain: string;
  /** directory for SIPp files of this target's tests */
  workDir: string;
  /** sipd's stderr so far (empty for Kamailio) */
  logs(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** subscribers to create before the server starts (sipd) or before the tests (Kamailio) */
  users: readonly Credential[];
  /** max concurrent sipctl processes (default 4) */
  sipctlConcurrency?: number;
}

/** Unique per test run, so that repeated runs against one Kamailio never share AORs. */
export const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/** Test user names carry the run id: `u<run>x<name>`. */
export function testUser(name: string, password = `pw-${name}`): Credential {
  return { user: `u${RUN_ID}x${name}`, password };
}

function describeExit(child: ChildProcess): string {
  return child.exitCode !== null ? `exit code ${child.exitCode}` : `signal ${child.signalCode}`;
}

async function waitHealthy(url: string, child: ChildProcess, stderr: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (let attempt = 0; attempt < 1000 && Date.now() < deadline; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`sipd exited before becoming healthy (${describeExit(child)}); stderr:\n${stderr().slice(-4000)}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
      lastError = `HTTP ${res.status}`;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sipd not healthy at ${url} within ${timeoutMs} ms (${lastError}); stderr:\n${stderr().slice(-4000)}`);
}

async function startSipd(opts: StartOptions): Promise<Target> {
  const workDir = mkdtempSync(join(tmpdir(), 'sipd-e2e-'));
  const port = await freePort();
  const mport = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SIPD_LISTEN: `udp:${HOST}:${port},tcp:${HOST}:${port}`,
    SIPD_DB: process.env.E2E_SIPD_DB ?? `sqlite:${join(workDir, 'sipd.sqlite')}`,
    SIPD_DOMAINS: DOMAIN,
    SIPD_METRICS: `${HOST}:${mport}`,
    SIPD_LOG_LEVEL: process.env.SIPD_LOG_LEVEL ?? 'warn',
  };
  const node = process.execPath;

  // Subscribers first, with the operator tool (one process per user: the honest path).
  const t0 = Date.now();
  await pool(opts.users, opts.sipctlConcurrency ?? 4, async (u) => {
    const r = await run(node, ['--import', 'tsx', 'src/cli/sipctl.ts', 'add', `${u.user}@${DOMAIN}`, u.password], { env, timeoutMs: 60_000 });
    if (r.code !== 0) {
      throw new Error(`sipctl add ${u.user}@${DOMAIN} failed (${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
    }
  });
  if (opts.users.length > 0) console.info(`[e2e] sipctl add x${opts.users.length}: ${Date.now() - t0} ms`);

  const child = spawn(node, ['--import', 'tsx', 'src/cli/sipd.ts'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-500_000)));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-500_000)));
  const exited = once(child, 'exit');
  try {
    await waitHealthy(`http://${HOST}:${mport}/healthz`, child, () => stderr, 30_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }

  return {
    kind: 'sipd',
    host: HOST,
    port,
    domain: DOMAIN,
    workDir,
    logs: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killTimer);
      }
      if (!process.env.E2E_KEEP) rmSync(workDir, { recursive: true, force: true });
      else console.info(`[e2e] kept ${workDir}`);
    },
  };
}

async function startKamailio(opts: StartOptions): Promise<Target> {
  const [host = HOST, portStr = '5070'] = (process.env.E2E_KAMAILIO ?? `${HOST}:5070`).split(':');
  const workDir = mkdtempSync(join(tmpdir(), 'kamailio-e2e-'));
  const script = join(SCENARIO_DIR, 'kamailio/kamailio-e2e.sh');
  const env = { ...process.env, KAM_DOMAIN: DOMAIN };
  await pool(opts.users, 4, async (u) => {
    const r = await run('sh', [script, 'add', `${u.user}@${DOMAIN}`, u.password], { env, timeoutMs: 30_000 });
    if (r.code !== 0 && !/already exists/.test(r.stdout + r.stderr)) {
      throw new Error(`kamctl add ${u.user}@${DOMAIN} failed: ${r.stderr.trim() || r.stdout.trim()}`);
    }
  });
  return {
    kind: 'kamailio',
    host,
    port: Number(portStr),
    domain: DOMAIN,
    workDir,
    logs: () => '',
    async stop() {
      if (!process.env.E2E_KEEP) rmSync(workDir, { recursive: true, force: true });
      else console.info(`[e2e] kept ${workDir}`);
    },
  };
}

export async function startTarget(opts: StartOptions): Promise<Target> {
  requireSipp();
  return TARGET === 'kamailio' ? startKamailio(opts) : startSipd(opts);
}

// ---------------------------------------------------------------- SIPp

export interface SippOptions {
  /** scenario file name in bench/sipp, e.g. 'reg.xml' */
  scenario: string;
  /** a label for the output files */
  name: string;
  /** local SIP port of this SIPp instance (default: a fresh free port) */
  localPort?: number;
  transport?: 'u1' | 't1';
  /** -m: stop after this many calls */
  calls: number;
  /** -r calls per second (UAC only) */
  rate?: number;
  /** injection file contents */
  inf?: string;
  /** -key name value pairs */
  keys?: Record<string, string>;
  /** -d: pause duration in ms for <pause/> */
  durationMs?: number;
  /** -lost: percentage of packets lost */
  lost?: number;
  /** -timeout in seconds (default 30); the process is killed 15 s later */
  timeoutSec?: number;
  extraArgs?: string[];
}

export interface SippResult {
  exitCode: number | null;
  successful: number;
  failed: number;
  retransmissions: number;
  /** calls created: outgoing for a UAC, incoming for a UAS */
  created: number;
  /** a readable dump for assertion messages */
  report: string;
  localPort: number;
}

/** Parse SIPp's -stf CSV (';'-separated, last line = final cumulative counters). */
export function parseStatCsv(text: string): Record<string, string> {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length < 2) throw new Error('SIPp stat file has no data line');
  const header = lines[0]!.split(';');
  const last = lines[lines.length - 1]!.split(';');
  const out: Record<string, string> = {};
  header.forEach((h, i) => {
    if (h) out[h] = last[i] ?? '';
  });
  return out;
}

function num(stats: Record<string, string>, key: string): number {
  const v = stats[key];
  if (v === undefined || v === '' || Number.isNaN(Number(v))) throw new Error(`SIPp stat column ${key} missing (got ${JSON.stringify(v)})`);
  return Number(v);
}

/** Cross-check from the screen file ("Successful call | periodic | cumulative"). */
export function parseScreen(text: string): { successful?: number; failed?: number } {
  const pick = (label: string) => {
    const m = new RegExp(`${label}\\s*\\|\\s*\\d+\\s*\\|\\s*(\\d+)`).exec(text);
    return m ? Number(m[1]) : undefined;
  };
  return { successful: pick('Successful call'), failed: pick('Failed call') };
}

function readIf(path: string, max = 6000): string {
  return existsSync(path) ? readFileSync(path, 'utf8').slice(-max) : '';
}

export async function runSipp(target: Target, o: SippOptions): Promise<SippResult> {
  const sipp = requireSipp();
  const localPort = o.localPort ?? (await freePort());
  const base = join(target.workDir, `${o.name}-${localPort}-${Date.now().toString(36)}`);
  const timeoutSec = o.timeoutSec ?? 30;
  const args = [
    `${target.host}:${target.port}`,
    '-sf', join(SCENARIO_DIR, o.scenario),
    '-i', HOST,
    '-p', String(localPort),
    '-t', o.transport ?? 'u1',
    '-m', String(o.calls),
    '-l', String(Math.max(o.calls, 1)),
    '-timeout', `${timeoutSec}s`,
    '-timeout_error',
    '-trace_stat', '-stf', `${base}.stat.csv`, '-fd', '1',
    '-trace_screen', '-screen_file', `${base}.screen`,
    '-trace_err', '-error_file', `${base}.err`,
  ];
  if (o.rate !== undefined) args.push('-r', String(o.rate), '-rp', '1000');
  if (o.inf !== undefined) {
    writeFileSync(`${base}.inf.csv`, o.inf);
    args.push('-inf', `${base}.inf.csv`);
  }
  for (const [k, v] of Object.entries(o.keys ?? {})) args.push('-key', k, v);
  if (o.durationMs !== undefined) args.push('-d', String(o.durationMs));
  if (o.lost !== undefined) args.push('-lost', String(o.lost));
  if (process.env.E2E_TRACE) args.push('-trace_msg', '-message_file', `${base}.msg`);
  args.push(...(o.extraArgs ?? []));

  const r = await run(sipp, args, { timeoutMs: (timeoutSec + 15) * 1000 });
  const statText = readIf(`${base}.stat.csv`, 1_000_000);
  const screen = readIf(`${base}.screen`, 20_000);
  const errors = readIf(`${base}.err`, 4000);
  const report = [
    `sipp ${args.join(' ')}`,
    `exit ${r.code ?? r.signal}`,
    screen && `--- screen\n${screen.slice(-5000)}`,
    errors && `--- errors (tail)\n${errors}`,
    r.stderr && `--- stderr\n${r.stderr.slice(-2000)}`,
    target.logs() && `--- ${target.kind} stderr (tail)\n${target.logs().slice(-3000)}`,
  ]
    .filter(Boolean)
    .join('\n');
  if (!statText) throw new Error(`SIPp wrote no stat file\n${report}`);
  const stats = parseStatCsv(statText);
  const successful = num(stats, 'SuccessfulCall(C)');
  const failed = num(stats, 'FailedCall(C)');
  const fromScreen = parseScreen(screen);
  if (fromScreen.successful !== undefined && fromScreen.successful !== successful) {
    throw new Error(`SIPp stat file (${successful}) and screen (${fromScreen.successful}) disagree on successful calls\n${report}`);
  }
  return {
    exitCode: r.code,
    successful,
    failed,
    retransmissions: num(stats, 'Retransmissions(C)'),
    created: num(stats, 'OutgoingCall(C)') + num(stats, 'IncomingCall(C)'),
    report,
    localPort,
  };
}

// ---------------------------------------------------------------- common flows

export { callsCsv, usersCsv };
export type { Credential };

/** REGISTER one user from a given local port/transport (the contact is that port). */
export async function register(target: Target, user: Credential, localPort: number, transport: 'u1' | 't1' = 'u1', expires = 300): Promise<SippResult> {
  return runSipp(target, {
    scenario: 'reg.xml',
    name: `reg-${user.user}`,
    localPort,
    transport,
    calls: 1,
    inf: usersCsv([user], target.domain),
    keys: { expires: String(expires) },
    timeoutSec: 15,
  });
}

/** A one-line summary for logs / the README table. */
export function summary(label: string, r: SippResult): string {
  return `${label}: exit=${r.exitCode} successful=${r.successful} failed=${r.failed} retrans=${r.retransmissions}`;
}
