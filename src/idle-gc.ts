/**
 * One full garbage collection when the server goes quiet after a load (issue 9: RSS back near idle
 * after the load stops).
 *
 * V8 collects on allocation: once requests stop, nothing allocates and no major GC runs, so what a
 * load left behind stays resident — the grown young generation, old-space garbage, and the linger
 * table's released byte chunks (off-heap ArrayBuffers, freed only when a major GC collects their
 * Buffer objects). Measured (bench/RSS.md): after 25 s at 1,000 REGISTER+auth/s, RSS stayed at
 * 137 MB for 90 s (idle 87 MB) with 20 MB of released chunks still allocated.
 *
 * The probe `load` reports what the server holds (transactions + linger entries). A peak of at
 * least `minPeak` followed by a check at zero (the linger table has emptied, Timer J after the last
 * request) runs `collect` once; light traffic, whose load often touches zero, never reaches
 * `minPeak` and never triggers it. A running load never reaches zero either. No clock of its own:
 * the caller ticks it (server.ts, every few seconds).
 */
export interface IdleCollectorOptions {
  /** what the server holds now (live transactions + linger entries) */
  load: () => number;
  /** a full GC (errors are swallowed) */
  collect: () => void;
  /** the peak load that counts as "a load happened" */
  minPeak: number;
}

export class IdleCollector {
  private peak = 0;

  constructor(private readonly opts: IdleCollectorOptions) {}

  /** One check; true when it collected. Never throws. */
  tick(): boolean {
    const n = this.opts.load();
    if (n > this.peak) this.peak = n;
    if (n !== 0 || this.peak < this.opts.minPeak) return false;
    this.peak = 0;
    try {
      this.opts.collect();
    } catch {
      // no gc available: nothing to do
    }
    return true;
  }
}
