/** SQLite stores (better-sqlite3, prepared statements) over the Kamailio-shaped tables. */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Binding, Clock, LocationCounts, LocationStore, Subscriber, SubscriberKey, SubscriberStore } from './types.js';
import { StoreError } from './types.js';
import { applySqliteSchema, sqliteSchemaPresent } from './schema.js';
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

export type SqliteDatabase = Database.Database;

const ZONE = 'utc' as const;

function sqliteCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

/** SQLite result codes (primary code, before the first extended "_" suffix) and the StoreError they mean. */
const CODE_KINDS: Record<string, 'BUSY' | 'UNREACHABLE' | 'INVALID'> = {
  SQLITE_BUSY: 'BUSY',
  SQLITE_LOCKED: 'BUSY',
  SQLITE_FULL: 'UNREACHABLE',
  SQLITE_IOERR: 'UNREACHABLE',
  SQLITE_READONLY: 'UNREACHABLE',
  SQLITE_CANTOPEN: 'UNREACHABLE',
  SQLITE_CONSTRAINT: 'INVALID',
  SQLITE_TOOBIG: 'INVALID',
  SQLITE_MISMATCH: 'INVALID',
  SQLITE_RANGE: 'INVALID',
};

function wrap(e: unknown, what: string): StoreError {
  if (e instanceof StoreError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (/no such table/i.test(msg)) return new StoreError('SCHEMA', `SQLite ${what}: ${msg} (run: sipctl db init)`, { cause: e });
  const code = sqliteCode(e);
  const kind = code === undefined ? undefined : CODE_KINDS[/^SQLITE_[A-Z]+/.exec(code)?.[0] ?? code];
  if (kind === 'BUSY') return new StoreError('BUSY', `SQLite ${what}: database is locked`, { cause: e });
  if (kind !== undefined) return new StoreError(kind, `SQLite ${what}: ${msg}`, { cause: e });
  return new StoreError('DB', `SQLite ${what}: ${msg}`, { cause: e });
}

/**
 * Open (creating the file and its directory if needed) a SQLite database.
 * With `autoInit` (default) missing tables are created from sql/sqlite/schema.sql.
 */
export function openSqlite(path: string, opts: { autoInit?: boolean } = {}): SqliteDatabase {
  let db: SqliteDatabase;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new StoreError('UNREACHABLE', `cannot open SQLite database ${path}: ${msg}`, { cause: e });
  }
  try {
    if (!sqliteSchemaPresent(db)) {
      if (opts.autoInit === false) throw new StoreError('SCHEMA', `SQLite database ${path} has no sipd tables (run: sipctl db init)`);
      applySqliteSchema(db);
    }
  } catch (e) {
    db.close();
    throw wrap(e, 'schema');
  }
  return db;
}

interface SubscriberRow {
  username: string;
  domain: string;
  password: string;
  ha1: string;
  ha1b: string;
}

/** Subscriber table. close() closes the database only if `ownsDb`. */
export class SqliteSubscriberStore implements SubscriberStore {
  private readonly stGet;
  private readonly stAdd;
  private readonly stRemove;
  private readonly stSetPw;
  private readonly stList;
  private readonly stListDomain;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly ownsDb = false,
  ) {
    const cols = 'username, domain, password, ha1, ha1b';
    this.stGet = db.prepare<[string, string], SubscriberRow>(`SELECT ${cols} FROM subscriber WHERE username = ? AND domain = ?`);
    this.stAdd = db.prepare<[string, string, string, string, string]>(
      `INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)`,
    );
    this.stRemove = db.prepare<[string, string]>(`DELETE FROM subscriber WHERE username = ? AND domain = ?`);
    this.stSetPw = db.prepare<[string, string, string, string, string]>(
      `UPDATE subscriber SET password = ?, ha1 = ?, ha1b = ? WHERE username = ? AND domain = ?`,
    );
    this.stList = db.prepare<[], SubscriberRow>(`SELECT ${cols} FROM subscriber ORDER BY domain, username`);
    this.stListDomain = db.prepare<[string], SubscriberRow>(`SELECT ${cols} FROM subscriber WHERE domain = ? ORDER BY username`);
  }

  async get(username: string, domain: string): Promise<Subscriber | null> {
    try {
      return this.stGet.get(username, domain) ?? null;
    } catch (e) {
      throw wrap(e, 'subscriber get');
    }
  }

  async getMany(keys: readonly SubscriberKey[]): Promise<(Subscriber | null)[]> {
    try {
      return keys.map((k) => this.stGet.get(k.username, k.domain) ?? null);
    } catch (e) {
      throw wrap(e, 'subscriber get');
    }
  }

  async add(username: string, domain: string, password: string): Promise<void> {
    const s = makeSubscriber(username, domain, password);
    try {
      this.stAdd.run(s.username, s.domain, s.password, s.ha1, s.ha1b);
    } catch (e) {
      if (sqliteCode(e) === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new StoreError('EXISTS', `subscriber ${username}@${domain} already exists`, { cause: e });
      }
      throw wrap(e, 'subscriber add');
    }
  }

  async remove(username: string, domain: string): Promise<boolean> {
    try {
      return this.stRemove.run(username, domain).changes > 0;
    } catch (e) {
      throw wrap(e, 'subscriber remove');
    }
  }

  async setPassword(username: string, domain: string, password: string): Promise<boolean> {
    const s = makeSubscriber(username, domain, password);
    try {
      return this.stSetPw.run(s.password, s.ha1, s.ha1b, username, domain).changes > 0;
    } catch (e) {
      throw wrap(e, 'subscriber passwd');
    }
  }

  async list(domain?: string): Promise<Subscriber[]> {
    try {
      return domain === undefined ? this.stList.all() : this.stListDomain.all(domain);
    } catch (e) {
      throw wrap(e, 'subscriber list');
    }
  }

  async close(): Promise<void> {
    if (this.ownsDb && this.db.open) this.db.close();
  }
}

type Values = (string | number | null)[];

/** Location table. close() closes the database only if `ownsDb`. */
export class SqliteLocationStore implements LocationStore {
  private readonly stLookup;
  private readonly stUpdate;
  private readonly stInsert;
  private readonly stRemove;
  private readonly stRemoveAll;
  private readonly stExpire;
  private readonly stList;
  private readonly stAors;
  private readonly stCounts;
  private readonly saveTx;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: Clock,
    private readonly ownsDb = false,
  ) {
    const cols = LOCATION_COLUMNS.join(', ');
    this.stLookup = db.prepare<[string, string, string], LocationRow>(
      `SELECT ${cols} FROM location WHERE username = ? AND domain = ? AND expires > ?`,
    );
    this.stUpdate = db.prepare<Values>(
      `UPDATE location SET ${LOCATION_COLUMNS.map((c) => `${c} = ?`).join(', ')} WHERE username = ? AND domain = ? AND contact = ?`,
    );
    this.stInsert = db.prepare<Values>(`INSERT INTO location (${cols}) VALUES (${LOCATION_COLUMNS.map(() => '?').join(', ')})`);
    this.stRemove = db.prepare<[string, string, string]>(`DELETE FROM location WHERE username = ? AND domain = ? AND contact = ?`);
    this.stRemoveAll = db.prepare<[string, string]>(`DELETE FROM location WHERE username = ? AND domain = ?`);
    this.stExpire = db.prepare<[string]>(`DELETE FROM location WHERE expires <= ?`);
    this.stList = db.prepare<[string], LocationRow>(`SELECT ${cols} FROM location WHERE expires > ?`);
    this.stAors = db.prepare<[string], { username: string; domain: string | null }>(
      `SELECT DISTINCT username, domain FROM location WHERE expires > ?`,
    );
    this.stCounts = db.prepare<[string], { aors: number; contacts: number }>(
      `SELECT COUNT(DISTINCT username || '@' || COALESCE(domain, '')) AS aors, COUNT(*) AS contacts FROM location WHERE expires > ?`,
    );
    // one upsert on the unique ruid (as MySQL's INSERT ... ON DUPLICATE KEY UPDATE); a table
    // without a unique index on ruid alone cannot prepare it: UPDATE by aor + contact, then INSERT
    let upsert: Database.Statement<Values> | undefined;
    try {
      upsert = db.prepare<Values>(
        `INSERT INTO location (${cols}) VALUES (${LOCATION_COLUMNS.map(() => '?').join(', ')}) ON CONFLICT (ruid) DO UPDATE SET ${LOCATION_COLUMNS.filter((c) => c !== 'ruid')
          .map((c) => `${c} = excluded.${c}`)
          .join(', ')}`,
      );
    } catch {
      upsert = undefined;
    }
    const saveOne = (b: Binding): void => {
      const values = bindingToValues(b, ZONE);
      if (upsert !== undefined) {
        upsert.run(...values);
        return;
      }
      const updated = this.stUpdate.run(...values, b.username, b.domain, b.contact).changes;
      if (updated === 0) this.stInsert.run(...values);
    };
    this.saveTx = db.transaction((bs: readonly Binding[]) => {
      for (const b of bs) saveOne(b);
    });
  }

  private nowSql(): string {
    return toSqlDatetime(this.now(), ZONE);
  }

  async lookup(aor: string): Promise<Binding[]> {
    const { username, domain } = splitAor(aor);
    try {
      return this.stLookup
        .all(username, domain, this.nowSql())
        .map((r) => rowToBinding(r, ZONE))
        .sort(compareBindings);
    } catch (e) {
      throw wrap(e, 'location lookup');
    }
  }

  save(binding: Binding): Promise<void> {
    return this.saveMany([binding]);
  }

  /** Saves in order, in one transaction (all or nothing). */
  async saveMany(bindings: readonly Binding[]): Promise<void> {
    for (const b of bindings) checkBinding(b);
    try {
      this.saveTx(bindings);
    } catch (e) {
      throw wrap(e, 'location save');
    }
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    const { username, domain } = splitAor(aor);
    try {
      return this.stRemove.run(username, domain, contact).changes > 0;
    } catch (e) {
      throw wrap(e, 'location remove');
    }
  }

  async removeAll(aor: string): Promise<number> {
    const { username, domain } = splitAor(aor);
    try {
      return this.stRemoveAll.run(username, domain).changes;
    } catch (e) {
      throw wrap(e, 'location remove');
    }
  }

  async expire(now: number): Promise<number> {
    try {
      return this.stExpire.run(toSqlDatetime(now, ZONE)).changes;
    } catch (e) {
      throw wrap(e, 'location expire');
    }
  }

  async list(): Promise<Binding[]> {
    try {
      return this.stList
        .all(this.nowSql())
        .map((r) => rowToBinding(r, ZONE))
        .sort(compareListed);
    } catch (e) {
      throw wrap(e, 'location list');
    }
  }

  async aors(): Promise<string[]> {
    try {
      return [...new Set(this.stAors.all(this.nowSql()).map((r) => `${r.username}@${r.domain ?? ''}`))].sort();
    } catch (e) {
      throw wrap(e, 'location aors');
    }
  }

  async counts(): Promise<LocationCounts> {
    try {
      const r = this.stCounts.get(this.nowSql());
      return { aors: r?.aors ?? 0, contacts: r?.contacts ?? 0 };
    } catch (e) {
      throw wrap(e, 'location counts');
    }
  }

  async close(): Promise<void> {
    if (this.ownsDb && this.db.open) this.db.close();
  }
}
