/** What the in-process heap benches (call-heap, linger-heap, tx-memory) share: gc, timers, local endpoints. */
import type { RoutingEvents } from '../src/core/routing.js';
import type { TimerSettings } from '../src/transaction/index.js';
import type { LocalEndpoint } from '../src/transport/types.js';

/** `gc` of a process started with --expose-gc; otherwise says how to run `script` and exits 2. */
export function requireGc(script: string): () => void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    console.error(`run with node --expose-gc --import tsx ${script}`);
    process.exit(2);
  }
  return gc;
}

/** RFC 3261 timer values the benches run with (Timer C 3 min, 100 Trying after 200 ms). */
export const BENCH_TIMERS: TimerSettings = { t1: 500, t2: 4000, t4: 5000, timerC: 180_000, trying: 200 };

/** The fake transport's listeners: UDP and TCP on 10.0.0.1:5060. */
export const BENCH_LOCAL: Readonly<Record<'udp' | 'tcp', LocalEndpoint>> = {
  udp: { transport: 'udp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' },
  tcp: { transport: 'tcp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' },
};

/** Routing events that count nothing; `error` is the bench's own handler. */
export function quietEvents(error: RoutingEvents['error']): RoutingEvents {
  const none = (): void => undefined;
  return { handled: none, challenge: none, authFailure: none, drop: none, denied: none, response: none, error };
}
