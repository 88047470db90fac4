/** src/config.ts: state_dir / admin settings and the secret files (auth.secret, admin.token). */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminTokenForClient, ConfigError, loadConfig, loadOrCreateSecretFile, readSecretFile, resolveSecrets } from '../../src/config.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = join(ROOT, 'test', 'helpers', 'secret-file-child.ts');

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sipd-secrets-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fresh = (): string => join(dir, `case-${++n}`);
const mode = (p: string): number => statSync(p).mode & 0o777;

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config: state_dir and admin', () => {
  it('defaults: state_dir ./data, no admin token, no extra hosts', () => {
    const c = loadConfig({ env: {} });
    expect(c.state_dir).toBe('./data');
    expect(c.admin).toEqual({ token: null, allowed_hosts: [] });
  });
  it('SIPD_STATE_DIR and SIPD_ADMIN_TOKEN override; an empty SIPD_ADMIN_TOKEN counts as unset', () => {
    const c = loadConfig({ env: { SIPD_STATE_DIR: '/var/lib/sipd', SIPD_ADMIN_TOKEN: 'tok-0123456789abcdef' } });
    expect(c.state_dir).toBe('/var/lib/sipd');
    expect(c.admin.token).toBe('tok-0123456789abcdef');
    expect(loadConfig({ env: { SIPD_ADMIN_TOKEN: '' } }).admin.token).toBeNull();
  });
  it('a short or spaced token is a one-line error naming the key and the variable', () => {
    expect(errorOf(() => loadConfig({ env: { SIPD_ADMIN_TOKEN: 'short' } })).message).toBe(
      'config: admin.token: must be at least 16 printable characters without spaces (from SIPD_ADMIN_TOKEN)',
    );
    const f = join(dir, 'spaced.yaml');
    writeFileSync(f, 'admin:\n  token: "has spaces in it, sixteen+"\n  allowed_hosts: [Sipd.Example:9090]\n');
    expect(errorOf(() => loadConfig({ file: f, env: {} })).message).toMatch(/^config: admin\.token: must be at least 16 printable/);
    writeFileSync(f, 'admin:\n  allowed_hosts: [Sipd.Example:9090]\n');
    expect(loadConfig({ file: f, env: {} }).admin.allowed_hosts).toEqual(['sipd.example:9090']);
  });
});

describe('loadOrCreateSecretFile', () => {
  it('creates the directory (0700) and the file (0600) with the generated value, then reuses it', () => {
    const d = fresh();
    const p = join(d, 'sub', 'auth.secret');
    const a = loadOrCreateSecretFile(p, () => 'a'.repeat(64));
    expect(a).toEqual({ value: 'a'.repeat(64), created: true });
    expect(mode(p)).toBe(0o600);
    expect(mode(join(d, 'sub'))).toBe(0o700);
    expect(readFileSync(p, 'latin1')).toBe(`${'a'.repeat(64)}\n`);
    const b = loadOrCreateSecretFile(p, () => 'b'.repeat(64));
    expect(b).toEqual({ value: 'a'.repeat(64), created: false });
    // no temporary file left behind
    expect(readdirSync(join(d, 'sub'))).toEqual(['auth.secret']);
  });
  it('refuses a file readable by group or others with one line naming it and the fix (the content is not shown)', () => {
    const p = join(fresh(), 'admin.token');
    loadOrCreateSecretFile(p, () => 'c'.repeat(64));
    chmodSync(p, 0o644);
    const e = errorOf(() => loadOrCreateSecretFile(p, () => 'd'.repeat(64)));
    expect(e.message).toBe(`config: state_dir: ${p} is accessible by group or others (mode 0644); run chmod 600 ${p}`);
    expect(e.message).not.toContain('cccc');
    chmodSync(p, 0o640);
    expect(() => readSecretFile(p)).toThrow(/mode 0640/);
    chmodSync(p, 0o600);
    expect(readSecretFile(p)).toBe('c'.repeat(64));
  });
  it('refuses an empty or short file instead of using it', () => {
    const p = join(fresh(), 'admin.token');
    loadOrCreateSecretFile(p, () => 'e'.repeat(64));
    writeFileSync(p, '\n', { mode: 0o600 });
    expect(errorOf(() => loadOrCreateSecretFile(p, () => 'f'.repeat(64))).message).toMatch(/does not hold a valid secret.*delete it/);
  });
  it('a directory that cannot be created is a one-line error', () => {
    const blocker = join(fresh());
    writeFileSync(blocker, 'not a directory');
    expect(errorOf(() => loadOrCreateSecretFile(join(blocker, 'x', 'auth.secret'), () => 'g'.repeat(64))).message).toMatch(/^config: state_dir: cannot (read|create) .*: (ENOTDIR|EEXIST)$/);
  });
  it('8 processes creating the same file at once all get the same value; exactly one created it', async () => {
    const p = join(fresh(), 'auth.secret');
    const startAt = Date.now() + 3000;
    const runs = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          new Promise<{ value: string; created: boolean }>((resolve, reject) => {
            execFile(process.execPath, ['--import', 'tsx', CHILD, p, String(startAt)], { cwd: ROOT, timeout: 30_000 }, (err, stdout, stderr) => {
              if (err) reject(new Error(`${err.message}\n${stderr}`));
              else resolve(JSON.parse(stdout) as { value: string; created: boolean });
            });
          }),
      ),
    );
    const values = new Set(runs.map((r) => r.value));
    expect(values.size).toBe(1);
    expect(runs.filter((r) => r.created)).toHaveLength(1);
    expect(readSecretFile(p)).toBe([...values][0]);
    expect(mode(p)).toBe(0o600);
  }, 60_000);
});

describe('resolveSecrets / adminTokenForClient', () => {
  const counter = (): ((k: number) => Buffer) => {
    let i = 0;
    return (k) => Buffer.alloc(k, ++i);
  };

  it('unset secrets are generated into the state dir (hex of 32 random bytes) and reused at the next start', () => {
    const state = fresh();
    const c = loadConfig({ env: { SIPD_STATE_DIR: state } });
    const s1 = resolveSecrets(c, counter());
    expect(s1.authSecret).toBe('01'.repeat(32));
    expect(s1.admin).toEqual({ value: '02'.repeat(32), explicit: false });
    expect(mode(join(state, 'auth.secret'))).toBe(0o600);
    expect(mode(join(state, 'admin.token'))).toBe(0o600);
    const s2 = resolveSecrets(c, counter());
    expect(s2).toEqual(s1);
    expect(adminTokenForClient(c)).toEqual({ token: '02'.repeat(32) });
  });
  it('configured secrets are used as they are and no file is written', () => {
    const state = fresh();
    const f = join(dir, `explicit-${n}.yaml`);
    writeFileSync(f, 'auth:\n  secret: configured-secret-0123\n');
    const c = loadConfig({ file: f, env: { SIPD_STATE_DIR: state, SIPD_ADMIN_TOKEN: 'env-token-0123456789' } });
    expect(resolveSecrets(c, counter())).toEqual({ authSecret: 'configured-secret-0123', admin: { value: 'env-token-0123456789', explicit: true } });
    expect(existsSync(state)).toBe(false);
    expect(adminTokenForClient(c)).toEqual({ token: 'env-token-0123456789' });
  });
  it('no metrics endpoint: no admin token and no admin.token file', () => {
    const state = fresh();
    const c = loadConfig({ env: { SIPD_STATE_DIR: state, SIPD_METRICS: 'off' } });
    expect(resolveSecrets(c, counter()).admin).toBeNull();
    expect(readdirSync(state)).toEqual(['auth.secret']);
  });
  it('sipctl side: a missing or unsafe token file is a reason, not an exception, and is never created', () => {
    const state = fresh();
    const c = loadConfig({ env: { SIPD_STATE_DIR: state } });
    expect(adminTokenForClient(c)).toEqual({ problem: `no admin token (admin.token and SIPD_ADMIN_TOKEN unset, ${join(state, 'admin.token')} missing)` });
    expect(existsSync(state)).toBe(false);
    resolveSecrets(c);
    chmodSync(join(state, 'admin.token'), 0o604);
    const r = adminTokenForClient(c);
    expect('problem' in r && r.problem).toMatch(/accessible by group or others \(mode 0604\)/);
  });
});
