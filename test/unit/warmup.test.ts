/**
 * src/warmup.ts: the warm-up runs the configured REGISTERs and calls through a throwaway core
 * (each call got its 200 for the INVITE and for the BYE, else it rejects), stops when its budget is
 * spent (an injected clock), does nothing when disabled, and leaves no timer or handle behind.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildCore, transportLimits, warmupBuild } from '../../src/server.js';
import { MemorySubscriberStore } from '../../src/store/index.js';
import type { ManualClock } from '../../src/transaction/index.js';
import { warmUp, type WarmupCoreDeps, type WarmupDeps } from '../../src/warmup.js';

const config = loadConfig({ env: {} });
const limits: WarmupDeps['limits'] = transportLimits(config);
const deps = (warmup: WarmupDeps['warmup'], more: Partial<WarmupDeps> = {}): WarmupDeps => ({ settings: config, warmup, limits, build: warmupBuild(config, 'info'), ...more });

/** what keeps the process alive or runs later: timers, immediates, sockets (by kind). */
function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

describe('warmUp', () => {
  it('completes the configured REGISTERs and calls (every call answered 200 to INVITE and BYE)', async () => {
    const r = await warmUp(deps({ registers: 7, calls: 45, max_ms: 600_000 }));
    expect(r).toMatchObject({ registers: 7, calls: 45, budgetSpent: false });
  });

  it('with the default settings (auth on, MD5, qop=auth, the credential cache) and with auth off', async () => {
    expect(await warmUp(deps({ ...config.warmup, max_ms: 600_000, calls: 25, registers: 3 }))).toMatchObject({ registers: 3, calls: 25 });
    const open = { ...config, auth: { ...config.auth, enabled: false } };
    expect(await warmUp({ ...deps({ registers: 2, calls: 10, max_ms: 600_000 }), settings: open, build: warmupBuild(open, 'info') })).toMatchObject({ registers: 2, calls: 10 });
    const sha = { ...config, auth: { ...config.auth, algorithms: ['SHA-256' as const], qop: 'none' as const, credential_cache_ttl_ms: 0 } };
    expect(await warmUp({ ...deps({ registers: 2, calls: 10, max_ms: 600_000 }), settings: sha, build: warmupBuild(sha, 'info') })).toMatchObject({ registers: 2, calls: 10 });
  });

  it('rejects when a flow breaks (the synthetic subscriber is not what the core asks)', async () => {
    const broken: WarmupDeps['build'] = (w) =>
      warmupBuild(config, 'info')({ ...w, subscribers: new MemorySubscriberStore() });
    await expect(warmUp(deps({ registers: 2, calls: 5, max_ms: 600_000 }, { build: broken }))).rejects.toThrow(/warm-up flow broke: .*REGISTER/);
  });

  it('rejects when calls do not complete (the core answers INVITEs 5xx)', async () => {
    const tiny = { ...config, limits: { ...config.limits, max_transactions: 1 } };
    await expect(warmUp({ ...deps({ registers: 1, calls: 20, max_ms: 600_000 }), settings: tiny, build: warmupBuild(tiny, 'info') })).rejects.toThrow(/warm-up flow broke: .*(call|REGISTER)/);
  });

  it('stops when the budget is spent (checked before each batch, on the injected clock)', async () => {
    let t = 0;
    // every read of the clock is 10 ms later: start 10, then 20 (register batch done), 30, 40 ...
    const r = await warmUp(deps({ registers: 1, calls: 10_000, max_ms: 25 }, { elapsed: () => (t += 10) }));
    expect(r.budgetSpent).toBe(true);
    expect(r.registers).toBe(1);
    expect(r.calls).toBeGreaterThan(0);
    expect(r.calls).toBeLessThan(10_000);
    expect(r.calls % 20).toBe(0); // whole batches, each call complete
  });

  it('does nothing when disabled (0 in a count or the budget): the core is not even built', async () => {
    let built = 0;
    const build: WarmupDeps['build'] = (w) => {
      built++;
      return warmupBuild(config, 'info')(w);
    };
    for (const w of [
      { registers: 0, calls: 0, max_ms: 1000 },
      { registers: 10, calls: 10, max_ms: 0 },
    ])
      expect(await warmUp(deps(w, { build }))).toEqual({ registers: 0, calls: 0, ms: 0, budgetSpent: false });
    expect(built).toBe(0);
  });

  it('leaves no timer, immediate or socket behind, and its transactions are closed (every copy of the core, on either clock)', async () => {
    const cores: Array<ReturnType<typeof buildCore>> = [];
    const clocks: Array<WarmupCoreDeps['clock']> = [];
    const build: WarmupDeps['build'] = (w) => {
      clocks.push(w.clock);
      const core = warmupBuild(config, 'info')(w);
      cores.push(core);
      return core;
    };
    const before = resources();
    await warmUp(deps({ registers: 3, calls: 30, max_ms: 600_000 }, { build }));
    await new Promise((r) => setImmediate(r));
    // (the test runner's own timers may come and go: none more of any kind than before; the
    // wall-clock copy's SIP timers are setTimeouts, so a lingering one would show here)
    const after = resources();
    for (const [kind, n] of Object.entries(after)) expect(n, kind).toBeLessThanOrEqual(before[kind] ?? 0);
    expect(cores.length).toBeGreaterThanOrEqual(2);
    for (const core of cores) {
      expect(core.tx.stats()).toMatchObject({ server: 0, client: 0 });
      expect(core.busy()).toBe(false);
    }
    // a copy on the manual clock: none of its SIP timers left pending either (lingering transactions closed)
    const manual = clocks.filter((c): c is ManualClock => typeof (c as Partial<ManualClock>).pending === 'function');
    expect(manual.length).toBeGreaterThanOrEqual(1);
    expect(manual.length).toBeLessThan(clocks.length); // and one on the wall clock
    for (const c of manual) expect(c.pending()).toBe(0);
  });
});
