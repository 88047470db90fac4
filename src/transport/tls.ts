/**
 * TLS (RFC 3261 §26, `sips:`, `transport=tls`): TCP's stream transport (./tcp.ts TcpTransport:
 * framing, connection limits in total and per IP, idle and message deadlines, output bound,
 * connection reuse by peer) with a TLS layer under it, through TcpTransport's StreamHooks.
 *
 * - Inbound: an accepted socket is admitted and counted against the TCP limits first, then wrapped
 *   in a server-side TLSSocket using the CURRENT secure context (./tls-context.ts: a reload applies
 *   to new handshakes only). The handshake must finish within `handshakeTimeoutMs`; a failed, timed
 *   out or (with `verifyClient`) unauthorised handshake closes the connection and is counted
 *   'tls-handshake' — never an exception.
 * - Outbound: tls.connect with SNI = the target's host name when it was a name (never an IP,
 *   RFC 6066 §3), the server certificate verified against the CA bundle and that name (or the
 *   address) unless `verifyServer` is off; the connection is registered after 'secureConnect', so
 *   a verification failure rejects the send (TransportError 'unreachable', counted 'tls-handshake').
 */
import type net from 'node:net';
import tls from 'node:tls';
import { formatHost } from '../sip/index.js';
import { StreamTransportAdapter, TcpTransport, streamHandlers, type StreamHooks, type TcpLimits } from './tcp.js';
import type { TlsContexts } from './tls-context.js';
import { TRANSPORT_INFO, type TransportContext, type TransportInfo } from './transport.js';
import { TransportError, type LocalEndpoint } from './types.js';
import { ListenError } from './udp.js';

export interface TlsTransportOptions {
  /** the stream limits (shared meaning with TCP: tcpMaxConnections, tcpMaxPerIp, ...). */
  readonly limits: TcpLimits;
  /**
   * certificate material and settings (verifyClient, verifyServer, minVersion, handshakeTimeoutMs);
   * without them the transport is not made (ListenError at start: never a cleartext listener).
   */
  readonly contexts: TlsContexts | undefined;
}

/** An Error with a `code`, so TcpTransport records it as the connection's close reason. */
function coded(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * The verification result of a server-side handshake that requested a client certificate. Node
 * computes it only for sockets of a tls.Server; for a TLSSocket made over an accepted socket the
 * same check (`verifyError()` of the TLS handle, as tls.Server's onServerSocketSecure does) is made
 * here. Fails closed when the handle does not offer it.
 */
function clientCertError(s: tls.TLSSocket): string | undefined {
  const h = (s as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (h === undefined || typeof h.verifyError !== 'function') return 'cannot check the client certificate';
  const e = h.verifyError();
  return e === null ? undefined : (e.code ?? e.message);
}

export class TlsTransport extends StreamTransportAdapter {
  readonly name = 'tls' as const;
  readonly info: TransportInfo = TRANSPORT_INFO.tls;
  readonly tcp: TcpTransport;
  private readonly hasContexts: boolean;

  constructor(ctx: TransportContext, opts: TlsTransportOptions) {
    super();
    const name = this.name;
    const contexts = opts.contexts;
    this.hasContexts = contexts !== undefined;
    // without TLS material nothing is bound or dialled (listen and send refuse): never cleartext
    if (contexts === undefined) {
      this.tcp = new TcpTransport(opts.limits, { admit: () => false, message: () => undefined, framingError: () => undefined, closed: () => undefined }, ctx.counters, ctx.log, { name });
      return;
    }
    const settings = contexts.settings;
    const counters = ctx.counters;
    const log = ctx.log;
    const hooks: StreamHooks = {
      name,
      wrapInbound: (raw: net.Socket, ep: LocalEndpoint): net.Socket => {
        const peer = `${formatHost(raw.remoteAddress ?? '?')}:${raw.remotePort ?? 0}`;
        raw.on('error', () => undefined);
        const s = new tls.TLSSocket(raw, {
          isServer: true,
          secureContext: contexts.server(),
          requestCert: settings.verifyClient,
          rejectUnauthorized: settings.verifyClient,
        });
        let settled = false;
        const failed = (reason: string, err?: Error): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          counters.drop('tls-handshake');
          log('debug', { peer, local: `${name}:${formatHost(ep.address)}:${ep.port}`, reason }, 'tls handshake failed');
          if (err !== undefined) s.destroy(err);
        };
        const timer = setTimeout(() => failed('timeout', coded('tls-handshake-timeout', 'TLS handshake timed out')), settings.handshakeTimeoutMs);
        timer.unref();
        s.once('secure', () => {
          if (settled) return;
          if (settings.verifyClient) {
            const why = clientCertError(s);
            if (why !== undefined) {
              failed(`client certificate: ${why}`, coded('tls-client-cert', `client certificate refused: ${why}`));
              return;
            }
          }
          settled = true;
          clearTimeout(timer);
        });
        s.on('error', (e: NodeJS.ErrnoException) => failed(e.code ?? e.message));
        s.once('close', () => failed('closed during the handshake'));
        return s;
      },
      connect: ({ host, port, localAddress, serverName }) => {
        // tls.connect passes socket.connect() options (localAddress) on to net; its types omit them
        const connectOpts: tls.ConnectionOptions & net.TcpSocketConnectOpts = {
          host,
          port,
          localAddress,
          noDelay: true,
          ...(serverName !== undefined ? { servername: serverName } : {}),
          secureContext: contexts.client(),
          rejectUnauthorized: settings.verifyServer,
        };
        const s = tls.connect(connectOpts);
        let tcpUp = false;
        let secured = false;
        s.once('connect', () => {
          tcpUp = true;
        });
        s.once('secureConnect', () => {
          secured = true;
        });
        s.on('error', (e: NodeJS.ErrnoException) => {
          if (!tcpUp || secured) return;
          secured = true; // count once
          counters.drop('tls-handshake');
          log('debug', { peer: `${formatHost(host)}:${port}`, serverName, reason: e.code ?? e.message }, 'outbound tls handshake failed');
        });
        return { socket: s, readyEvent: 'secureConnect' };
      },
    };
    this.tcp = new TcpTransport(opts.limits, streamHandlers(ctx, name), counters, log, hooks);
  }

  override listen(host: string, port: number, advertise: string | undefined): Promise<LocalEndpoint> {
    if (!this.hasContexts) {
      const where = `tls:${formatHost(host)}:${port}`;
      return Promise.reject(new ListenError('ENOTLS', where, `cannot listen on ${where}: no TLS certificate settings`));
    }
    return this.tcp.listen(host, port, advertise);
  }

  /** `serverName`: the target's host name when it was given by name (SNI, certificate name check). */
  override send(data: Buffer, address: string, port: number, connectionId: number | undefined, local: LocalEndpoint | undefined, serverName?: string): Promise<void> {
    if (!this.hasContexts) return Promise.reject(new TransportError('no-listener', 'no TLS transport (no TLS certificate settings)'));
    return this.tcp.send(data, address, port, connectionId, local, serverName);
  }
}
