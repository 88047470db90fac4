/** Schema compatibility with Kamailio 5.x, openStores errors, onQuery hook, credential cache. */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Binding,
  CachedLocationStore,
  CachedSubscriberStore,
  MemoryLocationStore,
  MemorySubscriberStore,
  StoreError,
  type Subscriber,
  type SubscriberKey,
  type SubscriberStore,
  initSchema,
  openStores,
} from '../../src/store/index.js';
import { splitStatements } from '../../src/store/schema.js';
import { createTestDatabase, describeMysql, type TestDatabase } from '../helpers/mysql.js';

describeMysql('MySQL schema (Kamailio 5.x compatibility)', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(() => tdb.drop());

  it('sql/mysql/schema.sql applied twice is fine and leaves one version row per table', async () => {
    const sql = readFileSync(new URL('../../sql/mysql/schema.sql', import.meta.url), 'utf8');
    for (let i = 0; i < 2; i++) for (const st of splitStatements(sql)) await tdb.query(st);
    await initSchema(tdb.db); // and a third time through sipctl's code path
    const rows = await tdb.query('SELECT table_name, table_version FROM version ORDER BY table_name');
    expect(rows.map((r) => [r.table_name, Number(r.table_version)])).toEqual([
      ['location', 9],
      ['location_attrs', 1],
      ['subscriber', 7],
      ['version', 1],
    ]);
  });

  it('has Kamailio column types, defaults and index names', async () => {
    const cols = await tdb.query(
      `SELECT table_name AS t, column_name AS c, column_type AS type, is_nullable AS n, column_default AS d
         FROM information_schema.columns WHERE table_schema = ? AND table_name IN ('subscriber', 'location')`,
      [tdb.name],
    );
    const col = (t: string, c: string) => cols.find((r) => r.t === t && r.c === c);
    expect(col('subscriber', 'ha1')?.type).toBe('varchar(128)');
    expect(col('subscriber', 'ha1b')?.type).toBe('varchar(128)');
    expect(col('subscriber', 'password')?.type).toBe('varchar(64)');
    expect(col('location', 'contact')?.type).toBe('varchar(512)');
    expect(col('location', 'q')?.type).toBe('float(10,2)');
    expect(col('location', 'expires')?.type).toBe('datetime');
    expect(col('location', 'callid')?.d).toMatch(/Default-Call-ID/);
    expect(col('location', 'domain')?.n).toBe('YES');
    for (const c of ['ruid', 'received', 'path', 'cseq', 'last_modified', 'flags', 'cflags', 'user_agent', 'socket', 'methods', 'instance', 'reg_id', 'server_id', 'connection_id', 'keepalive', 'partition']) {
      expect(col('location', c), c).toBeDefined();
    }
    const idx = await tdb.query(
      `SELECT table_name AS t, index_name AS i, non_unique AS nu, GROUP_CONCAT(column_name ORDER BY seq_in_index) AS cols
         FROM information_schema.statistics WHERE table_schema = ? GROUP BY table_name, index_name, non_unique`,
      [tdb.name],
    );
    const index = (t: string, i: string) => idx.find((r) => r.t === t && r.i === i);
    expect(index('subscriber', 'account_idx')).toMatchObject({ nu: 0, cols: 'username,domain' });
    expect(index('subscriber', 'username_idx')).toMatchObject({ cols: 'username' });
    expect(index('location', 'ruid_idx')).toMatchObject({ nu: 0, cols: 'ruid' });
    expect(index('location', 'account_contact_idx')).toMatchObject({ cols: 'username,domain,contact' });
    expect(index('location', 'expires_idx')).toMatchObject({ cols: 'expires' });
  });

  it('a row written by kamctl-style SQL is readable, and ours by Kamailio-style SQL', async () => {
    await tdb.query(
      `INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ('kam', 'example.com', 'pw', MD5('kam:example.com:pw'), MD5('kam@example.com:example.com:pw'))`,
    );
    await tdb.query(
      `INSERT INTO location (ruid, username, domain, contact, expires, q, callid, cseq, last_modified, user_agent)
       VALUES ('uloc-x', 'kam', 'example.com', 'sip:kam@192.0.2.1:5060', '2099-01-01 00:00:00', -1, 'cid', 7, '2024-01-01 00:00:00', 'kamailio')`,
    );
    const stores = await openStores({ db: tdb.db, location: { db_mode: 'db-only' } }, { now: () => Date.UTC(2030, 0, 1) });
    try {
      const sub = await stores.subscribers.get('kam', 'example.com');
      expect(sub).toMatchObject({ password: 'pw' });
      await stores.subscribers.add('ours', 'example.com', 'pw2');
      const [check] = await tdb.query(
        `SELECT ha1 = MD5('ours:example.com:pw2') AS a, ha1b = MD5('ours@example.com:example.com:pw2') AS b FROM subscriber WHERE username = 'ours'`,
      );
      expect(check).toEqual({ a: 1, b: 1 });
      const [b] = await stores.locations.lookup('kam@example.com');
      expect(b).toMatchObject({ contact: 'sip:kam@192.0.2.1:5060', q: null, cseq: 7, callId: 'cid', userAgent: 'kamailio', ruid: 'uloc-x' });
    } finally {
      await stores.close();
    }
  });
});

describeMysql('openStores on MySQL: errors', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(() => tdb.drop());

  it('an empty database gives StoreError SCHEMA telling to run sipctl db init', async () => {
    const err = await openStores({ db: tdb.db, location: { db_mode: 'db-only' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('SCHEMA');
    expect((err as StoreError).message).toMatch(/sipctl db init/);
    expect((err as StoreError).message).not.toMatch(/\n/);
  });

  it('a wrong table version gives SCHEMA', async () => {
    await initSchema(tdb.db);
    await tdb.query(`UPDATE version SET table_version = 6 WHERE table_name = 'subscriber'`);
    await expect(openStores({ db: tdb.db, location: { db_mode: 'db-only' } })).rejects.toMatchObject({
      code: 'SCHEMA',
      message: expect.stringMatching(/subscriber has version 6, sipd needs 7/),
    });
    await tdb.query(`UPDATE version SET table_version = 7 WHERE table_name = 'subscriber'`);
  });
});

describe('openStores: unreachable MySQL', () => {
  it('yields StoreError UNREACHABLE with a one-line message', async () => {
    // Port 1 on localhost: nothing listens there, the connection is refused at once.
    const err = await openStores({
      db: { kind: 'mysql', host: '127.0.0.1', port: 1, user: 'root', password: 'secret', database: 'x' },
      location: { db_mode: 'db-only' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('UNREACHABLE');
    expect((err as StoreError).message).toMatch(/^cannot reach MySQL root@127\.0\.0\.1:1\/x: .*ECONNREFUSED/);
    expect((err as StoreError).message).not.toMatch(/\n|secret/);
  });
});

describe('SQLite', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sipd-schema-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('openStores creates the directory and schema of a fresh file', async () => {
    const path = join(dir, 'nested', 'fresh.sqlite');
    const stores = await openStores({ db: { kind: 'sqlite', path }, location: { db_mode: 'write-through' } });
    await stores.subscribers.add('a', 'b.c', 'pw');
    expect(await stores.ping()).toBe(true);
    await stores.close();
    await stores.close(); // idempotent
    const db = new Database(path, { readonly: true });
    const versions = db.prepare('SELECT table_name, table_version FROM version ORDER BY table_name').all();
    db.close();
    expect(versions).toEqual([
      { table_name: 'location', table_version: 9 },
      { table_name: 'location_attrs', table_version: 1 },
      { table_name: 'subscriber', table_version: 7 },
      { table_name: 'version', table_version: 1 },
    ]);
  });

  it('initSchema is idempotent and keeps data', async () => {
    const path = join(dir, 'init.sqlite');
    await initSchema({ kind: 'sqlite', path });
    const stores = await openStores({ db: { kind: 'sqlite', path }, location: { db_mode: 'db-only' } });
    await stores.subscribers.add('a', 'b.c', 'pw');
    await stores.close();
    await initSchema({ kind: 'sqlite', path });
    const again = await openStores({ db: { kind: 'sqlite', path }, location: { db_mode: 'db-only' } });
    expect(await again.subscribers.get('a', 'b.c')).not.toBeNull();
    await again.close();
  });

  it('an unopenable path gives UNREACHABLE', async () => {
    const path = join(dir, 'init.sqlite', 'not-a-dir', 'x.sqlite'); // parent is a file
    await expect(openStores({ db: { kind: 'sqlite', path }, location: { db_mode: 'db-only' } })).rejects.toMatchObject({
      code: 'UNREACHABLE',
    });
  });

  it('onQuery observes database operations with their duration', async () => {
    const seen: string[] = [];
    const stores = await openStores(
      { db: { kind: 'sqlite', path: join(dir, 'hook.sqlite') }, location: { db_mode: 'db-only' } },
      { onQuery: (store, op, ms) => {
          expect(ms).toBeGreaterThanOrEqual(0);
          seen.push(`${store}.${op}`);
        } },
    );
    await stores.subscribers.add('a', 'b.c', 'pw');
    await stores.subscribers.get('a', 'b.c');
    await stores.locations.lookup('a@b.c');
    await stores.close();
    expect(seen).toEqual(['subscriber.add', 'subscriber.get', 'location.lookup']);
  });
});

/** Counts calls to get() of the wrapped store. */
class CountingStore extends MemorySubscriberStore {
  gets = 0;
  override async get(username: string, domain: string): Promise<Subscriber | null> {
    this.gets++;
    return super.get(username, domain);
  }
  // the cache batches its lookups through getMany: each key counts as one lookup
  override async getMany(keys: readonly SubscriberKey[]): Promise<(Subscriber | null)[]> {
    this.gets += keys.length;
    return super.getMany(keys);
  }
}

describe('CachedSubscriberStore', () => {
  function setup(opts: { ttlMs?: number; negativeTtlMs?: number; maxEntries?: number } = {}) {
    let t = 0;
    const inner = new CountingStore();
    const cache = new CachedSubscriberStore(inner, { ttlMs: opts.ttlMs ?? 2000, negativeTtlMs: opts.negativeTtlMs, maxEntries: opts.maxEntries, now: () => t });
    return { inner, cache, advance: (ms: number) => (t += ms) };
  }

  it('serves repeated lookups from cache until the TTL passes', async () => {
    const { inner, cache, advance } = setup();
    await inner.add('a', 'x', 'pw');
    await cache.get('a', 'x');
    await cache.get('a', 'x');
    expect(inner.gets).toBe(1);
    advance(1999);
    expect((await cache.get('a', 'x'))?.password).toBe('pw');
    expect(inner.gets).toBe(1);
    advance(1);
    await cache.get('a', 'x');
    expect(inner.gets).toBe(2);
  });

  it('caches a miss only for the shorter negative TTL', async () => {
    const { inner, cache, advance } = setup({ negativeTtlMs: 500 });
    expect(await cache.get('b', 'x')).toBeNull();
    await inner.add('b', 'x', 'pw'); // added behind the cache's back
    advance(499);
    expect(await cache.get('b', 'x')).toBeNull();
    advance(1);
    expect((await cache.get('b', 'x'))?.password).toBe('pw');
  });

  it('writes through the cache invalidate the entry at once', async () => {
    const { cache } = setup();
    await cache.add('a', 'x', 'one');
    expect((await cache.get('a', 'x'))?.password).toBe('one');
    await cache.setPassword('a', 'x', 'two');
    expect((await cache.get('a', 'x'))?.password).toBe('two');
    await cache.remove('a', 'x');
    expect(await cache.get('a', 'x')).toBeNull();
  });

  it('is bounded: the oldest entries are evicted', async () => {
    const { inner, cache } = setup({ maxEntries: 2 });
    for (const u of ['a', 'b', 'c']) await inner.add(u, 'x', 'pw');
    for (const u of ['a', 'b', 'c']) await cache.get(u, 'x');
    expect(cache.size).toBe(2);
    inner.gets = 0;
    await cache.get('c', 'x');
    expect(inner.gets).toBe(0);
    await cache.get('a', 'x');
    expect(inner.gets).toBe(1);
  });

  it('returned objects cannot corrupt the cache', async () => {
    const { inner, cache } = setup();
    await inner.add('a', 'x', 'pw');
    const first = (await cache.get('a', 'x')) as Subscriber;
    first.password = 'tampered';
    expect((await cache.get('a', 'x'))?.password).toBe('pw');
  });

  it('passes list and close through', async () => {
    const { inner, cache } = setup();
    await inner.add('a', 'x', 'pw');
    expect((await cache.list()).map((s) => s.username)).toEqual(['a']);
    const store: SubscriberStore = cache;
    await store.close();
  });
});


describe('CachedLocationStore (write-through composition)', () => {
  const b: Binding = {
    aor: 'a@x',
    username: 'a',
    domain: 'x',
    contact: 'sip:a@192.0.2.1',
    expires: 10_000,
    q: null,
    callId: 'c',
    cseq: 1,
    ruid: 'r',
    lastModified: 0,
    flags: 0,
    cflags: 0,
  };

  it('a failed db write is reported and leaves the cache unchanged', async () => {
    const db = new MemoryLocationStore(() => 0);
    db.save = async () => {
      throw new StoreError('UNREACHABLE', 'db down');
    };
    const cache = await CachedLocationStore.open(db, () => 0);
    await expect(cache.save(b)).rejects.toMatchObject({ code: 'UNREACHABLE' });
    expect(await cache.lookup('a@x')).toEqual([]);
  });

  it('expire purges memory even when the db is down', async () => {
    const db = new MemoryLocationStore(() => 0);
    const cache = await CachedLocationStore.open(db, () => 0);
    await cache.save(b);
    db.expire = async () => {
      throw new StoreError('UNREACHABLE', 'db down');
    };
    await expect(cache.expire(10_000)).rejects.toMatchObject({ code: 'UNREACHABLE' });
    expect(await cache.counts()).toEqual({ aors: 0, contacts: 0 });
  });
});
