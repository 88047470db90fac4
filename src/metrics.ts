import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { KNOWN_METHODS } from './sip/index.js';

/**
 * The `method` label of a request: its method when sipd knows it, else "other". Label values must not
 * come from input unchecked: every distinct value is a series kept for the life of the process (and a
 * histogram series is a dozen buckets), so invented method names would grow memory and /metrics
 * without bound.
 */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'other';
}

/** Every metric sipd exports; one instance per server (own registry, so tests can run several). */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'sipd_requests_received_total', help: 'SIP requests received, by method (the methods sipd knows, else "other")', labelNames: ['method'] as const, registers: [this.registry] });
  readonly responses = new Counter({ name: 'sipd_responses_sent_total', help: 'SIP responses sent (generated or relayed), by status code', labelNames: ['code'] as const, registers: [this.registry] });
  readonly transactions = new Gauge({ name: 'sipd_transactions_active', help: 'Live transactions', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly aors = new Gauge({ name: 'sipd_registered_aors', help: 'AORs with at least one binding', registers: [this.registry] });
  readonly contacts = new Gauge({ name: 'sipd_registered_contacts', help: 'Registered contacts (bindings)', registers: [this.registry] });
  readonly authChallenges = new Counter({ name: 'sipd_auth_challenges_total', help: 'Digest challenges sent (401/407)', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly authFailures = new Counter({ name: 'sipd_auth_failures_total', help: 'Failed authentications, by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly parseErrors = new Counter({ name: 'sipd_parse_errors_total', help: 'Messages that failed to parse, by code', labelNames: ['code'] as const, registers: [this.registry] });
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

  readonly tcpConnections = new Gauge({ name: 'sipd_tcp_connections', help: 'Open TCP connections', labelNames: ['direction'] as const, registers: [this.registry] });
  readonly transportDrops = new Gauge({
    name: 'sipd_transport_dropped_total',
    help: 'Messages and connections dropped by the transport layer since start, by reason (oversize, limits, parse errors ...)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly transportSendErrors = new Gauge({ name: 'sipd_transport_send_errors_total', help: 'Failed sends since start, by kind', labelNames: ['kind'] as const, registers: [this.registry] });

  /** a request was received (counted by `methodLabel`). */
  requestReceived(method: string): void {
    this.requests.inc({ method: methodLabel(method) });
  }

  /** the core finished with a request after `seconds` (observed by `methodLabel`). */
  requestHandled(method: string, seconds: number): void {
    this.requestDuration.observe({ method: methodLabel(method) }, seconds);
  }

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }
}
