/**
 * Wrappers composed over the base stores:
 *  - CachedSubscriberStore: short-TTL credential cache (positive and negative).
 *  - CachedLocationStore: location db_mode=write-through (memory cache + DB).
 *  - instrumentSubscriberStore / instrumentLocationStore: onQuery timing hook.
 */
import { performance } from 'node:perf_hooks';
import { MemoryLocationStore } from './memory.js';
import type { Binding, Clock, LocationCounts, LocationStore, QueryHook, Subscriber, SubscriberKey, SubscriberStore } from './types.js';

/** Runs `fn` once after `ms` milliseconds; returns a function that cancels it. Injected so tests run on fake time. */
export type Scheduler = (fn: () => void, ms: number) => () => void;

/** The default Scheduler: an unref'd timer (setImmediate for 0 ms), so a pending batch never keeps the process alive. */
export const realScheduler: Scheduler = (fn, ms) => {
  if (ms <= 0) {
    const h = setImmediate(fn);
    h.unref();
    return () => clearImmediate(h);
  }
  const h = setTimeout(fn, ms);
  h.unref();
  return () => clearTimeout(h);
};

export interface CredentialCacheOptions {
  /** How long a found subscriber is served from cache (ms), counted from when its query was sent. */
  ttlMs: number;
  /** How long a "no such subscriber" answer is cached (ms); defaults to min(ttlMs, 1000). */
  negativeTtlMs?: number;
  /** Most cached entries; the oldest are evicted first. Default 10000. */
  maxEntries?: number;
  /**
   * A hit on a found subscriber whose entry has less than this left to live (ms) queues a
   * background refresh of it (once). Default ttlMs / 2: then a user seen at any interval shorter
   * than the TTL never misses (each hit at an age of at least TTL/2 renews the entry, and two hits
   * less than a TTL apart cannot both fall before it); with a narrower window a user seen every
   * 0.25–0.75 TTL missed on every other lookup. At most one refresh per entry life, so at most one
   * row per active user per TTL/2 is read in the background. 0 turns refresh-ahead off.
   */
  refreshAheadMs?: number;
  /** Queued refreshes are sent together after at most this long (ms). Default min(100, ttlMs / 4). */
  refreshBatchMs?: number;
  /** Refreshes (and misses) are sent as soon as this many are queued; also the most keys per getMany. Default 200. */
  batchMax?: number;
  now: Clock;
  /** Timers; default realScheduler. */
  schedule?: Scheduler;
}

interface Entry {
  /** frozen: peek() hands it out as it is */
  readonly value: Readonly<Subscriber> | null;
  /** when the query that read it was sent. */
  readonly readAt: number;
  readonly until: number;
  /** a background refresh of this entry is queued or in flight. */
  refreshing: boolean;
}

/** One key's lookup: queued (missQ or refreshQ), then sent. */
interface Fetch {
  readonly key: string;
  readonly username: string;
  readonly domain: string;
  readonly promise: Promise<Subscriber | null>;
  readonly resolve: (v: Subscriber | null) => void;
  readonly reject: (e: unknown) => void;
  /** 'miss' | 'refresh' while queued; 'sent' once its query is under way. */
  state: 'miss' | 'refresh' | 'sent';
  /** the cache generation when the query was sent. */
  gen: number;
}

const DEFAULT_BATCH_MAX = 200;

/**
 * Caches get() for a short TTL (positive and negative answers), with refresh-ahead and batching so
 * that a steady stream of authenticated requests neither misses nor sends one query per user:
 *
 *  - a hit returns the cached value. A hit on a found subscriber in the last `refreshAheadMs` of
 *    its life also queues that key for a background refresh (once per entry) and still returns
 *    the cached value, so a user seen at least once per refreshAhead window never misses;
 *  - queued refreshes go to the database as one getMany() when `batchMax` keys are queued or
 *    `refreshBatchMs` after the first was queued;
 *  - misses (no entry, or expired) share one pending lookup per key, and the misses of one event
 *    loop turn go as one getMany() (scheduled with 0 ms: they never wait for the refresh window);
 *    a miss on a key whose refresh is still queued moves it to the miss batch.
 *
 * Freshness bound (the same as without refresh-ahead): an entry lives `ttlMs` (`negativeTtlMs`
 * for "no such subscriber") counted from the moment its query was SENT, and is served only while
 * `now < sentAt + ttl`. So whatever get()/peek() returns at time t was read by a query sent after
 * t − ttlMs: a password changed in the database at time T (by sipctl, another instance) is served
 * by no lookup made after T + ttlMs (plus the duration of a query that overlaps T, which may read
 * the row either side of T).
 *
 * add/remove/setPassword through this wrapper invalidate the entry before and after the change;
 * every invalidate() bumps a generation counter, and a query sent before it cannot fill the cache
 * when it completes (it still answers the lookups that were waiting for it); lookups after an
 * invalidate() never join a query sent before it.
 *
 * Errors: a failed batch rejects every lookup waiting for it (as get() did); a failed background
 * refresh leaves the entry as it was (served until it expires, then a miss), and the next hit
 * queues a refresh again.
 */
export class CachedSubscriberStore implements SubscriberStore {
  private readonly entries = new Map<string, Entry>();
  /** the lookup of each key, queued or in flight. */
  private readonly pending = new Map<string, Fetch>();
  private missQ: Fetch[] = [];
  private refreshQ: Fetch[] = [];
  private cancelMiss: (() => void) | undefined;
  private cancelRefresh: (() => void) | undefined;
  private gen = 0;
  private closed = false;
  private readonly ttl: number;
  private readonly negTtl: number;
  private readonly max: number;
  private readonly refreshAhead: number;
  private readonly refreshBatch: number;
  private readonly batchMax: number;
  private readonly now: Clock;
  private readonly schedule: Scheduler;

  constructor(
    private readonly inner: SubscriberStore,
    opts: CredentialCacheOptions,
  ) {
    this.ttl = opts.ttlMs;
    this.negTtl = opts.negativeTtlMs ?? Math.min(opts.ttlMs, 1000);
    this.max = Math.max(1, opts.maxEntries ?? 10000);
    this.refreshBatch = Math.max(0, opts.refreshBatchMs ?? Math.min(100, Math.floor(opts.ttlMs / 4)));
    this.refreshAhead = Math.max(0, opts.refreshAheadMs ?? Math.floor(opts.ttlMs / 2));
    this.batchMax = Math.max(1, opts.batchMax ?? DEFAULT_BATCH_MAX);
    this.now = opts.now;
    this.schedule = opts.schedule ?? realScheduler;
  }

  private static key(username: string, domain: string): string {
    return `${username}\u0000${domain}`;
  }

  /** Number of cached entries (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  /** Lookups queued or in flight (for tests and metrics). */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * The cached answer without a Promise: the subscriber, null for a cached "no such subscriber",
   * undefined when not cached (or expired): then call get(). Counts as a hit (may queue a refresh).
   */
  peek(username: string, domain: string): Readonly<Subscriber> | null | undefined {
    const k = CachedSubscriberStore.key(username, domain);
    const hit = this.entries.get(k);
    if (hit === undefined) return undefined;
    const t = this.now();
    if (hit.until <= t) {
      this.entries.delete(k);
      return undefined;
    }
    if (hit.value !== null && !hit.refreshing && this.refreshAhead > 0 && t >= hit.until - this.refreshAhead) {
      hit.refreshing = true;
      this.queueRefresh(k, username, domain);
    }
    return hit.value; // frozen (store()): no copy needed to keep callers from changing the cache
  }

  get(username: string, domain: string): Promise<Subscriber | null> {
    const cached = this.peek(username, domain);
    if (cached !== undefined) return Promise.resolve(cached ? { ...cached } : null); // get() answers with a copy of its own
    const k = CachedSubscriberStore.key(username, domain);
    let f = this.pending.get(k);
    if (f !== undefined && f.state === 'sent' && f.gen !== this.gen) f = undefined; // sent before an invalidate
    if (f === undefined) {
      f = this.newFetch(k, username, domain, 'miss');
      this.missQ.push(f);
    } else if (f.state === 'refresh') {
      // expired while its refresh waits for the batch window: it must not wait that long now
      this.refreshQ = this.refreshQ.filter((x) => x !== f);
      f.state = 'miss';
      this.missQ.push(f);
    }
    if (this.missQ.length >= this.batchMax) this.sendMisses();
    else this.cancelMiss ??= this.schedule(() => this.sendMisses(), 0);
    return f.promise.then((v) => (v ? { ...v } : null));
  }

  async getMany(keys: readonly SubscriberKey[]): Promise<(Subscriber | null)[]> {
    return Promise.all(keys.map((k) => this.get(k.username, k.domain)));
  }

  private newFetch(key: string, username: string, domain: string, state: 'miss' | 'refresh'): Fetch {
    let resolve!: (v: Subscriber | null) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<Subscriber | null>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // a refresh nobody waits for must not be an unhandled rejection
    promise.catch(() => undefined);
    const f: Fetch = { key, username, domain, promise, resolve, reject, state, gen: this.gen };
    this.pending.set(key, f);
    return f;
  }

  private queueRefresh(k: string, username: string, domain: string): void {
    if (this.closed) return;
    const existing = this.pending.get(k);
    // already being looked up (and not from before an invalidate): that answer refreshes the entry
    if (existing !== undefined && (existing.state !== 'sent' || existing.gen === this.gen)) return;
    this.refreshQ.push(this.newFetch(k, username, domain, 'refresh'));
    if (this.refreshQ.length >= this.batchMax) this.sendRefreshes();
    else this.cancelRefresh ??= this.schedule(() => this.sendRefreshes(), this.refreshBatch);
  }

  private sendMisses(): void {
    this.cancelMiss?.();
    this.cancelMiss = undefined;
    const batch = this.missQ;
    this.missQ = [];
    this.send(batch);
  }

  private sendRefreshes(): void {
    this.cancelRefresh?.();
    this.cancelRefresh = undefined;
    const batch = this.refreshQ;
    this.refreshQ = [];
    this.send(batch);
  }

  /** Look a batch up (in chunks of batchMax), fill the cache if no invalidate() came meanwhile, answer the waiting lookups. */
  private send(batch: Fetch[]): void {
    for (let i = 0; i < batch.length; i += this.batchMax) void this.sendChunk(batch.slice(i, i + this.batchMax));
  }

  private async sendChunk(chunk: Fetch[]): Promise<void> {
    if (chunk.length === 0) return;
    const gen = this.gen;
    const sentAt = this.now();
    for (const f of chunk) {
      f.state = 'sent';
      f.gen = gen;
    }
    let values: (Subscriber | null)[];
    try {
      const keys = chunk.map((f) => ({ username: f.username, domain: f.domain }));
      values =
        this.inner.getMany !== undefined
          ? await this.inner.getMany(keys)
          : chunk.length === 1
            ? [await this.inner.get(chunk[0]!.username, chunk[0]!.domain)]
            : await Promise.all(keys.map((k) => this.inner.get(k.username, k.domain)));
    } catch (e) {
      for (const f of chunk) {
        this.settle(f);
        const entry = this.entries.get(f.key);
        if (entry !== undefined) entry.refreshing = false; // served until it expires; the next hit retries
        f.reject(e);
      }
      return;
    }
    for (let i = 0; i < chunk.length; i++) {
      const f = chunk[i]!;
      const value = values[i] ?? null;
      this.settle(f);
      if (gen === this.gen && !this.closed) this.store(f.key, value, sentAt);
      else {
        // discarded (an invalidate() came meanwhile): a surviving entry may be refreshed again
        const entry = this.entries.get(f.key);
        if (entry !== undefined) entry.refreshing = false;
      }
      f.resolve(value);
    }
  }

  private settle(f: Fetch): void {
    if (this.pending.get(f.key) === f) this.pending.delete(f.key);
  }

  private store(k: string, value: Subscriber | null, sentAt: number): void {
    const ttl = value ? this.ttl : this.negTtl;
    if (ttl <= 0) {
      this.entries.delete(k);
      return;
    }
    const prev = this.entries.get(k);
    // an answer older than what is cached (a slow refresh overtaken by a later miss) is not kept
    if (prev !== undefined && prev.readAt > sentAt) return;
    this.entries.delete(k); // re-inserted at the end: eviction goes by age of the answer
    while (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(k, { value: value ? Object.freeze({ ...value }) : null, readAt: sentAt, until: sentAt + ttl, refreshing: false });
  }

  /** Forget one entry, or everything; lookups already sent will not fill the cache. */
  invalidate(username?: string, domain?: string): void {
    this.gen++;
    if (username === undefined || domain === undefined) this.entries.clear();
    else this.entries.delete(CachedSubscriberStore.key(username, domain));
  }

  async add(username: string, domain: string, password: string): Promise<void> {
    this.invalidate(username, domain);
    try {
      await this.inner.add(username, domain, password);
    } finally {
      this.invalidate(username, domain);
    }
  }

  async remove(username: string, domain: string): Promise<boolean> {
    this.invalidate(username, domain);
    try {
      return await this.inner.remove(username, domain);
    } finally {
      this.invalidate(username, domain);
    }
  }

  async setPassword(username: string, domain: string, password: string): Promise<boolean> {
    this.invalidate(username, domain);
    try {
      return await this.inner.setPassword(username, domain, password);
    } finally {
      this.invalidate(username, domain);
    }
  }

  list(domain?: string): Promise<Subscriber[]> {
    return this.inner.list(domain);
  }

  /** Queued lookups are sent now (their callers get an answer), then the inner store is closed. */
  async close(): Promise<void> {
    this.closed = true;
    this.sendMisses();
    // nobody waits for refreshes: drop them
    this.cancelRefresh?.();
    this.cancelRefresh = undefined;
    for (const f of this.refreshQ) {
      this.settle(f);
      f.resolve(null);
    }
    this.refreshQ = [];
    const inFlight = [...this.pending.values()].map((f) => f.promise.catch(() => undefined));
    await Promise.all(inFlight);
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

  lookupNow(aor: string): readonly Readonly<Binding>[] {
    return this.mem.lookupNow(aor);
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
    ...(s.getMany !== undefined ? { getMany: (keys: readonly SubscriberKey[]) => timed(hook, name, 'getMany', () => s.getMany!(keys)) } : {}),
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
    ...(s.saveMany !== undefined ? { saveMany: (bs: readonly Binding[]) => timed(hook, name, 'saveMany', () => s.saveMany!(bs)) } : {}),
    remove: (aor, c) => timed(hook, name, 'remove', () => s.remove(aor, c)),
    removeAll: (aor) => timed(hook, name, 'removeAll', () => s.removeAll(aor)),
    expire: (now) => timed(hook, name, 'expire', () => s.expire(now)),
    list: () => timed(hook, name, 'list', () => s.list()),
    aors: () => timed(hook, name, 'aors', () => s.aors()),
    counts: () => timed(hook, name, 'counts', () => s.counts()),
    close: () => s.close(),
  };
}
