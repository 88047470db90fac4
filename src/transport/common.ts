/**
 * Shared pieces of the transport layer: logger shape, drop reasons and counters, error mapping,
 * address normalisation. No sockets here.
 */
import { isIP } from 'node:net';
import { TransportError, type TransportErrorKind, type TransportName } from './types.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** pino-like logging callback: `log(level, fields, message)`. */
export type TransportLog = (level: LogLevel, obj: Record<string, unknown>, msg: string) => void;

export const noLog: TransportLog = () => undefined;

/** Why a message, datagram or connection was dropped (a metrics label). */
export type DropReason =
  /** the test drop hook said so */
  | 'hook'
  /** a datagram or frame did not parse (reported through `parseError`) */
  | 'parse'
  /** a request or response without any Via */
  | 'no-via'
  /** a CRLF / NUL-only UDP datagram (keep-alive) */
  | 'keepalive'
  /** an event handler threw */
  | 'handler-error'
  /** inbound TCP connection refused: total limit */
  | 'tcp-limit'
  /** inbound TCP connection refused: per source IP limit */
  | 'tcp-per-ip-limit'
  /** TCP stream framing error (bad or missing Content-Length): connection closed */
  | 'tcp-framing'
  /** TCP message larger than maxMessageSize: connection closed */
  | 'tcp-too-large'
  /** more than tcpMaxBuffer bytes queued for a slow peer: message dropped, connection closed */
  | 'tcp-output-overflow'
  /** a TCP message not complete within tcpMsgTimeoutMs of its first byte (or of accept): connection closed */
  | 'tcp-msg-timeout'
  /** a TLS handshake failed or timed out (inbound: connection closed; outbound: the send fails) */
  | 'tls-handshake'
  /** inbound WebSocket (TCP) connection refused: total limit */
  | 'ws-limit'
  /** inbound WebSocket (TCP) connection refused: per source IP limit */
  | 'ws-per-ip-limit'
  /** WebSocket handshake not completed within the handshake timeout: connection closed */
  | 'ws-handshake-timeout'
  /** WebSocket handshake refused: no `sip` sub-protocol (400), Origin not allowed (403), wrong path (404) */
  | 'ws-handshake'
  /** WebSocket frame larger than maxMessageSize: connection closed */
  | 'ws-too-large'
  /** more than the output bound queued for a slow WebSocket peer: connection closed */
  | 'ws-output-overflow'
  /** refused by the admission hook (`admit`): a datagram, a TCP message or ping (connection closed) or a new connection */
  | 'banned';

export const DROP_REASONS: readonly DropReason[] = [
  'hook',
  'parse',
  'no-via',
  'keepalive',
  'handler-error',
  'tcp-limit',
  'tcp-per-ip-limit',
  'tcp-framing',
  'tcp-too-large',
  'tcp-output-overflow',
  'tcp-msg-timeout',
  'tls-handshake',
  'ws-limit',
  'ws-per-ip-limit',
  'ws-handshake-timeout',
  'ws-handshake',
  'ws-too-large',
  'ws-output-overflow',
  'banned',
];

export interface TransportStats {
  /** open connections right now, every transport. */
  connections: { total: number; inbound: number; outbound: number };
  /** (additive) open connections right now by transport (every transport served, connectionless ones with zeros). */
  byTransport: Partial<Record<TransportName, { total: number; inbound: number; outbound: number }>>;
  /** TCP connections ever opened / closed (accepted-and-refused connections are counted in drops only). */
  connectionsOpened: number;
  connectionsClosed: number;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  /** send() rejections by TransportError kind. */
  sendErrors: Record<TransportErrorKind, number>;
  drops: Record<DropReason, number>;
}

export class Counters {
  bytesIn = 0;
  bytesOut = 0;
  messagesIn = 0;
  messagesOut = 0;
  connectionsOpened = 0;
  connectionsClosed = 0;
  readonly drops: Record<DropReason, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  readonly sendErrors: Record<TransportErrorKind, number> = {
    unreachable: 0,
    refused: 0,
    closed: 0,
    timeout: 0,
    'too-large': 0,
    'no-listener': 0,
  };
  drop(reason: DropReason): void {
    this.drops[reason]++;
  }
}

/** Map a Node socket error to a TransportError (kind from the errno code). */
export function toTransportError(err: unknown, what: string): TransportError {
  if (err instanceof TransportError) return err;
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  const message = err instanceof Error ? err.message : String(err);
  let kind: TransportErrorKind;
  switch (code) {
    case 'ECONNREFUSED':
      kind = 'refused';
      break;
    case 'ETIMEDOUT':
      kind = 'timeout';
      break;
    case 'EMSGSIZE':
      kind = 'too-large';
      break;
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ERR_STREAM_DESTROYED':
    case 'ERR_STREAM_WRITE_AFTER_END':
    case 'ERR_SOCKET_DGRAM_NOT_RUNNING':
      kind = 'closed';
      break;
    default:
      kind = 'unreachable';
  }
  return new TransportError(kind, `${what}: ${code !== '' ? code + ' ' : ''}${message}`);
}

/**
 * Canonical form of an IP address for comparisons: no brackets, lower case, IPv6 compressed
 * (RFC 5952), IPv4-mapped IPv6 (::ffff:a.b.c.d) reduced to the IPv4 address. Names are lower-cased.
 */
export function normaliseAddress(addr: string): string {
  let a = addr.charCodeAt(0) === 0x5b && addr.endsWith(']') ? addr.slice(1, -1) : addr;
  a = a.toLowerCase();
  const zone = a.indexOf('%');
  if (zone !== -1) a = a.slice(0, zone);
  if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) return a.slice(7);
  if (isIP(a) !== 6) return a;
  try {
    const h = new URL(`http://[${a}]/`).hostname;
    const c = h.slice(1, -1);
    if (c.startsWith('::ffff:')) {
      // URL prints ::ffff:1.2.3.4 as ::ffff:102:304
      const parts = c.slice(7).split(':');
      if (parts.length === 2) {
        const hi = parseInt(parts[0]!, 16);
        const lo = parseInt(parts[1]!, 16);
        return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
      }
    }
    return c;
  } catch {
    return a;
  }
}

/** 4 or 6 for an IP address (brackets allowed), 0 for a name. */
export function ipFamily(addr: string): 0 | 4 | 6 {
  const a = addr.charCodeAt(0) === 0x5b && addr.endsWith(']') ? addr.slice(1, -1) : addr;
  const f = isIP(a);
  return f === 4 ? 4 : f === 6 ? 6 : 0;
}

export function peerName(transport: TransportName, address: string, port: number): string {
  return `${transport}:${address.includes(':') ? `[${address}]` : address}:${port}`;
}
