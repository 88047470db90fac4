/**
 * The contract between the transport layer (src/transport) and the transaction layer / core.
 * `createTransportLayer` in ./index.ts implements `TransportLayer` and extends it additively
 * (`SipTransportLayer`: start, close, stats, chooseTransport, connections, isConnectionOpen,
 * closeConnection). Additions to this file are marked "(additive)" and optional, so existing
 * implementations (test fakes) stay valid.
 */
import type { SipParseError, SipRequest, SipResponse } from '../sip/index.js';

export type TransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/** A local listening socket. */
export interface LocalEndpoint {
  readonly transport: TransportName;
  /** bound address (no brackets), e.g. 127.0.0.1 or ::1 */
  readonly address: string;
  readonly port: number;
  /** host to advertise in Via / Record-Route (config `advertise`, else the bound address; IPv6 in brackets). */
  readonly advertise: string;
}

/** Where a message came from. */
export interface Source {
  readonly transport: TransportName;
  readonly address: string;
  readonly port: number;
  /** TCP connection id (responses go back on it, RFC 3261 §18.2.2). */
  readonly connectionId?: number;
  /** the local socket it arrived on. */
  readonly local: LocalEndpoint;
}

/** Where to send a message. */
export interface Target {
  readonly transport: TransportName;
  readonly address: string;
  readonly port: number;
  /** reuse this TCP connection when still open. */
  readonly connectionId?: number;
  /** send from this local endpoint (defaults to the first listener of the transport). */
  readonly local?: LocalEndpoint;
}

export type TransportErrorKind = 'unreachable' | 'refused' | 'closed' | 'timeout' | 'too-large' | 'no-listener';

export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(readonly kind: TransportErrorKind, message: string) {
    super(message);
  }
}

export interface TransportEvents {
  /** a parsed request; the top Via already carries received/rport per §18.2.1 / RFC 3581. */
  request(req: SipRequest, src: Source): void;
  response(res: SipResponse, src: Source): void;
  /** bytes that did not parse; `raw` is bounded by the size limit. */
  parseError(err: SipParseError, src: Source, raw: Buffer): void;
  /**
   * (additive, optional) a TCP connection was closed or reset and removed from every table.
   * `reason`: 'closed' | 'reset' | 'idle' | 'framing' | 'too-large' | 'output-overflow' | 'banned' | 'shutdown' | an errno code.
   */
  connectionClosed?(connectionId: number, peer: { readonly address: string; readonly port: number; readonly local: LocalEndpoint }, reason: string): void;
}

/** What the transaction layer and the core need from the transport layer. */
export interface TransportLayer {
  /** Send bytes; resolves when handed to the OS, rejects with TransportError. Never throws synchronously. */
  send(data: Buffer, target: Target): Promise<void>;
  /** Local endpoints, for Via/Record-Route and "is this URI us?" checks. */
  endpoints(): readonly LocalEndpoint[];
  /** Choose the local endpoint to send from for a transport (and address family). */
  endpointFor(transport: TransportName, family: 4 | 6): LocalEndpoint | undefined;
  /** Resolve a SIP URI (or Via sent-by) to targets in preference order (RFC 3263, simplified). */
  resolve(host: string, port: number | undefined, transport: TransportName | undefined, sips: boolean): Promise<Target[]>;
  /**
   * (additive, optional) What `resolve` answers when that needs no lookup (an IP literal), at once;
   * undefined when it has to wait (a host name: call `resolve`).
   */
  resolveNow?(host: string, port: number | undefined, transport: TransportName | undefined, sips: boolean): Target[] | undefined;
}
