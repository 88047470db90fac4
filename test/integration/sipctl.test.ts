/**
 * sipctl as a real subprocess (`node --import tsx src/cli/sipctl.ts ...`)
 * against SQLite and MariaDB, checking the rows it leaves behind.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStores } from '../../src/store/index.js';
import type { DbUrl } from '../../src/config.js';
import { createTestDatabase, describeMysql, type TestDatabase } from '../helpers/mysql.js';
import { freePort } from '../helpers/sipd-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SIPCTL = join(ROOT, 'src', 'cli', 'sipctl.ts');
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SIPD_')) env[k] = v;
  return env;
}

function sipctl(dbUrl: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', SIPCTL, ...args],
      { cwd: ROOT, env: { ...baseEnv(), SIPD_DB: dbUrl, SIPD_DOMAINS: 'example.com,127.0.0.1', ...extraEnv }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function expectOneLineError(r: Run, pattern: RegExp, code?: number): void {
  if (code !== undefined) expect(r.code).toBe(code);
  else expect(r.code).not.toBe(0);
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^sipctl: /);
  expect(lines[0]).toMatch(pattern);
}

interface SubscriberRow {
  username: string;
  domain: string;
  password: string;
  ha1: string;
  ha1b: string;
}

interface Target {
  name: string;
  mysql: boolean;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  url(): string;
  db(): DbUrl;
  rows(): Promise<SubscriberRow[]>;
}

function sqliteTarget(): Target {
  let dir = '';
  const path = (): string => join(dir, 'sub', 'sipd.sqlite');
  return {
    name: 'sqlite',
    mysql: false,
    async setup() {
      dir = mkdtempSync(join(tmpdir(), 'sipd-sipctl-'));
    },
    async teardown() {
      rmSync(dir, { recursive: true, force: true });
    },
    url: () => `sqlite:${path()}`,
    db: () => ({ kind: 'sqlite', path: path() }),
    async rows() {
      const db = new Database(path(), { readonly: true });
      try {
        return db.prepare<[], SubscriberRow>('SELECT username, domain, password, ha1, ha1b FROM subscriber ORDER BY username').all();
      } finally {
        db.close();
      }
    },
  };
}

function mysqlTarget(): Target {
  let tdb: TestDatabase | null = null;
  return {
    name: 'mysql',
    mysql: true,
    async setup() {
      tdb = await createTestDatabase();
    },
    async teardown() {
      await tdb?.drop();
    },
    url: () => tdb!.url,
    db: () => tdb!.db,
    async rows() {
      const rows = await tdb!.query('SELECT username, domain, password, ha1, ha1b FROM subscriber ORDER BY username');
      return rows.map((r) => ({
        username: String(r.username),
        domain: String(r.domain),
        password: String(r.password),
        ha1: String(r.ha1),
        ha1b: String(r.ha1b),
      }));
    },
  };
}

for (const target of [sqliteTarget(), mysqlTarget()]) {
  (target.mysql ? describeMysql : describe)(`sipctl against ${target.name}`, { timeout: 60_000 }, () => {
    beforeAll(() => target.setup());
    afterAll(() => target.teardown());

    if (target.mysql) {
      it('on a fresh MySQL database, add asks for db init (exit 3, one line)', async () => {
        expectOneLineError(await sipctl(target.url(), ['add', 'alice@example.com', 'pw']), /sipctl db init/, 3);
      });
    }

    it('db init creates the schema and is idempotent', async () => {
      for (let i = 0; i < 2; i++) {
        const r = await sipctl(target.url(), ['db', 'init']);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/^schema ready/);
      }
    });

    it('add stores password, ha1 and ha1b like kamctl', async () => {
      const r = await sipctl(target.url(), ['add', 'alice@Example.COM', 'w0nderland']);
      expect(r).toEqual({ code: 0, stdout: 'added alice@example.com\n', stderr: '' });
      expect(await sipctl(target.url(), ['add', 'bob@example.com', 'b0b pass'])).toMatchObject({ code: 0 });
      expect(await target.rows()).toEqual([
        {
          username: 'alice',
          domain: 'example.com',
          password: 'w0nderland',
          ha1: md5('alice:example.com:w0nderland'),
          ha1b: md5('alice@example.com:example.com:w0nderland'),
        },
        {
          username: 'bob',
          domain: 'example.com',
          password: 'b0b pass',
          ha1: md5('bob:example.com:b0b pass'),
          ha1b: md5('bob@example.com:example.com:b0b pass'),
        },
      ]);
    });

    it('show lists subscribers without passwords unless asked', async () => {
      expect(await sipctl(target.url(), ['show'])).toEqual({ code: 0, stdout: 'alice@example.com\nbob@example.com\n', stderr: '' });
      const one = await sipctl(target.url(), ['show', 'alice@example.com']);
      expect(one).toEqual({ code: 0, stdout: 'alice@example.com\n', stderr: '' });
      const pw = await sipctl(target.url(), ['show', '--show-passwords', 'alice@example.com']);
      expect(pw).toEqual({ code: 0, stdout: 'alice@example.com\tw0nderland\n', stderr: '' });
    });

    it('passwd updates password, ha1 and ha1b', async () => {
      expect(await sipctl(target.url(), ['passwd', 'alice@example.com', 'n3w'])).toMatchObject({ code: 0, stderr: '' });
      const alice = (await target.rows()).find((r) => r.username === 'alice');
      expect(alice).toEqual({
        username: 'alice',
        domain: 'example.com',
        password: 'n3w',
        ha1: md5('alice:example.com:n3w'),
        ha1b: md5('alice@example.com:example.com:n3w'),
      });
    });

    it('error cases exit non-zero with one line on stderr', async () => {
      expectOneLineError(await sipctl(target.url(), ['add', 'alice@example.com', 'again']), /already exists/, 1);
      expectOneLineError(await sipctl(target.url(), ['add', 'not-an-aor', 'pw']), /malformed AOR "not-an-aor"/, 2);
      expectOneLineError(await sipctl(target.url(), ['add', 'a b@example.com', 'pw']), /malformed AOR/, 2);
      expectOneLineError(await sipctl(target.url(), ['add', 'carol@', 'pw']), /malformed AOR/, 2);
      expectOneLineError(await sipctl(target.url(), ['add', 'carol@example.com', '']), /password must not be empty/, 2);
      expectOneLineError(await sipctl(target.url(), ['passwd', 'carol@example.com', '']), /password must not be empty/, 2);
      expectOneLineError(await sipctl(target.url(), ['rm', 'carol@example.com']), /no such subscriber carol@example\.com/, 1);
      expectOneLineError(await sipctl(target.url(), ['passwd', 'carol@example.com', 'x']), /no such subscriber/, 1);
      expectOneLineError(await sipctl(target.url(), ['show', 'carol@example.com']), /no such subscriber/, 1);
      expectOneLineError(await sipctl(target.url(), ['add', 'carol@example.com']), /missing required argument/, 2);
      // a domain sipd does not serve: the subscriber could never authenticate (realm = served domain)
      expectOneLineError(await sipctl(target.url(), ['add', 'carol@other.example', 'pw']), /other\.example is not a domain this sipd serves \(example\.com, 127\.0\.0\.1\)/, 2);
      // '%' is an escape in SIP URIs: the registrar unescapes the user part, so such a name could never match
      expectOneLineError(await sipctl(target.url(), ['add', 'car%6Fl@example.com', 'pw']), /user part must not contain "%"/, 2);
      expect((await target.rows()).map((r) => r.username)).toEqual(['alice', 'bob']);
    });

    it('ul show / ul rm operate on registrations in the database', async () => {
      const stores = await openStores({ db: target.db(), location: { db_mode: 'db-only' } });
      const now = Date.now();
      await stores.locations.save({
        aor: 'alice@example.com',
        username: 'alice',
        domain: 'example.com',
        contact: 'sip:alice@192.0.2.5:5062;transport=tcp',
        expires: now + 3600_000,
        q: 0.5,
        callId: 'cid-1',
        cseq: 3,
        ruid: `ruid-${now}`,
        lastModified: now,
        flags: 0,
        cflags: 0,
        userAgent: 'Phone/1',
      });
      await stores.close();

      const all = await sipctl(target.url(), ['ul', 'show']);
      expect(all.code).toBe(0);
      expect(all.stdout).toMatch(/^AOR: alice@example\.com\n {2}Contact: <sip:alice@192\.0\.2\.5:5062;transport=tcp> expires=\d+s q=0\.5 callid=cid-1 cseq=3 ua="Phone\/1"\n$/);
      const one = await sipctl(target.url(), ['ul', 'show', 'alice@example.com']);
      // The remaining lifetime is wall-clock dependent; compare the rest.
      const strip = (x: string): string => x.replace(/expires=\d+s/, 'expires=Ns');
      expect(strip(one.stdout)).toBe(strip(all.stdout));
      expectOneLineError(await sipctl(target.url(), ['ul', 'show', 'bob@example.com']), /no registrations for bob@example\.com/, 1);

      // no sipd runs here: the database change is made, and one line says the server was not told
      const stateDir = mkdtempSync(join(tmpdir(), 'sipd-sipctl-state-'));
      const closedPort = await freePort();
      const noServer = { SIPD_METRICS: `127.0.0.1:${closedPort}`, SIPD_STATE_DIR: stateDir };
      expect(await sipctl(target.url(), ['ul', 'rm', 'alice@example.com'], noServer)).toEqual({
        code: 0,
        stdout: 'removed 1 contact of alice@example.com\n',
        stderr: `sipctl: warning: running sipd not updated: no admin token (admin.token and SIPD_ADMIN_TOKEN unset, ${join(stateDir, 'admin.token')} missing)\n`,
      });
      expectOneLineError(await sipctl(target.url(), ['ul', 'rm', 'alice@example.com'], noServer), /no registrations for alice@example\.com in the database \(running sipd not updated: no admin token/, 1);
      expectOneLineError(
        await sipctl(target.url(), ['ul', 'rm', 'alice@example.com'], { ...noServer, SIPD_ADMIN_TOKEN: 'some-token-0123456789' }),
        new RegExp(`no registrations for alice@example\\.com in the database \\(running sipd not updated: no sipd answered at 127\\.0\\.0\\.1:${closedPort} \\(ECONNREFUSED\\)\\)$`),
        1,
      );
      expectOneLineError(await sipctl(target.url(), ['ul', 'rm', 'alice@example.com'], { SIPD_METRICS: 'off' }), /no registrations for alice@example\.com in the database \(running sipd not updated: its HTTP endpoint is off/, 1);
      rmSync(stateDir, { recursive: true, force: true });
      expect(await sipctl(target.url(), ['ul', 'show'])).toEqual({ code: 0, stdout: 'no registrations\n', stderr: '' });
    });

    it('rm removes the subscriber', async () => {
      expect(await sipctl(target.url(), ['rm', 'bob@example.com'])).toEqual({ code: 0, stdout: 'removed bob@example.com\n', stderr: '' });
      expect((await target.rows()).map((r) => r.username)).toEqual(['alice']);
    });
  });
}

describe('sipctl: configuration and unreachable database', { timeout: 60_000 }, () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sipd-sipctl-cfg-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('MySQL down: exit 3 with one line, no stack trace', async () => {
    const r = await sipctl('mysql://root:hunter2@127.0.0.1:1/sipd', ['add', 'alice@example.com', 'pw']);
    expectOneLineError(r, /^sipctl: cannot reach MySQL root@127\.0\.0\.1:1\/sipd: .*ECONNREFUSED/, 3);
    expect(r.stderr).not.toContain('hunter2');
  });

  it('a bad SIPD_DB is a one-line config error', async () => {
    expectOneLineError(await sipctl('nonsense', ['show']), /^sipctl: config: db: .*\(from SIPD_DB\)$/, 2);
  });

  it('--config FILE is honoured (db from the file when SIPD_DB is unset)', async () => {
    const dbPath = join(dir, 'from-file.sqlite');
    const cfg = join(dir, 'sipd.yaml');
    writeFileSync(cfg, `db: sqlite:${dbPath}\ndomains: [example.com]\nlocation:\n  db_mode: memory\n`);
    const run = (args: string[]): Promise<Run> =>
      new Promise((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', SIPCTL, '--config', cfg, ...args], { cwd: ROOT, env: baseEnv() }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
        );
      });
    expect(await run(['add', 'dave@example.com', 'pw'])).toMatchObject({ code: 0 });
    const db = new Database(dbPath, { readonly: true });
    expect(db.prepare('SELECT username FROM subscriber').all()).toEqual([{ username: 'dave' }]);
    db.close();
    expectOneLineError(await run(['ul', 'show']), /location\.db_mode is memory/, 1);
  });

  it('--help works for every verb', async () => {
    for (const verb of [[], ['add'], ['rm'], ['passwd'], ['show'], ['ul'], ['ul', 'show'], ['ul', 'rm'], ['db'], ['db', 'init']]) {
      const r = await sipctl('sqlite:/nonexistent/never-opened.sqlite', [...verb, '--help']);
      expect(r.code, verb.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: sipctl/);
    }
  });
});
