import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

/** Every metric sipd exports; one instance per server (own registry, so tests can run several). */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'sipd_requests_received_total', help: 'SIP requests received, by method (methods sipd does not know are counted as other)', labelNames: ['method'] as const, registers: [this.registry] });
  readonly responses = new Counter({ name: 'sipd_responses_sent_total', help: 'SIP responses sent (generated or relayed), by status code', labelNames: ['code'] as const, registers: [this.registry] });
  readonly transactions = new Gauge({ name: 'sipd_transactions_active', help: 'Live transactions (kind server, client) and linger entries of ended ones (kind lingering)', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly aors = new Gauge({ name: 'sipd_registered_aors', help: 'AORs with at least one binding', registers: [this.registry] });
  readonly contacts = new Gauge({ name: 'sipd_registered_contacts', help: 'Registered contacts (bindings)', registers: [this.registry] });
  readonly authChallenges = new Counter({ name: 'sipd_auth_challenges_total', help: 'Digest challenges sent (401/407)', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly authFailures = new Counter({ name: 'sipd_auth_failures_total', help: 'Failed authentications, by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly parseErrors = new Counter({ name: 'sipd_parse_errors_total', help: 'Messages that failed to parse, by code', labelNames: ['code'] as const, registers: [this.registry] });
  readonly relayDenied = new Counter({
    name: 'sipd_relay_denied_total',
    help: 'Requests refused by the relay policy (403), by reason: foreign-target, preloaded-route, dialog-foreign-route, dialog-no-token, dialog-bad-token, dialog-hop',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly drops = new Counter({ name: 'sipd_dropped_total', help: 'Messages dropped, by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly requestDuration = new Histogram({
    name: 'sipd_request_processing_seconds',
    help: 'Time from receiving a request to the core having answered or forwarded it',
    labelNames: ['method'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly storeDuration = new Histogram({
    name: 'sipd_store_query_seconds',
    help: 'Store (database) operation time',
    labelNames: ['store', 'op'] as const,
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5],
    registers: [this.registry],
  });

  readonly floodBans = new Counter({ name: 'sipd_flood_bans_total', help: 'Sources banned by the flood limiter (one warn log line each)', registers: [this.registry] });
  readonly floodBanned = new Gauge({ name: 'sipd_flood_banned_sources', help: 'Sources banned right now', registers: [this.registry] });
  readonly floodTracked = new Gauge({ name: 'sipd_flood_tracked_sources', help: 'Sources the flood limiter keeps a rate for', registers: [this.registry] });
  readonly floodDropped = new Counter({
    name: 'sipd_flood_dropped_total',
    help: 'Items dropped silently because their source is banned (the one that started the ban included), by kind: datagram, keepalive, message (TCP), connection',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly tcpConnections = new Gauge({ name: 'sipd_tcp_connections', help: 'Open TCP connections', labelNames: ['direction'] as const, registers: [this.registry] });
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

  /** count a received request (method label through `methodLabel`). */
  requestReceived(method: string): void {
    this.requests.inc({ method: methodLabel(method) });
  }

  /** record the processing time of a handled request (method label through `methodLabel`). */
  requestHandled(method: string, seconds: number): void {
    this.requestDuration.observe({ method: methodLabel(method) }, seconds);
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
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }

  /** Where sipd_location_write_backlog is read from at each scrape. */
  setLocationBacklogSource(source: () => number): void {
    this.backlogSource = source;
  }
}
