import { describe, expect, it } from 'vitest';
import { manualClock } from '../../src/transaction/index.js';
import { LingerTable, NO_ENTRY, type LingerOptions } from '../../src/transaction/linger.js';
import { TimerSet } from '../../src/transaction/timers.js';
import type { LocalEndpoint, Target } from '../../src/transport/types.js';

/**
 * The linger table's own storage (src/transaction/linger.ts): slots in typed arrays, bytes in a
 * chunked byte store, an open-addressing key index. The transaction-level behaviour (resend /
 * accepted / absorb / reack, expiry order, eviction by count, CANCEL during L) is in
 * transaction.test.ts "linger entries"; these tests are about what the storage must not get wrong.
 */

const LOCAL: LocalEndpoint = { transport: 'udp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' };
const TARGET: Target = { transport: 'udp', address: '192.0.2.7', port: 5062, local: LOCAL };

function table(max = 1000, opts: LingerOptions = {}) {
  const clock = manualClock(1_000_000);
  const timers = new TimerSet(clock);
  return { clock, timers, t: new LingerTable(timers, max, opts) };
}

/** a payload of n bytes that encodes its id (so a mix-up between records shows) */
function payload(id: number, n = 40): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (id * 31 + i) & 0xff;
  return b;
}

const key = (i: number): string => `z9hG4bK${i}|192.0.2.7:5062|REGISTER`;

function data(t: LingerTable, k: string, side: 'server' | 'client' = 'server'): Buffer | undefined {
  const s = t.find(side, k);
  return s === NO_ENTRY ? undefined : t.dataOf(s);
}

describe('linger table storage', () => {
  it('keeps the bytes, target, key and kind of each entry and hands out copies', () => {
    const { t } = table();
    const h = t.add('server', key(1), 'resend', 32_000, payload(1), TARGET);
    expect(h).not.toBe(NO_ENTRY);
    const s = t.find('server', key(1));
    expect(t.kindOf(s)).toBe('resend');
    expect(t.keyOf(s)).toBe(key(1));
    expect(t.targetOf(s)).toEqual(TARGET);
    expect(t.targetOf(s)?.local).toBe(LOCAL); // the same endpoint object, not a copy
    const d = t.dataOf(s)!;
    expect(d.equals(payload(1))).toBe(true);
    d.fill(0); // a copy: the stored bytes are not changed by the caller
    expect(data(t, key(1))!.equals(payload(1))).toBe(true);
    expect(t.find('client', key(1))).toBe(NO_ENTRY); // two namespaces
    expect(t.find('server', key(2))).toBe(NO_ENTRY);
  });

  it('an entry without bytes keeps no target; connectionId and tags round-trip (empty tag is not undefined)', () => {
    const { t } = table();
    t.add('server', key(1), 'accepted', 32_000);
    const s1 = t.find('server', key(1));
    expect(t.dataOf(s1)).toBeUndefined();
    expect(t.targetOf(s1)).toBeUndefined();
    expect(t.legacyOf(s1)).toBe(false);
    expect(t.requestToTagOf(s1)).toBeUndefined();
    const tcp: Target = { transport: 'tcp', address: '2001:db8::7', port: 5070, connectionId: 42 };
    t.add('server', '2543|INVITE|x', 'resend', 32_000, payload(2), tcp, '', 'resTag', true);
    const s2 = t.find('server', '2543|INVITE|x');
    expect(t.targetOf(s2)).toEqual(tcp);
    expect(t.legacyOf(s2)).toBe(true);
    expect(t.requestToTagOf(s2)).toBe('');
    expect(t.responseToTagOf(s2)).toBe('resTag');
    t.add('server', '2543|INVITE|y', 'absorb', 5000, undefined, undefined, undefined, 'r2', true);
    const s3 = t.find('server', '2543|INVITE|y');
    expect(t.requestToTagOf(s3)).toBeUndefined();
    expect(t.responseToTagOf(s3)).toBe('r2');
  });

  it('strings with characters above U+00FF (key, address, tags) are kept exactly', () => {
    const { t } = table();
    const k = 'z9hG4bK€\u{1F600}\ud800|h:5060|MESSAGE';
    const target: Target = { transport: 'udp', address: 'hôst-€', port: 1 };
    t.add('server', k, 'resend', 1000, payload(3), target, 'tag€', 'ß', true);
    const s = t.find('server', k);
    expect(s).not.toBe(NO_ENTRY);
    expect(t.keyOf(s)).toBe(k);
    expect(t.targetOf(s)?.address).toBe('hôst-€');
    expect(t.requestToTagOf(s)).toBe('tag€');
    expect(t.responseToTagOf(s)).toBe('ß');
    expect(t.dataOf(s)!.equals(payload(3))).toBe(true);
    // a latin1 key that differs only above 0xFF is another key
    expect(t.find('server', 'z9hG4bK\u00ac\u{1F600}\ud800|h:5060|MESSAGE')).toBe(NO_ENTRY);
  });

  it('keys whose hashes collide are told apart, and survive deletions around them', () => {
    const { t } = table();
    t.hash = () => 12345; // every key in one probe chain
    for (let i = 0; i < 50; i++) t.add(i % 2 === 0 ? 'server' : 'client', key(i), 'resend', 32_000, payload(i), TARGET);
    for (let i = 0; i < 50; i++) expect(data(t, key(i), i % 2 === 0 ? 'server' : 'client')!.equals(payload(i))).toBe(true);
    expect(t.find('client', key(0))).toBe(NO_ENTRY); // same hash, same key, other side
    // delete every third (backward-shift deletion in the middle of the chain)
    for (let i = 0; i < 50; i += 3) t.delete(t.handleOf(t.find(i % 2 === 0 ? 'server' : 'client', key(i))));
    for (let i = 0; i < 50; i++) {
      const found = data(t, key(i), i % 2 === 0 ? 'server' : 'client');
      if (i % 3 === 0) expect(found).toBeUndefined();
      else expect(found!.equals(payload(i))).toBe(true);
    }
    expect(t.size).toBe(50 - 17);
  });

  it('backward-shift deletion keeps every key findable under real hashes, across index growth', () => {
    const { t } = table(10_000);
    for (let i = 0; i < 3000; i++) t.add('server', key(i), 'resend', 32_000, payload(i, 8), TARGET);
    for (let i = 0; i < 3000; i += 2) t.delete(t.handleOf(t.find('server', key(i))));
    for (let i = 3000; i < 4000; i++) t.add('server', key(i), 'resend', 32_000, payload(i, 8), TARGET);
    for (let i = 0; i < 4000; i++) {
      const d = data(t, key(i));
      if (i < 3000 && i % 2 === 0) expect(d).toBeUndefined();
      else expect(d?.equals(payload(i, 8))).toBe(true);
    }
    expect(t.size).toBe(2500);
    expect(t.sizes()).toMatchObject({ total: 2500, resend: 2500, evicted: 0 });
  });

  it('adding the same key again replaces the entry (and its kind count)', () => {
    const { t } = table();
    const h1 = t.add('server', key(1), 'resend', 32_000, payload(1), TARGET);
    t.add('server', key(1), 'absorb', 5000);
    expect(t.size).toBe(1);
    expect(t.sizes()).toMatchObject({ total: 1, resend: 0, absorb: 1 });
    expect(t.kindOf(t.find('server', key(1)))).toBe('absorb');
    t.delete(h1); // the replaced entry's handle no longer removes anything
    expect(t.size).toBe(1);
  });

  it('a stale handle is ignored after its slot was reused', () => {
    const { t } = table();
    const h1 = t.add('server', key(1), 'resend', 32_000, payload(1), TARGET);
    t.delete(h1);
    const h2 = t.add('server', key(2), 'resend', 32_000, payload(2), TARGET);
    expect(h2 % 2 ** 24).toBe(h1 % 2 ** 24); // same slot, new generation
    expect(t.isLive(h1)).toBe(false);
    t.delete(h1);
    expect(data(t, key(2))!.equals(payload(2))).toBe(true);
    t.delete(NO_ENTRY);
    t.delete(1.5);
    expect(t.size).toBe(1);
  });

  it('chunks are reused from their start once their records are gone (wrap-around), bytes stay right', () => {
    // 256-byte chunks, room for 4 of them: each record is key (~33 B) + 60 B data + 9 B address
    const { clock, t } = table(1000, { chunkBytes: 256, maxBytes: 1024 });
    let n = 0;
    for (let round = 0; round < 50; round++) {
      // 6 entries per simulated second, each lives 1 s: ~3 chunks in use at a time
      for (let k = 0; k < 6; k++, n++) t.add('server', key(n), 'resend', 1000, payload(n, 60), TARGET);
      for (let k = n - 6; k < n; k++) expect(data(t, key(k))!.equals(payload(k, 60))).toBe(true);
      expect(t.memory().chunkBytes).toBeLessThanOrEqual(1024);
      clock.advance(1000);
      expect(t.size).toBe(0);
    }
    expect(t.sizes().evicted).toBe(0);
    expect(t.memory().chunks).toBeLessThanOrEqual(4);
  });

  it('when the byte store is full the oldest entries are evicted (counted), whatever their queue', () => {
    const { t } = table(1000, { chunkBytes: 256, maxBytes: 512 });
    // ~102 B per record: 2 per chunk, 4 in the whole store
    for (let i = 0; i < 4; i++) t.add('server', key(i), 'resend', i % 2 === 0 ? 32_000 : 5000, payload(i, 60), TARGET);
    expect(t.size).toBe(4);
    expect(t.sizes().evicted).toBe(0);
    t.add('server', key(4), 'resend', 32_000, payload(4, 60), TARGET);
    // the oldest chunk (entries 0 and 1) had to go
    expect(t.sizes().evicted).toBe(2);
    expect(data(t, key(0))).toBeUndefined();
    expect(data(t, key(1))).toBeUndefined();
    for (let i = 2; i <= 4; i++) expect(data(t, key(i))!.equals(payload(i, 60))).toBe(true);
    expect(t.memory().chunkBytes).toBeLessThanOrEqual(512);
  });

  it('an entry larger than a chunk gets a buffer of its own; one larger than the whole store is not kept', () => {
    const { clock, t } = table(1000, { chunkBytes: 256, maxBytes: 1024 });
    t.add('server', key(0), 'resend', 32_000, payload(0, 60), TARGET);
    const h = t.add('server', key(1), 'resend', 32_000, payload(1, 700), TARGET);
    expect(h).not.toBe(NO_ENTRY);
    expect(data(t, key(1))!.equals(payload(1, 700))).toBe(true);
    expect(t.memory()).toMatchObject({ bigRecords: 1 });
    expect(data(t, key(0))!.equals(payload(0, 60))).toBe(true);
    // larger than maxBytes: nothing kept, counted as evicted, the others untouched
    expect(t.add('server', key(2), 'resend', 32_000, payload(2, 2000), TARGET)).toBe(NO_ENTRY);
    expect(t.find('server', key(2))).toBe(NO_ENTRY);
    expect(t.sizes()).toMatchObject({ total: 2, evicted: 1 });
    // a second large one does not fit beside the first: the oldest go
    t.add('server', key(3), 'resend', 32_000, payload(3, 700), TARGET);
    expect(data(t, key(3))!.equals(payload(3, 700))).toBe(true);
    expect(t.memory().bigBytes + t.memory().chunkBytes).toBeLessThanOrEqual(1024);
    expect(t.find('server', key(1))).toBe(NO_ENTRY);
    clock.advance(32_000);
    expect(t.size).toBe(0);
    expect(t.memory()).toMatchObject({ bigRecords: 0, bigBytes: 0 });
  });

  it('maxBytes 0 keeps nothing; max 0 keeps nothing', () => {
    expect(table(1000, { maxBytes: 0 }).t.add('server', key(1), 'accepted', 1000)).toBe(NO_ENTRY);
    expect(table(0).t.add('server', key(1), 'accepted', 1000)).toBe(NO_ENTRY);
  });

  it('count bound: the oldest entry (by order of adding, across durations) is evicted', () => {
    const { t } = table(3);
    t.add('server', key(0), 'resend', 32_000, payload(0), TARGET);
    t.add('client', key(1), 'absorb', 5000);
    t.add('server', key(2), 'resend', 32_000, payload(2), TARGET);
    t.add('client', key(3), 'reack', 32_000, payload(3), TARGET);
    expect(t.find('server', key(0))).toBe(NO_ENTRY);
    t.add('server', key(4), 'accepted', 32_000);
    expect(t.find('client', key(1))).toBe(NO_ENTRY);
    expect(t.sizes()).toEqual({ total: 3, resend: 1, accepted: 1, absorb: 0, reack: 1, evicted: 2 });
  });

  it('the memory goes back: chunks beyond one spare are released as they empty, all storage once a large table is empty', () => {
    const { clock, timers, t } = table(100_000, { chunkBytes: 4096 });
    for (let i = 0; i < 2000; i++) t.add('server', key(i), 'resend', 5000, payload(i, 300), TARGET);
    clock.advance(1000);
    for (let i = 2000; i < 5000; i++) t.add('server', key(i), 'resend', 32_000, payload(i, 300), TARGET);
    expect(t.memory().chunks).toBeGreaterThan(300);
    expect(timers.size).toBe(1);
    clock.advance(4000); // the first 2,000 expire: their chunks go (one spare kept)
    expect(t.size).toBe(3000);
    const c = t.memory().chunks;
    expect(c).toBeLessThanOrEqual(Math.ceil(3000 / 11) + 2); // ~342 B records, 11 per chunk, + spare + head
    for (let i = 2000; i < 5000; i++) expect(data(t, key(i))!.equals(payload(i, 300))).toBe(true);
    clock.advance(32_000);
    expect(t.size).toBe(0);
    expect(timers.size).toBe(0);
    expect(t.memory()).toEqual({ chunks: 0, chunkBytes: 0, bigRecords: 0, bigBytes: 0, slotCapacity: 0 });
    // and usable again
    t.add('server', key(1), 'resend', 1000, payload(1, 300), TARGET);
    expect(data(t, key(1))!.equals(payload(1, 300))).toBe(true);
  });

  it('a small table that empties keeps its storage (no churn at low rates)', () => {
    const { clock, t } = table();
    t.add('server', key(1), 'resend', 1000, payload(1), TARGET);
    clock.advance(1000);
    expect(t.size).toBe(0);
    expect(t.memory()).toMatchObject({ chunks: 1, slotCapacity: 256 });
  });

  it('clear() empties everything and the table is usable again', () => {
    const { timers, t } = table(1000, { chunkBytes: 256, maxBytes: 1024 });
    for (let i = 0; i < 8; i++) t.add('server', key(i), 'resend', 32_000, payload(i, 60), TARGET);
    t.clear();
    expect(t.sizes()).toMatchObject({ total: 0, resend: 0 });
    expect(timers.size).toBe(0);
    expect(t.find('server', key(7))).toBe(NO_ENTRY);
    t.add('server', key(9), 'resend', 32_000, payload(9, 60), TARGET);
    expect(data(t, key(9))!.equals(payload(9, 60))).toBe(true);
  });
});
