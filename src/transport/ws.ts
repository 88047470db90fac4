/**
 * WebSocket transports (RFC 7118): 'ws' over an HTTP server, 'wss' over an HTTPS server given TLS
 * material from outside (a `tls.SecureContext` or secure-context options). Built on the `ws` package.
 *
 * - Handshake: the `sip` sub-protocol is required (a handshake without it gets 400 and no upgrade);
 *   any request path is accepted unless `path` is set (then any other path gets 404); an Origin
 *   allow-list (`origins`, empty = any Origin; when set, a missing or unlisted Origin gets 403 before
 *   the upgrade). A request that is not an upgrade gets 426. Per-message deflate is off.
 * - One SIP message per frame (RFC 7118 §5.1), text or binary, delivered to `ctx.message` with the
 *   connection id. A frame larger than `maxMessageSize` closes the connection (ws `maxPayload`,
 *   close code 1009). A frame of only CR/LF (SIP.js and others send "\r\n\r\n") is a keep-alive:
 *   answered with "\r\n" (RFC 5626 §3.5.1 style), never parsed.
 * - Outgoing messages are text frames when they are valid UTF-8, else binary frames.
 * - Limits like TCP's: TCP connections accepted (handshake phase included) in total (`maxConnections`)
 *   and per source IP (`maxPerIp`), the excess reset at once; the handshake must complete within
 *   `handshakeTimeoutMs` of the accept; at most `maxBuffer` bytes queued for a slow peer (the
 *   connection is closed beyond it).
 * - Keep-alive: every `pingIntervalMs` each connection is pinged; one that has neither answered the
 *   previous ping nor sent anything since is closed ('ping-timeout'). 0 turns pings off.
 * - Admission through `ctx.admit`: every accepted TCP connection (before the limits) and every
 *   message and keep-alive; a refused connection is reset, a refused message closes its connection.
 * - WebSocket peers cannot be dialled (a browser has no listening socket): `send` without an open
 *   connection to the peer rejects TransportError('unreachable').
 * - Connection ids come from `ctx.nextConnectionId()`; every removed connection is reported through
 *   `ctx.closed` (flows depend on it).
 *
 * Registry (./registry.ts): `createWsTransport` and `createWssTransport` build the transport from
 * the layer's context: the WebSocket settings are `ctx.options.ws` (both ws and wss listeners),
 * the message size from `ctx.limits.maxMessageSize`, connection limits and the output bound default
 * to the TCP ones; wss takes its TLS material from `ctx.options.wss.secureContext` (a wss: listener
 * without it fails to start with a ListenError).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { isUtf8 } from 'node:buffer';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { formatHost } from '../sip/index.js';
import { normaliseAddress } from './common.js';
import { listenError, ListenError } from './udp.js';
import { TRANSPORT_INFO, type ConnectionInfo, type Transport, type TransportContext, type TransportFactory } from './transport.js';
import { TransportError, type LocalEndpoint } from './types.js';

export interface WsOptions {
  /** largest frame (= largest SIP message) accepted; a larger one closes the connection. */
  readonly maxMessageSize: number;
  /** accepted TCP connections in total (handshake phase included); excess reset. */
  readonly maxConnections: number;
  /** accepted TCP connections per source IP. */
  readonly maxPerIp: number;
  /** accept → completed WebSocket handshake deadline. Default 10000 ms. */
  readonly handshakeTimeoutMs?: number;
  /** ping interval; a connection silent for a whole interval after a ping is closed. 0 = off. Default 30000. */
  readonly pingIntervalMs?: number;
  /** allowed Origin values (scheme://host[:port], compared case-insensitively); empty = any. */
  readonly origins?: readonly string[];
  /** the only request path accepted (e.g. '/ws'); undefined = any path. */
  readonly path?: string;
  /** bytes queued on one connection before it is considered stuck and closed. Default 1 MiB. */
  readonly maxBuffer?: number;
}

export interface WssOptions extends WsOptions {
  /**
   * TLS material: a SecureContext getter (reloadable from outside: asked for every accepted
   * connection, TLS is put on the socket before the HTTP server sees it) or secure-context options
   * (cert, key, ...: an HTTPS server with fixed material).
   * Undefined: `listen` rejects (no certificate configured).
   */
  readonly tls: { readonly secureContext: () => tls.SecureContext } | { readonly options: tls.SecureContextOptions } | undefined;
}

/**
 * `TransportOptions.ws`: WebSocket settings of every ws: and wss: listener. `maxMessageSize` is
 * the layer's `limits.maxMessageSize`; maxConnections / maxPerIp / maxBuffer default to the
 * layer's tcpMaxConnections / tcpMaxPerIp / tcpMaxBuffer.
 */
export type WsSettings = Partial<Omit<WsOptions, 'maxMessageSize'>>;

/**
 * `TransportOptions.wss`: TLS material of wss: listeners (e.g. `() => tlsContexts.server()`).
 * `secureContext` is asked for every accepted connection (a reload reaches every new handshake,
 * with SNI or without); without it a wss: listener fails at start ("cannot listen on
 * wss:HOST:PORT: no TLS certificate configured ...").
 */
export interface WssTls {
  readonly secureContext?: () => tls.SecureContext;
}

/** Why a WebSocket connection was closed (the `reason` of `ctx.closed`). */
export type WsCloseReason = 'closed' | 'reset' | 'ping-timeout' | 'too-large' | 'output-overflow' | 'banned' | 'shutdown' | 'error';

interface Conn {
  readonly info: ConnectionInfo;
  readonly ws: WebSocket;
  readonly key: string;
  alive: boolean;
  closed: boolean;
  reason: string | undefined;
}

/** An accepted TCP connection until it closes: its handshake deadline, and whether it was upgraded. */
interface Accepted {
  readonly sock: net.Socket;
  readonly timer: NodeJS.Timeout;
  upgraded: boolean;
}

/**
 * The key of a TCP connection, the same for the accepted socket and for the TLS socket an HTTPS
 * server wraps it in (the upgrade arrives on the latter): local port and remote address and port.
 */
function socketKey(sock: net.Socket): string {
  return `${sock.localPort ?? 0}|${normaliseAddress(sock.remoteAddress ?? '')}|${sock.remotePort ?? 0}`;
}

interface Server {
  readonly server: http.Server | https.Server;
  /** wss with a SecureContext getter: the socket that listens (TLS is put on each accepted socket). */
  readonly front?: net.Server;
  readonly ep: LocalEndpoint;
}

const CRLF = Buffer.from('\r\n');
const STATUS: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 426: 'Upgrade Required' };

function peerKey(address: string, port: number): string {
  return `${normaliseAddress(address)}|${port}`;
}

function isKeepAlive(d: Buffer): boolean {
  if (d.length === 0 || d.length > 64) return false;
  for (let i = 0; i < d.length; i++) if (d[i] !== 0x0d && d[i] !== 0x0a) return false;
  return true;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Answer a refused handshake on the raw socket and close it. */
function refuseHandshake(sock: net.Socket, status: number, extra = ''): void {
  if (sock.writable) {
    sock.end(`HTTP/1.1 ${status} ${STATUS[status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: 0\r\n${extra}\r\n`);
    sock.destroySoon();
  } else sock.destroy();
}

/** The sub-protocols a handshake asks for (Sec-WebSocket-Protocol, comma-separated, case-sensitive tokens). */
function requestedProtocols(req: http.IncomingMessage): string[] {
  const h = req.headers['sec-websocket-protocol'];
  if (h === undefined) return [];
  return (Array.isArray(h) ? h.join(',') : h).split(',').map((s) => s.trim()).filter((s) => s !== '');
}

class WsTransport implements Transport {
  readonly info;
  private readonly servers: Server[] = [];
  private readonly conns = new Map<number, Conn>();
  private readonly byPeer = new Map<string, Set<Conn>>();
  /** accepted TCP sockets (handshake phase and upgraded), per source IP. */
  private readonly perIp = new Map<string, number>();
  private readonly sockets = new Map<string, Accepted>();
  private readonly wss: WebSocketServer;
  private readonly origins: ReadonlySet<string> | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(
    readonly name: 'ws' | 'wss',
    private readonly opts: WsOptions | WssOptions,
    private readonly ctx: TransportContext,
  ) {
    this.info = TRANSPORT_INFO[name];
    this.origins = opts.origins !== undefined && opts.origins.length > 0 ? new Set(opts.origins.map((o) => o.toLowerCase().replace(/\/+$/, ''))) : undefined;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.maxMessageSize,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (protocols) => (protocols.has('sip') ? 'sip' : false),
    });
  }

  connections(): ConnectionInfo[] {
    return [...this.conns.values()].map((c) => c.info);
  }

  connectionCounts(): { total: number; inbound: number; outbound: number } {
    return { total: this.conns.size, inbound: this.conns.size, outbound: 0 };
  }

  isOpen(id: number): boolean {
    const c = this.conns.get(id);
    return c !== undefined && !c.closed;
  }

  closeConnection(id: number, reason = 'closed'): boolean {
    const c = this.conns.get(id);
    if (c === undefined || c.closed) return false;
    this.drop(c, reason, 1000);
    return true;
  }

  listen(host: string, port: number, advertise: string | undefined): Promise<LocalEndpoint> {
    const name = this.name;
    return new Promise((resolve, reject) => {
      let server: http.Server | https.Server;
      // wss with a SecureContext getter: a plain listener puts TLS on each accepted socket with the
      // context current then (a reload reaches every new handshake, SNI or not) and hands the TLS
      // socket to an HTTP server that never listens itself
      let front: net.Server | undefined;
      try {
        if (name === 'wss') {
          const t = (this.opts as WssOptions).tls;
          if (t === undefined) {
            const where = `wss:${formatHost(host)}:${port}`;
            reject(new ListenError('ENOCERT', where, `cannot listen on ${where}: no TLS certificate configured for wss (transportOptions.wss.secureContext)`));
            return;
          }
          server =
            'secureContext' in t
              ? http.createServer()
              : https.createServer({ ...t.options });
          if ('secureContext' in t) {
            const getContext = t.secureContext;
            front = net.createServer();
            const http1 = server;
            front.on('connection', (raw: net.Socket) => {
              const ep = this.servers.find((x) => x.front === front)?.ep;
              if (ep === undefined || !this.accept(raw, ep)) return;
              let s: tls.TLSSocket;
              try {
                s = new tls.TLSSocket(raw, { isServer: true, secureContext: getContext() });
              } catch {
                raw.destroy();
                return;
              }
              s.on('error', () => s.destroy());
              http1.emit('connection', s);
            });
          }
        } else server = http.createServer();
      } catch (err) {
        reject(listenError(err instanceof Error ? err : new Error(String(err)), name, host, port));
        return;
      }
      const listener: net.Server = front ?? server;
      const onError = (err: Error): void => {
        listener.removeListener('listening', onListening);
        listener.close();
        reject(listenError(err, name, host, port));
      };
      const onListening = (): void => {
        listener.removeListener('error', onError);
        const a = listener.address();
        if (a === null || typeof a === 'string') {
          listener.close();
          reject(listenError(new Error('no address'), name, host, port));
          return;
        }
        const ep: LocalEndpoint = { transport: name, address: a.address, port: a.port, advertise: advertise ?? formatHost(a.address) };
        if (front === undefined) server.on('connection', (sock: net.Socket) => void this.accept(sock, ep));
        else front.on('error', (e: Error) => this.ctx.log('warn', { err: e.message, local: `${name}:${formatHost(ep.address)}:${ep.port}` }, `${name} server error`));
        server.on('upgrade', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => this.upgrade(req, sock, head, ep));
        server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
          res.writeHead(426, { Connection: 'close', Upgrade: 'websocket', 'Content-Length': '0' });
          res.end();
        });
        server.on('tlsClientError', (_e: Error, s: net.Socket) => s.destroy());
        server.on('clientError', (_e: Error, s: net.Socket) => s.destroy());
        server.on('error', (e: Error) => this.ctx.log('warn', { err: e.message, local: `${name}:${formatHost(ep.address)}:${ep.port}` }, `${name} server error`));
        this.servers.push(front === undefined ? { server, ep } : { server, ep, front });
        this.startPings();
        resolve(ep);
      };
      listener.once('error', onError);
      listener.once('listening', onListening);
      listener.listen({ host, port, backlog: 1024, exclusive: true });
    });
  }

  /**
   * A TCP connection accepted (before any TLS or HTTP): admission, limits, handshake deadline.
   * Returns whether the socket was kept (false: destroyed or reset).
   */
  private accept(sock: net.Socket, ep: LocalEndpoint): boolean {
    sock.on('error', () => undefined);
    const ra = sock.remoteAddress;
    const rp = sock.remotePort;
    if (this.closing || ra === undefined || rp === undefined) {
      sock.destroy();
      return false;
    }
    const ip = normaliseAddress(ra);
    if (!this.ctx.admit(this.name, ip, rp, 'connection')) {
      reset(sock);
      return false;
    }
    if (this.sockets.size >= this.opts.maxConnections) {
      this.ctx.counters.drop('ws-limit');
      reset(sock);
      return false;
    }
    const n = this.perIp.get(ip) ?? 0;
    if (n >= this.opts.maxPerIp) {
      this.ctx.counters.drop('ws-per-ip-limit');
      reset(sock);
      return false;
    }
    this.perIp.set(ip, n + 1);
    const key = socketKey(sock);
    sock.setNoDelay(true);
    const timer = setTimeout(() => {
      this.ctx.counters.drop('ws-handshake-timeout');
      this.ctx.log('debug', { peer: `${formatHost(ip)}:${rp}`, local: `${ep.transport}:${ep.port}` }, 'websocket handshake not completed in time: closing');
      sock.destroy();
    }, this.opts.handshakeTimeoutMs ?? 10_000);
    timer.unref();
    this.sockets.set(key, { sock, timer, upgraded: false });
    sock.once('close', () => {
      clearTimeout(timer);
      if (this.sockets.get(key)?.sock === sock) this.sockets.delete(key);
      const m = (this.perIp.get(ip) ?? 1) - 1;
      if (m <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, m);
    });
    return true;
  }

  private upgrade(req: http.IncomingMessage, sock: net.Socket, head: Buffer, ep: LocalEndpoint): void {
    sock.on('error', () => undefined);
    if (this.closing) {
      sock.destroy();
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (this.opts.path !== undefined && path !== this.opts.path) {
      this.ctx.counters.drop('ws-handshake');
      refuseHandshake(sock, 404);
      return;
    }
    if (this.origins !== undefined) {
      const origin = req.headers.origin?.toLowerCase().replace(/\/+$/, '');
      if (origin === undefined || !this.origins.has(origin)) {
        this.ctx.counters.drop('ws-handshake');
        this.ctx.log('debug', { origin: req.headers.origin ?? null }, 'websocket handshake from an Origin not allowed: 403');
        refuseHandshake(sock, 403);
        return;
      }
    }
    if (!requestedProtocols(req).includes('sip')) {
      this.ctx.counters.drop('ws-handshake');
      refuseHandshake(sock, 400);
      return;
    }
    this.wss.handleUpgrade(req, sock, head, (ws) => {
      const a = this.sockets.get(socketKey(sock));
      if (a !== undefined) {
        clearTimeout(a.timer);
        a.upgraded = true;
      }
      this.register(ws, sock, ep);
    });
  }

  private register(ws: WebSocket, sock: net.Socket, local: LocalEndpoint): void {
    const address = normaliseAddress(sock.remoteAddress ?? '');
    const port = sock.remotePort ?? 0;
    if (this.closing) {
      ws.terminate();
      return;
    }
    const info: ConnectionInfo = { id: this.ctx.nextConnectionId(), transport: this.name, direction: 'in', remoteAddress: address, remotePort: port, local };
    const key = peerKey(address, port);
    const conn: Conn = { info, ws, key, alive: true, closed: false, reason: undefined };
    this.conns.set(info.id, conn);
    let set = this.byPeer.get(key);
    if (set === undefined) this.byPeer.set(key, (set = new Set()));
    set.add(conn);
    this.ctx.counters.connectionsOpened++;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: RawData) => this.onMessage(conn, toBuffer(data)));
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('error', (e: Error & { code?: string }) => {
      conn.reason ??= e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'too-large' : e.code === 'ECONNRESET' ? 'reset' : 'error';
      if (conn.reason === 'too-large') this.ctx.counters.drop('ws-too-large');
      this.ctx.log('debug', { conn: info.id, err: e.message }, `${this.name} connection error`);
    });
    ws.on('close', () => this.remove(conn));
    this.ctx.log('debug', { conn: info.id, peer: `${formatHost(address)}:${port}` }, `${this.name} connection open`);
  }

  private onMessage(conn: Conn, data: Buffer): void {
    if (conn.closed) return;
    conn.alive = true;
    this.ctx.counters.bytesIn += data.length;
    const i = conn.info;
    if (isKeepAlive(data)) {
      if (!this.ctx.admit(this.name, i.remoteAddress, i.remotePort, 'keepalive')) {
        this.drop(conn, 'banned', 1008);
        return;
      }
      // "\r\n\r\n" ping → "\r\n" pong; a lone CRLF (a pong) needs no answer
      if (data.length >= 4) void this.write(conn, CRLF).catch(() => undefined);
      return;
    }
    if (!this.ctx.admit(this.name, i.remoteAddress, i.remotePort, 'message')) {
      this.drop(conn, 'banned', 1008);
      return;
    }
    this.ctx.message(data, this.name, i.remoteAddress, i.remotePort, i.local, i.id);
  }

  /** Close a connection on purpose: a close frame, then the socket once it has gone out. */
  private drop(conn: Conn, reason: string, code: number): void {
    conn.reason ??= reason;
    try {
      conn.ws.close(code, reason.slice(0, 100));
    } catch {
      conn.ws.terminate();
    }
    // a peer that does not answer the close frame is not waited for
    const t = setTimeout(() => conn.ws.terminate(), 1000);
    t.unref();
  }

  private remove(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    this.conns.delete(conn.info.id);
    const set = this.byPeer.get(conn.key);
    if (set !== undefined) {
      set.delete(conn);
      if (set.size === 0) this.byPeer.delete(conn.key);
    }
    this.ctx.counters.connectionsClosed++;
    const reason = conn.reason ?? 'closed';
    this.ctx.log('debug', { conn: conn.info.id, reason }, `${this.name} connection closed`);
    this.ctx.closed(conn.info, reason);
  }

  private startPings(): void {
    const every = this.opts.pingIntervalMs ?? 30_000;
    if (every <= 0 || this.pingTimer !== undefined) return;
    this.pingTimer = setInterval(() => {
      for (const c of [...this.conns.values()]) {
        if (c.closed) continue;
        if (!c.alive) {
          c.reason ??= 'ping-timeout';
          this.ctx.log('debug', { conn: c.info.id }, `${this.name} connection did not answer a ping: closing`);
          c.ws.terminate();
          continue;
        }
        c.alive = false;
        try {
          c.ws.ping();
        } catch {
          // closing already: the 'close' event removes it
        }
      }
    }, every);
    this.pingTimer.unref();
  }

  private write(conn: Conn, data: Buffer): Promise<void> {
    const ws = conn.ws;
    if (conn.closed || ws.readyState !== ws.OPEN) return Promise.reject(new TransportError('closed', `${this.name} connection ${conn.info.id} is closed`));
    const max = this.opts.maxBuffer ?? 1024 * 1024;
    if (ws.bufferedAmount > 0 && ws.bufferedAmount + data.length > max) {
      this.ctx.counters.drop('ws-output-overflow');
      this.ctx.log('warn', { conn: conn.info.id, queued: ws.bufferedAmount }, `${this.name} output buffer full: closing`);
      conn.reason ??= 'output-overflow';
      ws.terminate();
      return Promise.reject(new TransportError('closed', `${this.name} connection ${conn.info.id}: output buffer full`));
    }
    return new Promise((resolve, reject) => {
      ws.send(data, { binary: !isUtf8(data) }, (err) => {
        if (err) reject(new TransportError('closed', `${this.name} write on connection ${conn.info.id}: ${err.message}`));
        else {
          this.ctx.counters.bytesOut += data.length;
          resolve();
        }
      });
    });
  }

  send(data: Buffer, address: string, port: number, connectionId: number | undefined, _local: LocalEndpoint | undefined): Promise<void> {
    if (this.closing) return Promise.reject(new TransportError('closed', `${this.name} transport is closed`));
    if (connectionId !== undefined) {
      const c = this.conns.get(connectionId);
      if (c !== undefined && !c.closed) return this.write(c, data);
    }
    const set = this.byPeer.get(peerKey(address, port));
    if (set !== undefined) for (const c of set) if (!c.closed) return this.write(c, data);
    return Promise.reject(
      new TransportError('unreachable', `${this.name}: no open connection to ${formatHost(address)}:${port} (a WebSocket peer cannot be connected to)`),
    );
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    const done: Array<Promise<void>> = this.servers.map(({ server, front }) => new Promise<void>((resolve) => (front ?? server).close(() => resolve())));
    this.servers.length = 0;
    for (const c of [...this.conns.values()]) {
      if (c.closed) continue;
      done.push(new Promise<void>((resolve) => c.ws.once('close', () => resolve())));
      this.drop(c, 'shutdown', 1001);
    }
    // sockets still in the handshake phase
    for (const a of this.sockets.values()) if (!a.upgraded) a.sock.destroy();
    await Promise.all(done);
    for (const a of this.sockets.values()) a.sock.destroy();
    this.wss.close();
  }
}

/** Drop a connection over a limit with a RST (no TIME_WAIT kept on our side). */
function reset(sock: net.Socket): void {
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
}

/** The layer's settings for a ws/wss transport (see the file comment). */
function settings(ctx: TransportContext): WsOptions {
  return {
    maxConnections: ctx.limits.tcpMaxConnections,
    maxPerIp: ctx.limits.tcpMaxPerIp,
    maxBuffer: ctx.limits.tcpMaxBuffer,
    ...ctx.options.ws,
    maxMessageSize: ctx.limits.maxMessageSize,
  };
}

/** Registry factory of 'ws' (./registry.ts). */
export const createWsTransport: TransportFactory = (ctx) => new WsTransport('ws', settings(ctx), ctx);

/** Registry factory of 'wss' (./registry.ts): TLS material from `ctx.options.wss`. */
export const createWssTransport: TransportFactory = (ctx) => {
  const sc = ctx.options.wss?.secureContext;
  return new WsTransport('wss', { ...settings(ctx), tls: sc === undefined ? undefined : { secureContext: sc } }, ctx);
};

/** A 'ws' transport (cleartext WebSocket). */
export function wsTransport(opts: WsOptions): TransportFactory {
  return (ctx) => new WsTransport('ws', opts, ctx);
}

/** A 'wss' transport (WebSocket over TLS, material from outside). */
export function wssTransport(opts: WssOptions): TransportFactory {
  return (ctx) => new WsTransport('wss', opts, ctx);
}
