/**
 * The MySQL stores under a broken database (real MariaDB behind test/helpers/tcp-proxy.ts): every
 * query ends within db_pool.query_timeout_ms (StoreError BUSY), the queue of queries waiting for a
 * connection is bounded (BUSY at once beyond it), a refused connection is UNREACHABLE, the pool
 * recovers after the database heals, and close() returns while the database is stalled.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DbUrl } from '../../src/config.js';
import { type Binding, StoreError, type Stores, initSchema, openStores } from '../../src/store/index.js';
import { type MysqlDb, type MysqlPoolLimits, openMysqlDb } from '../../src/store/mysql.js';
import type { RowDataPacket } from 'mysql2/promise';
import { createTestDatabase, describeMysql, type TestDatabase } from '../helpers/mysql.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const T0 = Date.UTC(2030, 0, 1);

function binding(contact: string, aor = 'alice@example.com'): Binding {
  const [username, domain] = aor.split('@') as [string, string];
  return { aor, username, domain, contact, expires: T0 + 3600_000, q: null, callId: 'c', cseq: 1, ruid: `r-${aor}-${contact}`, lastModified: T0, flags: 0, cflags: 0 };
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<StoreError> {
  const r = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(r).toBeInstanceOf(StoreError);
  return r as StoreError;
}

/** Poll `fn` until it resolves (bounded: `tries` attempts, 100 ms apart). */
async function eventually<T>(fn: () => Promise<T>, tries = 100): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw last;
}

describeMysql('MySQL pool limits through a breakable connection', () => {
  let tdb: TestDatabase;
  let proxy: TcpProxy;
  let stores: Stores | undefined;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    await initSchema(tdb.db);
  });
  afterAll(async () => {
    await tdb?.drop();
  });
  let pool: MysqlDb | undefined;
  afterEach(async () => {
    await proxy?.heal();
    await stores?.close();
    stores = undefined;
    await pool?.end();
    pool = undefined;
    await proxy?.close();
  });

  /** A bare pool (MysqlDb) through a new proxy. */
  async function openPool(limits: MysqlPoolLimits): Promise<MysqlDb> {
    proxy = await TcpProxy.start({ host: tdb.db.host, port: tdb.db.port });
    pool = await openMysqlDb({ ...tdb.db, host: '127.0.0.1', port: proxy.port }, { limits });
    return pool;
  }

  async function connectionId(db: MysqlDb): Promise<number> {
    const [r] = await db.execute<RowDataPacket[]>('test', 'SELECT CONNECTION_ID() AS id', []);
    return Number(r?.id);
  }

  async function open(pool: { connections: number; queue_limit: number; query_timeout_ms: number }): Promise<Stores> {
    proxy = await TcpProxy.start({ host: tdb.db.host, port: tdb.db.port });
    const db: DbUrl = { ...tdb.db, host: '127.0.0.1', port: proxy.port };
    stores = await openStores({ db, db_pool: pool, location: { db_mode: 'db-only' } }, { now: () => T0 });
    return stores;
  }

  it('many queries, answered and failed, leave no timer behind (none per query) and no unhandled rejection', async () => {
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    // ref'd timers (unref'd ones are not listed), counted before the pool: its opening queries count too
    const before = timers();
    const db = await openPool({ connections: 4, queueLimit: 1000, queryTimeoutMs: 60_000 });
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (let round = 0; round < 20; round++) {
        const results = await Promise.allSettled(
          Array.from({ length: 50 }, (_, i) => (i % 10 === 9 ? db.execute('test', 'SELECT nope FROM no_such_table', []) : db.execute<RowDataPacket[]>('test', 'SELECT ? AS v', [i]))),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(45);
        const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as StoreError] : []));
        expect(failed.map((e) => e.code)).toEqual(Array.from({ length: 5 }, () => 'SCHEMA'));
      }
      await new Promise((r) => setImmediate(r));
      expect(timers()).toBeLessThanOrEqual(before);
      expect(unhandled).toEqual([]);
      // the failed statements did not cost the pool its connections
      expect(await connectionId(db)).toBeGreaterThan(0);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a stalled database: each call fails with BUSY within the query timeout, and the pool works again once it heals', async () => {
    const s = await open({ connections: 2, queue_limit: 50, query_timeout_ms: 400 });
    await s.locations.save(binding('sip:a@h'));
    await proxy.blackhole();
    const calls = [s.locations.lookup('alice@example.com'), s.locations.save(binding('sip:b@h')), s.subscribers.get('alice', 'example.com'), s.locations.counts(), s.locations.removeAll('alice@example.com')];
    for (const c of calls) expect((await rejection(c)).code).toBe('BUSY');
    expect(await s.ping()).toBe(false);
    await proxy.heal();
    const found = await eventually(() => s.locations.lookup('alice@example.com'));
    expect(found.map((b) => b.contact)).toEqual(['sip:a@h']);
    // the write that timed out did not reach the table (nothing was forwarded)
    expect(await tdb.query('SELECT contact FROM location ORDER BY contact')).toEqual([{ contact: 'sip:a@h' }]);
    expect(await s.ping()).toBe(true);
  });

  it('the queue for a connection is bounded: beyond connections + queue_limit a call fails at once with BUSY (pool queue full)', async () => {
    const s = await open({ connections: 1, queue_limit: 2, query_timeout_ms: 3000 });
    await s.locations.counts(); // one connection open
    await proxy.blackhole();
    const calls = Array.from({ length: 8 }, (_, i) => s.locations.lookup(`u${i}@example.com`));
    const errors = await Promise.all(calls.map((c) => rejection(c)));
    for (const e of errors) expect(e.code).toBe('BUSY');
    // 1 on the connection + 2 queued wait for the timeout; the other 5 are refused by the full queue
    expect(errors.filter((e) => /Queue limit reached/.test(e.message))).toHaveLength(5);
    expect(errors.filter((e) => /no answer within 3000 ms/.test(e.message))).toHaveLength(3);
  });

  it('a refused connection is UNREACHABLE; the pool reconnects when the database is back', async () => {
    const s = await open({ connections: 2, queue_limit: 10, query_timeout_ms: 2000 });
    await s.locations.save(binding('sip:a@h'));
    await proxy.refuse();
    expect((await rejection(s.locations.lookup('alice@example.com'))).code).toBe('UNREACHABLE');
    expect((await rejection(s.locations.save(binding('sip:b@h')))).code).toBe('UNREACHABLE');
    await proxy.heal();
    await eventually(() => s.locations.save(binding('sip:b@h')));
    expect((await s.locations.lookup('alice@example.com')).map((b) => b.contact).sort()).toEqual(['sip:a@h', 'sip:b@h']);
  });

  it('close() returns while queries hang on a stalled database', async () => {
    const s = await open({ connections: 3, queue_limit: 10, query_timeout_ms: 60_000 });
    await Promise.all([s.locations.counts(), s.locations.counts(), s.locations.counts()]);
    await proxy.blackhole();
    const hanging = [s.locations.lookup('alice@example.com'), s.locations.counts()];
    for (const h of hanging) h.catch(() => undefined);
    await s.close(); // the test times out if this hangs
    stores = undefined;
    for (const h of hanging) expect((await rejection(h)).code).toMatch(/^(UNREACHABLE|BUSY)$/);
  }, 30_000);
  it('a query that times out on its connection: that connection is destroyed, not handed back to the pool, and the pool serves the next query on a new one', async () => {
    const db = await openPool({ connections: 1, queueLimit: 10, queryTimeoutMs: 400 });
    const first = await connectionId(db);
    expect(proxy.open).toBe(1);
    await proxy.blackhole();
    const e = await rejection(db.execute('test', 'SELECT 1', []));
    expect(e.code).toBe('BUSY');
    expect(e.message).toMatch(/test: no answer within 400 ms/);
    // closed by sipd (the proxy keeps a stalled connection open until heal())
    await eventually(async () => expect(proxy.open).toBe(0));
    await proxy.heal();
    const next = await eventually(() => connectionId(db));
    expect(next).not.toBe(first);
  });

  it('a connection that arrives after the deadline of the query waiting for it goes back to the pool', async () => {
    const db = await openPool({ connections: 1, queueLimit: 10, queryTimeoutMs: 300 });
    const first = await connectionId(db);
    const held = await db.pool.getConnection(); // the pool's only connection, taken outside the limits
    const e = await rejection(db.execute('test', 'SELECT 1', []));
    expect(e.code).toBe('BUSY');
    expect(e.message).toMatch(/no answer within 300 ms/);
    held.release(); // handed to the query that gave up on it: it must give it back
    // kept instead, the pool would have no connection left: this would fail with BUSY
    expect(await connectionId(db)).toBe(first);
  });

  it('queries started at different times on a stalled database each fail with BUSY (the shared deadline timer re-arms for the next one)', async () => {
    const db = await openPool({ connections: 3, queueLimit: 10, queryTimeoutMs: 300 });
    await Promise.all([connectionId(db), connectionId(db), connectionId(db)]);
    await proxy.blackhole();
    const calls: Promise<StoreError>[] = [];
    for (let i = 0; i < 5; i++) {
      calls.push(rejection(db.execute('test', 'SELECT ?', [i])));
      await new Promise((r) => setTimeout(r, 70));
    }
    for (const e of await Promise.all(calls)) {
      expect(e.code).toBe('BUSY');
      expect(e.message).toMatch(/no answer within 300 ms/);
    }
    await proxy.heal();
    expect(await eventually(() => connectionId(db))).toBeGreaterThan(0);
  });

});


describe('tcp-proxy helper', () => {
  it('forwards, refuses, black-holes and heals', async () => {
    const net = await import('node:net');
    const echo = net.createServer((c) => c.pipe(c));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const port = (echo.address() as { port: number }).port;
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port });
    const talk = (timeoutMs: number): Promise<string> =>
      new Promise((resolve) => {
        const c = net.connect(proxy.port, '127.0.0.1');
        const done = (v: string): void => {
          clearTimeout(t);
          c.destroy();
          resolve(v);
        };
        const t = setTimeout(() => done('silence'), timeoutMs);
        c.on('connect', () => c.write('ping'));
        c.on('data', (d) => done(d.toString()));
        c.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'));
      });
    try {
      expect(await talk(5000)).toBe('ping');
      await proxy.refuse();
      expect(await talk(5000)).toBe('ECONNREFUSED');
      await proxy.blackhole();
      expect(await talk(300)).toBe('silence');
      await proxy.heal();
      expect(await talk(5000)).toBe('ping');
    } finally {
      await proxy.close();
      await new Promise<void>((r) => echo.close(() => r()));
    }
  });
});
