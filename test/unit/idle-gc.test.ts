import { describe, expect, it } from 'vitest';
import { IdleCollector } from '../../src/idle-gc.js';

/** a collector driven by hand: `load` is what the probe reports, `tick()` one check. */
function rig(minPeak = 100) {
  const state = { load: 0, gcs: 0 };
  const c = new IdleCollector({ load: () => state.load, collect: () => void state.gcs++, minPeak });
  return { state, c };
}

describe('IdleCollector (one full GC when the server goes quiet after a load)', () => {
  it('collects once when the load has gone back to zero after a peak of at least minPeak', () => {
    const { state, c } = rig();
    state.load = 5000;
    expect(c.tick()).toBe(false);
    state.load = 300;
    expect(c.tick()).toBe(false);
    state.load = 0;
    expect(c.tick()).toBe(true);
    expect(state.gcs).toBe(1);
    // still quiet: no further collection
    expect(c.tick()).toBe(false);
    expect(c.tick()).toBe(false);
    expect(state.gcs).toBe(1);
  });

  it('never collects under light traffic (peaks below minPeak), though the load often returns to zero', () => {
    const { state, c } = rig();
    for (let i = 0; i < 50; i++) {
      state.load = i % 3 === 0 ? 99 : 0;
      c.tick();
    }
    expect(state.gcs).toBe(0);
  });

  it('collects again after the next load', () => {
    const { state, c } = rig();
    state.load = 1000;
    c.tick();
    state.load = 0;
    c.tick();
    state.load = 2000;
    c.tick();
    state.load = 0;
    expect(c.tick()).toBe(true);
    expect(state.gcs).toBe(2);
  });

  it('does not collect while a load is still running (load never reaches zero)', () => {
    const { state, c } = rig();
    for (let i = 0; i < 20; i++) {
      state.load = 1000 + (i % 5) * 10;
      c.tick();
    }
    expect(state.gcs).toBe(0);
  });

  it('a collect that throws is swallowed (nothing throws into the event loop)', () => {
    const c = new IdleCollector({
      load: (() => {
        let n = 500;
        return () => (n = n === 500 ? 0 : 500);
      })(),
      collect: () => {
        throw new Error('no gc');
      },
      minPeak: 100,
    });
    expect(() => c.tick()).not.toThrow(); // 0 (no peak yet)... the probe alternates
    expect(() => c.tick()).not.toThrow();
    expect(() => c.tick()).not.toThrow();
  });
});
