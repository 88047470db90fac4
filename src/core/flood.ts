/**
 * Per-source admission control (Kamailio pike + fail2ban in one): every datagram, framed TCP message
 * and new TCP connection from a source IP counts; a source that sends more than `maxRequests` within
 * `windowMs` is BANNED for `banMs`: everything from it is dropped silently until the ban expires.
 * `onBan` is called exactly once per ban (the composition root logs one warn line for fail2ban).
 *
 * The rate is a sliding-window estimate over two fixed windows (the previous window's count weighted
 * by how much of it still overlaps the last `windowMs`), so a burst across a window boundary cannot
 * reach twice the limit.
 *
 * Exempt sources (trusted IPs, the `flood.exempt` list) are never counted or tracked. Memory is bounded:
 * at most `maxSources` rate entries and `maxSources` bans; bans expire in the order they were made
 * (one fixed ban length), so expiry is O(1) per admission. Time is injected (`now`, milliseconds).
 */

/** Sources that are never limited (an `Acl`). */
export interface ExemptList {
  has(address: string): boolean;
}

export interface BanEvent {
  /** the banned source address. */
  readonly ip: string;
  /** items counted from it in the last window when the ban began (> maxRequests). */
  readonly requests: number;
  /** how long the ban lasts. */
  readonly seconds: number;
}

export interface FloodGuardOptions {
  /** length of the rate window (ms). */
  windowMs: number;
  /** most items per source per window; the next one starts a ban. 0 disables the limiter. */
  maxRequests: number;
  /** ban length (ms). */
  banMs: number;
  exempt: ExemptList;
  now: () => number;
  /** most sources tracked (rate entries), and most bans held at once. */
  maxSources?: number;
  /** a source was banned (once per ban). */
  onBan?: (ban: BanEvent) => void;
}

export interface FloodStats {
  /** sources with a rate entry. */
  readonly tracked: number;
  /** sources banned right now. */
  readonly banned: number;
  /** bans since start. */
  readonly bans: number;
  /** items refused since start (the one that started a ban included). */
  readonly dropped: number;
}

interface Rate {
  /** start of the current window. */
  start: number;
  /** items in the current window. */
  count: number;
  /** items in the window before it. */
  prev: number;
}

export class FloodGuard {
  private readonly rates = new Map<string, Rate>();
  /** ip → ban end; insertion order is expiry order (one ban length for all). */
  private readonly bans = new Map<string, number>();
  private readonly maxSources: number;
  private banCount = 0;
  private dropCount = 0;

  constructor(private readonly o: FloodGuardOptions) {
    this.maxSources = Math.max(1, o.maxSources ?? 100_000);
  }

  /** Count one item (datagram, TCP message or connection) from `ip`; false: drop it. */
  admit(ip: string): boolean {
    if (this.o.maxRequests <= 0 || this.o.exempt.has(ip)) return true;
    const t = this.o.now();
    this.expireBans(t);
    if (this.bans.has(ip)) {
      this.dropCount++;
      return false;
    }
    const w = this.o.windowMs;
    let r = this.rates.get(ip);
    if (r === undefined) {
      if (this.rates.size >= this.maxSources) this.makeRoom(t);
      r = { start: t, count: 0, prev: 0 };
      this.rates.set(ip, r);
    } else if (t - r.start >= w) {
      const elapsed = Math.floor((t - r.start) / w);
      r.prev = elapsed === 1 ? r.count : 0;
      r.count = 0;
      r.start += elapsed * w;
      // keep the table in least-recently-active order for makeRoom()
      this.rates.delete(ip);
      this.rates.set(ip, r);
    }
    r.count++;
    const overlap = Math.min(1, Math.max(0, w - (t - r.start)) / w);
    const requests = r.count + Math.floor(r.prev * overlap);
    if (requests <= this.o.maxRequests) return true;
    this.ban(ip, t, requests);
    return false;
  }

  /** Whether `ip` is banned right now. */
  isBanned(ip: string): boolean {
    this.expireBans(this.o.now());
    return this.bans.has(ip);
  }

  stats(): FloodStats {
    this.expireBans(this.o.now());
    return { tracked: this.rates.size, banned: this.bans.size, bans: this.banCount, dropped: this.dropCount };
  }

  private ban(ip: string, t: number, requests: number): void {
    this.rates.delete(ip);
    // full: the ban that would end first makes room
    if (this.bans.size >= this.maxSources) {
      const first = this.bans.keys().next();
      if (first.done !== true) this.bans.delete(first.value);
    }
    this.bans.set(ip, t + this.o.banMs);
    this.banCount++;
    this.dropCount++;
    this.o.onBan?.({ ip, requests, seconds: Math.round(this.o.banMs / 1000) });
  }

  private expireBans(t: number): void {
    if (this.bans.size === 0) return; // the common case: no iterator per admission
    for (const [ip, until] of this.bans) {
      if (until > t) return;
      this.bans.delete(ip);
    }
  }

  /**
   * The rate table is full: forget sources idle for two windows; if that frees less than a quarter
   * (an address-spraying flood), forget the least recently active entries down to three quarters, so the next
   * sweep is at least maxSources/4 new sources away (amortised O(1)).
   */
  private makeRoom(t: number): void {
    const w = this.o.windowMs;
    for (const [ip, r] of this.rates) if (t - r.start >= 2 * w) this.rates.delete(ip);
    const target = Math.floor((this.maxSources * 3) / 4);
    if (this.rates.size <= target) return;
    for (const ip of this.rates.keys()) {
      if (this.rates.size <= target) break;
      this.rates.delete(ip);
    }
  }
}
