/**
 * Wrappers composed over the base stores:
 *  - CachedSubscriberStore: short-TTL credential cache (positive and negative).
 *  - CachedLocationStore: location db_mode=write-through (memory cache + DB).
 *  - instrumentSubscriberStore / instrumentLocationStore: onQuery timing hook.
 */
import { performance } from 'node:perf_hooks';
import { MemoryLocationStore } from './memory.js';
import type { Binding, Clock, LocationCounts, LocationStore, QueryHook, Subscriber, SubscriberStore } from './types.js';

export interface CredentialCacheOptions {
  /** How long a found subscriber is served from cache (ms). */
  ttlMs: number;
  /** How long a "no such subscriber" answer is cached (ms); defaults to min(ttlMs, 1000). */
  negativeTtlMs?: number;
  /** Most cached entries; the oldest are evicted first. Default 10000. */
  maxEntries?: number;
  now: Clock;
}

interface Entry {
  value: Subscriber | null;
  until: number;
}

/**
 * Caches get() for a short TTL so a burst of authenticated requests does not
 * hit the database each time. add/remove/setPassword through this wrapper
 * invalidate the entry; changes made elsewhere (another process, sipctl) are
 * seen after at most the TTL.
 */
export class CachedSubscriberStore implements SubscriberStore {
  private readonly entries = new Map<string, Entry>();
  private readonly ttl: number;
  private readonly negTtl: number;
  private readonly max: number;
  private readonly now: Clock;

  constructor(
    private readonly inner: SubscriberStore,
    opts: CredentialCacheOptions,
  ) {
    this.ttl = opts.ttlMs;
    this.negTtl = opts.negativeTtlMs ?? Math.min(opts.ttlMs, 1000);
    this.max = Math.max(1, opts.maxEntries ?? 10000);
    this.now = opts.now;
  }

  private static key(username: string, domain: string): string {
    return `${username}\u0000${domain}`;
  }

  /** Number of cached entries (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  async get(username: string, domain: string): Promise<Subscriber | null> {
    const k = CachedSubscriberStore.key(username, domain);
    const t = this.now();
    const hit = this.entries.get(k);
    if (hit && hit.until > t) return hit.value ? { ...hit.value } : null;
    if (hit) this.entries.delete(k);
    const value = await this.inner.get(username, domain);
    const ttl = value ? this.ttl : this.negTtl;
    if (ttl > 0) {
      while (this.entries.size >= this.max) {
        const oldest = this.entries.keys().next();
        if (oldest.done) break;
        this.entries.delete(oldest.value);
      }
      this.entries.set(k, { value: value ? { ...value } : null, until: t + ttl });
    }
    return value;
  }

  /** Forget one entry, or everything. */
  invalidate(username?: string, domain?: string): void {
    if (username === undefined || domain === undefined) this.entries.clear();
    else this.entries.delete(CachedSubscriberStore.key(username, domain));
  }

  async add(username: string, domain: string, password: string): Promise<void> {
    this.invalidate(username, domain);
    await this.inner.add(username, domain, password);
  }

  async remove(username: string, domain: string): Promise<boolean> {
    this.invalidate(username, domain);
    return this.inner.remove(username, domain);
  }

  async setPassword(username: string, domain: string, password: string): Promise<boolean> {
    this.invalidate(username, domain);
    return this.inner.setPassword(username, domain, password);
  }

  list(domain?: string): Promise<Subscriber[]> {
    return this.inner.list(domain);
  }

  async close(): Promise<void> {
    this.entries.clear();
    await this.inner.close();
  }
}

/**
 * location db_mode=write-through: reads are served from memory, every change
 * is written to the database first and then applied to memory. load() fills
 * the memory from the database's unexpired bindings (call once on start).
 * Only one sipd instance should write a table in this mode (use db-only to
 * share one table between instances).
 */
export class CachedLocationStore implements LocationStore {
  constructor(
    private readonly mem: MemoryLocationStore,
    private readonly db: LocationStore,
  ) {}

  static async open(db: LocationStore, now: Clock): Promise<CachedLocationStore> {
    const s = new CachedLocationStore(new MemoryLocationStore(now), db);
    await s.load();
    return s;
  }

  /** Replace the memory contents with the database's unexpired bindings; returns how many. */
  async load(): Promise<number> {
    const all = await this.db.list();
    this.mem.clear();
    for (const b of all) await this.mem.save(b);
    return all.length;
  }

  lookup(aor: string): Promise<Binding[]> {
    return this.mem.lookup(aor);
  }

  async save(binding: Binding): Promise<void> {
    await this.db.save(binding);
    await this.mem.save(binding);
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    const inDb = await this.db.remove(aor, contact);
    const inMem = await this.mem.remove(aor, contact);
    return inDb || inMem;
  }

  async removeAll(aor: string): Promise<number> {
    const inDb = await this.db.removeAll(aor);
    const inMem = await this.mem.removeAll(aor);
    return Math.max(inDb, inMem);
  }

  /** Purges memory first (so expired contacts stop being served even if the db is down), then the db. */
  async expire(now: number): Promise<number> {
    const inMem = await this.mem.expire(now);
    const inDb = await this.db.expire(now);
    return Math.max(inDb, inMem);
  }

  list(): Promise<Binding[]> {
    return this.mem.list();
  }

  aors(): Promise<string[]> {
    return this.mem.aors();
  }

  counts(): Promise<LocationCounts> {
    return this.mem.counts();
  }

  async close(): Promise<void> {
    await this.mem.close();
    await this.db.close();
  }
}

async function timed<T>(hook: QueryHook, store: string, op: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    hook(store, op, performance.now() - t0);
  }
}

/** Report the duration of every subscriber store call to `hook('subscriber', op, ms)`. */
export function instrumentSubscriberStore(s: SubscriberStore, hook: QueryHook, name = 'subscriber'): SubscriberStore {
  return {
    get: (u, d) => timed(hook, name, 'get', () => s.get(u, d)),
    add: (u, d, p) => timed(hook, name, 'add', () => s.add(u, d, p)),
    remove: (u, d) => timed(hook, name, 'remove', () => s.remove(u, d)),
    setPassword: (u, d, p) => timed(hook, name, 'setPassword', () => s.setPassword(u, d, p)),
    list: (d) => timed(hook, name, 'list', () => s.list(d)),
    close: () => s.close(),
  };
}

/** Report the duration of every location store call to `hook('location', op, ms)`. */
export function instrumentLocationStore(s: LocationStore, hook: QueryHook, name = 'location'): LocationStore {
  return {
    lookup: (aor) => timed(hook, name, 'lookup', () => s.lookup(aor)),
    save: (b) => timed(hook, name, 'save', () => s.save(b)),
    remove: (aor, c) => timed(hook, name, 'remove', () => s.remove(aor, c)),
    removeAll: (aor) => timed(hook, name, 'removeAll', () => s.removeAll(aor)),
    expire: (now) => timed(hook, name, 'expire', () => s.expire(now)),
    list: () => timed(hook, name, 'list', () => s.list()),
    aors: () => timed(hook, name, 'aors', () => s.aors()),
    counts: () => timed(hook, name, 'counts', () => s.counts()),
    close: () => s.close(),
  };
}
