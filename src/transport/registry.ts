/**
 * The transport registry: one line per transport. A new transport is one file implementing
 * `Transport` (./transport.ts) and one line here; `listen` entries of a name not in this map are
 * refused at start (one error line naming the transports there are).
 */
import { createTcpTransport } from './tcp.js';
import { TlsTransport } from './tls.js';
import type { TransportFactory } from './transport.js';
import type { TransportName } from './types.js';
import { createUdpTransport } from './udp.js';
import { createWssTransport, createWsTransport } from './ws.js';

export const TRANSPORT_FACTORIES: Partial<Record<TransportName, TransportFactory>> = {
  udp: createUdpTransport,
  tcp: createTcpTransport,
  tls: (ctx) => new TlsTransport(ctx, { limits: ctx.limits, contexts: ctx.options.tls }),
  ws: createWsTransport,
  wss: createWssTransport,
};
