/**
 * MariaDB/MySQL for tests: a fresh database `sipd_test_<random>` per test
 * file, dropped afterwards (SIPD_TEST_DB_PREFIX replaces `sipd_test_`, so that
 * several people sharing one server can tell their databases apart).
 *
 * Server: 127.0.0.1:3306, user root, no password (override with
 * SIPD_TEST_MYSQL_URL=mysql://USER:PASS@HOST:PORT). If the server cannot be
 * reached: with CI set, importing this module throws (the test file fails);
 * otherwise MySQL suites are skipped with a printed reason.
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { describe } from 'vitest';
import { parseDbUrl } from '../../src/config.js';
import type { DbUrl } from '../../src/config.js';

export type MysqlDbUrl = Extract<DbUrl, { kind: 'mysql' }>;

const base = new URL(process.env.SIPD_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306');
const server = {
  host: base.hostname,
  port: base.port ? Number(base.port) : 3306,
  user: decodeURIComponent(base.username || 'root'),
  password: decodeURIComponent(base.password),
};

async function probe(): Promise<string | null> {
  try {
    const conn = await mysql.createConnection({ ...server, connectTimeout: 3000 });
    await conn.query('SELECT 1');
    await conn.end();
    return null;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return `${err.code ?? 'error'} ${err.message ?? String(e)}`.trim();
  }
}

/** null when MariaDB answers, else why not. */
export const mysqlUnavailable: string | null = await probe();

if (mysqlUnavailable !== null) {
  const where = `${server.user}@${server.host}:${server.port}`;
  if (process.env.CI) throw new Error(`MariaDB at ${where} is required when CI is set: ${mysqlUnavailable}`);
  console.warn(`[sipd tests] skipping MySQL suites: MariaDB at ${where} unreachable (${mysqlUnavailable})`);
}

/** describe() that runs only when MariaDB is reachable. */
export const describeMysql = describe.skipIf(mysqlUnavailable !== null);

export interface TestDatabase {
  name: string;
  /** mysql://... URL for SIPD_DB. */
  url: string;
  db: MysqlDbUrl;
  /** Run a query in the test database (test inspection only). */
  query(sql: string, values?: (string | number | null)[]): Promise<RowDataPacket[]>;
  /** Drop the database and close the admin connection. */
  drop(): Promise<void>;
}

const prefix = process.env.SIPD_TEST_DB_PREFIX ?? 'sipd_test_';
if (!/^[a-z][a-z0-9_]{0,40}$/.test(prefix)) throw new Error(`SIPD_TEST_DB_PREFIX must be [a-z][a-z0-9_]*, at most 41 characters: ${prefix}`);

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `${prefix}${randomBytes(6).toString('hex')}`;
  const admin = await mysql.createConnection({ ...server, connectTimeout: 3000, dateStrings: true });
  await admin.query(`CREATE DATABASE ${admin.escapeId(name)}`);
  await admin.changeUser({ database: name });
  const auth = server.password ? `${encodeURIComponent(server.user)}:${encodeURIComponent(server.password)}` : encodeURIComponent(server.user);
  const url = `mysql://${auth}@${server.host}:${server.port}/${name}`;
  const db = parseDbUrl(url) as MysqlDbUrl;
  return {
    name,
    url,
    db,
    async query(sql, values = []) {
      const [rows] = await admin.query<RowDataPacket[]>(sql, values);
      return rows;
    },
    async drop() {
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeId(name)}`);
      } finally {
        await admin.end();
      }
    },
  };
}
