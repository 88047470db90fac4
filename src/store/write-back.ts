/**
 * usrloc db_mode 2 ("write-back"), the mode of Kamailio's stock config with WITH_USRLOCDB:
 * memory is authoritative and answers every lookup; changes are queued and written to the
 * database in the background (every `flushIntervalMs`, or sooner when many are pending), so a
 * REGISTER never waits for a database commit. Bindings are reloaded from the database at start.
 *
 * The queue holds, per AOR, at most one pending change per contact plus an optional "remove all"
 * that goes first: a newer change of the same binding replaces the older one (last change wins), a
 * removeAll replaces every pending change of its AOR. Writing the queue in that shape makes the
 * table converge to memory whatever was lost in between, and keeps the order per key.
 *
 * Every change is written or retried on its own:
 *   - a change that can never be written (malformed AOR, a field longer than its column) is refused
 *     before it is queued, with StoreError INVALID (memory is not changed either);
 *   - the database refusing a change for good (StoreError INVALID, EXISTS): the change is dropped
 *     and reported once (`dropped`); the others carry on;
 *   - the database unavailable (UNREACHABLE, BUSY, SCHEMA): the pass stops (the next changes would
 *     fail the same way), and background passes resume after a backoff that doubles from
 *     `flushIntervalMs` up to `retryMaxMs`; reported once per outage (`unavailable`, `recovered`);
 *   - any other error is taken as specific to that change: it backs off (same schedule) and holds
 *     back the later changes of its AOR; the pass goes on with the other AORs.
 * Within an AOR, changes are applied in the order of their latest version (a removeAll first): the
 * table's constraints (one row per ruid, which moves between contacts under RFC 5626) hold only in
 * that order. AORs are independent of each other.
 * Retried changes stay until written or superseded by a newer change of the same key.
 *
 * Batching: when the database store has saveMany (MySQL, SQLite), consecutive saves of a pass go as
 * one saveMany (at most SAVE_BATCH_MAX; MySQL sends it as a few multi-row UPDATEs of fixed sizes,
 * and upserts for the rows that are new). If it fails with "unavailable" the pass stops as above (one failed attempt); with any
 * other error each of its changes is written again on its own, so the rules above hold per change
 * (saves already written are written again, to the same row). The SQL stores key a save on the ruid: a save of a
 * contact that the database may hold under another ruid (it was removed and registered again while
 * queued) removes the contact's rows first, and is not batched.
 *
 * close() writes what is pending, retrying for at most `finalFlushMs`, then reports what it could
 * not write (`unwritten`) and returns: a stop never hangs on the database.
 */
import { MemoryLocationStore } from './memory.js';
import type { Binding, Clock, LocationCounts, LocationStore } from './types.js';
import { StoreError } from './types.js';
import { checkAor, checkBinding, settled } from './util.js';

/** A queued change, as reported to the events. */
export interface PendingChange {
  op: 'save' | 'remove' | 'removeAll';
  aor: string;
  /** absent for removeAll. */
  contact?: string;
}

export interface WriteBackEvents {
  /** the database became unavailable (first failure after a success); writes are retried. */
  unavailable?(err: unknown, backlog: number): void;
  /** a write succeeded after `unavailable`. */
  recovered?(backlog: number): void;
  /** a change failed with an error that is neither "unavailable" nor "invalid"; reported at its first failure, retried. */
  retrying?(change: PendingChange, err: unknown): void;
  /** the database refused a change for good; it was dropped. */
  dropped?(change: PendingChange, err: unknown): void;
  /** every failed write attempt: `transient` (will be retried) or `permanent` (dropped). */
  failure?(kind: 'transient' | 'permanent'): void;
  /** deleting expired bindings from the database failed with something else than "unavailable" (retried at the next expiry). */
  expireFailed?(err: unknown): void;
  /** close(): these changes were still pending when the final flush ran out of time. */
  unwritten?(changes: PendingChange[]): void;
}

export interface WriteBackOptions {
  /** how often pending changes are written (ms); also the first retry delay. */
  flushIntervalMs: number;
  /** flush at once when this many changes are pending. */
  flushThreshold: number;
  /** longest delay between retries of a failing write (ms). Default 30 000. */
  retryMaxMs?: number;
  /** close(): how long the final flush may retry (ms). Default 3000. */
  finalFlushMs?: number;
  events?: WriteBackEvents;
}

type Op = { kind: 'save'; binding: Binding } | { kind: 'remove'; aor: string; contact: string } | { kind: 'removeAll'; aor: string };

interface Pending {
  readonly op: Op;
  /**
   * Contact changes: the ruids this aor + contact may have in the database from the changes this
   * one superseded (they may or may not have been written) or, for a remove, from memory.
   */
  readonly ruids: ReadonlySet<string>;
  /**
   * save only: the database may hold this aor + contact under another ruid, and the SQL stores key
   * a save on the ruid: the contact's rows are removed first. Such a save is not batched.
   */
  readonly replaceContact: boolean;
  /** failed attempts so far. */
  attempts: number;
  /** background passes skip it before this time (row-specific backoff). */
  notBefore: number;
}

interface AorQueue {
  /** applied before the contact changes. */
  removeAll: Pending | undefined;
  /** contact -> its latest pending change. */
  readonly contacts: Map<string, Pending>;
}

type Outcome = 'written' | 'dropped' | 'retry' | 'unavailable';

/** a save collected for a batch. */
interface BatchItem {
  readonly aor: string;
  readonly q: AorQueue;
  readonly p: Pending;
  readonly binding: Binding;
}

type BatchEnd = { end: 'ok' } | { end: 'unavailable'; aor: string; q: AorQueue };

/** most saves per db.saveMany() of a pass. */
const SAVE_BATCH_MAX = 100;

/** what a pass ended with: everything attempted, or stopped because the database is unavailable. */
type PassEnd = 'done' | 'unavailable';

const DEFAULT_RETRY_MAX_MS = 30_000;
const DEFAULT_FINAL_FLUSH_MS = 3000;
/** close(): pause between two final passes that found the database unavailable. */
const FINAL_RETRY_PAUSE_MS = 100;

function describe(op: Op): PendingChange {
  if (op.kind === 'save') return { op: 'save', aor: op.binding.aor, contact: op.binding.contact };
  if (op.kind === 'remove') return { op: 'remove', aor: op.aor, contact: op.contact };
  return { op: 'removeAll', aor: op.aor };
}

function classify(e: unknown): 'permanent' | 'unavailable' | 'other' {
  if (!(e instanceof StoreError)) return 'other';
  switch (e.code) {
    case 'INVALID':
    case 'EXISTS':
      return 'permanent';
    case 'UNREACHABLE':
    case 'BUSY':
    case 'SCHEMA':
      return 'unavailable';
    case 'DB':
      return 'other';
  }
}

function sleep(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((r) => {
    timer = setTimeout(r, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

export class WriteBackLocationStore implements LocationStore {
  private readonly queues = new Map<string, AorQueue>();
  private pendingCount = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private passing: Promise<PassEnd> | undefined;
  private closed = false;
  /** consecutive passes that found the database unavailable. */
  private outage = 0;
  /** background passes wait until then after an unavailable database. */
  private resumeAt = 0;
  private readonly retryMaxMs: number;
  private readonly finalFlushMs: number;
  private readonly ev: WriteBackEvents;

  constructor(
    private readonly mem: MemoryLocationStore,
    private readonly db: LocationStore,
    private readonly now: Clock,
    private readonly o: WriteBackOptions,
  ) {
    this.retryMaxMs = Math.max(o.flushIntervalMs, o.retryMaxMs ?? DEFAULT_RETRY_MAX_MS);
    this.finalFlushMs = o.finalFlushMs ?? DEFAULT_FINAL_FLUSH_MS;
    this.ev = o.events ?? {};
    this.timer = setInterval(() => void this.flushDue(), o.flushIntervalMs);
    this.timer.unref();
  }

  static async open(db: LocationStore, now: Clock, o: WriteBackOptions): Promise<WriteBackLocationStore> {
    const mem = new MemoryLocationStore(now);
    for (const b of await db.list()) await mem.save(b);
    return new WriteBackLocationStore(mem, db, now, o);
  }

  /** number of changes not yet written. */
  get backlog(): number {
    return this.pendingCount;
  }

  /** the changes not yet written, in queue order. */
  pendingChanges(): PendingChange[] {
    const out: PendingChange[] = [];
    for (const q of this.queues.values()) {
      if (q.removeAll) out.push(describe(q.removeAll.op));
      for (const p of q.contacts.values()) out.push(describe(p.op));
    }
    return out;
  }

  // ------------------------------------------------------------------ queue

  private queueOf(aor: string): AorQueue {
    let q = this.queues.get(aor);
    if (q === undefined) {
      q = { removeAll: undefined, contacts: new Map() };
      this.queues.set(aor, q);
    }
    return q;
  }

  private enqueue(aor: string, op: Op, priorRuid?: string): void {
    const q = this.queueOf(aor);
    const ruids = new Set<string>();
    let replaceContact = false;
    if (op.kind !== 'removeAll') {
      const prev = q.contacts.get(op.kind === 'save' ? op.binding.contact : op.contact);
      if (prev !== undefined) {
        for (const r of prev.ruids) ruids.add(r);
        if (prev.op.kind === 'save') ruids.add(prev.op.binding.ruid);
      }
      if (priorRuid !== undefined) ruids.add(priorRuid);
      if (op.kind === 'save') for (const r of ruids) if (r !== op.binding.ruid) replaceContact = true;
    }
    const p: Pending = { op, ruids, replaceContact, attempts: 0, notBefore: 0 };
    if (op.kind === 'removeAll') {
      // supersedes every pending change of the AOR
      this.pendingCount -= q.contacts.size + (q.removeAll ? 1 : 0);
      q.contacts.clear();
      q.removeAll = p;
    } else {
      const contact = op.kind === 'save' ? op.binding.contact : op.contact;
      if (q.contacts.has(contact)) this.pendingCount--;
      // re-inserting moves the key to the end
      q.contacts.delete(contact);
      q.contacts.set(contact, p);
    }
    this.pendingCount++;
    if (this.pendingCount >= this.o.flushThreshold) void this.flushDue();
  }

  /** Forget a pending change once written or dropped, unless a newer one replaced it meanwhile. */
  private settle(aor: string, q: AorQueue, p: Pending): void {
    if (q.removeAll === p) {
      q.removeAll = undefined;
      this.pendingCount--;
    } else if (p.op.kind !== 'removeAll') {
      const contact = p.op.kind === 'save' ? p.op.binding.contact : p.op.contact;
      if (q.contacts.get(contact) === p) {
        q.contacts.delete(contact);
        this.pendingCount--;
      }
    }
    if (q.removeAll === undefined && q.contacts.size === 0 && this.queues.get(aor) === q) this.queues.delete(aor);
  }

  // ------------------------------------------------------------------ LocationStore

  lookup(aor: string): Promise<Binding[]> {
    return this.mem.lookup(aor);
  }

  lookupNow(aor: string): readonly Readonly<Binding>[] {
    return this.mem.lookupNow(aor);
  }

  save(binding: Binding): Promise<void> {
    return settled(() => this.saveNow(binding));
  }

  saveNow(binding: Binding): void {
    checkBinding(binding); // refused before memory or the queue see it
    this.mem.saveNow(binding);
    this.enqueue(binding.aor, { kind: 'save', binding });
  }

  remove(aor: string, contact: string): Promise<boolean> {
    return settled(() => this.removeNow(aor, contact));
  }

  removeNow(aor: string, contact: string): boolean {
    checkAor(aor);
    if (!contact) throw new StoreError('INVALID', 'contact must not be empty');
    // the ruid the database may hold for it (a save of this contact under a new ruid must replace it)
    const prior = this.mem.lookupNow(aor).find((b) => b.contact === contact)?.ruid;
    const had = this.mem.removeNow(aor, contact);
    this.enqueue(aor, { kind: 'remove', aor, contact }, prior);
    return had;
  }

  async removeAll(aor: string): Promise<number> {
    checkAor(aor);
    const n = await this.mem.removeAll(aor);
    this.enqueue(aor, { kind: 'removeAll', aor });
    return n;
  }

  /** Expires memory, then the database (idempotent DELETE; a failure is only reported). */
  async expire(now: number): Promise<number> {
    const n = await this.mem.expire(now);
    try {
      await this.db.expire(now);
    } catch (e) {
      if (classify(e) === 'unavailable') this.markUnavailable(e);
      else this.ev.expireFailed?.(e);
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

  // ------------------------------------------------------------------ writing

  /**
   * What the background timer runs: one pass over the changes that are due, unless the database
   * was found unavailable and its backoff has not ended. Concurrent calls share one pass.
   */
  async flushDue(): Promise<void> {
    if (this.passing !== undefined) {
      await this.passing;
      return;
    }
    if (this.pendingCount === 0 || this.now() < this.resumeAt) return;
    await this.startPass(false);
  }

  /**
   * Attempt every pending change now, backoffs notwithstanding (after the pass already running, if
   * any). Resolves when each was attempted; failures stay queued as described above.
   */
  async flush(): Promise<void> {
    if (this.passing !== undefined) await this.passing;
    if (this.pendingCount === 0) return;
    await this.startPass(true);
  }

  private startPass(force: boolean): Promise<PassEnd> {
    if (this.passing !== undefined) return this.passing;
    const p = this.pass(force).finally(() => {
      if (this.passing === p) this.passing = undefined;
    });
    this.passing = p;
    return p;
  }

  /**
   * One pass over the queue; never rejects. Within an AOR the writes go in queue order. Saves
   * (of any AORs) are collected and sent as one db.saveMany() when the database store has it: at
   * SAVE_BATCH_MAX saves, before any other change of an AOR that has saves in the batch, and at the
   * end of the pass. A batch that fails is written again row by row (see writeBatch), so one bad
   * row neither drops nor blocks the others.
   */
  private async pass(force: boolean): Promise<PassEnd> {
    const t = this.now();
    const batching = this.db.saveMany !== undefined;
    /** AORs whose batched change failed and is retried: their later changes wait. */
    const blocked = new Set<string>();
    let batch: BatchItem[] = [];
    const flushBatch = (): Promise<BatchEnd> => {
      const items = batch;
      batch = [];
      return this.writeBatch(items, blocked);
    };
    for (const aor of [...this.queues.keys()]) {
      const q = this.queues.get(aor);
      if (q === undefined) continue;
      // (an AOR's removeAll comes before its contact changes: none of them is in the batch yet)
      if (q.removeAll !== undefined) {
        const p = q.removeAll;
        if (!force && p.notBefore > t) continue;
        const r = await this.apply(p);
        if (r === 'written' || r === 'dropped') this.settle(aor, q, p);
        if (r === 'unavailable') return this.passUnavailable(aor, q);
        if (r === 'retry') continue; // later changes of this AOR must wait for it
      }
      // in order: the queue order is the order of the latest change of each contact, and the
      // table's constraints (one ruid per row) hold only if they are applied in that order
      for (const [contact, p] of [...q.contacts]) {
        if (q.removeAll !== undefined) break; // a removeAll arrived meanwhile: it goes first, next pass
        if (q.contacts.get(contact) !== p) continue; // superseded meanwhile
        if (!force && p.notBefore > t) break;
        if (batching && p.op.kind === 'save' && !p.replaceContact) {
          batch.push({ aor, q, p, binding: p.op.binding });
          if (batch.length >= SAVE_BATCH_MAX) {
            const fb = await flushBatch();
            if (fb.end === 'unavailable') return this.passUnavailable(fb.aor, fb.q);
            if (blocked.has(aor)) break; // the later changes of this AOR wait for the failed one
          }
          continue;
        }
        if (batch.length > 0 && batch[batch.length - 1]!.aor === aor) {
          // this AOR's earlier saves are written first
          const fb = await flushBatch();
          if (fb.end === 'unavailable') return this.passUnavailable(fb.aor, fb.q);
          if (blocked.has(aor)) break;
          if (q.removeAll !== undefined) break;
          if (q.contacts.get(contact) !== p) continue;
        }
        const r = await this.apply(p);
        if (r === 'written' || r === 'dropped') this.settle(aor, q, p);
        if (r === 'unavailable') return this.passUnavailable(aor, q);
        if (r === 'retry') break; // the later changes of this AOR wait for it
      }
    }
    const fb = await flushBatch();
    if (fb.end === 'unavailable') return this.passUnavailable(fb.aor, fb.q);
    return 'done';
  }

  /**
   * Write collected saves as one saveMany(). On success each is settled. If the database is
   * unavailable the pass stops (one failed attempt, counted on the first change, as a row-by-row
   * pass would). Any other error (a row refused, or something specific to one row): each change is
   * written again on its own, with the usual outcome per change (dropped; or retried, and then the
   * later changes of its AOR wait).
   */
  private async writeBatch(all: BatchItem[], blocked: Set<string>): Promise<BatchEnd> {
    // superseded while the batch was collected: the newer change is written later
    const items = all.filter((i) => i.q.removeAll === undefined && i.q.contacts.get(i.binding.contact) === i.p);
    if (items.length > 1) {
      try {
        await this.db.saveMany!(items.map((i) => i.binding));
        for (const i of items) this.settle(i.aor, i.q, i.p);
        this.wrote();
        return { end: 'ok' };
      } catch (e) {
        if (classify(e) === 'unavailable') {
          const first = items[0]!;
          first.p.attempts++;
          this.ev.failure?.('transient');
          this.markUnavailable(e);
          return { end: 'unavailable', aor: first.aor, q: first.q };
        }
        // row by row below
      }
    }
    for (const i of items) {
      if (blocked.has(i.aor)) continue;
      if (i.q.removeAll !== undefined || i.q.contacts.get(i.binding.contact) !== i.p) continue; // superseded meanwhile
      const r = await this.apply(i.p);
      if (r === 'written' || r === 'dropped') this.settle(i.aor, i.q, i.p);
      if (r === 'unavailable') return { end: 'unavailable', aor: i.aor, q: i.q };
      if (r === 'retry') blocked.add(i.aor);
    }
    return { end: 'ok' };
  }

  /** The pass stopped on an unavailable database: this AOR goes to the back, so the next pass starts with the other AORs. */
  private passUnavailable(aor: string, q: AorQueue): PassEnd {
    if (this.queues.get(aor) === q) {
      this.queues.delete(aor);
      this.queues.set(aor, q);
    }
    return 'unavailable';
  }

  private backoff(n: number): number {
    return Math.min(this.o.flushIntervalMs * 2 ** Math.min(Math.max(n - 1, 0), 30), this.retryMaxMs);
  }

  private markUnavailable(e: unknown): void {
    this.outage++;
    this.resumeAt = this.now() + this.backoff(this.outage);
    if (this.outage === 1) this.ev.unavailable?.(e, this.pendingCount);
  }

  private async apply(p: Pending): Promise<Outcome> {
    const op = p.op;
    try {
      if (op.kind === 'save') {
        if (p.replaceContact) await this.db.remove(op.binding.aor, op.binding.contact);
        await this.db.save(op.binding);
      }
      else if (op.kind === 'remove') await this.db.remove(op.aor, op.contact);
      else await this.db.removeAll(op.aor);
    } catch (e) {
      const kind = classify(e);
      p.attempts++;
      if (kind === 'permanent') {
        this.ev.failure?.('permanent');
        this.ev.dropped?.(describe(op), e);
        return 'dropped';
      }
      this.ev.failure?.('transient');
      if (kind === 'unavailable') {
        this.markUnavailable(e);
        return 'unavailable';
      }
      p.notBefore = this.now() + this.backoff(p.attempts);
      if (p.attempts === 1) this.ev.retrying?.(describe(op), e);
      return 'retry';
    }
    this.wrote(1);
    return 'written';
  }

  /** a write succeeded: end an outage. `unsettled`: changes written but not yet settled. */
  private wrote(unsettled = 0): void {
    if (this.outage > 0) {
      this.outage = 0;
      this.resumeAt = 0;
      this.ev.recovered?.(this.pendingCount - unsettled);
    }
  }

  /**
   * Stop the timer, write what is pending (retrying for at most finalFlushMs), report what could not
   * be written, close memory and the database store. Resolves within about finalFlushMs whatever the
   * database does.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    const bound = sleep(this.finalFlushMs);
    let timedOut = false;
    const expired = bound.promise.then(() => {
      timedOut = true;
    });
    try {
      for (let round = 0; !timedOut && (this.pendingCount > 0 || this.passing !== undefined); round++) {
        // the pass in flight (if any) first: a second writer could reorder changes of one key
        const end = await Promise.race([this.passing ?? this.startPass(true), expired]);
        if (timedOut || this.pendingCount === 0) break;
        if (end === 'unavailable' || round > 0) {
          const pause = sleep(FINAL_RETRY_PAUSE_MS);
          await Promise.race([pause.promise, expired]);
          pause.cancel();
        }
      }
    } finally {
      bound.cancel();
    }
    if (this.pendingCount > 0) this.ev.unwritten?.(this.pendingChanges());
    await this.mem.close();
    await this.db.close();
  }
}
