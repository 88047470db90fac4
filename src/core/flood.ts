/**
 * Per-source-IP request rate limit (Kamailio pike): more than `maxRequests` in `windowMs` from one IP
 * and further requests are dropped silently until the window ends. Memory is bounded by `maxTracked`.
 */
export class FloodGuard {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly maxRequests: number,
    private readonly now: () => number,
    private readonly maxTracked = 100_000,
  ) {}

  /** true when the request may proceed. */
  allow(ip: string): boolean {
    if (this.maxRequests <= 0) return true;
    const t = this.now();
    let w = this.windows.get(ip);
    if (w === undefined || t - w.start >= this.windowMs) {
      if (w === undefined && this.windows.size >= this.maxTracked) this.sweep(t);
      w = { start: t, count: 0 };
      this.windows.set(ip, w);
    }
    w.count++;
    return w.count <= this.maxRequests;
  }

  get tracked(): number {
    return this.windows.size;
  }

  private sweep(t: number): void {
    for (const [ip, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(ip);
    // still full (an address-spraying flood): forget the oldest half
    if (this.windows.size >= this.maxTracked) {
      let n = this.windows.size >> 1;
      for (const ip of this.windows.keys()) {
        if (n-- <= 0) break;
        this.windows.delete(ip);
      }
    }
  }
}
