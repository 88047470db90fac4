/**
 * The MySQL stores keep a small, fixed set of prepared statements whatever the batch sizes: mysql2
 * prepares (and caches, per connection) one server-side statement per distinct SQL text, and
 * MariaDB bounds them globally (max_prepared_stmt_count). getMany and saveMany of every N still
 * answer and write exactly as before, in order. Server-side counts are read from the session
 * status of a pool of one connection, so other users of the server do not disturb them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RowDataPacket } from 'mysql2/promise';
import { type Binding, DEFAULT_POOL_LIMITS, type SubscriberKey, initSchema } from '../../src/store/index.js';
import {
  GET_MANY_MAX,
  MysqlDb,
  MysqlLocationStore,
  MysqlSubscriberStore,
  batchSizes,
  SAVE_MANY_MAX,
  mysqlPoolOptions,
  openMysqlDb,
} from '../../src/store/mysql.js';
import { createTestDatabase, describeMysql, type TestDatabase } from '../helpers/mysql.js';

const T0 = Date.UTC(2030, 0, 1);

/** A binding of `user`@example.com; `k` picks its contact and ruid. */
function binding(user: string, k: number, cseq = 1): Binding {
  const aor = `${user}@example.com`;
  return {
    aor,
    username: user,
    domain: 'example.com',
    contact: `sip:${user}@192.0.2.${k % 250}:${5060 + k}`,
    expires: T0 + 3600_000,
    q: null,
    callId: `c-${user}-${k}`,
    cseq,
    ruid: `r-${user}-${k}`,
    lastModified: T0,
    flags: 0,
    cflags: 0,
  };
}

/** Server-side statements open on the pool's (single) connection, and that connection's id. */
async function sessionStatements(db: MysqlDb): Promise<{ open: number; connection: number }> {
  // text protocol: prepares nothing itself
  const [rows] = await db.pool.query<RowDataPacket[]>(
    "SHOW SESSION STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_close')",
  );
  const v = new Map(rows.map((r) => [String(r.Variable_name), Number(r.Value)]));
  const [[id]] = (await db.pool.query<RowDataPacket[]>('SELECT CONNECTION_ID() AS id')) as unknown as [[RowDataPacket]];
  return { open: (v.get('Com_stmt_prepare') ?? NaN) - (v.get('Com_stmt_close') ?? NaN), connection: Number(id.id) };
}

describeMysql('MySQL prepared statements stay few whatever the batch sizes', () => {
  let tdb: TestDatabase;
  let db: MysqlDb;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    await initSchema(tdb.db);
  });
  afterAll(async () => {
    await tdb?.drop();
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await db?.end();
  });

  /** A pool of one connection, so that its session status counts every statement of the test. */
  async function open(): Promise<MysqlDb> {
    db = await openMysqlDb(tdb.db, { limits: { ...DEFAULT_POOL_LIMITS, connections: 1 } });
    return db;
  }

  it('getMany of every N answers like get() for each key, in key order, with a fixed small set of statements', async () => {
    await tdb.query('DELETE FROM subscriber');
    const subs = new MysqlSubscriberStore(await open());
    for (let i = 0; i < 40; i++) await subs.add(`u${i}`, 'example.com', `pw${i}`);
    const one = new Map<string, Awaited<ReturnType<typeof subs.get>>>();
    for (let i = 0; i < 60; i++) one.set(`u${i}`, await subs.get(`u${i}`, 'example.com'));
    const before = await sessionStatements(db);
    const execute = vi.spyOn(db, 'execute');
    for (const n of [...Array.from({ length: GET_MANY_MAX + 2 }, (_, i) => i + 1), 2 * GET_MANY_MAX + 3]) {
      // existing and missing keys mixed, repeats included
      const keys: SubscriberKey[] = Array.from({ length: n }, (_, i) => ({ username: `u${(i * 7 + n) % 60}`, domain: 'example.com' }));
      const got = await subs.getMany(keys);
      expect(got).toEqual(keys.map((k) => one.get(k.username)));
      expect(got.filter((s) => s !== null).length).toBeGreaterThan(0);
    }
    const texts = new Set(execute.mock.calls.map((c) => c[1]));
    // a ladder of chunk sizes, not one statement per N (was: one per N up to GET_MANY_MAX)
    expect(texts.size).toBeLessThanOrEqual(16);
    const after = await sessionStatements(db);
    expect(after.connection).toBe(before.connection);
    expect(after.open - before.open).toBeLessThanOrEqual(16);
  });

  it('getMany of N keys is one statement per GET_MANY_MAX keys (a short batch is padded, not split: every statement is a round trip a waiting request pays for)', async () => {
    await tdb.query('DELETE FROM subscriber');
    const subs = new MysqlSubscriberStore(await open());
    for (let i = 0; i < 10; i++) await subs.add(`u${i}`, 'example.com', `pw${i}`);
    const execute = vi.spyOn(db, 'execute');
    for (const n of [1, 3, 7, 13, 100, 199, GET_MANY_MAX, GET_MANY_MAX + 1, 2 * GET_MANY_MAX + 3]) {
      execute.mockClear();
      const keys: SubscriberKey[] = Array.from({ length: n }, (_, i) => ({ username: `u${i % 12}`, domain: 'example.com' }));
      const got = await subs.getMany(keys);
      expect(got.map((s) => s?.password ?? null)).toEqual(keys.map((k) => (Number(k.username.slice(1)) < 10 ? `pw${k.username.slice(1)}` : null)));
      expect({ n, statements: execute.mock.calls.length }).toEqual({ n, statements: Math.ceil(n / GET_MANY_MAX) });
    }
  });

  it('saveMany of every N writes every row, in order (a later save of a ruid wins, across chunks), with a fixed small set of statements', async () => {
    const locs = new MysqlLocationStore(await open(), () => T0);
    await locs.saveMany([binding('warm', 0)]); // the ruid index check, once
    const before = await sessionStatements(db);
    const execute = vi.spyOn(db, 'execute');
    for (const n of [...Array.from({ length: SAVE_MANY_MAX + 2 }, (_, i) => i + 1), 2 * SAVE_MANY_MAX + 3]) {
      await tdb.query('DELETE FROM location');
      const users = ['alice', 'bob', 'carol'];
      const batch = Array.from({ length: n }, (_, i) => binding(users[i % 3]!, i));
      // the last save moves the first binding's ruid to a new contact: it must be applied last
      if (n > 1) batch[n - 1] = { ...binding('alice', 0, 99), contact: 'sip:alice@198.51.100.1' };
      await locs.saveMany(batch);
      const rows = await tdb.query('SELECT ruid, contact, cseq FROM location ORDER BY ruid');
      const want = new Map<string, Binding>();
      for (const b of batch) want.set(b.ruid, b);
      expect(rows.map((r) => [String(r.ruid), String(r.contact), Number(r.cseq)])).toEqual(
        [...want.values()].sort((a, b) => (a.ruid < b.ruid ? -1 : a.ruid > b.ruid ? 1 : 0)).map((b) => [b.ruid, b.contact, b.cseq]),
      );
    }
    const texts = new Set(execute.mock.calls.map((c) => c[1]));
    // a ladder of chunk sizes, not one statement per N (was: one per N up to SAVE_MANY_MAX): the
    // UPDATE, the existence SELECT and the INSERT of new rows, at most 8 sizes each
    expect(texts.size).toBeLessThanOrEqual(24);
    const after = await sessionStatements(db);
    expect(after.connection).toBe(before.connection);
    expect(after.open - before.open).toBeLessThanOrEqual(24);
  });

  it('re-saving bindings that are in the table updates them without using up AUTO_INCREMENT ids (location.id is INT UNSIGNED: an id per re-REGISTER runs out)', async () => {
    const locs = new MysqlLocationStore(await open(), () => T0);
    await tdb.query('DELETE FROM location');
    const first = Array.from({ length: 40 }, (_, i) => binding(`u${i}`, i));
    await locs.saveMany(first);
    const autoinc = async (): Promise<number> => {
      const rows = await tdb.query(
        "SELECT AUTO_INCREMENT AS a FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'location'",
      );
      return Number(rows[0]!.a);
    };
    // information_schema may cache table statistics: ask the server for fresh ones
    await tdb.query('ANALYZE TABLE location');
    const a0 = await autoinc();
    const ids0 = (await tdb.query('SELECT ruid, id FROM location ORDER BY ruid')).map((r) => [String(r.ruid), Number(r.id)]);
    for (let round = 2; round <= 6; round++) {
      // every binding re-registered (new CSeq and expiry), in batches of every shape, and one new binding per round
      const again = first.map((b) => ({ ...b, cseq: round, expires: b.expires + round * 1000 }));
      await locs.saveMany(again.slice(0, 7));
      await locs.saveMany(again.slice(7));
      await locs.saveMany([binding(`new${round}`, 100 + round)]);
    }
    const rows = await tdb.query('SELECT ruid, id, cseq FROM location ORDER BY ruid');
    expect(rows.length).toBe(45);
    // the re-saved rows kept their ids and took the new values
    const kept = new Map(ids0 as Array<[string, number]>);
    for (const r of rows) if (kept.has(String(r.ruid))) expect([String(r.ruid), Number(r.id), Number(r.cseq)]).toEqual([String(r.ruid), kept.get(String(r.ruid)), 6]);
    await tdb.query('ANALYZE TABLE location');
    // five new rows used five ids; 200 updates used none
    expect((await autoinc()) - a0).toBeLessThanOrEqual(5);
  });

  it('each pooled connection keeps at most maxPreparedStatements open on the server, however many texts it has run', async () => {
    const cap = mysqlPoolOptions(tdb.db).maxPreparedStatements;
    expect(cap).toBeDefined();
    // well below MariaDB's default max_prepared_stmt_count (16382) for a whole pool
    expect(cap! * DEFAULT_POOL_LIMITS.connections).toBeLessThanOrEqual(2000);
    await open();
    const before = await sessionStatements(db);
    for (let k = 0; k < 3 * cap!; k++) {
      const rows = await db.execute<RowDataPacket[]>('probe', `SELECT ? + ${k} AS v`, [1]);
      expect(Number(rows[0]!.v)).toBe(k + 1);
    }
    const after = await sessionStatements(db);
    expect(after.connection).toBe(before.connection);
    expect(after.open).toBeLessThanOrEqual(cap!);
  });
});

describe('batchSizes', () => {
  it('splits any N, in order, into sizes from the ladder max, then powers of two below it', () => {
    expect(batchSizes(13, 100)).toEqual([8, 4, 1]);
    expect(batchSizes(250, 200)).toEqual([200, 32, 16, 2]);
    expect(batchSizes(0, 100)).toEqual([]);
    const ladder = new Set([100, 64, 32, 16, 8, 4, 2, 1]);
    for (let n = 1; n <= 1000; n++) {
      const sizes = batchSizes(n, 100);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(n);
      for (const s of sizes) expect(ladder.has(s)).toBe(true);
    }
  });
});
