/** src/metrics.ts: label values a peer controls stay bounded. */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { readProcNetSnmp } from '../../src/config.js';
import { KNOWN_METHODS, methodLabel, Metrics, parseUdpSnmp, type DelayHistogram } from '../../src/metrics.js';

describe('methodLabel', () => {
  it('keeps the methods sipd allows (RFC 3261, 3262, 3311, 2976, 3428, 3515, 6665) and PUBLISH', () => {
    for (const m of ['INVITE', 'ACK', 'CANCEL', 'BYE', 'OPTIONS', 'REGISTER', 'PRACK', 'UPDATE', 'INFO', 'MESSAGE', 'REFER', 'NOTIFY', 'SUBSCRIBE', 'PUBLISH']) {
      expect(methodLabel(m), m).toBe(m);
    }
    expect([...KNOWN_METHODS].sort()).toEqual(['ACK', 'BYE', 'CANCEL', 'INFO', 'INVITE', 'MESSAGE', 'NOTIFY', 'OPTIONS', 'PRACK', 'PUBLISH', 'REFER', 'REGISTER', 'SUBSCRIBE', 'UPDATE']);
  });
  it('maps every other method to "other" (method names are case-sensitive: "invite" is not INVITE)', () => {
    for (const m of ['NEWMETHOD', 'invite', 'Register', 'INVITEX', 'X'.repeat(2000), 'constructor', '__proto__', 'toString', '']) {
      expect(methodLabel(m), m).toBe('other');
    }
  });
});

describe('Metrics: request counters by method', () => {
  it('2,000 random method names add one label value ("other"), to the counter and the histogram', async () => {
    const m = new Metrics(false);
    m.requestReceived('INVITE');
    m.requestHandled('INVITE', 0.001);
    for (let i = 0; i < 2000; i++) {
      const method = randomBytes(1024).toString('hex').toUpperCase();
      m.requestReceived(method);
      m.requestHandled(method, 0.001);
    }
    const received = await m.requests.get();
    expect(received.values.map((v) => [v.labels.method, v.value]).sort()).toEqual([
      ['INVITE', 1],
      ['other', 2000],
    ]);
    const handled = await m.requestDuration.get();
    const methods = new Set(handled.values.map((v) => v.labels.method));
    expect([...methods].sort()).toEqual(['INVITE', 'other']);
    expect((await m.registry.metrics()).length).toBeLessThan(20_000);
  });
});

/** Value of an unlabelled family in a Prometheus text exposition (undefined when absent). */
function sample(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
}

describe('Metrics: event-loop delay since the previous scrape', () => {
  /** A histogram whose values the test sets (nanoseconds, like perf_hooks). */
  class FakeHistogram implements DelayHistogram {
    count = 0;
    max = 0;
    mean = 0;
    p99 = 0;
    resets = 0;
    percentile(p: number): number {
      expect(p).toBe(99);
      return this.p99;
    }
    reset(): void {
      this.resets++;
      this.count = 0;
      this.max = 0;
      this.mean = Number.NaN;
      this.p99 = 0;
    }
  }

  it('exports p99, max and mean in seconds from one reading per scrape, then resets the histogram', async () => {
    const m = new Metrics(false);
    const h = new FakeHistogram();
    m.setEventLoopDelaySource(h);
    Object.assign(h, { count: 500, max: 250e6, mean: 12e6, p99: 40e6 });
    const first = await m.registry.metrics();
    expect(sample(first, 'sipd_event_loop_delay_p99_seconds')).toBeCloseTo(0.04, 9);
    expect(sample(first, 'sipd_event_loop_delay_max_seconds')).toBeCloseTo(0.25, 9);
    expect(sample(first, 'sipd_event_loop_delay_mean_seconds')).toBeCloseTo(0.012, 9);
    expect(h.resets).toBe(1);
    // nothing sampled since: 0, not NaN (an empty histogram's mean) or the previous interval's values
    const second = await m.registry.metrics();
    for (const n of ['p99', 'max', 'mean']) expect(sample(second, `sipd_event_loop_delay_${n}_seconds`), n).toBe(0);
    expect(h.resets).toBe(2);
    Object.assign(h, { count: 3, max: 11e6, mean: 10e6, p99: 11e6 });
    const third = await m.registry.metrics();
    expect(sample(third, 'sipd_event_loop_delay_max_seconds')).toBeCloseTo(0.011, 9);
    expect(h.resets).toBe(3);
  });

  it('without a source the gauges read 0', async () => {
    const text = await new Metrics(false).registry.metrics();
    for (const n of ['p99', 'max', 'mean']) expect(sample(text, `sipd_event_loop_delay_${n}_seconds`), n).toBe(0);
  });

  it('a real monitorEventLoopDelay histogram: a 150 ms busy loop shows as max >= 0.15 s; the next scrape starts from 0', async () => {
    const m = new Metrics(false);
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    try {
      m.setEventLoopDelaySource(h);
      await new Promise((r) => setTimeout(r, 50));
      const until = performance.now() + 150;
      while (performance.now() < until) {
        /* stall the event loop */
      }
      await new Promise((r) => setTimeout(r, 50));
      const text = await m.registry.metrics();
      const max = sample(text, 'sipd_event_loop_delay_max_seconds')!;
      const p99 = sample(text, 'sipd_event_loop_delay_p99_seconds')!;
      const mean = sample(text, 'sipd_event_loop_delay_mean_seconds')!;
      expect(max).toBeGreaterThanOrEqual(0.15);
      expect(mean).toBeGreaterThan(0);
      expect(mean).toBeLessThanOrEqual(max);
      expect(p99).toBeGreaterThan(0);
      // scraped again before the histogram's timer ticked: nothing sampled since the reset
      const again = await m.registry.metrics();
      expect(sample(again, 'sipd_event_loop_delay_max_seconds')).toBe(0);
    } finally {
      h.disable();
    }
  });
});

/** /proc/net/snmp of a Linux 6.x host (abridged to the Icmp, Udp and UdpLite groups). */
const SNMP_SAMPLE = [
  'Icmp: InMsgs InErrors InCsumErrors InDestUnreachs',
  'Icmp: 45 0 0 45',
  'Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
  'Udp: 1803431 17 5120 1790044 5103 2 0 4 0',
  'UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
  'UdpLite: 0 9 9 0 9 9 0 0 0',
  '',
].join('\n');

describe('parseUdpSnmp (/proc/net/snmp)', () => {
  it('reads InErrors, RcvbufErrors, SndbufErrors and NoPorts from the Udp: lines, not UdpLite:', () => {
    expect(parseUdpSnmp(SNMP_SAMPLE)).toEqual({ InErrors: 5120, RcvbufErrors: 5103, SndbufErrors: 2, NoPorts: 17 });
  });
  it('finds the fields by name (an older kernel without SndbufErrors, another order)', () => {
    expect(parseUdpSnmp('Udp: InDatagrams InErrors NoPorts OutDatagrams RcvbufErrors\nUdp: 10 3 1 9 2\n')).toEqual({ InErrors: 3, NoPorts: 1, RcvbufErrors: 2 });
  });
  it('undefined without a Udp: pair; a non-numeric value is left out', () => {
    expect(parseUdpSnmp('')).toBeUndefined();
    expect(parseUdpSnmp('Ip: Forwarding\nIp: 1\n')).toBeUndefined();
    expect(parseUdpSnmp('Udp: InDatagrams NoPorts\n')).toBeUndefined();
    expect(parseUdpSnmp('Udp: InErrors NoPorts\nUdp: x 4\n')).toEqual({ NoPorts: 4 });
  });
  it('reads this host when it has /proc/net/snmp (the composition root reads it the same way)', () => {
    const text = readProcNetSnmp();
    if (text === undefined) {
      expect(readProcNetSnmp('/nonexistent/snmp')).toBeUndefined();
      return;
    }
    const s = parseUdpSnmp(text)!;
    for (const k of ['InErrors', 'RcvbufErrors', 'SndbufErrors', 'NoPorts'] as const) expect(Number.isSafeInteger(s[k]), k).toBe(true);
  });
});

describe('Metrics: sipd_kernel_udp_total', () => {
  it('read from the source at each scrape, one sample per counter', async () => {
    const m = new Metrics(false);
    let text = SNMP_SAMPLE;
    m.setKernelUdpSource(() => parseUdpSnmp(text));
    const first = await m.registry.metrics();
    expect(first).toMatch(/^sipd_kernel_udp_total\{counter="RcvbufErrors"\} 5103$/m);
    expect(first).toMatch(/^sipd_kernel_udp_total\{counter="InErrors"\} 5120$/m);
    expect(first).toMatch(/^sipd_kernel_udp_total\{counter="SndbufErrors"\} 2$/m);
    expect(first).toMatch(/^sipd_kernel_udp_total\{counter="NoPorts"\} 17$/m);
    text = text.replace('1803431 17 5120 1790044 5103', '1803431 17 6000 1790044 5983');
    expect(await m.registry.metrics()).toMatch(/^sipd_kernel_udp_total\{counter="RcvbufErrors"\} 5983$/m);
  });
  it('no sample when the source has nothing (file missing) or throws; the rest of the scrape is unaffected', async () => {
    const m = new Metrics(false);
    m.setKernelUdpSource(() => parseUdpSnmp(SNMP_SAMPLE));
    await m.registry.metrics();
    m.setKernelUdpSource(() => undefined);
    const missing = await m.registry.metrics();
    expect(missing).not.toMatch(/^sipd_kernel_udp_total\{/m);
    expect(missing).toMatch(/^sipd_event_loop_delay_max_seconds /m);
    m.setKernelUdpSource(() => {
      throw new Error('EACCES');
    });
    expect(await m.registry.metrics()).not.toMatch(/^sipd_kernel_udp_total\{/m);
  });
});

describe('Metrics: bound label children on the per-message path', () => {
  it('responseSent and floodDrop count by code and kind like counter.inc({ label }) did', async () => {
    const m = new Metrics(false);
    for (const code of [100, 200, 200, 401, 407, 200, 699]) m.responseSent(code);
    m.floodDrop('datagram');
    m.floodDrop('datagram');
    m.floodDrop('connection');
    const responses = (await m.responses.get()).values.map((v) => [String(v.labels.code), v.value]).sort();
    expect(responses).toEqual([
      ['100', 1],
      ['200', 3],
      ['401', 1],
      ['407', 1],
      ['699', 1],
    ]);
    const flood = (await m.floodDropped.get()).values.map((v) => [v.labels.kind, v.value]).sort();
    expect(flood).toEqual([
      ['connection', 1],
      ['datagram', 2],
    ]);
  });

  it('every known method and "other" keep their own series in both the counter and the histogram', async () => {
    const m = new Metrics(false);
    for (const method of [...KNOWN_METHODS, 'constructor', '__proto__', 'other', 'hasOwnProperty']) {
      m.requestReceived(method);
      m.requestHandled(method, 0.002);
    }
    const received = new Map((await m.requests.get()).values.map((v) => [v.labels.method, v.value]));
    for (const k of KNOWN_METHODS) expect(received.get(k), k).toBe(1);
    expect(received.get('other')).toBe(4);
    expect(received.size).toBe(KNOWN_METHODS.size + 1);
    const counts = (await m.requestDuration.get()).values.filter((v) => v.metricName === 'sipd_request_processing_seconds_count');
    expect(new Map(counts.map((v) => [v.labels.method, v.value])).get('other')).toBe(4);
    expect(counts).toHaveLength(KNOWN_METHODS.size + 1);
  });
});
