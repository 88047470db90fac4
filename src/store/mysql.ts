/**
 * MySQL/MariaDB stores (mysql2/promise pool). Every value goes through
 * `execute` placeholders; SQL text is built only from constant column lists.
 * Date-times are written and read as local time, as Kamailio does.
 */
import mysql from 'mysql2/promise';
import type { Pool, PoolOptions, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { DbUrl } from '../config.js';
import type { Binding, Clock, LocationCounts, LocationStore, Subscriber, SubscriberStore } from './types.js';
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
  'PROTOCOL_CONNECTION_LOST',
  'ER_ACCESS_DENIED_ERROR',
  'ER_DBACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_CON_COUNT_ERROR',
  'ER_HOST_NOT_PRIVILEGED',
  'ER_HOST_IS_BLOCKED',
]);

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

export function describeMysql(url: MysqlUrl): string {
  return `MySQL ${url.user}@${url.host}:${url.port}/${url.database}`;
}

/** Map any mysql2/network error to a one-line StoreError. */
export function mysqlError(e: unknown, url: MysqlUrl, what: string): StoreError {
  if (e instanceof StoreError) return e;
  const code = errCode(e);
  const where = describeMysql(url);
  if (code && (UNREACHABLE_CODES.has(code) || code.startsWith('ER_ACCESS_DENIED'))) {
    const text = errText(e);
    const detail = text && !text.includes(code) ? `${code}: ${text}` : text || code;
    return new StoreError('UNREACHABLE', `cannot reach ${where}: ${detail}`, { cause: e });
  }
  if (code === 'ER_NO_SUCH_TABLE' || code === 'ER_BAD_FIELD_ERROR') {
    return new StoreError('SCHEMA', `${where} ${what}: ${errText(e)} (run: sipctl db init)`, { cause: e });
  }
  return new StoreError('DB', `${where} ${what}: ${errText(e)}`, { cause: e });
}

export function mysqlPoolOptions(url: MysqlUrl, withDatabase = true): PoolOptions {
  return {
    host: url.host,
    port: url.port,
    user: url.user,
    password: url.password,
    ...(withDatabase ? { database: url.database } : {}),
    connectionLimit: 10,
    connectTimeout: 5000,
    dateStrings: true,
    charset: 'utf8mb4',
    waitForConnections: true,
    enableKeepAlive: true,
  };
}

/** Create a pool and verify connectivity and schema (throws UNREACHABLE / SCHEMA). */
export async function openMysqlPool(url: MysqlUrl, opts: { checkSchema?: boolean } = {}): Promise<Pool> {
  const pool = mysql.createPool(mysqlPoolOptions(url));
  // An idle pool connection that dies must not crash the process.
  pool.on('connection', (conn) => {
    conn.on('error', () => undefined);
  });
  try {
    await pool.query('SELECT 1');
    if (opts.checkSchema !== false) await checkMysqlSchema(pool, url);
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw mysqlError(e, url, 'open');
  }
  return pool;
}

export async function checkMysqlSchema(pool: Pool, url: MysqlUrl): Promise<void> {
  let rows: RowDataPacket[];
  try {
    [rows] = await pool.execute<RowDataPacket[]>(
      'SELECT table_name, table_version FROM version WHERE table_name IN (?, ?)',
      ['subscriber', 'location'],
    );
  } catch (e) {
    if (errCode(e) === 'ER_NO_SUCH_TABLE') {
      throw new StoreError('SCHEMA', `${describeMysql(url)} has no sipd/Kamailio tables (run: sipctl db init)`, { cause: e });
    }
    throw mysqlError(e, url, 'schema check');
  }
  checkVersions(
    rows.map((r) => ({ table_name: String(r.table_name), table_version: Number(r.table_version) })),
    describeMysql(url),
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

/** A prepared-statement query returning rows; errors become one-line StoreErrors. */
async function execRows(pool: Pool, url: MysqlUrl, what: string, sql: string, values: Value[]): Promise<RowDataPacket[]> {
  try {
    const [rows] = await pool.execute<RowDataPacket[]>(sql, values);
    return rows;
  } catch (e) {
    throw mysqlError(e, url, what);
  }
}

/** A prepared-statement write; errors become one-line StoreErrors. */
async function execRun(pool: Pool, url: MysqlUrl, what: string, sql: string, values: Value[]): Promise<ResultSetHeader> {
  try {
    const [res] = await pool.execute<ResultSetHeader>(sql, values);
    return res;
  } catch (e) {
    throw mysqlError(e, url, what);
  }
}

export class MysqlSubscriberStore implements SubscriberStore {
  constructor(
    private readonly pool: Pool,
    private readonly url: MysqlUrl,
    private readonly ownsPool = false,
  ) {}

  private rows(what: string, sql: string, values: Value[]): Promise<RowDataPacket[]> {
    return execRows(this.pool, this.url, what, sql, values);
  }

  private run(what: string, sql: string, values: Value[]): Promise<ResultSetHeader> {
    return execRun(this.pool, this.url, what, sql, values);
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

  async add(username: string, domain: string, password: string): Promise<void> {
    const s = makeSubscriber(username, domain, password);
    try {
      await this.pool.execute('INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)', [
        s.username,
        s.domain,
        s.password,
        s.ha1,
        s.ha1b,
      ]);
    } catch (e) {
      if (errCode(e) === 'ER_DUP_ENTRY') throw new StoreError('EXISTS', `subscriber ${username}@${domain} already exists`, { cause: e });
      throw mysqlError(e, this.url, 'subscriber add');
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
    if (this.ownsPool) await this.pool.end();
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

export class MysqlLocationStore implements LocationStore {
  constructor(
    private readonly pool: Pool,
    private readonly url: MysqlUrl,
    private readonly now: Clock,
    private readonly ownsPool = false,
  ) {}

  private rows(what: string, sql: string, values: Value[]): Promise<RowDataPacket[]> {
    return execRows(this.pool, this.url, what, sql, values);
  }

  private run(what: string, sql: string, values: Value[]): Promise<ResultSetHeader> {
    return execRun(this.pool, this.url, what, sql, values);
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

  async save(binding: Binding): Promise<void> {
    checkBinding(binding);
    const values = bindingToValues(binding, ZONE);
    const set = LOCATION_COLUMNS.map((c) => `\`${c}\` = ?`).join(', ');
    const upd = await this.run('location save', `UPDATE location SET ${set} WHERE username = ? AND domain = ? AND contact = ?`, [
      ...values,
      binding.username,
      binding.domain,
      binding.contact,
    ]);
    if (upd.affectedRows > 0) return;
    await this.run('location save', `INSERT INTO location (${COLS}) VALUES (${LOCATION_COLUMNS.map(() => '?').join(', ')})`, values);
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
    if (this.ownsPool) await this.pool.end();
  }
}
