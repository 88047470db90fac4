import type { LocalEndpoint, Target, TransportName } from '../transport/types.js';
import type { TimerSet, TxTimer } from './timers.js';

/**
 * What is left of a transaction that only waits out a timer to absorb retransmissions
 * (RFC 3261 §17 Timers J, I, K, D and RFC 6026 Timer L).
 *
 * A transaction that reaches one of those states ends there (state `terminated`, `onTerminated`
 * fires, it leaves the transaction table) and leaves an entry here instead: its key, its kind, and
 * for the kinds that answer a retransmission the bytes to answer with and where they go.
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
 *
 * Memory: entries live 5–32 s, which is past any young-generation collection, so everything kept
 * per entry on the V8 heap would be copied by scavenges, promoted, and die in old space. Nothing is
 * kept per entry on the V8 heap:
 * - an entry is a slot: a number in a set of typed arrays (struct of arrays) for kind, side, flags,
 *   expiry, order, queue links, port, transport and where its bytes are;
 * - its bytes (the key, the response or ACK to answer with, the target address and, for RFC 2543
 *   keys, the two To tags) are one record in a byte store of large Buffers ("chunks", `chunkBytes`
 *   each, allocated as needed up to `maxBytes` in all). Records are appended to the current chunk;
 *   a chunk whose records have all gone is reused from its start (one spare chunk is kept, others
 *   are released; a table that empties after holding more than 4,096 entries gives all its storage
 *   back). When no chunk can be had within `maxBytes`, the oldest entries are evicted
 *   (counted like the `max` evictions) until one is free. A record larger than a chunk gets a
 *   Buffer of its own (counted in `maxBytes`); one larger than `maxBytes` is not kept (evicted);
 * - the key index is an open-addressing hash table (Int32Array of slot numbers, linear probing,
 *   backward-shift deletion) on a 32-bit FNV-1a hash of side + key kept per slot; a hash hit is
 *   confirmed by comparing the stored key bytes, so colliding keys are told apart.
 * Callers hold an entry by its handle (`add` returns it): slot + generation, a plain number, so a
 * stale handle (of an entry since removed, its slot reused) is ignored by `delete`.
 */
export type LingerKind = 'resend' | 'accepted' | 'absorb' | 'reack';

/** server entries are keyed by server keys, client entries by client keys (table.ts): two namespaces. */
export type LingerSide = 'server' | 'client';

export interface LingerSizes {
  total: number;
  resend: number;
  accepted: number;
  absorb: number;
  reack: number;
  /** entries dropped before their time because the table was full (since creation). */
  evicted: number;
}

export interface LingerMemory {
  /** chunks allocated (in use or spare) and their bytes, records larger than a chunk and theirs */
  chunks: number;
  chunkBytes: number;
  bigRecords: number;
  bigBytes: number;
  /** slots allocated in the typed arrays */
  slotCapacity: number;
}

export interface LingerOptions {
  /** bytes of one chunk of the byte store (default 1 MiB). */
  chunkBytes?: number;
  /** bound on all bytes kept (chunks + records larger than a chunk); default 256 MiB (allocated as needed). */
  maxBytes?: number;
}

/** `add` returns this when nothing is kept; `find` when nothing matches. */
export const NO_ENTRY = -1;

const KINDS: readonly LingerKind[] = ['resend', 'accepted', 'absorb', 'reack'];
const KIND_INDEX: Readonly<Record<LingerKind, number>> = { resend: 0, accepted: 1, absorb: 2, reack: 3 };

// flags (Uint8Array)
const F_KIND = 0b11;
const F_CLIENT = 1 << 2;
const F_LEGACY = 1 << 3;
const F_TARGET = 1 << 4;
const F_DATA = 1 << 5;
// wide (Uint8Array): which strings are stored as UTF-16 (they have a char above 0xFF) rather than latin1
const W_KEY = 1;
const W_ADDR = 2;
const W_REQTAG = 4;
const W_RESTAG = 8;

/** where a record's bytes are: a chunk id >= 0, or one of these */
const LOC_NONE = -1;
const LOC_BIG = -2;

/** handle = generation × SLOT_SPACE + slot (both kept below 2^52 in all) */
const SLOT_SPACE = 2 ** 24;
const GEN_MASK = 0x0fffffff;
const INITIAL_SLOTS = 256;
const SPARE_CHUNKS = 1;
/** an emptied table with more slots than this gives all its storage back */
const SHRINK_ABOVE_SLOTS = 4096;

interface Queue {
  duration: number;
  head: number;
  tail: number;
}

function isWide(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return true;
  return false;
}

/** FNV-1a over the side and the key's char codes. */
function hashKey(client: boolean, key: string): number {
  let h = client ? 0x050c5d1f : 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), 0x01000193);
    if (c > 0xff) h = Math.imul(h ^ (c >>> 8), 0x01000193);
  }
  return h | 0;
}

export class LingerTable {
  /** the key hash function (a test replaces it to force collisions). */
  hash: (client: boolean, key: string) => number = hashKey;

  private readonly maxSlots: number;
  private readonly chunkBytes: number;
  private readonly maxBytes: number;

  // ---- slots (struct of arrays), grown by doubling up to maxSlots
  private cap = 0;
  private gen = new Uint32Array(0);
  private flags = new Uint8Array(0);
  private wide = new Uint8Array(0);
  /** queue index + 1; 0: the slot is free */
  private qid = new Uint16Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private at = new Float64Array(0);
  private seqs = new Float64Array(0);
  private hashes = new Int32Array(0);
  private loc = new Int32Array(0);
  private off = new Uint32Array(0);
  private keyLen = new Uint32Array(0);
  private dataLen = new Uint32Array(0);
  private addrLen = new Uint32Array(0);
  /** -1: undefined */
  private reqTagLen = new Int32Array(0);
  private resTagLen = new Int32Array(0);
  private port = new Uint16Array(0);
  private transport = new Uint8Array(0);
  /** index + 1 in `locals`; 0: none */
  private localIdx = new Uint16Array(0);
  /** NaN: none */
  private connId = new Float64Array(0);
  private freeSlots = new Int32Array(0);
  private freeTop = 0;
  private count = 0;

  // ---- key index: slot + 1 per cell, 0 empty
  private tab = new Int32Array(0);
  private mask = 0;

  // ---- byte store
  private chunks: Array<Buffer | undefined> = [];
  private chunkLive: number[] = [];
  private spare: number[] = [];
  private head = -1;
  private headPos = 0;
  private allocatedChunks = 0;
  private readonly big = new Map<number, Buffer>();
  private bigBytes = 0;

  // ---- small interned values
  private readonly transports: TransportName[] = [];
  private readonly locals: LocalEndpoint[] = [];

  // ---- expiry
  private readonly queues: Queue[] = [];
  private timer: TxTimer | undefined;
  /** expiry time the timer is armed for */
  private armedAt = Infinity;
  private seq = 0;
  private readonly kinds = { resend: 0, accepted: 0, absorb: 0, reack: 0 };
  private evicted = 0;

  constructor(
    private readonly timers: TimerSet,
    private readonly max: number,
    opts: LingerOptions = {},
  ) {
    this.maxSlots = Math.max(0, Math.min(max, SLOT_SPACE));
    this.maxBytes = Math.max(0, opts.maxBytes ?? 256 << 20);
    this.chunkBytes = Math.max(1, Math.min(opts.chunkBytes ?? 1 << 20, this.maxBytes));
  }

  get size(): number {
    return this.count;
  }

  sizes(): LingerSizes {
    return { total: this.count, ...this.kinds, evicted: this.evicted };
  }

  memory(): LingerMemory {
    return {
      chunks: this.allocatedChunks,
      chunkBytes: this.allocatedChunks * this.chunkBytes,
      bigRecords: this.big.size,
      bigBytes: this.bigBytes,
      slotCapacity: this.cap,
    };
  }

  // ------------------------------------------------------------------ reading

  /** the live entry of `side` and `key`: its slot, or NO_ENTRY. A slot is valid until the table changes. */
  find(side: LingerSide, key: string): number {
    if (this.count === 0) return NO_ENTRY;
    const client = side === 'client';
    const h = this.hash(client, key);
    const mask = this.mask;
    for (let i = h & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
      const v = this.tab[i]!;
      if (v === 0) return NO_ENTRY;
      const s = v - 1;
      if (this.hashes[s] === h && ((this.flags[s]! & F_CLIENT) !== 0) === client && this.keyIs(s, key)) return s;
    }
    return NO_ENTRY;
  }

  kindOf(slot: number): LingerKind {
    return KINDS[this.flags[slot]! & F_KIND]!;
  }

  legacyOf(slot: number): boolean {
    return (this.flags[slot]! & F_LEGACY) !== 0;
  }

  /** RFC 2543 keys only: To tag of the creating request (request retransmissions). */
  requestToTagOf(slot: number): string | undefined {
    const n = this.reqTagLen[slot]!;
    if (n < 0) return undefined;
    const o = this.off[slot]! + this.keyLen[slot]! + this.dataLen[slot]! + this.addrLen[slot]!;
    return this.str(slot, o, n, W_REQTAG);
  }

  /** RFC 2543 keys only: To tag of the response sent (ACK matching). */
  responseToTagOf(slot: number): string | undefined {
    const n = this.resTagLen[slot]!;
    if (n < 0) return undefined;
    const o = this.off[slot]! + this.keyLen[slot]! + this.dataLen[slot]! + this.addrLen[slot]! + Math.max(0, this.reqTagLen[slot]!);
    return this.str(slot, o, n, W_RESTAG);
  }

  keyOf(slot: number): string {
    return this.str(slot, this.off[slot]!, this.keyLen[slot]!, W_KEY);
  }

  /** a copy of the bytes to answer with (`resend`, `reack`), undefined when the entry keeps none. */
  dataOf(slot: number): Buffer | undefined {
    if ((this.flags[slot]! & F_DATA) === 0) return undefined;
    const o = this.off[slot]! + this.keyLen[slot]!;
    return Buffer.from(this.bytes(slot).subarray(o, o + this.dataLen[slot]!));
  }

  /** where the stored bytes go, undefined when the entry keeps none. */
  targetOf(slot: number): Target | undefined {
    if ((this.flags[slot]! & F_TARGET) === 0) return undefined;
    const transport = this.transports[this.transport[slot]!]!;
    const address = this.str(slot, this.off[slot]! + this.keyLen[slot]! + this.dataLen[slot]!, this.addrLen[slot]!, W_ADDR);
    const port = this.port[slot]!;
    const li = this.localIdx[slot]!;
    const cid = this.connId[slot]!;
    const local = li === 0 ? undefined : this.locals[li - 1];
    if (!Number.isNaN(cid)) {
      return local !== undefined ? { transport, address, port, connectionId: cid, local } : { transport, address, port, connectionId: cid };
    }
    return local !== undefined ? { transport, address, port, local } : { transport, address, port };
  }

  /** the handle of a live slot (what `delete` takes). */
  handleOf(slot: number): number {
    return this.gen[slot]! * SLOT_SPACE + slot;
  }

  /** true while the entry of `handle` is in the table. */
  isLive(handle: number): boolean {
    return this.slotOf(handle) !== NO_ENTRY;
  }

  // ------------------------------------------------------------------ writing

  /**
   * Keep an entry for `duration` ms (replacing an entry of the same side and key) and return its
   * handle. A duration <= 0 keeps nothing (reliable transports), and neither does a table with
   * `max` 0, nor a record larger than `maxBytes` (counted as evicted): NO_ENTRY then.
   * `data` (the bytes to answer with) is copied; `target` is where they go.
   */
  add(
    side: LingerSide,
    key: string,
    kind: LingerKind,
    duration: number,
    data?: Uint8Array,
    target?: Target,
    requestToTag?: string,
    responseToTag?: string,
    legacy = false,
  ): number {
    if (duration <= 0 || this.maxSlots <= 0) return NO_ENTRY;
    const old = this.find(side, key);
    if (old !== NO_ENTRY) this.remove(old);

    const wKey = isWide(key);
    const addr = target?.address;
    const wAddr = addr !== undefined && isWide(addr);
    const wReq = requestToTag !== undefined && isWide(requestToTag);
    const wRes = responseToTag !== undefined && isWide(responseToTag);
    const kLen = wKey ? key.length * 2 : key.length;
    const dLen = data?.length ?? 0;
    const aLen = addr === undefined ? 0 : wAddr ? addr.length * 2 : addr.length;
    const qLen = requestToTag === undefined ? -1 : wReq ? requestToTag.length * 2 : requestToTag.length;
    const rLen = responseToTag === undefined ? -1 : wRes ? responseToTag.length * 2 : responseToTag.length;
    const total = kLen + dLen + aLen + Math.max(0, qLen) + Math.max(0, rLen);
    if (total > this.maxBytes) {
      this.evicted++;
      return NO_ENTRY;
    }

    while (this.count >= this.maxSlots) this.evictOldest();
    // room for the bytes (may evict), then a slot
    let chunk: number;
    let pos: number;
    let bigBuf: Buffer | undefined;
    if (total > this.chunkBytes) {
      while (this.count > 0 && this.bytesInUse() + total > this.maxBytes) this.evictOldest();
      if (this.bytesInUse() + total > this.maxBytes) this.releaseEmpty();
      bigBuf = Buffer.allocUnsafeSlow(total);
      chunk = LOC_BIG;
      pos = 0;
    } else {
      chunk = this.room(total);
      pos = this.headPos;
      this.headPos += total;
    }
    const s = this.takeSlot();
    const buf = bigBuf ?? this.chunks[chunk]!;
    if (bigBuf !== undefined) {
      this.big.set(s, bigBuf);
      this.bigBytes += total;
    } else {
      this.chunkLive[chunk]!++;
    }

    let o = pos;
    o += buf.write(key, o, kLen, wKey ? 'utf16le' : 'latin1');
    if (data !== undefined) {
      buf.set(data, o);
      o += dLen;
    }
    if (addr !== undefined) o += buf.write(addr, o, aLen, wAddr ? 'utf16le' : 'latin1');
    if (requestToTag !== undefined) o += buf.write(requestToTag, o, qLen, wReq ? 'utf16le' : 'latin1');
    if (responseToTag !== undefined) buf.write(responseToTag, o, rLen, wRes ? 'utf16le' : 'latin1');

    const client = side === 'client';
    this.flags[s] =
      KIND_INDEX[kind] | (client ? F_CLIENT : 0) | (legacy ? F_LEGACY : 0) | (target !== undefined ? F_TARGET : 0) | (data !== undefined ? F_DATA : 0);
    this.wide[s] = (wKey ? W_KEY : 0) | (wAddr ? W_ADDR : 0) | (wReq ? W_REQTAG : 0) | (wRes ? W_RESTAG : 0);
    this.loc[s] = chunk;
    this.off[s] = pos;
    this.keyLen[s] = kLen;
    this.dataLen[s] = dLen;
    this.addrLen[s] = aLen;
    this.reqTagLen[s] = qLen;
    this.resTagLen[s] = rLen;
    if (target !== undefined) {
      this.port[s] = target.port;
      this.transport[s] = this.intern(this.transports, target.transport);
      this.localIdx[s] = target.local === undefined ? 0 : this.intern(this.locals, target.local) + 1;
      this.connId[s] = target.connectionId ?? NaN;
    }
    const h = this.hash(client, key);
    this.hashes[s] = h;
    this.insertIndex(s, h);

    const qi = this.queueFor(duration);
    const q = this.queues[qi]!;
    const at = this.timers.now() + duration;
    this.at[s] = at;
    this.seqs[s] = this.seq++;
    this.qid[s] = qi + 1;
    this.prev[s] = q.tail;
    this.next[s] = -1;
    if (q.tail === -1) q.head = s;
    else this.next[q.tail] = s;
    q.tail = s;
    this.count++;
    this.kinds[kind]++;
    if (at < this.armedAt) this.arm(at);
    return this.handleOf(s);
  }

  /** remove the entry of `handle` if it is still in the table (a stale handle is ignored). */
  delete(handle: number): void {
    const s = this.slotOf(handle);
    if (s !== NO_ENTRY) this.remove(s);
  }

  clear(): void {
    for (let s = 0; s < this.cap; s++) if (this.qid[s] !== 0) this.free(s);
    this.tab.fill(0);
    for (const q of this.queues) q.head = q.tail = -1;
    this.kinds.resend = this.kinds.accepted = this.kinds.absorb = this.kinds.reack = 0;
    this.disarm();
  }

  // ------------------------------------------------------------------ internals

  private slotOf(handle: number): number {
    if (!Number.isInteger(handle) || handle < 0) return NO_ENTRY;
    const s = handle % SLOT_SPACE;
    if (s >= this.cap || this.qid[s] === 0 || this.gen[s] !== (handle - s) / SLOT_SPACE) return NO_ENTRY;
    return s;
  }

  private remove(s: number): void {
    const q = this.queues[this.qid[s]! - 1]!;
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (p === -1) q.head = n;
    else this.next[p] = n;
    if (n === -1) q.tail = p;
    else this.prev[n] = p;
    this.deleteIndex(s);
    this.kinds[KINDS[this.flags[s]! & F_KIND]!]--;
    this.free(s);
    if (this.count === 0) {
      this.disarm();
      // after a load: give the slot arrays, the index and the chunks back (not at low rates, where
      // the table empties often and is small)
      if (this.cap > SHRINK_ABOVE_SLOTS) this.reset();
    }
  }

  /** back to no storage at all (the table is empty). */
  private reset(): void {
    this.cap = 0;
    this.gen = new Uint32Array(0);
    this.flags = new Uint8Array(0);
    this.wide = new Uint8Array(0);
    this.qid = new Uint16Array(0);
    this.prev = new Int32Array(0);
    this.next = new Int32Array(0);
    this.at = new Float64Array(0);
    this.seqs = new Float64Array(0);
    this.hashes = new Int32Array(0);
    this.loc = new Int32Array(0);
    this.off = new Uint32Array(0);
    this.keyLen = new Uint32Array(0);
    this.dataLen = new Uint32Array(0);
    this.addrLen = new Uint32Array(0);
    this.reqTagLen = new Int32Array(0);
    this.resTagLen = new Int32Array(0);
    this.port = new Uint16Array(0);
    this.transport = new Uint8Array(0);
    this.localIdx = new Uint16Array(0);
    this.connId = new Float64Array(0);
    this.freeSlots = new Int32Array(0);
    this.freeTop = 0;
    this.tab = new Int32Array(0);
    this.mask = 0;
    this.chunks = [];
    this.chunkLive = [];
    this.spare = [];
    this.head = -1;
    this.headPos = 0;
    this.allocatedChunks = 0;
  }

  /** release a slot and its record (not the index or queue links). */
  private free(s: number): void {
    const c = this.loc[s]!;
    if (c === LOC_BIG) {
      this.bigBytes -= this.big.get(s)?.length ?? 0;
      this.big.delete(s);
    } else if (c >= 0 && --this.chunkLive[c]! === 0) {
      this.chunkEmptied(c);
    }
    this.loc[s] = LOC_NONE;
    this.qid[s] = 0;
    this.gen[s] = (this.gen[s]! + 1) & GEN_MASK;
    this.freeSlots[this.freeTop++] = s;
    this.count--;
  }

  private chunkEmptied(c: number): void {
    if (c === this.head) {
      this.headPos = 0; // all its records are gone: write from its start again
      return;
    }
    if (this.spare.length < SPARE_CHUNKS) {
      this.spare.push(c);
      return;
    }
    this.chunks[c] = undefined; // released: its memory goes back when the Buffer is collected
    this.allocatedChunks--;
  }

  /** release the spare chunks and an empty head chunk (room for a large record). */
  private releaseEmpty(): void {
    for (const c of this.spare) {
      this.chunks[c] = undefined;
      this.allocatedChunks--;
    }
    this.spare.length = 0;
    if (this.head >= 0 && this.chunkLive[this.head] === 0) {
      this.chunks[this.head] = undefined;
      this.allocatedChunks--;
      this.head = -1;
      this.headPos = 0;
    }
  }

  private bytesInUse(): number {
    return this.allocatedChunks * this.chunkBytes + this.bigBytes;
  }

  /** the chunk `total` bytes are written to at `headPos` (a new head chunk when the current one is full). */
  private room(total: number): number {
    if (this.head >= 0 && this.headPos + total <= this.chunkBytes) return this.head;
    const old = this.head;
    this.head = -1;
    if (old >= 0 && this.chunkLive[old] === 0) this.chunkEmptied(old);
    for (let guard = this.count + 1; guard >= 0; guard--) {
      const c = this.spare.pop();
      if (c !== undefined) return this.useChunk(c);
      if (this.bytesInUse() + this.chunkBytes <= this.maxBytes) return this.useChunk(this.newChunk());
      if (this.count === 0) break;
      this.evictOldest();
    }
    // maxBytes below one chunk and nothing left to evict: one chunk anyway (total <= maxBytes was checked)
    return this.useChunk(this.newChunk());
  }

  private useChunk(c: number): number {
    this.head = c;
    this.headPos = 0;
    return c;
  }

  private newChunk(): number {
    let c = this.chunks.indexOf(undefined);
    if (c < 0) {
      c = this.chunks.length;
      this.chunks.push(undefined);
      this.chunkLive.push(0);
    }
    this.chunks[c] = Buffer.allocUnsafeSlow(this.chunkBytes);
    this.chunkLive[c] = 0;
    this.allocatedChunks++;
    return c;
  }

  private bytes(s: number): Buffer {
    const c = this.loc[s]!;
    return c === LOC_BIG ? this.big.get(s)! : this.chunks[c]!;
  }

  private str(s: number, o: number, n: number, wideBit: number): string {
    return this.bytes(s).toString((this.wide[s]! & wideBit) !== 0 ? 'utf16le' : 'latin1', o, o + n);
  }

  private keyIs(s: number, key: string): boolean {
    const wide = (this.wide[s]! & W_KEY) !== 0;
    const n = this.keyLen[s]!;
    if (n !== (wide ? key.length * 2 : key.length)) return false;
    const b = this.bytes(s);
    const o = this.off[s]!;
    if (wide) return b.toString('utf16le', o, o + n) === key;
    for (let i = 0; i < n; i++) if (b[o + i] !== key.charCodeAt(i)) return false;
    return true;
  }

  private intern<T>(xs: T[], x: T): number {
    const i = xs.indexOf(x);
    if (i >= 0) return i;
    xs.push(x);
    return xs.length - 1;
  }

  private queueFor(duration: number): number {
    let empty = -1;
    for (let i = 0; i < this.queues.length; i++) {
      const q = this.queues[i]!;
      if (q.duration === duration) return i;
      if (empty < 0 && q.head === -1) empty = i;
    }
    if (empty >= 0) {
      this.queues[empty]!.duration = duration;
      return empty;
    }
    this.queues.push({ duration, head: -1, tail: -1 });
    return this.queues.length - 1;
  }

  private takeSlot(): number {
    if (this.freeTop === 0) this.grow();
    return this.freeSlots[--this.freeTop]!;
  }

  private grow(): void {
    const cap = Math.min(this.maxSlots, Math.max(INITIAL_SLOTS, this.cap * 2));
    const old = this.cap;
    const g = <A extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array>(a: A, make: (n: number) => A): A => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.gen = g(this.gen, (n) => new Uint32Array(n));
    this.flags = g(this.flags, (n) => new Uint8Array(n));
    this.wide = g(this.wide, (n) => new Uint8Array(n));
    this.qid = g(this.qid, (n) => new Uint16Array(n));
    this.prev = g(this.prev, (n) => new Int32Array(n));
    this.next = g(this.next, (n) => new Int32Array(n));
    this.at = g(this.at, (n) => new Float64Array(n));
    this.seqs = g(this.seqs, (n) => new Float64Array(n));
    this.hashes = g(this.hashes, (n) => new Int32Array(n));
    this.loc = g(this.loc, (n) => new Int32Array(n));
    this.off = g(this.off, (n) => new Uint32Array(n));
    this.keyLen = g(this.keyLen, (n) => new Uint32Array(n));
    this.dataLen = g(this.dataLen, (n) => new Uint32Array(n));
    this.addrLen = g(this.addrLen, (n) => new Uint32Array(n));
    this.reqTagLen = g(this.reqTagLen, (n) => new Int32Array(n));
    this.resTagLen = g(this.resTagLen, (n) => new Int32Array(n));
    this.port = g(this.port, (n) => new Uint16Array(n));
    this.transport = g(this.transport, (n) => new Uint8Array(n));
    this.localIdx = g(this.localIdx, (n) => new Uint16Array(n));
    this.connId = g(this.connId, (n) => new Float64Array(n));
    this.loc.fill(LOC_NONE, old);
    const free = new Int32Array(cap);
    free.set(this.freeSlots.subarray(0, this.freeTop));
    // new slots handed out lowest first
    for (let s = cap - 1; s >= old; s--) free[this.freeTop++] = s;
    this.freeSlots = free;
    this.cap = cap;
    // the index: at most half full
    let size = 16;
    while (size < cap * 2) size *= 2;
    if (size !== this.tab.length) {
      this.tab = new Int32Array(size);
      this.mask = size - 1;
      for (let s = 0; s < old; s++) if (this.qid[s] !== 0) this.insertIndex(s, this.hashes[s]!);
    }
  }

  private insertIndex(s: number, h: number): void {
    const mask = this.mask;
    let i = h & mask;
    while (this.tab[i] !== 0) i = (i + 1) & mask;
    this.tab[i] = s + 1;
  }

  /** linear probing with backward-shift deletion: no tombstones. */
  private deleteIndex(s: number): void {
    const mask = this.mask;
    let i = this.hashes[s]! & mask;
    while (this.tab[i] !== s + 1) {
      if (this.tab[i] === 0) return; // not indexed (cannot happen for a live slot)
      i = (i + 1) & mask;
    }
    let j = i;
    for (;;) {
      this.tab[i] = 0;
      for (;;) {
        j = (j + 1) & mask;
        const v = this.tab[j]!;
        if (v === 0) return;
        const k = this.hashes[v - 1]! & mask;
        // the entry at j may move to i unless its home k lies cyclically in (i, j]
        if (i <= j ? i < k && k <= j : i < k || k <= j) continue;
        break;
      }
      this.tab[i] = this.tab[j]!;
      i = j;
    }
  }

  private evictOldest(): void {
    let oldest = -1;
    for (const q of this.queues) if (q.head !== -1 && (oldest === -1 || this.seqs[q.head]! < this.seqs[oldest]!)) oldest = q.head;
    if (oldest === -1) return;
    this.evicted++;
    this.remove(oldest);
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
    for (const q of this.queues) {
      let s = q.head;
      while (s !== -1 && this.at[s]! <= now) {
        const n = this.next[s]!;
        this.remove(s);
        s = n;
      }
      if (s !== -1) next = Math.min(next, this.at[s]!);
    }
    if (next !== Infinity) this.arm(next);
  }
}
