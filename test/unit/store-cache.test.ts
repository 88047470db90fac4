/**
 * CachedSubscriberStore: refresh-ahead, batching, coalescing and the generation counter, on fake
 * time (injected clock and scheduler; the inner store answers when the test says so).
 */
import { describe, expect, it } from 'vitest';
import { CachedSubscriberStore, MemorySubscriberStore, StoreError, type Subscriber, type SubscriberKey } from '../../src/store/index.js';
import type { Scheduler } from '../../src/store/cache.js';

interface Call {
  keys: SubscriberKey[];
  /** answer from the memory store as it is now */
  answer(): Promise<void>;
  fail(e: unknown): Promise<void>;
}

/** A memory store whose getMany calls wait until the test answers them. */
class ManualStore extends MemorySubscriberStore {
  calls: Call[] = [];
  singleGets = 0;
  override async get(username: string, domain: string): Promise<Subscriber | null> {
    this.singleGets++;
    return super.get(username, domain);
  }
  override getMany(keys: readonly SubscriberKey[]): Promise<(Subscriber | null)[]> {
    return new Promise((resolve, reject) => {
      const call: Call = {
        keys: [...keys],
        answer: async () => {
          resolve(await super.getMany(keys));
          await flush();
        },
        fail: async (e) => {
          reject(e);
          await flush();
        },
      };
      this.calls.push(call);
    });
  }
  /** the oldest unanswered call. */
  next(): Call {
    const c = this.calls.shift();
    if (c === undefined) throw new Error('no pending getMany');
    return c;
  }
}

/** let promise callbacks run */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

function fakeTime() {
  let t = 1_000_000;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const schedule: Scheduler = (fn, ms) => {
    const id = seq++;
    timers.set(id, { at: t + Math.max(0, ms), fn });
    return () => timers.delete(id);
  };
  /** advance the clock, firing due timers in order */
  async function advance(ms: number): Promise<void> {
    const end = t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of timers) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e;
      if (next === undefined) break;
      t = Math.max(t, next[1].at);
      timers.delete(next[0]);
      next[1].fn();
      await flush();
    }
    t = end;
    await flush();
  }
  return { now: () => t, schedule, advance, timers };
}

async function setup(opts: { ttlMs?: number; negativeTtlMs?: number; refreshAheadMs?: number; refreshBatchMs?: number; batchMax?: number } = {}) {
  const time = fakeTime();
  const inner = new ManualStore();
  for (const u of ['a', 'b', 'c', 'd']) await inner.add(u, 'x', `pw-${u}`);
  const cache = new CachedSubscriberStore(inner, { ttlMs: 2000, ...opts, now: time.now, schedule: time.schedule });
  return { time, inner, cache };
}

/** a cold get answered by the batch it triggers */
async function prime(s: Awaited<ReturnType<typeof setup>>, user: string): Promise<void> {
  const p = s.cache.get(user, 'x');
  await s.time.advance(0);
  await s.inner.next().answer();
  await p;
}

describe('CachedSubscriberStore: misses', () => {
  it('misses of one event-loop turn go as one getMany, without waiting for the refresh window', async () => {
    const s = await setup({ refreshBatchMs: 100 });
    const ps = ['a', 'b', 'zz'].map((u) => s.cache.get(u, 'x'));
    expect(s.inner.calls).toHaveLength(0); // queued, sent by the 0 ms timer
    await s.time.advance(0);
    expect(s.inner.calls).toHaveLength(1);
    const call = s.inner.next();
    expect(call.keys).toEqual([
      { username: 'a', domain: 'x' },
      { username: 'b', domain: 'x' },
      { username: 'zz', domain: 'x' },
    ]);
    await call.answer();
    const got = await Promise.all(ps);
    expect(got.map((v) => v?.password ?? null)).toEqual(['pw-a', 'pw-b', null]);
    expect(s.inner.singleGets).toBe(0);
  });

  it('concurrent gets of one key share one lookup', async () => {
    const s = await setup();
    const p1 = s.cache.get('a', 'x');
    await s.time.advance(0);
    const p2 = s.cache.get('a', 'x'); // while the first is in flight
    await s.time.advance(0);
    expect(s.inner.calls).toHaveLength(1);
    expect(s.inner.calls[0]!.keys).toHaveLength(1);
    await s.inner.next().answer();
    expect((await p1)?.password).toBe('pw-a');
    expect((await p2)?.password).toBe('pw-a');
    expect(s.cache.inFlight).toBe(0);
  });

  it('a full miss batch is sent at once', async () => {
    const s = await setup({ batchMax: 2 });
    void s.cache.get('a', 'x');
    expect(s.inner.calls).toHaveLength(0);
    void s.cache.get('b', 'x');
    expect(s.inner.calls).toHaveLength(1);
    expect(s.inner.calls[0]!.keys).toHaveLength(2);
  });

  it('a failed batch rejects every lookup waiting for it, and nothing is cached', async () => {
    const s = await setup();
    const ps = [s.cache.get('a', 'x'), s.cache.get('b', 'x')];
    await s.time.advance(0);
    await s.inner.next().fail(new StoreError('BUSY', 'no answer'));
    for (const p of ps) await expect(p).rejects.toMatchObject({ code: 'BUSY' });
    expect(s.cache.size).toBe(0);
    // the next get asks again
    const again = s.cache.get('a', 'x');
    await s.time.advance(0);
    await s.inner.next().answer();
    expect((await again)?.password).toBe('pw-a');
  });

  it('uses get() when the inner store has no getMany', async () => {
    const time = fakeTime();
    const inner = new MemorySubscriberStore();
    await inner.add('a', 'x', 'pw');
    const plain = { get: (u: string, d: string) => inner.get(u, d), add: inner.add.bind(inner), remove: inner.remove.bind(inner), setPassword: inner.setPassword.bind(inner), list: inner.list.bind(inner), close: inner.close.bind(inner) };
    const cache = new CachedSubscriberStore(plain, { ttlMs: 2000, now: time.now, schedule: time.schedule });
    const p = cache.get('a', 'x');
    await time.advance(0);
    expect((await p)?.password).toBe('pw');
    expect(cache.peek('a', 'x')?.password).toBe('pw');
  });
});

describe('CachedSubscriberStore: peek', () => {
  it('answers synchronously from cache; undefined when not cached or expired', async () => {
    const s = await setup({ negativeTtlMs: 500 });
    expect(s.cache.peek('a', 'x')).toBeUndefined();
    await prime(s, 'a');
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a');
    await prime(s, 'nobody');
    expect(s.cache.peek('nobody', 'x')).toBeNull();
    await s.time.advance(500);
    expect(s.cache.peek('nobody', 'x')).toBeUndefined();
    await s.time.advance(1500);
    expect(s.cache.peek('a', 'x')).toBeUndefined();
  });

  it('hands out the cached subscriber frozen: callers cannot change the cache', async () => {
    const s = await setup();
    await prime(s, 'a');
    const hit = s.cache.peek('a', 'x') as Subscriber;
    expect(Object.isFrozen(hit)).toBe(true);
    expect(() => {
      hit.password = 'tampered';
    }).toThrow(TypeError);
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a');
    // get() still resolves to a copy of its own
    const got = (await s.cache.get('a', 'x'))!;
    got.password = 'changed';
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a');
  });
});

describe('CachedSubscriberStore: refresh-ahead', () => {
  it('with the default window, a user seen at any interval shorter than the TTL never misses (refresh-ahead covers half the TTL)', async () => {
    // SIPp's REGISTER load: 2,000 users at 1,500/s, each seen every ~1.33 s with a TTL of 2 s. With a
    // window of TTL/4 the hits at age 1.33 s queued no refresh and every other lookup missed.
    for (const every of [1333, 1000, 700, 1900]) {
      const s = await setup({ ttlMs: 2000 });
      await prime(s, 'a');
      let misses = 0;
      for (let i = 0; i < 30; i++) {
        // the batch window (100 ms by default) passes: answer the refresh queued by the last hit, if any
        await s.time.advance(150);
        while (s.inner.calls.length > 0) await s.inner.next().answer();
        await s.time.advance(every - 150);
        if (s.cache.peek('a', 'x') === undefined) {
          misses++;
          await prime(s, 'a'); // what auth does then: get() and wait for the database
        }
      }
      expect({ every, misses }).toEqual({ every, misses: 0 });
    }
  });

  it('a hit late in life queues one background refresh and still returns the cached value; hot users never miss', async () => {
    const s = await setup({ ttlMs: 2000, refreshAheadMs: 500, refreshBatchMs: 100 });
    await prime(s, 'a');
    await s.time.advance(1499);
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a');
    await s.time.advance(1); // 1500: in the last 500 ms
    await s.inner.setPassword('a', 'x', 'new'); // behind the cache's back
    expect((await s.cache.get('a', 'x'))?.password).toBe('pw-a'); // cached value served
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a'); // queued once
    await s.time.advance(99);
    expect(s.inner.calls).toHaveLength(0); // waits for the batch window
    await s.time.advance(1);
    expect(s.inner.calls).toHaveLength(1);
    expect(s.inner.calls[0]!.keys).toEqual([{ username: 'a', domain: 'x' }]);
    await s.inner.next().answer();
    expect(s.cache.peek('a', 'x')?.password).toBe('new');
    // the refreshed entry lives a full TTL from the refresh query (sent at 1600)
    await s.time.advance(1899);
    expect(s.cache.peek('a', 'x')?.password).toBe('new'); // 3499 < 1600 + 2000: queues the next refresh
    await s.time.advance(100);
    await s.inner.next().answer();
    await s.time.advance(1000);
    expect(s.cache.peek('a', 'x')?.password).toBe('new');
    expect(s.inner.singleGets).toBe(0);
  });

  it('refreshes queued in one window go as one getMany; a full batch goes at once', async () => {
    const s = await setup({ ttlMs: 2000, refreshAheadMs: 500, refreshBatchMs: 100, batchMax: 3 });
    const ps = ['a', 'b', 'c', 'd'].map((u) => s.cache.get(u, 'x'));
    await s.time.advance(0);
    // batchMax 3: the 4 misses went as 3 + 1
    expect(s.inner.calls.map((c) => c.keys.length)).toEqual([3, 1]);
    await s.inner.next().answer();
    await s.inner.next().answer();
    await Promise.all(ps);
    await s.time.advance(1600);
    s.cache.peek('a', 'x');
    s.cache.peek('b', 'x');
    expect(s.inner.calls).toHaveLength(0);
    s.cache.peek('c', 'x'); // third queued: sent now
    expect(s.inner.calls).toHaveLength(1);
    expect(s.inner.next().keys.map((k) => k.username)).toEqual(['a', 'b', 'c']);
    s.cache.peek('d', 'x');
    await s.time.advance(100);
    expect(s.inner.next().keys.map((k) => k.username)).toEqual(['d']);
  });

  it('negative entries are not refreshed ahead', async () => {
    const s = await setup({ ttlMs: 2000, negativeTtlMs: 1000, refreshAheadMs: 900 });
    await prime(s, 'nobody');
    await s.time.advance(900);
    expect(s.cache.peek('nobody', 'x')).toBeNull();
    await s.time.advance(200);
    expect(s.inner.calls).toHaveLength(0);
  });

  it('a failed refresh keeps serving the entry until it expires, then misses; the next hit retries', async () => {
    const s = await setup({ ttlMs: 2000, refreshAheadMs: 500, refreshBatchMs: 100 });
    await prime(s, 'a'); // sent at t0
    await s.time.advance(1600);
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a');
    await s.time.advance(100);
    await s.inner.next().fail(new StoreError('BUSY', 'down'));
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a'); // still served, and a refresh is queued again
    await s.time.advance(100);
    await s.inner.next().fail(new StoreError('BUSY', 'down'));
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a'); // queues a third refresh
    await s.time.advance(199); // t0 + 1999: the third refresh was sent, still unanswered
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a');
    expect(s.inner.calls).toHaveLength(1);
    await s.time.advance(1); // t0 + 2000: expired
    expect(s.cache.peek('a', 'x')).toBeUndefined();
    const p = s.cache.get('a', 'x'); // joins the refresh in flight
    await s.time.advance(0);
    expect(s.inner.calls).toHaveLength(1);
    await s.inner.next().fail(new StoreError('UNREACHABLE', 'down'));
    await expect(p).rejects.toMatchObject({ code: 'UNREACHABLE' });
    expect(s.cache.size).toBe(0);
  });

  it('a miss on a key whose refresh is still queued does not wait for the refresh window', async () => {
    const s = await setup({ ttlMs: 2000, refreshAheadMs: 500, refreshBatchMs: 400 });
    await prime(s, 'a');
    await s.time.advance(1900);
    s.cache.peek('a', 'x'); // refresh queued for 400 ms
    await s.time.advance(100); // expired at 2000, refresh still queued
    const p = s.cache.get('a', 'x');
    await s.time.advance(0);
    expect(s.inner.calls).toHaveLength(1);
    await s.inner.next().answer();
    expect((await p)?.password).toBe('pw-a');
    await s.time.advance(400);
    expect(s.inner.calls).toHaveLength(0); // moved, not sent twice
  });
});

describe('CachedSubscriberStore: generations and freshness', () => {
  it('a lookup sent before invalidate() cannot fill the cache with the old value', async () => {
    const s = await setup();
    const p = s.cache.get('a', 'x');
    await s.time.advance(0); // sent
    await s.inner.setPassword('a', 'x', 'new');
    s.cache.invalidate('a', 'x');
    // a get after the invalidate does not join the lookup sent before it
    const later = s.cache.get('a', 'x');
    await s.time.advance(0);
    expect(s.inner.calls).toHaveLength(2);
    // the old lookup read the old row (answered from a snapshot taken before the change)
    const old = s.inner.next();
    await s.inner.setPassword('a', 'x', 'pw-a');
    await old.answer();
    expect((await p)?.password).toBe('pw-a'); // its waiters get what it read
    expect(s.cache.peek('a', 'x')).toBeUndefined(); // ... but it is not cached
    await s.inner.setPassword('a', 'x', 'new');
    await s.inner.next().answer();
    expect((await later)?.password).toBe('new');
    expect(s.cache.peek('a', 'x')?.password).toBe('new');
  });

  it('setPassword through the cache invalidates before and after: a read racing the update is not cached', async () => {
    const s = await setup();
    await prime(s, 'a');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const realSet = s.inner.setPassword.bind(s.inner);
    s.inner.setPassword = async (u, d, pw) => {
      await gate;
      return realSet(u, d, pw);
    };
    const change = s.cache.setPassword('a', 'x', 'new');
    // during the update: a miss reads the old row and completes before the update does
    const racing = s.cache.get('a', 'x');
    await s.time.advance(0);
    await s.inner.next().answer();
    expect((await racing)?.password).toBe('pw-a');
    release();
    expect(await change).toBe(true);
    expect(s.cache.peek('a', 'x')).toBeUndefined();
    const after = s.cache.get('a', 'x');
    await s.time.advance(0);
    await s.inner.next().answer();
    expect((await after)?.password).toBe('new');
  });

  it('nothing is served later than TTL after its query was sent, refresh or not', async () => {
    const s = await setup({ ttlMs: 2000, refreshAheadMs: 500, refreshBatchMs: 100 });
    const p = s.cache.get('a', 'x');
    await s.time.advance(0); // sent at t0
    await s.time.advance(300); // slow answer
    await s.inner.next().answer();
    await p;
    await s.time.advance(1699); // t0 + 1999
    expect(s.cache.peek('a', 'x')?.password).toBe('pw-a');
    await s.time.advance(1); // t0 + 2000, although answered at t0 + 300
    expect(s.cache.peek('a', 'x')).toBeUndefined();
  });

  it('a miss after expiry joins the refresh already in flight', async () => {
    const s = await setup({ ttlMs: 2000, refreshAheadMs: 500, refreshBatchMs: 100 });
    await prime(s, 'a');
    await s.time.advance(1600);
    s.cache.peek('a', 'x');
    await s.time.advance(100); // refresh sent at 1700
    const slow = s.inner.next();
    await s.time.advance(300); // expired; the refresh (sent after the entry's query) is joined
    const p = s.cache.get('a', 'x');
    await s.time.advance(0);
    expect(s.inner.calls).toHaveLength(0);
    await s.inner.setPassword('a', 'x', 'new');
    await slow.answer();
    expect((await p)?.password).toBe('new');
  });

  it('close() answers queued misses, drops queued refreshes, then closes the inner store', async () => {
    const s = await setup({ refreshAheadMs: 500, refreshBatchMs: 100 });
    await prime(s, 'a');
    await s.time.advance(1600);
    s.cache.peek('a', 'x');
    const p = s.cache.get('b', 'x');
    const closing = s.cache.close();
    expect(s.inner.calls).toHaveLength(1);
    expect(s.inner.calls[0]!.keys.map((k) => k.username)).toEqual(['b']);
    await s.inner.next().answer();
    await closing;
    expect((await p)?.password).toBe('pw-b');
    expect(s.cache.size).toBe(0);
    expect(s.time.timers.size).toBe(0);
  });
});
