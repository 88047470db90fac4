/**
 * MySQL/MariaDB stores (mysql2/promise pool). Every value goes through
 * `execute` placeholders; SQL text is built only from constant column lists.
 * Date-times are written and read as local time, as Kamailio does.
 */
import mysql from 'mysql2/promise';
import type { Pool as CorePool, PoolConnection as CorePoolConnection, QueryError } from 'mysql2';
import type { Pool, PoolOptions, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { DbUrl } from '../config.js';
import type { Binding, Clock, LocationCounts, LocationStore, Subscriber, SubscriberKey, SubscriberStore } from './types.js';
import { StoreError } from './types.js';
import { checkVersions, readSchema, splitStatements } from './schema.js';
import {
  LOCATION_COLUMNS,
  type LocationRow,
  bindingToValues,
  checkBinding,
  compareBindings,
  compareListed,
  makeSubscriber,
  pushBindingValues,
  rowToBinding,
  splitAor,
  toSqlDatetime,
} from './util.js';

export type MysqlUrl = Extract<DbUrl, { kind: 'mysql' }>;
type Value = string | number | null;

const ZONE = 'local' as const;

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
  'PROTOCOL_ENQUEUE_AFTER_QUIT',
  'ER_ACCESS_DENIED_ERROR',
  'ER_DBACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_CON_COUNT_ERROR',
  'ER_TOO_MANY_USER_CONNECTIONS',
  'ER_HOST_NOT_PRIVILEGED',
  'ER_HOST_IS_BLOCKED',
  'ER_SERVER_SHUTDOWN',
]);

/** The server or the pool could not answer in time: a later attempt may succeed. */
const BUSY_CODES = new Set(['PROTOCOL_SEQUENCE_TIMEOUT', 'ER_LOCK_WAIT_TIMEOUT', 'ER_LOCK_DEADLOCK', 'ER_STATEMENT_TIMEOUT', 'ER_QUERY_TIMEOUT']);

/** The values themselves are refused (strict SQL mode): the same statement can never succeed. */
const INVALID_CODES = new Set([
  'ER_DATA_TOO_LONG',
  'ER_TRUNCATED_WRONG_VALUE',
  'ER_TRUNCATED_WRONG_VALUE_FOR_FIELD',
  'ER_WARN_DATA_OUT_OF_RANGE',
  'ER_BAD_NULL_ERROR',
  'ER_NO_DEFAULT_FOR_FIELD',
  'ER_DUP_ENTRY',
  'ER_WRONG_VALUE_COUNT_ON_ROW',
  'ER_INVALID_CHARACTER_STRING',
]);

/** mysql2 pool errors that carry no code, by message. */
const POOL_BUSY_MESSAGES = new Set(['Queue limit reached.', 'No connections available.']);
const POOL_CLOSED_MESSAGES = new Set(['Pool is closed.', "Can't add new command when connection is in closed state"]);

function errCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  if ('code' in e && typeof e.code === 'string') return e.code;
  // Node's happy-eyeballs connect failures arrive as AggregateError.
  if (e instanceof AggregateError) for (const inner of e.errors) if (errCode(inner)) return errCode(inner);
  return undefined;
}

function errText(e: unknown): string {
  if (e instanceof AggregateError && !e.message) return e.errors.map(errText).find((m) => m) ?? 'connection failed';
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

function isFatal(e: unknown): boolean {
  return typeof e === 'object' && e !== null && 'fatal' in e && e.fatal === true;
}

export function describeMysql(url: MysqlUrl): string {
  return `MySQL ${url.user}@${url.host}:${url.port}/${url.database}`;
}

/** Map any mysql2/network error to a one-line StoreError. */
export function mysqlError(e: unknown, url: MysqlUrl, what: string): StoreError {
  if (e instanceof StoreError) return e;
  const code = errCode(e);
  const where = describeMysql(url);
  const text = errText(e);
  if (code && (UNREACHABLE_CODES.has(code) || code.startsWith('ER_ACCESS_DENIED'))) {
    const detail = text && !text.includes(code) ? `${code}: ${text}` : text || code;
    return new StoreError('UNREACHABLE', `cannot reach ${where}: ${detail}`, { cause: e });
  }
  if (code === 'ER_NO_SUCH_TABLE' || code === 'ER_BAD_FIELD_ERROR') {
    return new StoreError('SCHEMA', `${where} ${what}: ${text} (run: sipctl db init)`, { cause: e });
  }
  if ((code && BUSY_CODES.has(code)) || POOL_BUSY_MESSAGES.has(text)) {
    return new StoreError('BUSY', `${where} ${what}: ${text}`, { cause: e });
  }
  if (code && INVALID_CODES.has(code)) return new StoreError('INVALID', `${where} ${what}: ${text}`, { cause: e });
  if (POOL_CLOSED_MESSAGES.has(text) || isFatal(e)) return new StoreError('UNREACHABLE', `cannot reach ${where}: ${text}`, { cause: e });
  return new StoreError('DB', `${where} ${what}: ${text}`, { cause: e });
}

/** Connection pool limits (config `db_pool`). */
export interface MysqlPoolLimits {
  /** most open connections. */
  connections: number;
  /** most queries waiting for a free connection; beyond it a query fails at once with BUSY. */
  queueLimit: number;
  /** longest wait for one query, connection included (ms); then it fails with BUSY. */
  queryTimeoutMs: number;
}

export const DEFAULT_POOL_LIMITS: MysqlPoolLimits = { connections: 10, queueLimit: 1000, queryTimeoutMs: 2000 };

/**
 * mysql2 prepares one server-side statement per distinct SQL text on each connection and keeps it
 * (an LRU cache, closing what it evicts). The stores run about 50 texts (batches use the ladder
 * sizes of batchSizes() / paddedSize(), not one text per N: getMany 9, and saveMany's UPDATE,
 * existence SELECT and INSERT 8 each); 96 covers them with headroom, and bounds what one pool holds
 * on the server (connections x 96) far below MariaDB's global max_prepared_stmt_count (16382 by
 * default), which every client shares. mysql2's default, 16000, bounded nothing in practice.
 */
const MAX_PREPARED_STATEMENTS = 96;

/**
 * Split a batch of `n` into statement sizes from a fixed ladder: `max`, then the powers of two
 * below it, largest first (13 -> 8, 4, 1; 250 with max 200 -> 200, 32, 16, 2). Each size is its own
 * SQL text, so a batched statement has at most 1 + log2(max) texts instead of one per N.
 */
export function batchSizes(n: number, max: number): number[] {
  const out: number[] = [];
  for (let rest = n; rest > 0; ) {
    const size = rest >= max ? max : 2 ** Math.floor(Math.log2(rest));
    out.push(size);
    rest -= size;
  }
  return out;
}

/** The statement size for a chunk of `n` (1..max) keys: the next power of two, or `max` (a size batchSizes() also uses). */
export function paddedSize(n: number, max: number): number {
  return Math.min(max, 2 ** Math.ceil(Math.log2(n)));
}

export function mysqlPoolOptions(url: MysqlUrl, withDatabase = true, limits: MysqlPoolLimits = DEFAULT_POOL_LIMITS): PoolOptions {
  return {
    host: url.host,
    port: url.port,
    user: url.user,
    password: url.password,
    ...(withDatabase ? { database: url.database } : {}),
    connectionLimit: limits.connections,
    queueLimit: limits.queueLimit,
    connectTimeout: 5000,
    dateStrings: true,
    charset: 'utf8mb4',
    waitForConnections: true,
    enableKeepAlive: true,
    maxPreparedStatements: MAX_PREPARED_STATEMENTS,
  };
}

/** The parts of a pooled connection used to tear it down (mysql2's core connection). */
interface CoreConnection {
  on(event: 'error' | 'end', listener: () => void): unknown;
  destroy(): void;
  stream?: { destroy?: (err?: Error) => void };
}

/** What execute() hands mysql2's core connection: one prepared statement, answered by a callback. */
type ExecuteCallback = (err: QueryError | null, result: RowDataPacket[] | ResultSetHeader) => void;
type ConnectionCallback = (err: NodeJS.ErrnoException | null, conn: CorePoolConnection) => void;

/**
 * One query under way: it waits for a connection, then for its answer, and ends exactly once
 * (answer, error, or its deadline: whichever comes first; what comes later is dropped, a late
 * connection released). It is also its own node in MysqlDb's deadline list.
 */
class Query {
  prev: Query | null = null;
  next: Query | null = null;
  /** the pool connection once it arrived (until then the query waits in the pool's queue) */
  conn: CorePoolConnection | undefined;
  done = false;

  constructor(
    private readonly db: MysqlDb,
    readonly what: string,
    private readonly sql: string,
    private readonly values: Value[],
    /** performance.now() by which the query ends */
    readonly deadline: number,
    private readonly resolve: (r: RowDataPacket[] | ResultSetHeader) => void,
    private readonly reject: (e: StoreError) => void,
  ) {}

  readonly onConnection: ConnectionCallback = (err, conn) => {
    if (this.done) {
      // past its deadline: the connection goes back to the pool
      if (!err) conn.release();
      return;
    }
    if (err) return this.fail(mysqlError(err, this.db.url, this.what));
    this.conn = conn;
    try {
      conn.execute(this.sql, this.values, this.onResult);
    } catch (e) {
      // mysql2 refused the values before sending anything: the connection is as it was
      if (!this.done) this.fail(mysqlError(e, this.db.url, this.what));
    }
  };

  readonly onResult: ExecuteCallback = (err, result) => {
    // after the deadline the connection was destroyed: its late answer (or error) is dropped
    if (this.done) return;
    if (err) return this.fail(mysqlError(err, this.db.url, this.what));
    this.db.untrack(this);
    this.conn!.release();
    this.resolve(result);
  };

  /** End with `err`; a connection whose state is unknown (BUSY, UNREACHABLE) is destroyed, else released. */
  fail(err: StoreError): void {
    this.db.untrack(this);
    const conn = this.conn;
    if (conn !== undefined) {
      if (err.code === 'BUSY' || err.code === 'UNREACHABLE') MysqlDb.kill(conn as unknown as CoreConnection, err.message);
      else conn.release();
    }
    this.reject(err);
  }

  /** The deadline passed: BUSY; a connection with the query on it is destroyed (its protocol state is unknown). */
  expire(timeoutMs: number): void {
    this.db.untrack(this);
    if (this.conn !== undefined) MysqlDb.kill(this.conn as unknown as CoreConnection, 'query timed out');
    this.reject(new StoreError('BUSY', `${describeMysql(this.db.url)} ${this.what}: no answer within ${timeoutMs} ms`));
  }
}

/**
 * A deadline fires this much early at most: libuv runs timers on a loop clock in whole ms, so a
 * timer armed for the head's deadline may run up to 1 ms before performance.now() reaches it.
 */
const DEADLINE_EARLY_MS = 1;

/**
 * A mysql2 pool with the limits every query runs under: each query (waiting for a connection
 * included) ends within `queryTimeoutMs`; a connection whose query timed out is destroyed (its
 * protocol state is unknown, and a stalled one would otherwise hold a pool slot forever); at most
 * `queueLimit` queries wait for a connection. end() is bounded too.
 *
 * Queries run on mysql2's callback API (the promise wrapper costs a Promise, closures and, with
 * mysql2's default `trace`, a captured stack per call); each returns one Promise. Deadlines need no
 * timer per query: every query has the same timeout, so queries in start order are in deadline
 * order. They are kept in a doubly linked list (O(1) unlink when a query ends) and one shared timer
 * is armed for the oldest one's deadline; when it fires it ends every query past its deadline and
 * re-arms for the new oldest. A query therefore fails at its own deadline (not later, and at most
 * DEADLINE_EARLY_MS early), and the timer is re-armed at most once per queryTimeoutMs under load.
 * The timer is unref'd while no query is under way (it then keeps no process alive).
 */
export class MysqlDb {
  /** open connections, to tear them down when a graceful end does not finish. */
  private readonly live = new Set<CoreConnection>();
  private ended: Promise<void> | undefined;
  /** mysql2's core pool under the promise one (the callback API). */
  private readonly core: CorePool;
  /** the queries under way, oldest (first deadline) first */
  private head: Query | null = null;
  private tail: Query | null = null;
  /** the shared deadline timer, armed for the head's deadline (or earlier) while there is a head */
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly pool: Pool,
    readonly url: MysqlUrl,
    readonly limits: MysqlPoolLimits,
  ) {
    this.core = pool.pool;
    // An idle pool connection that dies must not crash the process.
    pool.on('connection', (c) => {
      const conn = c as unknown as CoreConnection;
      this.live.add(conn);
      conn.on('error', () => this.live.delete(conn));
      conn.on('end', () => this.live.delete(conn));
    });
  }

  /** Run one prepared statement under the limits; errors become one-line StoreErrors. */
  execute<T extends RowDataPacket[] | ResultSetHeader>(what: string, sql: string, values: Value[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const q = new Query(this, what, sql, values, performance.now() + this.limits.queryTimeoutMs, resolve as (r: RowDataPacket[] | ResultSetHeader) => void, reject);
      this.track(q);
      try {
        // may answer synchronously (a full queue: 'Queue limit reached.')
        this.core.getConnection(q.onConnection);
      } catch (e) {
        if (!q.done) q.fail(mysqlError(e, this.url, what));
      }
    });
  }

  /** Add a query to the deadline list (its deadline is the latest: append). */
  private track(q: Query): void {
    if (this.tail === null) {
      this.head = this.tail = q;
      if (this.timer === undefined) this.arm(this.limits.queryTimeoutMs);
      else this.timer.ref();
    } else {
      q.prev = this.tail;
      this.tail.next = q;
      this.tail = q;
    }
  }

  /** Mark a query ended and take it out of the deadline list (for Query only). */
  untrack(q: Query): void {
    q.done = true;
    if (q.prev === null) this.head = q.next;
    else q.prev.next = q.next;
    if (q.next === null) this.tail = q.prev;
    else q.next.prev = q.prev;
    q.prev = q.next = null;
    if (this.head === null) this.timer?.unref();
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.sweep, ms);
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    const now = performance.now();
    const timeoutMs = this.limits.queryTimeoutMs;
    while (this.head !== null && this.head.deadline <= now + DEADLINE_EARLY_MS) this.head.expire(timeoutMs);
    if (this.head !== null) this.arm(Math.max(1, this.head.deadline - now));
  };

  /**
   * Tear a connection down now. The socket is destroyed with an error so that mysql2 fails every
   * command still queued on it (a plain destroy() would leave them waiting forever) and drops the
   * connection from the pool. (Public for Query only.)
   */
  static kill(conn: CoreConnection, why: string): void {
    try {
      const err = Object.assign(new Error(`connection closed by sipd: ${why}`), { code: 'PROTOCOL_CONNECTION_LOST' });
      conn.stream?.destroy?.(err);
      conn.destroy();
    } catch {
      /* already gone */
    }
  }

  /** true if the database answers `SELECT 1` within the query timeout. Never throws. */
  async ping(): Promise<boolean> {
    try {
      await this.execute<RowDataPacket[]>('ping', 'SELECT 1', []);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Close the pool: gracefully (COM_QUIT on each connection) for at most `graceMs`, then every
   * connection is destroyed (a connection stuck on a stalled server never finishes its QUIT).
   * Idempotent; never rejects.
   */
  end(graceMs = 1000): Promise<void> {
    this.ended ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const graceful = this.pool.end().then(
        () => true,
        () => false,
      );
      const late = new Promise<false>((r) => {
        timer = setTimeout(() => r(false), graceMs);
      });
      const ok = await Promise.race([graceful, late]);
      clearTimeout(timer);
      if (!ok) for (const c of [...this.live]) MysqlDb.kill(c, 'shutting down');
      this.live.clear();
    })();
    return this.ended;
  }
}

/** Create a pool and verify connectivity and schema (throws UNREACHABLE / SCHEMA). */
export async function openMysqlDb(url: MysqlUrl, opts: { checkSchema?: boolean; limits?: MysqlPoolLimits } = {}): Promise<MysqlDb> {
  const limits = opts.limits ?? DEFAULT_POOL_LIMITS;
  const db = new MysqlDb(mysql.createPool(mysqlPoolOptions(url, true, limits)), url, limits);
  try {
    await db.execute('open', 'SELECT 1', []);
    if (opts.checkSchema !== false) await checkMysqlSchema(db);
  } catch (e) {
    await db.end();
    throw mysqlError(e, url, 'open');
  }
  return db;
}

export async function checkMysqlSchema(db: MysqlDb): Promise<void> {
  let rows: RowDataPacket[];
  try {
    rows = await db.execute<RowDataPacket[]>('schema check', 'SELECT table_name, table_version FROM version WHERE table_name IN (?, ?)', ['subscriber', 'location']);
  } catch (e) {
    if (e instanceof StoreError && errCode(e.cause) === 'ER_NO_SUCH_TABLE') {
      throw new StoreError('SCHEMA', `${describeMysql(db.url)} has no sipd/Kamailio tables (run: sipctl db init)`, { cause: e });
    }
    throw e;
  }
  checkVersions(
    rows.map((r) => ({ table_name: String(r.table_name), table_version: Number(r.table_version) })),
    describeMysql(db.url),
  );
}

/** Create the database if missing and apply sql/mysql/schema.sql (idempotent). */
export async function applyMysqlSchema(url: MysqlUrl): Promise<void> {
  const statements = splitStatements(readSchema('mysql'));
  let conn: mysql.Connection | undefined;
  try {
    conn = await mysql.createConnection(mysqlPoolOptions(url, false));
    conn.on('error', () => undefined);
    // Identifier, not a value: escape it as one (placeholders cannot name databases).
    await conn.query(`CREATE DATABASE IF NOT EXISTS ${conn.escapeId(url.database)}`);
    await conn.changeUser({ database: url.database });
    for (const st of statements) await conn.query(st);
  } catch (e) {
    throw mysqlError(e, url, 'db init');
  } finally {
    await conn?.end().catch(() => undefined);
  }
}

/** getMany(): most keys per statement. */
export const GET_MANY_MAX = 200;
const GET_MANY_PART = 'SELECT ? AS i, username, domain, password, ha1, ha1b FROM subscriber WHERE username = ? AND domain = ? LIMIT 1';
/** getMany()'s statement for `n` keys (n from paddedSize(): a power of two or GET_MANY_MAX), built once per size. */
const getManySql = memo((n) => (n === 1 ? GET_MANY_PART : Array.from({ length: n }, () => `(${GET_MANY_PART})`).join(' UNION ALL ')));

/** f(n), computed once per n (n is one of the few batchSizes()). */
function memo(f: (n: number) => string): (n: number) => string {
  const seen = new Map<number, string>();
  return (n) => {
    let v = seen.get(n);
    if (v === undefined) seen.set(n, (v = f(n)));
    return v;
  };
}

export class MysqlSubscriberStore implements SubscriberStore {
  constructor(
    private readonly db: MysqlDb,
    private readonly ownsPool = false,
  ) {}

  private rows(what: string, sql: string, values: Value[]): Promise<RowDataPacket[]> {
    return this.db.execute<RowDataPacket[]>(what, sql, values);
  }

  private run(what: string, sql: string, values: Value[]): Promise<ResultSetHeader> {
    return this.db.execute<ResultSetHeader>(what, sql, values);
  }

  private static toSubscriber(r: RowDataPacket): Subscriber {
    return {
      username: String(r.username),
      domain: String(r.domain),
      password: String(r.password),
      ha1: String(r.ha1),
      ha1b: String(r.ha1b),
    };
  }

  async get(username: string, domain: string): Promise<Subscriber | null> {
    const rows = await this.rows(
      'subscriber get',
      'SELECT username, domain, password, ha1, ha1b FROM subscriber WHERE username = ? AND domain = ? LIMIT 1',
      [username, domain],
    );
    return rows[0] ? MysqlSubscriberStore.toSubscriber(rows[0]) : null;
  }

  /**
   * One statement for the whole batch: a UNION ALL of get()'s own query, one per key, each tagged
   * with its position. Each part keeps get()'s WHERE (so the column collation decides matching
   * exactly as for get(): case, trailing spaces) and its unique-index lookup with LIMIT 1; a
   * row-constructor IN or a join on a derived table would need the matches mapped back to keys in
   * JS under the same collation. The keys go in statements of GET_MANY_MAX keys, the last one
   * padded up to a power of two (paddedSize()), so that few distinct statements are prepared and
   * a batch is still one round trip per GET_MANY_MAX keys.
   */
  async getMany(keys: readonly SubscriberKey[]): Promise<(Subscriber | null)[]> {
    const out: (Subscriber | null)[] = new Array<Subscriber | null>(keys.length).fill(null);
    for (let start = 0; start < keys.length; start += GET_MANY_MAX) {
      const n = Math.min(GET_MANY_MAX, keys.length - start);
      // one statement per chunk: padded up to its ladder size by repeating the chunk's last key
      // (answered twice, to the same index), rather than split into several round trips
      const size = paddedSize(n, GET_MANY_MAX);
      const values: Value[] = [];
      for (let i = 0; i < size; i++) {
        const j = Math.min(i, n - 1);
        const k = keys[start + j]!;
        values.push(j, k.username, k.domain);
      }
      const rows = await this.rows('subscriber get', getManySql(size), values);
      for (const r of rows) {
        const i = Number(r.i);
        if (Number.isInteger(i) && i >= 0 && i < n) out[start + i] = MysqlSubscriberStore.toSubscriber(r);
      }
    }
    return out;
  }

  async add(username: string, domain: string, password: string): Promise<void> {
    const s = makeSubscriber(username, domain, password);
    try {
      await this.run('subscriber add', 'INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)', [
        s.username,
        s.domain,
        s.password,
        s.ha1,
        s.ha1b,
      ]);
    } catch (e) {
      if (e instanceof StoreError && errCode(e.cause) === 'ER_DUP_ENTRY') {
        throw new StoreError('EXISTS', `subscriber ${username}@${domain} already exists`, { cause: e.cause });
      }
      throw e;
    }
  }

  async remove(username: string, domain: string): Promise<boolean> {
    const r = await this.run('subscriber remove', 'DELETE FROM subscriber WHERE username = ? AND domain = ?', [username, domain]);
    return r.affectedRows > 0;
  }

  async setPassword(username: string, domain: string, password: string): Promise<boolean> {
    const s = makeSubscriber(username, domain, password);
    const r = await this.run('subscriber passwd', 'UPDATE subscriber SET password = ?, ha1 = ?, ha1b = ? WHERE username = ? AND domain = ?', [
      s.password,
      s.ha1,
      s.ha1b,
      username,
      domain,
    ]);
    return r.affectedRows > 0;
  }

  async list(domain?: string): Promise<Subscriber[]> {
    const rows =
      domain === undefined
        ? await this.rows('subscriber list', 'SELECT username, domain, password, ha1, ha1b FROM subscriber ORDER BY domain, username', [])
        : await this.rows(
            'subscriber list',
            'SELECT username, domain, password, ha1, ha1b FROM subscriber WHERE domain = ? ORDER BY username',
            [domain],
          );
    return rows.map((r) => MysqlSubscriberStore.toSubscriber(r));
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.db.end();
  }
}

function toLocationRow(r: RowDataPacket): LocationRow {
  return {
    ruid: String(r.ruid),
    username: String(r.username),
    domain: r.domain === null ? null : String(r.domain),
    contact: String(r.contact),
    received: r.received === null ? null : String(r.received),
    path: r.path === null ? null : String(r.path),
    expires: String(r.expires),
    q: Number(r.q),
    callid: String(r.callid),
    cseq: Number(r.cseq),
    last_modified: String(r.last_modified),
    flags: Number(r.flags),
    cflags: Number(r.cflags),
    user_agent: String(r.user_agent),
    socket: r.socket === null ? null : String(r.socket),
    methods: r.methods === null ? null : Number(r.methods),
    instance: r.instance === null ? null : String(r.instance),
    reg_id: Number(r.reg_id),
  };
}

/** Keep one binding per contact (the newest) in case concurrent writers left duplicates. */
function dedupe(bindings: Binding[]): Binding[] {
  const seen = new Map<string, Binding>();
  for (const b of bindings) {
    const k = `${b.aor}\u0000${b.contact}`;
    const prev = seen.get(k);
    if (!prev || b.lastModified > prev.lastModified) seen.set(k, b);
  }
  return [...seen.values()];
}

const COLS = LOCATION_COLUMNS.map((c) => `\`${c}\``).join(', ');
const ROW_PLACEHOLDERS = `(${LOCATION_COLUMNS.map(() => '?').join(', ')})`;
/** every column but the key takes the new row's value (MariaDB and MySQL both accept VALUES(col) here). */
const UPSERT_SET = LOCATION_COLUMNS.filter((c) => c !== 'ruid')
  .map((c) => `\`${c}\` = VALUES(\`${c}\`)`)
  .join(', ');
/** saveMany(): most rows per INSERT (18 values each). */
export const SAVE_MANY_MAX = 100;
/** saveMany()'s upsert of `n` rows (n from batchSizes()), built once per size. */
const saveManySql = memo(
  (n) => `INSERT INTO location (${COLS}) VALUES ${Array.from({ length: n }, () => ROW_PLACEHOLDERS).join(', ')} ON DUPLICATE KEY UPDATE ${UPSERT_SET}`,
);

/**
 * The UPDATE of `n` bindings by ruid (n from batchSizes()): one multi-table UPDATE joined to a
 * derived table of the rows' values (portable across MariaDB and MySQL), built once per size.
 */
const updateManySql = memo((n) => {
  const first = `SELECT ${LOCATION_COLUMNS.map((c) => `? AS \`${c}\``).join(', ')}`;
  const more = `SELECT ${LOCATION_COLUMNS.map(() => '?').join(', ')}`;
  const derived = [first, ...Array.from({ length: n - 1 }, () => more)].join(' UNION ALL ');
  const set = LOCATION_COLUMNS.filter((c) => c !== 'ruid')
    .map((c) => `l.\`${c}\` = v.\`${c}\``)
    .join(', ');
  return `UPDATE location AS l JOIN (${derived}) AS v ON l.ruid = v.ruid SET ${set}`;
});
/** Which of `n` ruids exist (n a power of two or SAVE_MANY_MAX). */
const existingRuidsSql = memo((n) => `SELECT ruid FROM location WHERE ruid IN (${Array.from({ length: n }, () => '?').join(', ')})`);

/** The last save of each ruid, in the order of those last saves. */
function lastByRuid(bindings: readonly Binding[]): Binding[] {
  const last = new Map<string, Binding>();
  for (const b of bindings) {
    last.delete(b.ruid);
    last.set(b.ruid, b);
  }
  return [...last.values()];
}

export class MysqlLocationStore implements LocationStore {
  constructor(
    private readonly db: MysqlDb,
    private readonly now: Clock,
    private readonly ownsPool = false,
  ) {}

  private rows(what: string, sql: string, values: Value[]): Promise<RowDataPacket[]> {
    return this.db.execute<RowDataPacket[]>(what, sql, values);
  }

  private run(what: string, sql: string, values: Value[]): Promise<ResultSetHeader> {
    return this.db.execute<ResultSetHeader>(what, sql, values);
  }

  private nowSql(): string {
    return toSqlDatetime(this.now(), ZONE);
  }

  async lookup(aor: string): Promise<Binding[]> {
    const { username, domain } = splitAor(aor);
    const rows = await this.rows('location lookup', `SELECT ${COLS} FROM location WHERE username = ? AND domain = ? AND expires > ?`, [
      username,
      domain,
      this.nowSql(),
    ]);
    return dedupe(rows.map((r) => rowToBinding(toLocationRow(r), ZONE))).sort(compareBindings);
  }

  /**
   * Whether the location table has a unique index on `ruid` alone (Kamailio's and sipd's ruid_idx):
   * then a save is one INSERT ... ON DUPLICATE KEY UPDATE. Without it (a hand-made table) saves
   * fall back to UPDATE by aor + contact, then INSERT. Asked once; a failed check is asked again.
   */
  private ruidUnique(): Promise<boolean> {
    this.ruidUniqueCheck ??= this.rows(
      'location schema',
      `SELECT index_name, COUNT(*) AS n, SUM(column_name = 'ruid') AS r FROM information_schema.statistics
        WHERE table_schema = DATABASE() AND table_name = 'location' AND non_unique = 0 GROUP BY index_name`,
      [],
    ).then(
      (rows) => (this.ruidUniqueKnown = rows.some((r) => Number(r.n) === 1 && Number(r.r) === 1)),
      (e: unknown) => {
        this.ruidUniqueCheck = undefined;
        throw e;
      },
    );
    return this.ruidUniqueCheck;
  }
  private ruidUniqueCheck: Promise<boolean> | undefined;
  /** the check's answer once known: saves then send their statement without waiting a tick. */
  private ruidUniqueKnown: boolean | undefined;

  save(binding: Binding): Promise<void> {
    return this.saveMany([binding]);
  }

  /**
   * Save bindings; the table ends with the last save of each ruid (its unique key). Rows that are
   * there are UPDATEd (one multi-table UPDATE per batchSizes() chunk, at most SAVE_MANY_MAX rows, so
   * that few distinct statements are prepared); a chunk that matched fewer rows than it has asks
   * which ruids exist, and the new rows go in as multi-row upserts. An upsert takes an
   * AUTO_INCREMENT id even when it updates, which re-REGISTERs would use up (INT UNSIGNED); the
   * UPDATE takes none and costs MariaDB less (measured: 40,000 re-saves, 1.59 against 2.25 s of
   * MariaDB CPU). A statement is atomic: if any row is refused the whole statement fails, and the
   * caller may retry row by row (write-back does); the statements before it stay written (a save
   * written again is the same row).
   */
  async saveMany(bindings: readonly Binding[]): Promise<void> {
    for (const b of bindings) checkBinding(b);
    if (bindings.length === 0) return;
    const ruidUnique = this.ruidUniqueKnown ?? (await this.ruidUnique());
    if (!ruidUnique) {
      for (const b of bindings) await this.saveByContact(b);
      return;
    }
    // the last save of each ruid is what the table ends with (rows are keyed by ruid alone)
    const rows = bindings.length === 1 ? bindings : lastByRuid(bindings);
    // 1. UPDATE the rows that are there. An upsert (INSERT … ON DUPLICATE KEY UPDATE) of a row that
    //    exists still takes an AUTO_INCREMENT id on InnoDB: location.id is INT UNSIGNED (Kamailio's
    //    schema), which re-REGISTERs at 2,000/s would use up in ~25 days.
    const missing: Binding[] = [];
    let start = 0;
    for (const size of batchSizes(rows.length, SAVE_MANY_MAX)) {
      const values: Value[] = [];
      for (let i = start; i < start + size; i++) pushBindingValues(values, rows[i]!, ZONE);
      const res = await this.run('location save', updateManySql(size), values);
      start += size;
      // affectedRows counts matched rows (mysql2 connects with CLIENT_FOUND_ROWS)
      if (res.affectedRows >= size) continue;
      const chunk = rows.slice(start - size, start);
      const there = await this.existingRuids(chunk);
      for (const b of chunk) if (!there.has(b.ruid)) missing.push(b);
    }
    // 2. INSERT the new ones (an upsert still: another writer may have inserted one meanwhile)
    start = 0;
    for (const size of batchSizes(missing.length, SAVE_MANY_MAX)) {
      const values: Value[] = [];
      for (let i = start; i < start + size; i++) pushBindingValues(values, missing[i]!, ZONE);
      await this.run('location save', saveManySql(size), values);
      start += size;
    }
  }

  /** Which of these bindings' ruids the table holds (one statement, padded to a ladder size). */
  private async existingRuids(chunk: readonly Binding[]): Promise<Set<string>> {
    const size = paddedSize(chunk.length, SAVE_MANY_MAX);
    const values: Value[] = [];
    for (let i = 0; i < size; i++) values.push(chunk[Math.min(i, chunk.length - 1)]!.ruid);
    const found = await this.rows('location save', existingRuidsSql(size), values);
    return new Set(found.map((r) => String(r.ruid)));
  }

  /** The save of a table without a unique ruid: UPDATE by aor + contact, INSERT if there was none. */
  private async saveByContact(binding: Binding): Promise<void> {
    const values = bindingToValues(binding, ZONE);
    const set = LOCATION_COLUMNS.map((c) => `\`${c}\` = ?`).join(', ');
    const upd = await this.run('location save', `UPDATE location SET ${set} WHERE username = ? AND domain = ? AND contact = ?`, [
      ...values,
      binding.username,
      binding.domain,
      binding.contact,
    ]);
    if (upd.affectedRows > 0) return;
    await this.run('location save', `INSERT INTO location (${COLS}) VALUES ${ROW_PLACEHOLDERS}`, values);
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    const { username, domain } = splitAor(aor);
    const r = await this.run('location remove', 'DELETE FROM location WHERE username = ? AND domain = ? AND contact = ?', [
      username,
      domain,
      contact,
    ]);
    return r.affectedRows > 0;
  }

  async removeAll(aor: string): Promise<number> {
    const { username, domain } = splitAor(aor);
    const r = await this.run('location remove', 'DELETE FROM location WHERE username = ? AND domain = ?', [username, domain]);
    return r.affectedRows;
  }

  async expire(now: number): Promise<number> {
    const r = await this.run('location expire', 'DELETE FROM location WHERE expires <= ?', [toSqlDatetime(now, ZONE)]);
    return r.affectedRows;
  }

  async list(): Promise<Binding[]> {
    const rows = await this.rows('location list', `SELECT ${COLS} FROM location WHERE expires > ?`, [this.nowSql()]);
    return dedupe(rows.map((r) => rowToBinding(toLocationRow(r), ZONE))).sort(compareListed);
  }

  async aors(): Promise<string[]> {
    const rows = await this.rows('location aors', 'SELECT DISTINCT username, domain FROM location WHERE expires > ?', [this.nowSql()]);
    return [...new Set(rows.map((r) => `${String(r.username)}@${r.domain === null ? '' : String(r.domain)}`))].sort();
  }

  /** Counts rows; duplicates left by racing writers (see dedupe) would count twice. */
  async counts(): Promise<LocationCounts> {
    const [r] = await this.rows(
      'location counts',
      'SELECT COUNT(DISTINCT username, domain) AS aors, COUNT(*) AS contacts FROM location WHERE expires > ?',
      [this.nowSql()],
    );
    return { aors: Number(r?.aors ?? 0), contacts: Number(r?.contacts ?? 0) };
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.db.end();
  }
}
