/**
 * Store composition: builds the subscriber and location stores the config
 * asks for.
 *
 *   subscribers = CachedSubscriberStore(instrumented(SQLite | MySQL))   (cache if ttl > 0; refresh-ahead
 *                 and batching with the cache's derived defaults: refreshBatchMs = min(100, ttl / 4))
 *   locations   = memory                                   db_mode=memory
 *               | CachedLocationStore(memory, instrumented(db))  db_mode=write-through
 *               | instrumented(db)                         db_mode=db-only
 */
import type { DbMode, DbUrl } from '../config.js';
import { CachedLocationStore, CachedSubscriberStore, instrumentLocationStore, instrumentSubscriberStore } from './cache.js';
import { MemoryLocationStore } from './memory.js';
import { WriteBackLocationStore, type WriteBackEvents } from './write-back.js';
import { DEFAULT_POOL_LIMITS, MysqlLocationStore, MysqlSubscriberStore, applyMysqlSchema, openMysqlDb } from './mysql.js';
import type { MysqlPoolLimits, MysqlUrl } from './mysql.js';
import { applySqliteSchema } from './schema.js';
import { SqliteLocationStore, SqliteSubscriberStore, openSqlite } from './sqlite.js';
import type { Clock, LocationStore, QueryHook, SubscriberStore } from './types.js';
import { StoreError } from './types.js';

export * from './types.js';
export { computeHa1, computeHa1b, splitAor } from './util.js';
export { MemoryLocationStore, MemorySubscriberStore } from './memory.js';
export { CachedLocationStore, CachedSubscriberStore } from './cache.js';
export { DEFAULT_POOL_LIMITS, type MysqlPoolLimits } from './mysql.js';
export { WriteBackLocationStore, type PendingChange, type WriteBackEvents, type WriteBackOptions } from './write-back.js';
export { LOCATION_COLUMN_LENGTHS, LOCATION_INT_MAX, locationFieldProblem, type LocationColumn, type LocationFieldProblem } from './limits.js';

/** The part of Config the stores need (a full Config fits). */
export interface StoresConfig {
  db: DbUrl;
  location: { db_mode: DbMode; flush_interval_ms?: number; retry_max_ms?: number; final_flush_ms?: number };
  auth?: { credential_cache_ttl_ms: number };
  /** MySQL connection pool limits (defaults: DEFAULT_POOL_LIMITS). */
  db_pool?: { connections: number; queue_limit: number; query_timeout_ms: number };
}

export interface OpenStoresOptions {
  /** Clock (unix ms) deciding which bindings are expired. Default Date.now. */
  now?: Clock;
  /** Called after each database-backed store operation with its duration. */
  onQuery?: QueryHook;
  /** SQLite only: create missing tables (default true). MySQL tables are never created implicitly. */
  autoInit?: boolean;
  /** write-back mode: what happens to the background writes (failures, outages, unwritten changes at close). */
  writeBack?: WriteBackEvents;
}

export interface Stores {
  subscribers: SubscriberStore;
  locations: LocationStore;
  /** true if the database answers a trivial query. Never throws. */
  ping(): Promise<boolean>;
  /** location changes not yet written to the database (write-back mode; 0 otherwise). */
  locationBacklog(): number;
  /** Close both stores and the database connection(s). Idempotent. */
  close(): Promise<void>;
}

const noHook: QueryHook = () => undefined;

/** close(): how long the MySQL pool may take to end gracefully before its connections are destroyed. */
const POOL_END_GRACE_MS = 1000;

/**
 * Open the stores described by `config`. Fails fast with a StoreError:
 * UNREACHABLE when the database cannot be reached, SCHEMA when the tables are
 * missing (MySQL; run `sipctl db init`) or of the wrong version.
 */
export async function openStores(config: StoresConfig, opts: OpenStoresOptions = {}): Promise<Stores> {
  const now = opts.now ?? Date.now;
  const hook = opts.onQuery ?? noHook;
  let baseSubs: SubscriberStore;
  let baseLoc: LocationStore;
  let ping: () => Promise<boolean>;
  let closeDb: () => Promise<void>;

  if (config.db.kind === 'sqlite') {
    const db = openSqlite(config.db.path, { autoInit: opts.autoInit !== false });
    baseSubs = new SqliteSubscriberStore(db);
    baseLoc = new SqliteLocationStore(db, now);
    ping = async () => {
      try {
        db.prepare('SELECT 1').get();
        return true;
      } catch {
        return false;
      }
    };
    closeDb = async () => {
      if (db.open) db.close();
    };
  } else {
    const url: MysqlUrl = config.db;
    const limits: MysqlPoolLimits = config.db_pool
      ? { connections: config.db_pool.connections, queueLimit: config.db_pool.queue_limit, queryTimeoutMs: config.db_pool.query_timeout_ms }
      : DEFAULT_POOL_LIMITS;
    const db = await openMysqlDb(url, { limits });
    baseSubs = new MysqlSubscriberStore(db);
    baseLoc = new MysqlLocationStore(db, now);
    ping = () => db.ping();
    // bounded: a connection stuck on a stalled server is destroyed after a short grace
    closeDb = () => db.end(POOL_END_GRACE_MS);
  }

  const subsDb = instrumentSubscriberStore(baseSubs, hook);
  const ttl = config.auth?.credential_cache_ttl_ms ?? 0;
  const subscribers = ttl > 0 ? new CachedSubscriberStore(subsDb, { ttlMs: ttl, now }) : subsDb;

  let locations: LocationStore;
  let backlog = (): number => 0;
  try {
    switch (config.location.db_mode) {
      case 'memory':
        locations = instrumentLocationStore(new MemoryLocationStore(now), hook);
        break;
      case 'write-through':
        locations = await CachedLocationStore.open(instrumentLocationStore(baseLoc, hook), now);
        break;
      case 'write-back': {
        const wb = await WriteBackLocationStore.open(instrumentLocationStore(baseLoc, hook), now, {
          flushIntervalMs: config.location.flush_interval_ms ?? 1000,
          flushThreshold: 500,
          retryMaxMs: config.location.retry_max_ms,
          finalFlushMs: config.location.final_flush_ms,
          events: opts.writeBack,
        });
        backlog = () => wb.backlog;
        locations = wb;
        break;
      }
      case 'db-only':
        locations = instrumentLocationStore(baseLoc, hook);
        break;
    }
  } catch (e) {
    await closeDb();
    throw e;
  }

  let closed = false;
  return {
    subscribers,
    locations,
    ping,
    locationBacklog: () => backlog(),
    async close() {
      if (closed) return;
      closed = true;
      await subscribers.close();
      await locations.close();
      await closeDb();
    },
  };
}

/**
 * Create the tables (and, for MySQL, the database) if missing, and insert the
 * Kamailio version rows if missing. Idempotent. Used by `sipctl db init`.
 */
export async function initSchema(db: DbUrl): Promise<void> {
  if (db.kind === 'sqlite') {
    const handle = openSqlite(db.path);
    try {
      applySqliteSchema(handle);
    } catch (e) {
      throw new StoreError('SCHEMA', `SQLite ${db.path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    } finally {
      handle.close();
    }
    return;
  }
  await applyMysqlSchema(db);
}
