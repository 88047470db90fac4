/**
 * sipd and sipctl as real subprocesses (`node --import tsx src/cli/...`), optionally inside a
 * network namespace (argv prefix `ip netns exec NS`). Every wait is bounded by a timeout.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SIPD = join(ROOT, 'src', 'cli', 'sipd.ts');
export const SIPCTL = join(ROOT, 'src', 'cli', 'sipctl.ts');

/** The environment of this process without any SIPD_* variable (so that only what a test sets applies). */
export function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SIPD_')) env[k] = v;
  return env;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** One JSON log line of sipd (pino). */
export type LogLine = Record<string, unknown> & { level?: number; msg?: string };

function spawnArgv(prefix: readonly string[], script: string, args: readonly string[]): { cmd: string; argv: string[] } {
  const nodeArgv = [process.execPath, '--import', 'tsx', script, ...args];
  const all = [...prefix, ...nodeArgv];
  return { cmd: all[0]!, argv: all.slice(1) };
}

/** A random port on `host` that is free for both UDP and TCP at the time of the call. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    const udpOk = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => {
        s.close();
        resolve(false);
      });
      s.bind(port, host, () => s.close(() => resolve(true)));
    });
    if (!udpOk) continue;
    const tcpOk = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, host, () => srv.close(() => resolve(true)));
    });
    if (tcpOk) return port;
  }
  throw new Error('no free port found in 50 attempts');
}

export interface SipdOptions {
  env: Record<string, string>;
  args?: readonly string[];
  /** argv prefix, e.g. `['ip', 'netns', 'exec', ns]`. */
  prefix?: readonly string[];
  /** how long to wait for the "sipd started" line (ms). */
  startTimeoutMs?: number;
}

export class SipdProcess {
  stdout = '';
  stderr = '';
  exit: Exit | undefined;
  private readonly exited: Promise<Exit>;
  private waiters: Array<() => void> = [];

  private constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      this.stdout += d;
      this.notify();
    });
    child.stderr!.on('data', (d: string) => {
      this.stderr += d;
      this.notify();
    });
    this.exited = new Promise<Exit>((resolve) => {
      child.once('close', (code, signal) => {
        this.exit = { code, signal };
        this.notify();
        resolve(this.exit);
      });
    });
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Spawn sipd; resolves once it logged "sipd started", rejects if it exits or times out first. */
  static async start(opts: SipdOptions): Promise<SipdProcess> {
    const p = SipdProcess.spawn(opts);
    try {
      await p.waitFor(() => p.logs().some((l) => l.msg === 'sipd started'), opts.startTimeoutMs ?? 20_000, 'sipd started');
    } catch (e) {
      await p.kill('SIGKILL');
      throw new Error(`${(e as Error).message}\nstderr: ${p.stderr}\nstdout: ${p.stdout.slice(-2000)}`);
    }
    return p;
  }

  /** Spawn without waiting for anything (start-up failure tests). */
  static spawn(opts: SipdOptions): SipdProcess {
    const { cmd, argv } = spawnArgv(opts.prefix ?? [], SIPD, opts.args ?? []);
    const child = spawn(cmd, argv, { cwd: ROOT, env: { ...baseEnv(), ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    return new SipdProcess(child);
  }

  /** Parsed JSON lines of stdout (non-JSON lines are skipped). */
  logs(): LogLine[] {
    const out: LogLine[] = [];
    for (const line of this.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as LogLine);
      } catch {
        /* a partial last line */
      }
    }
    return out;
  }

  /** Wait until `pred()` holds (checked on every output chunk and exit), at most `timeoutMs`. */
  waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const deadline = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const check = (): void => {
        if (pred()) {
          clearTimeout(deadline);
          resolve();
        } else if (this.exit !== undefined) {
          clearTimeout(deadline);
          reject(new Error(`sipd exited (${JSON.stringify(this.exit)}) while waiting for ${what}`));
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Wait for the process to exit (bounded); SIGKILL after the timeout, then reject. */
  async waitExit(timeoutMs = 20_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    });
    const r = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (r === 'timeout') {
      this.child.kill('SIGKILL');
      await this.exited;
      throw new Error(`sipd did not exit within ${timeoutMs} ms`);
    }
    return r;
  }

  /** Send a signal and wait for exit. */
  async kill(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<Exit> {
    if (this.exit !== undefined) return this.exit;
    this.child.kill(signal);
    return this.waitExit(timeoutMs);
  }
}

/** Run sipd to completion (it is expected to fail at start-up), bounded by `timeoutMs`. */
export function runSipd(opts: SipdOptions & { timeoutMs?: number }): Promise<Run> {
  const { cmd, argv } = spawnArgv(opts.prefix ?? [], SIPD, opts.args ?? []);
  return new Promise((resolve) => {
    execFile(cmd, argv, { cwd: ROOT, env: { ...baseEnv(), ...opts.env }, timeout: opts.timeoutMs ?? 30_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Run sipctl with the given environment, bounded by `timeoutMs`. */
export function sipctl(env: Record<string, string>, args: readonly string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', SIPCTL, ...args], { cwd: ROOT, env: { ...baseEnv(), ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
