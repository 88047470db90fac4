/**
 * The transport interface: what one transport (UDP, TCP, TLS, WS, WSS) is to the transport layer.
 *
 * A new transport is one file implementing `Transport` (a `TransportFactory`) plus one line in the
 * registry (./registry.ts). The transport layer (./index.ts) owns parsing, Via receive handling,
 * admission counting, resolution and endpoint choice; a transport owns sockets, connections,
 * framing and its own limits. A transport knows no transactions and no policy.
 *
 * Facts about a transport name (reliable, secure, stream, Via token, default port) are in
 * `TRANSPORT_INFO`, so code elsewhere asks `isReliable(name)` instead of comparing with 'tcp'.
 */
import type { ParseLimits, SipParseError } from '../sip/index.js';
import type { Counters, TransportLog } from './common.js';
import type { TlsContexts } from './tls-context.js';
import type { LocalEndpoint, TransportName } from './types.js';
import type { UdpBufferSizes } from './udp.js';
import type { WsSettings, WssTls } from './ws.js';

export interface TransportInfo {
  readonly name: TransportName;
  /** RFC 3261 reliable transport: no retransmission timers A/E/G, Timer K/J/I zero. */
  readonly reliable: boolean;
  /** TLS underneath (tls, wss): a `sips:` hop may use it. */
  readonly secure: boolean;
  /** connection-oriented: responses go back on the connection the request came in on. */
  readonly connectionOriented: boolean;
  /** the Via transport token (RFC 3261 §20.42, RFC 7118 §5.1: WS / WSS). */
  readonly viaToken: 'UDP' | 'TCP' | 'TLS' | 'WS' | 'WSS';
  /** port used when a URI or Via names none. */
  readonly defaultPort: number;
}

export const TRANSPORT_INFO: Readonly<Record<TransportName, TransportInfo>> = {
  udp: { name: 'udp', reliable: false, secure: false, connectionOriented: false, viaToken: 'UDP', defaultPort: 5060 },
  tcp: { name: 'tcp', reliable: true, secure: false, connectionOriented: true, viaToken: 'TCP', defaultPort: 5060 },
  tls: { name: 'tls', reliable: true, secure: true, connectionOriented: true, viaToken: 'TLS', defaultPort: 5061 },
  ws: { name: 'ws', reliable: true, secure: false, connectionOriented: true, viaToken: 'WS', defaultPort: 80 },
  wss: { name: 'wss', reliable: true, secure: true, connectionOriented: true, viaToken: 'WSS', defaultPort: 443 },
};

export const isReliable = (t: TransportName): boolean => TRANSPORT_INFO[t].reliable;
export const isSecure = (t: TransportName): boolean => TRANSPORT_INFO[t].secure;
export const isConnectionOriented = (t: TransportName): boolean => TRANSPORT_INFO[t].connectionOriented;

/** The transport name for a Via token or URI `transport` parameter (case-insensitive), or undefined. */
export function transportFromToken(token: string): TransportName | undefined {
  switch (token.toLowerCase()) {
    case 'udp':
      return 'udp';
    case 'tcp':
      return 'tcp';
    case 'tls':
      return 'tls';
    case 'ws':
      return 'ws';
    case 'wss':
      return 'wss';
    default:
      return undefined;
  }
}

/** A connection of a connection-oriented transport (diagnostics, flows, metrics). */
export interface ConnectionInfo {
  /** unique across all transports of one transport layer (`TransportContext.nextConnectionId`). */
  readonly id: number;
  readonly transport: TransportName;
  readonly direction: 'in' | 'out';
  /** normalised remote address (IPv4-mapped IPv6 reduced to IPv4, no brackets). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** the listener this connection belongs to (outbound: the endpoint we send as). */
  readonly local: LocalEndpoint;
}

/** Limits of every transport (all passed in, nothing read from env or files). Stream transports use the tcp* ones. */
export interface TransportLimits extends ParseLimits {
  /** inbound TCP connections in total (excess destroyed immediately, counted 'tcp-limit'); also the outbound cap. */
  tcpMaxConnections: number;
  /** inbound TCP connections per source IP (excess counted 'tcp-per-ip-limit'). */
  tcpMaxPerIp: number;
  /** a TCP connection without traffic either way for this long is closed. */
  tcpIdleTimeoutMs: number;
  /**
   * a TCP message must be complete within this long of its first byte, and an inbound connection
   * must deliver its first complete message within this long of being accepted; else the
   * connection is closed (counted 'tcp-msg-timeout'). CRLF keep-alives start no message. Default 10000.
   */
  tcpMsgTimeoutMs?: number;
  /** bytes queued for writing on one TCP connection before it is considered stuck and closed. */
  tcpMaxBuffer: number;
  /** outbound TCP connect timeout, default 5000 ms. */
  tcpConnectTimeoutMs?: number;
}

/**
 * (additive) Options of the transports that need some, by transport name: a transport adds its own
 * member here (TLS: certificate material, WS: paths, origins ...) and reads `ctx.options.<name>`.
 */
export interface TransportOptions {
  udp?: { readonly buffers?: UdpBufferSizes };
  tcp?: Record<string, never>;
  /** TLS certificate material and settings: required by a `tls` listener (and outbound TLS). */
  tls?: TlsContexts;
  /** WebSocket settings of every ws: and wss: listener (./ws.ts). */
  ws?: WsSettings;
  /** TLS material of wss: listeners (./ws.ts): `{ secureContext?: () => tls.SecureContext }`; without it a wss: listener fails at start. */
  wss?: WssTls;
}

export type AdmitWhat = 'datagram' | 'keepalive' | 'message' | 'connection';

/** What the transport layer gives each transport. Handlers never throw (the layer guards them). */
export interface TransportContext {
  /** (additive) the transport's name (one factory may serve several names, e.g. ws and wss). */
  readonly name: TransportName;
  readonly log: TransportLog;
  /** (additive) limits (message size for framing, connection limits and timeouts). */
  readonly limits: TransportLimits;
  /** (additive) per-transport options (`options[name]`), as given to the transport layer. */
  readonly options: TransportOptions;
  /** shared counters of the layer (bytes, messages, drops, connections). */
  readonly counters: Counters;
  /** connection ids are unique across transports: take them from here. */
  nextConnectionId(): number;
  /** admission verdict for a peer (counted by the layer); false = drop / refuse. */
  admit(transport: TransportName, address: string, port: number, what: AdmitWhat): boolean;
  /** one complete SIP message (a datagram, a framed stream message, a WebSocket message). */
  message(data: Buffer, transport: TransportName, address: string, port: number, local: LocalEndpoint, connectionId: number | undefined): void;
  /** a stream could not be framed (the connection is being closed). */
  framingError(err: SipParseError, conn: ConnectionInfo): void;
  /** a connection was closed or reset and removed from every table. */
  closed(conn: ConnectionInfo, reason: string): void;
}

export interface Transport {
  readonly name: TransportName;
  readonly info: TransportInfo;
  /** bind one listener; rejects with ListenError. */
  listen(host: string, port: number, advertise: string | undefined): Promise<LocalEndpoint>;
  /**
   * Send one message. Connection-oriented transports use `connectionId` when still open, else an open
   * connection to address:port, else open one (where the transport can: WS cannot dial browsers).
   * `address` is an IP address (the layer resolves names); (additive) `serverName` is the name it was
   * resolved from, when it was one (TLS: SNI and the certificate name check). Rejects with TransportError.
   */
  send(data: Buffer, address: string, port: number, connectionId: number | undefined, local: LocalEndpoint | undefined, serverName?: string): Promise<void>;
  /** open connections (connectionless transports: none). */
  connections(): ConnectionInfo[];
  connectionCounts(): { total: number; inbound: number; outbound: number };
  isOpen(connectionId: number): boolean;
  closeConnection(connectionId: number, reason?: string): boolean;
  /** stop accepting, close everything. Idempotent. */
  close(): Promise<void>;
}

export type TransportFactory = (ctx: TransportContext) => Transport;
