/**
 * usrloc db_mode 2 ("write-back"), the mode of Kamailio's stock config with WITH_USRLOCDB:
 * memory is authoritative and answers every lookup; changes are queued and written to the
 * database in the background (every `flushIntervalMs`, or sooner when many are pending), so a
 * REGISTER never waits for a database commit. Pending writes are coalesced per binding (the last
 * change wins) and flushed on close(), so a graceful stop loses nothing; bindings are reloaded
 * from the database at start like write-through.
 */
import { MemoryLocationStore } from './memory.js';
import type { Binding, Clock, LocationCounts, LocationStore } from './types.js';

type Op = { kind: 'save'; binding: Binding } | { kind: 'remove'; aor: string; contact: string } | { kind: 'removeAll'; aor: string };

export interface WriteBackOptions {
  /** how often pending changes are written (ms). */
  flushIntervalMs: number;
  /** flush at once when this many changes are pending. */
  flushThreshold: number;
  /** a failed database write is reported here (and retried at the next flush unless superseded). */
  onError?: (err: unknown) => void;
}

export class WriteBackLocationStore implements LocationStore {
  /** pending changes in the order they must be applied; one entry per binding (or per AOR for removeAll). */
  private pending = new Map<string, Op>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly mem: MemoryLocationStore,
    private readonly db: LocationStore,
    private readonly o: WriteBackOptions,
  ) {
    this.timer = setInterval(() => void this.flush(), o.flushIntervalMs);
    this.timer.unref();
  }

  static async open(db: LocationStore, now: Clock, o: WriteBackOptions): Promise<WriteBackLocationStore> {
    const mem = new MemoryLocationStore(now);
    for (const b of await db.list()) await mem.save(b);
    return new WriteBackLocationStore(mem, db, o);
  }

  /** number of changes not yet written. */
  get backlog(): number {
    return this.pending.size;
  }

  private enqueue(key: string, op: Op): void {
    // re-inserting moves the key to the end, so the map's order stays the order of the latest changes
    this.pending.delete(key);
    this.pending.set(key, op);
    if (this.pending.size >= this.o.flushThreshold) void this.flush();
  }

  lookup(aor: string): Promise<Binding[]> {
    return this.mem.lookup(aor);
  }

  async save(binding: Binding): Promise<void> {
    await this.mem.save(binding);
    this.enqueue(`${binding.aor}\0${binding.contact}`, { kind: 'save', binding });
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    const had = await this.mem.remove(aor, contact);
    this.enqueue(`${aor}\0${contact}`, { kind: 'remove', aor, contact });
    return had;
  }

  async removeAll(aor: string): Promise<number> {
    const n = await this.mem.removeAll(aor);
    // earlier pending changes of this AOR are superseded by the removal
    for (const k of [...this.pending.keys()]) if (k.startsWith(`${aor}\0`)) this.pending.delete(k);
    this.enqueue(`${aor}\0*`, { kind: 'removeAll', aor });
    return n;
  }

  async expire(now: number): Promise<number> {
    const n = await this.mem.expire(now);
    try {
      await this.db.expire(now);
    } catch (e) {
      this.o.onError?.(e);
    }
    return n;
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

  /** Write every pending change (serially, in order). Concurrent calls share one flush. */
  flush(): Promise<void> {
    if (this.flushing !== undefined) return this.flushing;
    if (this.pending.size === 0) return Promise.resolve();
    this.flushing = (async () => {
      try {
        while (this.pending.size > 0) {
          const batch = this.pending;
          this.pending = new Map();
          for (const [key, op] of batch) {
            try {
              if (op.kind === 'save') await this.db.save(op.binding);
              else if (op.kind === 'remove') await this.db.remove(op.aor, op.contact);
              else await this.db.removeAll(op.aor);
            } catch (e) {
              this.o.onError?.(e);
              // retry later unless a newer change for the same key arrived meanwhile
              if (!this.pending.has(key)) this.pending.set(key, op);
              if (!this.closed) return;
            }
          }
          if (this.closed && this.pending.size > 0) continue;
          break;
        }
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.closed = true;
    if (this.flushing !== undefined) await this.flushing;
    // one final pass; a database that keeps failing must not hang the shutdown
    const left = this.pending;
    this.pending = new Map();
    for (const op of left.values()) {
      try {
        if (op.kind === 'save') await this.db.save(op.binding);
        else if (op.kind === 'remove') await this.db.remove(op.aor, op.contact);
        else await this.db.removeAll(op.aor);
      } catch (e) {
        this.o.onError?.(e);
      }
    }
    await this.mem.close();
    await this.db.close();
  }
}
