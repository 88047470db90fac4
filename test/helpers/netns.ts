/**
 * A private network namespace for a test: only `lo` exists and is up, so whatever a process inside
 * sends to a foreign address (example.com, 192.0.2.x, 2001:db8::...) fails locally and never leaves
 * the machine. Needs root (CAP_SYS_ADMIN) and iproute2's `ip netns`.
 *
 * Every 127.0.0.0/8 address is local on `lo` inside the namespace, so a test can give each peer its
 * own 127.x.y.z address.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

function run(argv: readonly string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export interface Netns {
  readonly name: string;
  /** argv prefix running a command inside the namespace: `['ip', 'netns', 'exec', name]`. */
  readonly prefix: readonly string[];
  /** run a command inside the namespace and wait for it. */
  exec(argv: readonly string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** delete the namespace (idempotent). */
  remove(): Promise<void>;
}

/**
 * Create `sipd-test-<random>` with `lo` up. Resolves `{ ok: false, reason }` when namespaces cannot
 * be created here (not root, no iproute2, no permission in this container), so that the caller can
 * skip with that reason, or fail under CI.
 */
export async function createNetns(tag = 'sipd-test'): Promise<{ ok: true; ns: Netns } | { ok: false; reason: string }> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, reason: 'ip netns needs root (uid is not 0)' };
  const name = `${tag}-${randomBytes(4).toString('hex')}`;
  const add = await run(['ip', 'netns', 'add', name]);
  if (add.code !== 0) return { ok: false, reason: `ip netns add failed: ${(add.stderr || add.stdout).trim() || `exit ${add.code}`}` };
  let removed = false;
  const ns: Netns = {
    name,
    prefix: ['ip', 'netns', 'exec', name],
    exec: (argv, timeoutMs) => run(['ip', 'netns', 'exec', name, ...argv], timeoutMs),
    async remove() {
      if (removed) return;
      removed = true;
      await run(['ip', 'netns', 'del', name]);
    },
  };
  const up = await ns.exec(['ip', 'link', 'set', 'lo', 'up']);
  if (up.code !== 0) {
    await ns.remove();
    return { ok: false, reason: `ip link set lo up failed in ${name}: ${up.stderr.trim()}` };
  }
  // the namespace must really be isolated: lo only, and no route off the machine
  const links = await ns.exec(['ip', '-o', 'link', 'show']);
  const names = links.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => /^\d+:\s*([^:@]+)/.exec(l)?.[1]);
  if (links.code !== 0 || names.length !== 1 || names[0] !== 'lo') {
    await ns.remove();
    return { ok: false, reason: `namespace ${name} is not lo-only: ${links.stdout.trim()}` };
  }
  return { ok: true, ns };
}

/** Can this process create namespaces? (synchronous, for `describe.runIf`): root and a working `ip netns`. */
export function netnsAvailable(): { ok: true } | { ok: false; reason: string } {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, reason: 'ip netns needs root (uid is not 0)' };
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore', timeout: 10_000 });
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `ip netns is unavailable: ${(e as Error).message.split('\n')[0]}` };
  }
}
