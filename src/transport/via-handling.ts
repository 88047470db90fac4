/**
 * Receive-side Via handling (RFC 3261 §18.2.1, RFC 3581 §4) and response routing
 * (RFC 3261 §18.2.2, RFC 3581 §4). Pure functions over parsed messages; no sockets.
 */
import { hostAddress, type SipResponse, type Via } from '../sip/index.js';
import { normaliseAddress } from './common.js';
import { isConnectionOriented, TRANSPORT_INFO, transportFromToken } from './transport.js';
import { TransportError, type Source, type Target, type TransportName } from './types.js';

/**
 * The `received` / `rport` values a server must put into the top Via of a request that arrived from
 * `srcAddress:srcPort`:
 * - `received` when the sent-by host differs from the source address (IPv6 compared without
 *   brackets, normalised; IPv4-mapped IPv6 compared as IPv4), and always when `rport` is present
 *   without a value (RFC 3581: "even if it is identical to the value of the sent-by");
 * - `rport` = source port when `rport` is present without a value.
 * The received value is the normalised source address (IPv6 without brackets).
 */
export function viaReceivedParams(via: Via, srcAddress: string, srcPort: number): { received?: string; rport?: number } {
  const src = normaliseAddress(srcAddress);
  const out: { received?: string; rport?: number } = {};
  const wantsRport = via.rport === true;
  if (wantsRport || normaliseAddress(via.host) !== src) out.received = src;
  if (wantsRport) out.rport = srcPort;
  return out;
}

/** Via transport token → our transport, with its default port (TRANSPORT_INFO: 5061 for TLS, 80/443 for WS/WSS). */
export function viaTransport(token: string): { transport: TransportName; defaultPort: number } | undefined {
  const t = transportFromToken(token);
  return t === undefined ? undefined : { transport: t, defaultPort: TRANSPORT_INFO[t].defaultPort };
}

/**
 * Where a response goes (RFC 3261 §18.2.2 with RFC 3581), from its top Via and, when known, the
 * source of the request it answers:
 * - connection-oriented (TCP/TLS/WS/WSS): the request's connection (`connectionId`, used by `send`
 *   while it is still open, over the transport it came in on); else a new connection to `received`
 *   (or the sent-by host) at the sent-by port (default TRANSPORT_INFO's: 5060, 5061 for TLS);
 * - UDP with `received`: that address, at `rport` when it has a value, else the sent-by port;
 * - otherwise the sent-by host (a name is resolved by `send`) and port (`rport` value when present).
 *
 * `maddr` in the top Via is ignored, unicast or multicast (a deliberate departure from §18.2.2,
 * which sends to the maddr address): the parameter is written by the peer and nothing verifies it,
 * so obeying it lets anyone reflect responses (and their amplification: a small request, a large
 * 401 or a retransmitted 2xx) at a third party. RFC 3581 received/rport, which record where the
 * request really came from, win; sipd sends no multicast responses.
 * `local` is the endpoint the request arrived on, so the response leaves from the listening socket.
 * A Via transport sipd does not support (SCTP ...) is answered over the transport of `src`.
 * Throws TransportError('unreachable') when the response has no Via, or an unsupported Via transport
 * and no `src`, and SipParseError when the top Via is malformed.
 */
export function responseTarget(res: SipResponse, src?: Source): Target {
  const via = res.topVia();
  if (via === undefined) throw new TransportError('unreachable', 'response has no Via');
  // a transport we do not know (SCTP, a mangled token): answered over the one the request came in on
  // (no intermediate objects: this runs for every response sent)
  let viaTp = transportFromToken(via.transport);
  if (viaTp === undefined) {
    if (src === undefined) throw new TransportError('unreachable', `unsupported Via transport ${via.transport}`);
    viaTp = src.transport;
  }
  const defaultPort = TRANSPORT_INFO[viaTp].defaultPort;
  // a request that arrived over a datagram transport (UDP) is answered over it, whatever its Via claims
  // (as Kamailio does): opening a connection towards a datagram peer would usually fail and is never
  // what it expects
  const transport = src !== undefined && !isConnectionOriented(src.transport) ? src.transport : viaTp;
  const local = src !== undefined && src.local.transport === transport ? src.local : undefined;
  const rport = typeof via.rport === 'number' ? via.rport : undefined;
  let address: string;
  let port: number;
  if (transport !== viaTp) {
    address = hostAddress(via.received ?? via.host);
    port = rport ?? via.port ?? TRANSPORT_INFO[transport].defaultPort;
  } else if (isConnectionOriented(viaTp)) {
    address = hostAddress(via.received ?? via.host);
    port = via.port ?? defaultPort;
    // back on the connection the request came in on (§18.2.2), whichever connection-oriented
    // transport it is (a TLS Via over a TCP connection is the peer's business)
    if (src !== undefined && isConnectionOriented(src.transport) && src.connectionId !== undefined) {
      return { transport: src.transport, address, port, connectionId: src.connectionId, local: src.local };
    }
  } else {
    address = hostAddress(via.received ?? via.host);
    port = rport ?? via.port ?? defaultPort;
  }
  return local !== undefined ? { transport, address, port, local } : { transport, address, port };
}
