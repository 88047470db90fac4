/**
 * The transport layer: the transports named in `listen` (built from the registry, ./registry.ts:
 * one `Transport` of ./transport.ts per name), receive-side Via handling, response routing and
 * request-target resolution. Implements `TransportLayer` (./types.ts). `send` dispatches on
 * `target.transport`; a transport the layer does not serve rejects with TransportError
 * 'no-listener' (never falls back to another transport). Connection ids are unique across
 * transports (`TransportContext.nextConnectionId`).
 *
 * Admission: `admit(peer, kind)` (optional) is asked before anything else about every UDP datagram
 * (keep-alives included), every framed TCP message and CRLFCRLF ping, and every accepted TCP
 * connection. A refused item is dropped silently and counted 'banned' (a refused TCP message closes
 * its connection; a refused connection is reset). The transport knows no policy: the hook decides.
 *
 * Receive path: bytes → (UDP datagram | TCP frame) → admit → drop hook → parseMessage(limits) →
 *   requests: no Via → dropped ('no-via'); top Via gets received/rport (§18.2.1, RFC 3581) → `events.request`
 *   responses: no Via → dropped; a malformed second Via (the one it is forwarded on) → parse error; → `events.response`
 *   parse failure → `events.parseError(err, src, raw)` (the core may answer 400 from `err.partial`).
 * Nothing from input or from an event handler escapes to the event loop: handler exceptions are
 * logged and counted ('handler-error').
 *
 * Send path: `send(data, target)` never throws; it rejects with TransportError. Names in
 * `target.address` are resolved (A/AAAA, cached). The local endpoint is `target.local` or the first
 * listener of the transport and address family (UDP leaves from its socket); connection-oriented
 * transports use `target.connectionId` when still open, else an open connection to address:port,
 * else a new connection.
 *
 * Limits (all passed in, nothing read from env or files): see `TransportLimits`.
 */
import { isSipParseError, parseMessage, SipParseError, SipRequest, type ParseLimits } from '../sip/index.js';
import { Counters, ipFamily, noLog, normaliseAddress, peerName, toTransportError, type TransportLog, type TransportStats } from './common.js';
import { Resolver, type LookupFn, type SrvLookupFn } from './resolve.js';
import { TRANSPORT_FACTORIES } from './registry.js';
import { isReliable, type ConnectionInfo, type Transport, type TransportContext, type TransportFactory, type TransportLimits, type TransportOptions } from './transport.js';
import { ListenError, type UdpBufferSizes } from './udp.js';
import { viaReceivedParams } from './via-handling.js';
import {
  TransportError,
  type LocalEndpoint,
  type Source,
  type Target,
  type TransportEvents,
  type TransportLayer,
  type TransportName,
} from './types.js';

export * from './types.js';
export { responseTarget, viaReceivedParams, viaTransport } from './via-handling.js';
export { Resolver, TtlCache, systemLookup, systemSrv, type LookupFn, type SrvLookupFn, type SrvRecord, type ResolvedAddress, type ResolverOptions } from './resolve.js';
export { ListenError, type UdpBufferSizes } from './udp.js';
export { normaliseAddress, DROP_REASONS, type DropReason, type TransportStats, type TransportLog, type LogLevel } from './common.js';
export type { TcpConnectionInfo } from './tcp.js';
export type { WsOptions, WssOptions, WsSettings, WssTls } from './ws.js';
export * from './transport.js';
export { TlsContexts, TlsMaterialError, type TlsMaterial, type TlsSettings, type TlsMinVersion } from './tls-context.js';
export { TRANSPORT_FACTORIES } from './registry.js';

/** RFC 3261 §18.1.1: a request within 200 bytes of the path MTU (1500) must go over a congestion-controlled transport. */
export const UDP_MAX_REQUEST = 1300;

export interface ListenSpec {
  readonly transport: TransportName;
  /** IP address (IPv6 with or without brackets) or a host name (resolved once at start). */
  readonly host: string;
  /** 0 binds an ephemeral port (tests); `endpoints()` reports the real port. */
  readonly port: number;
}

/** A peer as seen by the drop hook and the admission hook. */
export interface HookPeer {
  readonly transport: TransportName;
  /** normalised IP address (IPv4-mapped IPv6 reduced to IPv4, no brackets). */
  readonly address: string;
  readonly port: number;
}

/**
 * What the admission hook is asked about: a UDP datagram, a UDP keep-alive (CRLF/NUL-only datagram)
 * or TCP CRLFCRLF ping, a framed TCP message, an accepted TCP connection.
 */
export type AdmitKind = 'datagram' | 'keepalive' | 'message' | 'connection';

export interface TransportLayerOptions {
  listen: readonly ListenSpec[];
  /** host to advertise in Via / Record-Route for every endpoint (default: the bound address). */
  advertise?: string;
  limits: TransportLimits;
  /** the receive handlers; or given to `start(events)` (the composition root builds them after the layer). */
  events?: TransportEvents;
  log?: TransportLog;
  /** SO_RCVBUF / SO_SNDBUF for every UDP socket, set after bind (default: the OS defaults); same as `transportOptions.udp.buffers`. */
  udpBuffers?: UdpBufferSizes;
  /** options of the transports that take some, by name (TLS material, WebSocket settings ...). */
  transportOptions?: TransportOptions;
  /** the transports there are, by name (default: the registry, TRANSPORT_FACTORIES of ./registry.ts; tests pass fakes). */
  factories?: Partial<Record<TransportName, TransportFactory>>;
  /** A/AAAA lookup (default `dns.promises.lookup(host, { all: true })`). */
  resolver?: LookupFn;
  /** SRV lookup for RFC 3263 (off by default; pass `systemSrv` to enable). */
  srvResolver?: SrvLookupFn;
  /** DNS cache TTL (default 30 s) and size (default 1000). */
  dnsCacheTtlMs?: number;
  dnsCacheSize?: number;
  /**
   * Inbound admission (e.g. a per-source rate limit): false drops the item silently before it is
   * parsed (counted 'banned'). Called for every datagram, TCP message, ping and new connection.
   * Must not throw (an exception counts as 'handler-error' and the item is dropped).
   */
  admit?: (peer: HookPeer, kind: AdmitKind) => boolean;
  /**
   * Test hook: return true to drop a message on purpose. 'in': a received datagram / TCP frame,
   * before parsing; 'out': a message about to be sent (send() then resolves as if sent).
   */
  dropHook?: (dir: 'in' | 'out', data: Buffer, peer: HookPeer) => boolean;
}

export interface SipTransportLayer extends TransportLayer {
  /**
   * Create the transports named in `listen` and bind every listener; `events` (when given) are the
   * receive handlers, else those of the options. Rejects with ListenError (e.g. "cannot listen on
   * udp:127.0.0.1:5060: address already in use (EADDRINUSE)", or a transport with no factory);
   * nothing stays bound then.
   */
  start(events?: TransportEvents): Promise<void>;
  /** Stop accepting, close every socket and connection. Idempotent. */
  close(): Promise<void>;
  /** counters and gauges for metrics. */
  stats(): TransportStats;
  /**
   * RFC 3261 §18.1.1: the target to use for a request of `size` bytes. A UDP target becomes TCP
   * when the message is larger than 1300 bytes, the transport was not chosen explicitly (URI
   * `transport` parameter) and a TCP listener of the family exists.
   */
  chooseTransport(size: number, target: Target, explicitTransport?: boolean): Target;
  /** open connections of every transport. */
  connections(): ConnectionInfo[];
  /** whether a connection (of any transport) is still open. */
  isConnectionOpen(id: number): boolean;
  /** close a connection on purpose; false when it is not open. */
  closeConnection(id: number): boolean;
  /** (additive) the transports this layer serves (those named in `listen`, once started). */
  transports(): readonly TransportName[];
}

const NO_EVENTS: TransportEvents = { request: () => undefined, response: () => undefined, parseError: () => undefined };

export function createTransportLayer(opts: TransportLayerOptions): SipTransportLayer {
  const log = opts.log ?? noLog;
  let events = opts.events ?? NO_EVENTS;
  const limits = opts.limits;
  const parseLimits: ParseLimits = {
    maxMessageSize: limits.maxMessageSize,
    maxHeaders: limits.maxHeaders,
    maxHeaderLine: limits.maxHeaderLine,
    maxVias: limits.maxVias,
  };
  const counters = new Counters();
  const resolver = new Resolver({ lookup: opts.resolver, srv: opts.srvResolver, ttlMs: opts.dnsCacheTtlMs, maxEntries: opts.dnsCacheSize });
  const dropHook = opts.dropHook;
  const admitHook = opts.admit;
  const factories = opts.factories ?? TRANSPORT_FACTORIES;
  const transportOptions: TransportOptions = {
    ...opts.transportOptions,
    ...(opts.udpBuffers !== undefined ? { udp: { ...opts.transportOptions?.udp, buffers: opts.udpBuffers } } : {}),
  };
  /** the transports served, by name: created in start() for the names in `listen`. */
  const transports = new Map<TransportName, Transport>();
  let connectionSeq = 0;
  let eps: LocalEndpoint[] = [];
  let state: 'new' | 'starting' | 'running' | 'closed' = 'new';

  const safe = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      counters.drop('handler-error');
      log('error', { err: e instanceof Error ? (e.stack ?? e.message) : String(e) }, `${what} handler threw`);
    }
  };

  /** The admission hook's verdict, counted: a refusal as 'banned', a throwing hook (refuses too) as 'handler-error'. */
  const admitted = (peer: HookPeer, kind: AdmitKind): boolean => {
    if (admitHook === undefined) return true;
    let ok: boolean;
    try {
      ok = admitHook(peer, kind);
    } catch (e) {
      counters.drop('handler-error');
      log('error', { err: e instanceof Error ? (e.stack ?? e.message) : String(e) }, 'admit hook threw');
      return false;
    }
    if (!ok) counters.drop('banned');
    return ok;
  };

  /** One received message (a datagram, a framed stream message, a WebSocket message). */
  const receive = (data: Buffer, src: Source): void => {
    if (state === 'closed') return;
    if (dropHook !== undefined && dropHook('in', data, { transport: src.transport, address: src.address, port: src.port })) {
      counters.drop('hook');
      return;
    }
    counters.messagesIn++;
    let msg;
    try {
      msg = parseMessage(data, { limits: parseLimits });
      // the top Via is parsed lazily: make a malformed one a parse error here
      const top = msg.topVia();
      if (top === undefined) {
        counters.drop('no-via');
        log('debug', { src: peerName(src.transport, src.address, src.port) }, 'message without Via dropped');
        return;
      }
      if (msg instanceof SipRequest) {
        const p = viaReceivedParams(top, src.address, src.port);
        if (p.received !== undefined || p.rport !== undefined) msg.setViaReceived(p.received, p.rport);
      } else {
        // a response is forwarded on its second Via (RFC 3261 §16.7 step 9, §18.2.2): when that one is malformed the
        // response cannot go anywhere, so it is a parse error here, like a malformed top Via (Kamailio drops such a
        // reply too); kept parsed on the message, as the top Via of the copy the proxy relays
        msg.secondVia();
      }
    } catch (e) {
      const err = isSipParseError(e) ? e : new SipParseError('BAD_START_LINE', e instanceof Error ? e.message : 'unparseable');
      counters.drop('parse');
      const raw = data.length > limits.maxMessageSize ? data.subarray(0, limits.maxMessageSize) : data;
      safe('parseError', () => events.parseError(err, src, raw));
      return;
    }
    const m = msg;
    if (m instanceof SipRequest) safe('request', () => events.request(m, src));
    else safe('response', () => events.response(m, src));
  };

  /** What each transport gets from the layer. */
  const contextFor = (name: TransportName): TransportContext => ({
    name,
    log,
    limits,
    options: transportOptions,
    counters,
    nextConnectionId: () => ++connectionSeq,
    admit: (transport, address, port, what) => admitted({ transport, address, port }, what),
    message: (data, transport, address, port, local, connectionId) =>
      receive(data, connectionId === undefined ? { transport, address, port, local } : { transport, address, port, connectionId, local }),
    framingError: (err, c) => {
      const src: Source = { transport: c.transport, address: c.remoteAddress, port: c.remotePort, connectionId: c.id, local: c.local };
      safe('parseError', () => events.parseError(err, src, Buffer.alloc(0)));
    },
    closed: (c, reason) => {
      const cb = events.connectionClosed;
      if (cb !== undefined) safe('connectionClosed', () => cb.call(events, c.id, { address: c.remoteAddress, port: c.remotePort, local: c.local }, reason));
    },
  });

  const endpointFor = (transport: TransportName, family: 4 | 6): LocalEndpoint | undefined =>
    eps.find((e) => e.transport === transport && ipFamily(e.address) === family);
  const has = (transport: TransportName, family: 4 | 6): boolean => endpointFor(transport, family) !== undefined;

  const pickLocal = (transport: TransportName, family: 4 | 6, wanted: LocalEndpoint | undefined): LocalEndpoint | undefined => {
    if (wanted !== undefined && wanted.transport === transport) {
      const mine = eps.find((e) => e.transport === transport && e.address === wanted.address && e.port === wanted.port);
      if (mine !== undefined && (ipFamily(mine.address) === family || mine.address === '::')) return mine;
    }
    return endpointFor(transport, family) ?? (family === 4 ? eps.find((e) => e.transport === transport && e.address === '::') : undefined);
  };

  const sendNow = async (data: Buffer, target: Target): Promise<void> => {
    // one async frame per send: its failures are counted and logged here (no .catch Promise per send)
    try {
      if (state !== 'running') throw new TransportError('closed', 'transport layer is not running');
      const t = transports.get(target.transport);
      if (t === undefined) throw new TransportError('no-listener', `no ${target.transport} transport: sipd does not listen on one`);
      // a response on a still-open connection needs no address at all
      if (target.connectionId !== undefined && t.info.connectionOriented && t.isOpen(target.connectionId)) {
        if (dropHook !== undefined && dropHook('out', data, { transport: target.transport, address: target.address, port: target.port })) {
          counters.drop('hook');
          return;
        }
        await t.send(data, target.address, target.port, target.connectionId, undefined);
        counters.messagesOut++;
        return;
      }
      let address = target.address;
      let family = ipFamily(address);
      // the name the target was given by (TLS: the SNI and the name its certificate must carry)
      const serverName = family === 0 ? address : undefined;
      if (family === 0) {
        const addrs = await resolver.lookupHost(address);
        const usable = addrs.find((a) => pickLocal(target.transport, a.family, target.local) !== undefined);
        if (usable === undefined) throw new TransportError('unreachable', `cannot resolve ${address}`);
        address = usable.address;
        family = usable.family;
      } else address = normaliseAddress(address);
      if (!Number.isInteger(target.port) || target.port <= 0 || target.port > 65535) throw new TransportError('unreachable', `bad port ${target.port}`);
      const local = pickLocal(target.transport, family, target.local);
      if (dropHook !== undefined && dropHook('out', data, { transport: target.transport, address, port: target.port })) {
        counters.drop('hook');
        return;
      }
      await t.send(data, address, target.port, target.connectionId, local, serverName);
      counters.messagesOut++;
    } catch (e: unknown) {
      const err = toTransportError(e, `send to ${target.transport}:${target.address}:${target.port}`);
      counters.sendErrors[err.kind]++;
      log('debug', { err: err.message, kind: err.kind }, 'send failed');
      throw err;
    }
  };

  const closeAll = (): Promise<void> => Promise.all([...transports.values()].map((t) => t.close())).then(() => undefined);

  const layer: SipTransportLayer = {
    async start(startEvents) {
      if (state !== 'new') throw new Error(`transport layer already ${state}`);
      if (startEvents !== undefined) events = startEvents;
      state = 'starting';
      // every listen entry names a transport there is, before anything binds
      for (const l of opts.listen) {
        if (factories[l.transport] === undefined) {
          state = 'closed';
          const where = `${l.transport}:${l.host.includes(':') && !l.host.startsWith('[') ? `[${l.host}]` : l.host}:${l.port}`;
          const have = Object.keys(factories).join(', ');
          throw new ListenError('ENOTRANSPORT', where, `cannot listen on ${where}: no ${l.transport} transport in this build (there are: ${have})`);
        }
      }
      const started: LocalEndpoint[] = [];
      try {
        for (const l of opts.listen) {
          let host = l.host.charCodeAt(0) === 0x5b && l.host.endsWith(']') ? l.host.slice(1, -1) : l.host;
          if (ipFamily(host) === 0) {
            const addrs = await resolver.lookupHost(host);
            if (addrs.length === 0) throw new TransportError('no-listener', `cannot listen on ${l.transport}:${l.host}:${l.port}: host name does not resolve`);
            host = addrs[0]!.address;
          }
          let t = transports.get(l.transport);
          if (t === undefined) {
            t = factories[l.transport]!(contextFor(l.transport));
            transports.set(l.transport, t);
          }
          started.push(await t.listen(host, l.port, opts.advertise));
        }
      } catch (e) {
        state = 'closed';
        await closeAll();
        throw e;
      }
      eps = started;
      state = 'running';
      log('info', { listen: eps.map((e) => `${e.transport}:${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}`) }, 'transports listening');
    },

    async close() {
      if (state === 'closed') return;
      state = 'closed';
      await closeAll();
    },

    send(data, target) {
      return sendNow(data, target);
    },

    endpoints: () => eps,
    endpointFor,

    resolve(host, port, transport, sips) {
      let now: Target[] | undefined;
      try {
        now = resolver.resolveNow(host, port, transport, sips, has);
      } catch {
        now = [];
      }
      return now !== undefined ? Promise.resolve(now) : resolver.resolve(host, port, transport, sips, has).catch(() => []);
    },

    resolveNow(host, port, transport, sips) {
      try {
        return resolver.resolveNow(host, port, transport, sips, has);
      } catch {
        return [];
      }
    },

    chooseTransport(size, target, explicitTransport = false) {
      // §18.1.1: over an unreliable transport only; TCP is the congestion-controlled one it moves to
      if (explicitTransport || isReliable(target.transport) || size <= UDP_MAX_REQUEST) return target;
      const fam = ipFamily(target.address);
      if (fam !== 0 && !has('tcp', fam)) return target;
      if (fam === 0 && !has('tcp', 4) && !has('tcp', 6)) return target;
      return { transport: 'tcp', address: target.address, port: target.port };
    },

    stats() {
      const connections = { total: 0, inbound: 0, outbound: 0 };
      const byTransport: Partial<Record<TransportName, { total: number; inbound: number; outbound: number }>> = {};
      for (const [name, t] of transports) {
        const c = t.connectionCounts();
        byTransport[name] = { total: c.total, inbound: c.inbound, outbound: c.outbound };
        connections.total += c.total;
        connections.inbound += c.inbound;
        connections.outbound += c.outbound;
      }
      return {
        connections,
        byTransport,
        connectionsOpened: counters.connectionsOpened,
        connectionsClosed: counters.connectionsClosed,
        bytesIn: counters.bytesIn,
        bytesOut: counters.bytesOut,
        messagesIn: counters.messagesIn,
        messagesOut: counters.messagesOut,
        sendErrors: { ...counters.sendErrors },
        drops: { ...counters.drops },
      };
    },

    connections: () => {
      const out: ConnectionInfo[] = [];
      for (const t of transports.values()) if (t.info.connectionOriented) out.push(...t.connections());
      return out;
    },
    isConnectionOpen: (id) => {
      for (const t of transports.values()) if (t.info.connectionOriented && t.isOpen(id)) return true;
      return false;
    },
    closeConnection: (id) => {
      for (const t of transports.values()) if (t.info.connectionOriented && t.closeConnection(id)) return true;
      return false;
    },
    transports: () => [...transports.keys()],
  };
  return layer;
}
