import type { Clock, TimerHandle, TimerSettings } from './types.js';

/** RFC 3261 defaults (T1 500 ms, T2 4 s, T4 5 s), Timer C 3 min, 100 Trying after 200 ms. */
export const DEFAULT_TIMERS: Readonly<TimerSettings> = Object.freeze({
  t1: 500,
  t2: 4000,
  t4: 5000,
  timerC: 180_000,
  trying: 200,
  timerD: 32_000,
});

/** Wall-clock timers (setTimeout), unref'd so that pending SIP timers never keep the process alive. */
export function realClock(): Clock {
  return {
    now: () => Date.now(),
    setTimer(ms: number, fn: () => void): TimerHandle {
      const t = setTimeout(fn, ms);
      t.unref();
      return t;
    },
    clearTimer(h: TimerHandle): void {
      clearTimeout(h as ReturnType<typeof setTimeout>);
    },
  };
}

/** A deterministic clock for tests: timers fire only from `advance()` / `runAll()`, in time order. */
export interface ManualClock extends Clock {
  /** move time forward by `ms`, firing every timer due on the way (timers set by timers fire too if due). */
  advance(ms: number): void;
  /** fire timers until none is left or `limitMs` of fake time has passed; returns how long it advanced. */
  runAll(limitMs?: number): number;
  /** number of timers set and not yet fired or cleared. */
  pending(): number;
}

interface ManualTimer {
  at: number;
  seq: number;
  fn: () => void;
}

export function manualClock(start = 0): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Set<ManualTimer>();
  const next = (): ManualTimer | undefined => {
    let best: ManualTimer | undefined;
    for (const t of timers) if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    return best;
  };
  const clock: ManualClock = {
    now: () => now,
    setTimer(ms: number, fn: () => void): TimerHandle {
      const t: ManualTimer = { at: now + Math.max(0, ms), seq: seq++, fn };
      timers.add(t);
      return t;
    },
    clearTimer(h: TimerHandle): void {
      timers.delete(h as ManualTimer);
    },
    advance(ms: number): void {
      const until = now + ms;
      for (;;) {
        const t = next();
        if (t === undefined || t.at > until) break;
        timers.delete(t);
        now = t.at;
        t.fn();
      }
      now = until;
    },
    runAll(limitMs = 24 * 3600_000): number {
      const start0 = now;
      for (;;) {
        const t = next();
        if (t === undefined || t.at - start0 > limitMs) break;
        timers.delete(t);
        now = t.at;
        t.fn();
      }
      return now - start0;
    },
    pending: () => timers.size,
  };
  return clock;
}

/** A named, tracked timer owned by one transaction. */
export interface TxTimer {
  cancel(): void;
  readonly live: boolean;
}

/** A timer in the list of a `NamedTimers`. */
export interface NamedTimer extends TxTimer {
  name: string;
  next: NamedTimer | undefined;
}

/**
 * Wraps the injected Clock and counts live timers, so `stats().timers` shows every timer the
 * layer holds (the leak test asserts it returns to zero).
 */
export class TimerSet {
  readonly live = new Set<TimerHandle>();

  constructor(readonly clock: Clock) {}

  get size(): number {
    return this.live.size;
  }

  now(): number {
    return this.clock.now();
  }

  start(ms: number, fn: () => void): TxTimer {
    return new SetTimer(this, ms, fn);
  }

  /** (internal) a timer with a name and a link, for `NamedTimers`. */
  startNamed(name: string, ms: number, fn: () => void, next: NamedTimer | undefined): NamedTimer {
    const t = new SetTimer(this, ms, fn) as NamedTimer;
    t.name = name;
    t.next = next;
    return t;
  }

  clearAll(): void {
    for (const h of this.live) this.clock.clearTimer(h);
    this.live.clear();
  }
}

/**
 * One timer of a TimerSet. A class rather than an object literal with closures: a completed
 * transaction holds one for 32 s, and per-instance closures (which tsx/esbuild's keepNames also
 * gives a `name` property each) cost several hundred bytes.
 */
class SetTimer implements TxTimer {
  private handle: TimerHandle | undefined;
  private fn: (() => void) | undefined;
  /** used by NamedTimers only (declared here so every timer has one hidden class) */
  name = '';
  next: NamedTimer | undefined = undefined;

  constructor(
    private readonly set: TimerSet,
    ms: number,
    fn: () => void,
  ) {
    this.fn = fn;
    this.handle = set.clock.setTimer(ms, () => this.fire());
    set.live.add(this.handle);
  }

  get live(): boolean {
    return this.handle !== undefined;
  }

  private fire(): void {
    const h = this.handle;
    const fn = this.fn;
    if (h === undefined || fn === undefined) return;
    this.set.live.delete(h);
    this.handle = undefined;
    this.fn = undefined;
    fn();
  }

  cancel(): void {
    const h = this.handle;
    if (h === undefined) return;
    this.set.clock.clearTimer(h);
    this.set.live.delete(h);
    this.handle = undefined;
    this.fn = undefined;
  }
}

/** Timer values of RFC 3261 §17 / RFC 6026 for one transaction (reliable = TCP). */
export function timerValues(s: TimerSettings, reliable: boolean) {
  const t1 = s.t1;
  const sixtyFour = 64 * t1;
  return {
    /** A, E, G: first retransmit interval; undefined = no retransmissions (reliable transport). */
    retransmit: reliable ? undefined : t1,
    t2: s.t2,
    /** B, F, H, L, M */
    sixtyFour,
    /** D: > 32 s on UDP, 0 on TCP */
    d: reliable ? 0 : Math.max(s.timerD ?? 32_000, 0),
    /** I, K: T4 on UDP, 0 on TCP */
    t4: reliable ? 0 : s.t4,
    /** J: 64*T1 on UDP, 0 on TCP */
    j: reliable ? 0 : sixtyFour,
    c: s.timerC,
    trying: s.trying,
  };
}
export type TimerValues = Readonly<ReturnType<typeof timerValues>>;

/**
 * `timerValues`, shared: the transactions of a layer all get the same (frozen) object as long as
 * the settings' values are unchanged, instead of one object each.
 */
export class TimerValuesCache {
  private of: TimerSettings | undefined;
  private udp: TimerValues | undefined;
  private tcp: TimerValues | undefined;

  get(s: TimerSettings, reliable: boolean): TimerValues {
    const o = this.of;
    if (
      o === undefined ||
      o.t1 !== s.t1 ||
      o.t2 !== s.t2 ||
      o.t4 !== s.t4 ||
      o.timerC !== s.timerC ||
      o.trying !== s.trying ||
      o.timerD !== s.timerD
    ) {
      this.of = { ...s };
      this.udp = Object.freeze(timerValues(s, false));
      this.tcp = Object.freeze(timerValues(s, true));
    }
    return reliable ? this.tcp! : this.udp!;
  }
}
