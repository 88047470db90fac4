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

/** The lines of one family (HELP, TYPE and its samples) in a Prometheus text exposition. */
function family(text: string, name: string): string[] {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`# HELP ${name} `));
  expect(at, name).toBeGreaterThanOrEqual(0);
  const out = [lines[at]!];
  for (let i = at + 1; i < lines.length && !lines[i]!.startsWith('# HELP '); i++) if (lines[i] !== '') out.push(lines[i]!);
  return out;
}

/** The sample lines of a histogram series: cumulative buckets, +Inf, _sum and _count. */
function histogramLines(name: string, bounds: readonly string[], cumulative: readonly number[], sum: number, count: number, labels: string): string[] {
  return [
    ...bounds.map((le, i) => `${name}_bucket{le="${le}",${labels}} ${cumulative[i]}`),
    `${name}_bucket{le="+Inf",${labels}} ${count}`,
    `${name}_sum{${labels}} ${sum}`,
    `${name}_count{${labels}} ${count}`,
  ];
}

const REQUEST_BOUNDS = ['0.0001', '0.00025', '0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '1'];
const STORE_BOUNDS = ['0.00005', '0.0001', '0.00025', '0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.1', '0.5'];

describe('Metrics: exposition of the per-message metrics', () => {
  it('a labelled counter shows nothing but HELP and TYPE before its first count', async () => {
    const text = await new Metrics(false).registry.metrics();
    for (const name of ['sipd_requests_received_total', 'sipd_responses_sent_total', 'sipd_auth_challenges_total', 'sipd_auth_failures_total', 'sipd_parse_errors_total', 'sipd_relay_denied_total', 'sipd_dropped_total', 'sipd_flood_dropped_total']) {
      expect(family(text, name).slice(1), name).toEqual([`# TYPE ${name} counter`]);
    }
    for (const name of ['sipd_request_processing_seconds', 'sipd_store_query_seconds']) {
      expect(family(text, name).slice(1), name).toEqual([`# TYPE ${name} histogram`]);
    }
  });

  it('counters: counts per label value across scrapes, a value seen first after a scrape included', async () => {
    const m = new Metrics(false);
    for (let i = 0; i < 3; i++) m.requestReceived('INVITE');
    m.requestReceived('REGISTER');
    m.requestReceived('FOO');
    m.requestReceived('invite');
    m.responseSent(200);
    m.responseSent(200);
    m.responseSent(401);
    m.authChallenge('www');
    m.authFailed('bad-password');
    m.parseError('bad-start-line');
    m.dropped('unparseable');
    m.relayRefused('foreign-target');
    m.floodDrop('datagram');
    const first = await m.registry.metrics();
    expect(family(first, 'sipd_requests_received_total').slice(2)).toEqual([
      'sipd_requests_received_total{method="INVITE"} 3',
      'sipd_requests_received_total{method="REGISTER"} 1',
      'sipd_requests_received_total{method="other"} 2',
    ]);
    expect(family(first, 'sipd_responses_sent_total').slice(2)).toEqual(['sipd_responses_sent_total{code="200"} 2', 'sipd_responses_sent_total{code="401"} 1']);
    expect(family(first, 'sipd_auth_challenges_total').slice(2)).toEqual(['sipd_auth_challenges_total{kind="www"} 1']);
    expect(family(first, 'sipd_auth_failures_total').slice(2)).toEqual(['sipd_auth_failures_total{reason="bad-password"} 1']);
    expect(family(first, 'sipd_parse_errors_total').slice(2)).toEqual(['sipd_parse_errors_total{code="bad-start-line"} 1']);
    expect(family(first, 'sipd_dropped_total').slice(2)).toEqual(['sipd_dropped_total{reason="unparseable"} 1']);
    expect(family(first, 'sipd_relay_denied_total').slice(2)).toEqual(['sipd_relay_denied_total{reason="foreign-target"} 1']);
    expect(family(first, 'sipd_flood_dropped_total').slice(2)).toEqual(['sipd_flood_dropped_total{kind="datagram"} 1']);

    // a scrape with nothing new reads the same; then more, and label values seen for the first time
    expect(await m.registry.metrics()).toBe(first);
    m.requestReceived('INVITE');
    m.requestReceived('BYE');
    m.responseSent(486);
    m.responseSent(200);
    m.authChallenge('proxy');
    m.authChallenge('www');
    m.dropped('loop');
    m.floodDrop('datagram');
    m.floodDrop('connection');
    const second = await m.registry.metrics();
    expect(family(second, 'sipd_requests_received_total').slice(2)).toEqual([
      'sipd_requests_received_total{method="INVITE"} 4',
      'sipd_requests_received_total{method="REGISTER"} 1',
      'sipd_requests_received_total{method="other"} 2',
      'sipd_requests_received_total{method="BYE"} 1',
    ]);
    expect(family(second, 'sipd_responses_sent_total').slice(2)).toEqual([
      'sipd_responses_sent_total{code="200"} 3',
      'sipd_responses_sent_total{code="401"} 1',
      'sipd_responses_sent_total{code="486"} 1',
    ]);
    expect(family(second, 'sipd_auth_challenges_total').slice(2)).toEqual(['sipd_auth_challenges_total{kind="www"} 2', 'sipd_auth_challenges_total{kind="proxy"} 1']);
    expect(family(second, 'sipd_dropped_total').slice(2)).toEqual(['sipd_dropped_total{reason="unparseable"} 1', 'sipd_dropped_total{reason="loop"} 1']);
    expect(family(second, 'sipd_flood_dropped_total').slice(2)).toEqual(['sipd_flood_dropped_total{kind="datagram"} 2', 'sipd_flood_dropped_total{kind="connection"} 1']);
    expect(family(second, 'sipd_relay_denied_total')).toEqual(family(first, 'sipd_relay_denied_total'));
    // the counter objects read the same counts
    const received = await m.requests.get();
    expect(received.type).toBe('counter');
    expect(received.values.map((v) => [v.labels.method, v.value])).toEqual([
      ['INVITE', 4],
      ['REGISTER', 1],
      ['other', 2],
      ['BYE', 1],
    ]);
  });

  it('the processing-time histogram: _bucket (cumulative, le first), _sum and _count per method, across scrapes', async () => {
    const m = new Metrics(false);
    const name = 'sipd_request_processing_seconds';
    m.requestHandled('INVITE', 0.00005); // first bucket
    m.requestHandled('INVITE', 0.0001); // on a bound: counted in it
    m.requestHandled('INVITE', 0.0003);
    m.requestHandled('FOO', 2); // above the last bound: +Inf only
    const first = await m.registry.metrics();
    expect(family(first, name)).toEqual([
      `# HELP ${name} Time from receiving a request to the core having answered or forwarded it`,
      `# TYPE ${name} histogram`,
      ...histogramLines(name, REQUEST_BOUNDS, [2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3], 0.00005 + 0.0001 + 0.0003, 3, 'method="INVITE"'),
      ...histogramLines(name, REQUEST_BOUNDS, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2, 1, 'method="other"'),
    ]);
    expect(await m.registry.metrics()).toBe(first);
    m.requestHandled('REGISTER', 0.03);
    m.requestHandled('INVITE', 1);
    const second = await m.registry.metrics();
    expect(family(second, name).slice(2)).toEqual([
      ...histogramLines(name, REQUEST_BOUNDS, [2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4], 0.00005 + 0.0001 + 0.0003 + 1, 4, 'method="INVITE"'),
      ...histogramLines(name, REQUEST_BOUNDS, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2, 1, 'method="other"'),
      ...histogramLines(name, REQUEST_BOUNDS, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], 0.03, 1, 'method="REGISTER"'),
    ]);
    // the object's get() splays le into the labels and names each value
    const got = await m.requestDuration.get();
    expect(got.type).toBe('histogram');
    expect(got.values.length).toBe(3 * (REQUEST_BOUNDS.length + 3));
    expect(got.values[0]).toMatchObject({ labels: { le: 0.0001, method: 'INVITE' }, value: 2, metricName: `${name}_bucket` });
    expect(got.values[12]).toMatchObject({ labels: { le: '+Inf', method: 'INVITE' }, value: 4, metricName: `${name}_bucket` });
    expect(got.values[13]).toMatchObject({ labels: { method: 'INVITE' }, value: 0.00005 + 0.0001 + 0.0003 + 1, metricName: `${name}_sum` });
    expect(got.values[14]).toMatchObject({ labels: { method: 'INVITE' }, value: 4, metricName: `${name}_count` });
  });

  it('the store histogram: labels store then op, a pair seen first after a scrape included', async () => {
    const m = new Metrics(false);
    const name = 'sipd_store_query_seconds';
    m.storeQuery('mysql', 'get', 0.001);
    m.storeQuery('mysql', 'get', 0.00004);
    const first = await m.registry.metrics();
    expect(family(first, name)).toEqual([
      `# HELP ${name} Store (database) operation time`,
      `# TYPE ${name} histogram`,
      ...histogramLines(name, STORE_BOUNDS, [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2], 0.001 + 0.00004, 2, 'store="mysql",op="get"'),
    ]);
    m.storeQuery('mysql', 'put', 0.7);
    m.storeQuery('cache', 'get', 0.0002);
    const second = await m.registry.metrics();
    expect(family(second, name).slice(2)).toEqual([
      ...histogramLines(name, STORE_BOUNDS, [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2], 0.001 + 0.00004, 2, 'store="mysql",op="get"'),
      ...histogramLines(name, STORE_BOUNDS, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0.7, 1, 'store="mysql",op="put"'),
      ...histogramLines(name, STORE_BOUNDS, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], 0.0002, 1, 'store="cache",op="get"'),
    ]);
  });
});
