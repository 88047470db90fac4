import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { BucketHistogram, TalliedCounter } from './tally.js';

/**
 * The methods counted under their own name: those sipd's Allow header lists (RFC 3261 and the
 * extensions it relays: PRACK, UPDATE, INFO, MESSAGE, REFER, NOTIFY, SUBSCRIBE) plus PUBLISH.
 */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'INVITE',
  'ACK',
  'CANCEL',
  'BYE',
  'OPTIONS',
  'REGISTER',
  'PRACK',
  'UPDATE',
  'INFO',
  'MESSAGE',
  'REFER',
  'NOTIFY',
  'SUBSCRIBE',
  'PUBLISH',
]);

/**
 * The `method` label value for a request method: the method itself when known, else `other`.
 * A peer chooses the method token freely (any token is a valid extension method), so using it as a
 * label unchecked lets anyone grow every method-labelled series without bound. Method names are
 * case-sensitive (RFC 3261 §7.1): `invite` is `other`.
 */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'other';
}

/**
 * What the event-loop delay gauges read: the IntervalHistogram of `perf_hooks.monitorEventLoopDelay`
 * (values in nanoseconds) satisfies it. The composition root creates, enables and disables it.
 */
export interface DelayHistogram {
  readonly count: number;
  readonly max: number;
  readonly mean: number;
  percentile(p: number): number;
  reset(): void;
}

/** Event-loop delay over one scrape interval, in seconds (0 when nothing was sampled). */
export interface DelaySnapshot {
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

/** The counters of the `Udp:` lines of /proc/net/snmp that sipd exports (kernel field names). */
export const KERNEL_UDP_COUNTERS = ['InErrors', 'RcvbufErrors', 'SndbufErrors', 'NoPorts'] as const;
export type KernelUdpCounter = (typeof KERNEL_UDP_COUNTERS)[number];
export type KernelUdpStats = Readonly<Partial<Record<KernelUdpCounter, number>>>;

/** Longest /proc/net/snmp text parsed (it is about 1.5 KB). */
const MAX_SNMP_TEXT = 64 * 1024;

/**
 * The UDP counters of a /proc/net/snmp text: the `Udp:` header line names the fields, the next
 * `Udp:` line holds the values (`UdpLite:` lines are not these). Undefined when there is no such
 * pair; a counter missing from the header (older kernels) is left out.
 */
export function parseUdpSnmp(text: string): KernelUdpStats | undefined {
  const lines = text.slice(0, MAX_SNMP_TEXT).split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    const head = lines[i]!.trim().split(/\s+/);
    const vals = lines[i + 1]!.trim().split(/\s+/);
    if (head[0] !== 'Udp:' || vals[0] !== 'Udp:' || head.length !== vals.length) continue;
    if (!/^[A-Za-z]/.test(head[1] ?? '')) continue;
    const out: Partial<Record<KernelUdpCounter, number>> = {};
    for (const name of KERNEL_UDP_COUNTERS) {
      const at = head.indexOf(name);
      if (at < 1) continue;
      const v = Number(vals[at]);
      if (/^\d+$/.test(vals[at] ?? '') && Number.isSafeInteger(v)) out[name] = v;
    }
    return out;
  }
  return undefined;
}

/** Every metric sipd exports; one instance per server (own registry, so tests can run several). */
export class Metrics {
  readonly registry = new Registry();
  /*
   * The per-message metrics (received requests, responses, processing and store times, drops,
   * challenges, ...) count into plain numbers (src/tally.ts); prom-client sees them at scrape time.
   * Field order is the exposition's family order.
   */
  private readonly requestsBy = new TalliedCounter(this.registry, { name: 'sipd_requests_received_total', help: 'SIP requests received, by method (methods sipd does not know are counted as other)', label: 'method' });
  readonly requests = this.requestsBy.counter;
  /** codes 100-699 from the parser and the core: at most 600 label values. */
  private readonly responsesBy = new TalliedCounter<'code', number>(this.registry, { name: 'sipd_responses_sent_total', help: 'SIP responses sent (generated or relayed), by status code', label: 'code' }, 600);
  readonly responses = this.responsesBy.counter;
  readonly transactions = new Gauge({ name: 'sipd_transactions_active', help: 'Live transactions (kind server, client) and linger entries of ended ones (kind lingering)', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly aors = new Gauge({ name: 'sipd_registered_aors', help: 'AORs with at least one binding', registers: [this.registry] });
  readonly contacts = new Gauge({ name: 'sipd_registered_contacts', help: 'Registered contacts (bindings)', registers: [this.registry] });
  private readonly authChallengesBy = new TalliedCounter(this.registry, { name: 'sipd_auth_challenges_total', help: 'Digest challenges sent (401/407)', label: 'kind' });
  readonly authChallenges = this.authChallengesBy.counter;
  private readonly authFailuresBy = new TalliedCounter(this.registry, { name: 'sipd_auth_failures_total', help: 'Failed authentications, by reason', label: 'reason' });
  readonly authFailures = this.authFailuresBy.counter;
  private readonly parseErrorsBy = new TalliedCounter(this.registry, { name: 'sipd_parse_errors_total', help: 'Messages that failed to parse, by code', label: 'code' });
  readonly parseErrors = this.parseErrorsBy.counter;
  private readonly relayDeniedBy = new TalliedCounter(this.registry, {
    name: 'sipd_relay_denied_total',
    help: 'Requests refused by the relay policy (403), by reason: foreign-target, preloaded-route, dialog-foreign-route, dialog-no-token, dialog-bad-token, dialog-hop',
    label: 'reason',
  });
  readonly relayDenied = this.relayDeniedBy.counter;
  private readonly dropsBy = new TalliedCounter(this.registry, { name: 'sipd_dropped_total', help: 'Messages dropped, by reason', label: 'reason' });
  readonly drops = this.dropsBy.counter;
  readonly requestDuration = new BucketHistogram(this.registry, {
    name: 'sipd_request_processing_seconds',
    help: 'Time from receiving a request to the core having answered or forwarded it',
    labelNames: ['method'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  });
  readonly storeDuration = new BucketHistogram(this.registry, {
    name: 'sipd_store_query_seconds',
    help: 'Store (database) operation time',
    labelNames: ['store', 'op'],
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5],
  });

  readonly floodBans = new Counter({ name: 'sipd_flood_bans_total', help: 'Sources banned by the flood limiter (one warn log line each)', registers: [this.registry] });
  readonly floodBanned = new Gauge({ name: 'sipd_flood_banned_sources', help: 'Sources banned right now', registers: [this.registry] });
  readonly floodTracked = new Gauge({ name: 'sipd_flood_tracked_sources', help: 'Sources the flood limiter keeps a rate for', registers: [this.registry] });
  private readonly floodDroppedBy = new TalliedCounter(
    this.registry,
    {
      name: 'sipd_flood_dropped_total',
      help: 'Items dropped silently because their source is banned (the one that started the ban included), by kind: datagram, keepalive, message (TCP), connection',
      label: 'kind',
    },
    16,
  );
  readonly floodDropped = this.floodDroppedBy.counter;

  readonly tcpConnections = new Gauge({ name: 'sipd_tcp_connections', help: 'Open TCP connections', labelNames: ['direction'] as const, registers: [this.registry] });
  readonly transportConnections = new Gauge({
    name: 'sipd_transport_connections',
    help: 'Open connections by transport (every transport served; connectionless ones 0) and direction (inbound, outbound)',
    labelNames: ['transport', 'direction'] as const,
    registers: [this.registry],
  });
  readonly transportDrops = new Gauge({
    name: 'sipd_transport_dropped_total',
    help: 'Messages and connections dropped by the transport layer since start, by reason (oversize, limits, parse errors ...)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly transportSendErrors = new Gauge({ name: 'sipd_transport_send_errors_total', help: 'Failed sends since start, by kind', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly locationWriteFailures = new Counter({
    name: 'sipd_location_write_failures_total',
    help: 'Failed location writes of the write-back queue: transient (retried) or permanent (the change was dropped)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly locationWriteBacklog: Gauge;
  private backlogSource: () => number = () => 0;

  /**
   * Event-loop delay since the previous scrape (sipd_event_loop_delay_{p99,max,mean}_seconds): each
   * scrape reads the histogram and resets it, so a value covers one scrape interval (the first
   * sample after a reset only starts the clock, so the first sampling interval after a scrape is
   * not counted). A sample is the time between two ticks of a timer of the histogram's resolution:
   * an idle loop reads about that resolution (0.010 s), a stall reads its length.
   */
  readonly eventLoopDelayP99: Gauge;
  readonly eventLoopDelayMax: Gauge;
  readonly eventLoopDelayMean: Gauge;
  private delaySource: DelayHistogram | undefined;

  /**
   * The kernel's UDP counters (/proc/net/snmp, read at each scrape through the source the
   * composition root sets): for the whole network namespace since boot, not only sipd's sockets.
   * No sample when the source has nothing (no /proc, not Linux).
   */
  readonly kernelUdp: Gauge<'counter'>;
  private kernelUdpSource: () => KernelUdpStats | undefined = () => undefined;
  /** the snapshot of the scrape in progress: the three gauges read one, the histogram is reset once. */
  private delaySnap: DelaySnapshot | undefined;

  /** count a received request (method label through `methodLabel`). */
  requestReceived(method: string): void {
    this.requestsBy.inc(methodLabel(method));
  }

  /** record the processing time of a handled request (method label through `methodLabel`). */
  requestHandled(method: string, seconds: number): void {
    this.requestDuration.labels(methodLabel(method)).observe(seconds);
  }

  /** count a response sent (generated or relayed), by status code. */
  responseSent(code: number): void {
    this.responsesBy.inc(code);
  }

  /** count an item dropped because its source is banned. */
  floodDrop(kind: string): void {
    this.floodDroppedBy.inc(kind);
  }

  /** count a digest challenge sent (401/407), by kind. */
  authChallenge(kind: string): void {
    this.authChallengesBy.inc(kind);
  }

  /** count a failed authentication, by reason. */
  authFailed(reason: string): void {
    this.authFailuresBy.inc(reason);
  }

  /** count a message that failed to parse, by parser error code. */
  parseError(code: string): void {
    this.parseErrorsBy.inc(code);
  }

  /** count a message dropped, by reason. */
  dropped(reason: string): void {
    this.dropsBy.inc(reason);
  }

  /** count a request refused by the relay policy, by reason. */
  relayRefused(reason: string): void {
    this.relayDeniedBy.inc(reason);
  }

  /** record the time of one store operation. */
  storeQuery(store: string, op: string, seconds: number): void {
    this.storeDuration.labels(store, op).observe(seconds);
  }

  constructor(defaults = true) {
    const backlog = (): number => this.backlogSource();
    this.locationWriteBacklog = new Gauge({
      name: 'sipd_location_write_backlog',
      help: 'Location changes not yet written to the database (write-back mode)',
      registers: [this.registry],
      collect() {
        this.set(backlog());
      },
    });
    const delay = (pick: (s: DelaySnapshot) => number) =>
      function (this: Gauge) {
        this.set(pick(snapshot()));
      };
    const snapshot = (): DelaySnapshot => this.takeDelaySnapshot();
    this.eventLoopDelayP99 = new Gauge({
      name: 'sipd_event_loop_delay_p99_seconds',
      help: 'Event-loop delay since the previous scrape, 99th percentile (perf_hooks.monitorEventLoopDelay, 10 ms resolution; reset at each scrape)',
      registers: [this.registry],
      collect: delay((s) => s.p99),
    });
    this.eventLoopDelayMax = new Gauge({
      name: 'sipd_event_loop_delay_max_seconds',
      help: 'Longest event-loop delay since the previous scrape (perf_hooks.monitorEventLoopDelay, 10 ms resolution; reset at each scrape)',
      registers: [this.registry],
      collect: delay((s) => s.max),
    });
    this.eventLoopDelayMean = new Gauge({
      name: 'sipd_event_loop_delay_mean_seconds',
      help: 'Mean event-loop delay since the previous scrape (perf_hooks.monitorEventLoopDelay, 10 ms resolution; reset at each scrape)',
      registers: [this.registry],
      collect: delay((s) => s.mean),
    });
    const kernelUdp = (): KernelUdpStats | undefined => {
      try {
        return this.kernelUdpSource();
      } catch {
        return undefined;
      }
    };
    this.kernelUdp = new Gauge({
      name: 'sipd_kernel_udp_total',
      help: 'UDP counters of the kernel (/proc/net/snmp Udp:, the whole network namespace since boot, not only sipd), by counter: InErrors (datagrams dropped on receive, all causes), RcvbufErrors (dropped: socket receive buffer full), SndbufErrors (send buffer full), NoPorts (to a port nobody listens on)',
      labelNames: ['counter'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        const stats = kernelUdp();
        if (stats === undefined) return;
        for (const name of KERNEL_UDP_COUNTERS) {
          const v = stats[name];
          if (v !== undefined) this.set({ counter: name }, v);
        }
      },
    });
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }

  /** Where sipd_kernel_udp_total is read from at each scrape (undefined from it: no sample). */
  setKernelUdpSource(source: () => KernelUdpStats | undefined): void {
    this.kernelUdpSource = source;
  }

  /** Where sipd_event_loop_delay_* are read from (and reset at) each scrape; undefined: they read 0. */
  setEventLoopDelaySource(source: DelayHistogram | undefined): void {
    this.delaySource = source;
  }

  /**
   * The delay since the previous scrape; resets the histogram. One snapshot per scrape: the
   * registry runs every collect() in one synchronous pass, the snapshot is dropped after it.
   */
  private takeDelaySnapshot(): DelaySnapshot {
    if (this.delaySnap !== undefined) return this.delaySnap;
    const h = this.delaySource;
    let snap: DelaySnapshot = { p99: 0, max: 0, mean: 0 };
    if (h !== undefined) {
      if (h.count > 0) snap = { p99: h.percentile(99) / 1e9, max: h.max / 1e9, mean: h.mean / 1e9 };
      h.reset();
    }
    this.delaySnap = snap;
    queueMicrotask(() => {
      this.delaySnap = undefined;
    });
    return snap;
  }

  /** Where sipd_location_write_backlog is read from at each scrape. */
  setLocationBacklogSource(source: () => number): void {
    this.backlogSource = source;
  }
}
