/** src/tally.ts: counts kept as plain numbers, handed to prom-client at scrape time. */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BucketHistogram, TalliedCounter } from '../../src/tally.js';

describe('TalliedCounter', () => {
  it('beyond max label values an increment goes to the counter directly: every count is kept', async () => {
    const registry = new Registry();
    const c = new TalliedCounter<'code', number>(registry, { name: 't_total', help: 'h', label: 'code' }, 2);
    for (const code of [100, 200, 300, 300, 400, 200]) c.inc(code);
    const got = await c.counter.get();
    expect(Object.fromEntries(got.values.map((v) => [v.labels.code, v.value]))).toEqual({ 100: 1, 200: 2, 300: 2, 400: 1 });
    c.inc(300);
    c.inc(100);
    const again = await c.counter.get();
    expect(Object.fromEntries(again.values.map((v) => [v.labels.code, v.value]))).toEqual({ 100: 2, 200: 2, 300: 3, 400: 1 });
  });

  it('an increment made on the prom-client counter itself is kept alongside the tallied ones', async () => {
    const registry = new Registry();
    const c = new TalliedCounter(registry, { name: 't_total', help: 'h', label: 'kind' });
    c.inc('a');
    c.counter.inc({ kind: 'a' }, 5);
    await registry.metrics();
    c.inc('a');
    expect(await registry.metrics()).toContain('t_total{kind="a"} 7\n');
  });
});

describe('BucketHistogram', () => {
  it('rejects a non-finite value as a prom-client Histogram does, the series unchanged', async () => {
    const h = new BucketHistogram(new Registry(), { name: 'h_seconds', help: 'h', labelNames: ['m'], buckets: [1] });
    h.labels('x').observe(0.5);
    for (const v of [Number.NaN, Number.POSITIVE_INFINITY]) expect(() => h.labels('x').observe(v)).toThrow(TypeError);
    const s = h.labels('x');
    expect([s.count, s.sum, [...s.counts]]).toEqual([1, 0.5, [1]]);
  });

  it('registry.resetMetrics() zeroes its series (they stay, as callers hold them)', async () => {
    const registry = new Registry();
    const h = new BucketHistogram(registry, { name: 'h_seconds', help: 'h', labelNames: ['m'], buckets: [1] });
    const s = h.labels('x');
    s.observe(2);
    registry.resetMetrics();
    s.observe(0.5);
    expect(await registry.metrics()).toBe(
      ['# HELP h_seconds h', '# TYPE h_seconds histogram', 'h_seconds_bucket{le="1",m="x"} 1', 'h_seconds_bucket{le="+Inf",m="x"} 1', 'h_seconds_sum{m="x"} 0.5', 'h_seconds_count{m="x"} 1', ''].join('\n'),
    );
  });

  it('a wrong number of label values is refused', () => {
    const h = new BucketHistogram(new Registry(), { name: 'h_seconds', help: 'h', labelNames: ['a', 'b'], buckets: [1] });
    expect(() => h.labels('x')).toThrow();
  });
});
