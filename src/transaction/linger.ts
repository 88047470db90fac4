import type { Target } from '../transport/types.js';
import type { TimerSet, TxTimer } from './timers.js';

/**
 * What is left of a transaction that only waits out a timer to absorb retransmissions
 * (RFC 3261 §17 Timers J, I, K, D and RFC 6026 Timer L).
 *
 * A transaction that reaches one of those states ends there (state `terminated`, `onTerminated`
 * fires, it leaves the transaction table) and leaves a `LingerEntry` behind instead: its key, its
 * kind, and for the kinds that answer a retransmission the bytes to answer with (a latin1 string:
 * one flat heap string, no Buffer objects) and where they go.
 *
 * - `resend`   server non-INVITE Completed (Timer J): a request retransmission gets the stored final again.
 * - `accepted` server INVITE after a 2xx (Timer L): INVITE retransmissions are absorbed; an ACK does
 *              not match (it goes to the TU, the proxy relays it); a CANCEL learns that the INVITE
 *              was answered (`inviteAnswered`).
 * - `absorb`   server INVITE Confirmed (Timer I): INVITE and ACK retransmissions are absorbed;
 *              client non-INVITE Completed (Timer K): response retransmissions are absorbed.
 * - `reack`    client INVITE Completed after a non-2xx (Timer D): a retransmitted final gets the stored ACK.
 *
 * Expiry: the duration of an entry is fixed by its kind and transport, so entries of one duration
 * expire in the order they were added. Each duration has a FIFO queue (an intrusive doubly linked
 * list: removal of any entry is O(1)), and ONE timer of the injected clock is armed for the
 * earliest head of all queues. Bounded: beyond `max` entries the oldest entry (the one added first,
 * whatever its queue) is evicted.
 */
export type LingerKind = 'resend' | 'accepted' | 'absorb' | 'reack';

/** server entries are keyed by server keys, client entries by client keys (table.ts): two namespaces. */
export type LingerSide = 'server' | 'client';

export class LingerEntry {
  /** (internal) queue links */
  prev: LingerEntry | undefined = undefined;
  next: LingerEntry | undefined = undefined;
  /** (internal) the queue the entry is in; undefined once removed */
  queue: LingerQueue | undefined = undefined;
  /** (internal) when it expires, and the order it was added in (eviction) */
  at = 0;
  seq = 0;

  constructor(
    readonly side: LingerSide,
    readonly key: string,
    readonly kind: LingerKind,
    /** bytes to answer a retransmission with (latin1), for `resend` and `reack` */
    readonly data: string | undefined,
    readonly target: Target | undefined,
    /** RFC 2543 keys only: To tag of the creating request (request retransmissions). */
    readonly requestToTag: string | undefined,
    /** RFC 2543 keys only: To tag of the response sent (ACK matching). */
    readonly responseToTag: string | undefined,
    /** true for an RFC 2543 key: To tags are compared on matching. */
    readonly legacy: boolean,
  ) {}

  get live(): boolean {
    return this.queue !== undefined;
  }
}

class LingerQueue {
  head: LingerEntry | undefined = undefined;
  tail: LingerEntry | undefined = undefined;
  constructor(readonly duration: number) {}

  push(e: LingerEntry): void {
    e.queue = this;
    e.prev = this.tail;
    e.next = undefined;
    if (this.tail === undefined) this.head = e;
    else this.tail.next = e;
    this.tail = e;
  }

  unlink(e: LingerEntry): void {
    if (e.prev === undefined) this.head = e.next;
    else e.prev.next = e.next;
    if (e.next === undefined) this.tail = e.prev;
    else e.next.prev = e.prev;
    e.prev = undefined;
    e.next = undefined;
    e.queue = undefined;
  }
}

export interface LingerSizes {
  total: number;
  resend: number;
  accepted: number;
  absorb: number;
  reack: number;
  /** entries dropped before their time because the table was full (since creation). */
  evicted: number;
}

export class LingerTable {
  private readonly server = new Map<string, LingerEntry>();
  private readonly client = new Map<string, LingerEntry>();
  /** one queue per duration (there are three or four distinct durations in practice) */
  private readonly queues = new Map<number, LingerQueue>();
  private timer: TxTimer | undefined;
  /** expiry time the timer is armed for */
  private armedAt = Infinity;
  private seq = 0;
  private readonly kinds = { resend: 0, accepted: 0, absorb: 0, reack: 0 };
  private evicted = 0;

  constructor(
    private readonly timers: TimerSet,
    private readonly max: number,
  ) {}

  get size(): number {
    return this.server.size + this.client.size;
  }

  sizes(): LingerSizes {
    return { total: this.size, ...this.kinds, evicted: this.evicted };
  }

  get(side: LingerSide, key: string): LingerEntry | undefined {
    return (side === 'server' ? this.server : this.client).get(key);
  }

  /**
   * Keep `e` for `duration` ms (replacing an entry of the same side and key). A duration <= 0
   * keeps nothing (reliable transports), and neither does a table with `max` 0.
   */
  add(e: LingerEntry, duration: number): void {
    if (duration <= 0 || this.max <= 0) return;
    const map = e.side === 'server' ? this.server : this.client;
    const old = map.get(e.key);
    if (old !== undefined) this.delete(old);
    while (this.size >= this.max) this.evictOldest();
    let q = this.queues.get(duration);
    if (q === undefined) {
      q = new LingerQueue(duration);
      this.queues.set(duration, q);
    }
    e.at = this.timers.now() + duration;
    e.seq = this.seq++;
    q.push(e);
    map.set(e.key, e);
    this.kinds[e.kind]++;
    if (e.at < this.armedAt) this.arm(e.at);
  }

  /** remove `e` if it is still in the table (a stale reference is ignored). */
  delete(e: LingerEntry): void {
    const q = e.queue;
    if (q === undefined) return;
    q.unlink(e);
    const map = e.side === 'server' ? this.server : this.client;
    if (map.get(e.key) === e) map.delete(e.key);
    this.kinds[e.kind]--;
    if (this.size === 0) this.disarm();
  }

  clear(): void {
    for (const q of this.queues.values()) {
      for (let e = q.head; e !== undefined; ) {
        const n = e.next;
        e.prev = e.next = e.queue = undefined;
        e = n;
      }
    }
    this.queues.clear();
    this.server.clear();
    this.client.clear();
    this.kinds.resend = this.kinds.accepted = this.kinds.absorb = this.kinds.reack = 0;
    this.disarm();
  }

  private evictOldest(): void {
    let oldest: LingerEntry | undefined;
    for (const q of this.queues.values()) if (q.head !== undefined && (oldest === undefined || q.head.seq < oldest.seq)) oldest = q.head;
    if (oldest === undefined) return;
    this.evicted++;
    this.delete(oldest);
  }

  private arm(at: number): void {
    this.timer?.cancel();
    this.armedAt = at;
    this.timer = this.timers.start(Math.max(0, at - this.timers.now()), () => this.expire());
  }

  private disarm(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.armedAt = Infinity;
  }

  private expire(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = this.timers.now();
    let next = Infinity;
    for (const [d, q] of this.queues) {
      let e = q.head;
      while (e !== undefined && e.at <= now) {
        const n = e.next;
        this.delete(e);
        e = n;
      }
      if (e !== undefined) next = Math.min(next, e.at);
      else this.queues.delete(d);
    }
    if (next !== Infinity) this.arm(next);
  }
}
