/**
 * TCP: listeners, inbound and outbound connections, stream framing (src/sip StreamFramer).
 *
 * - Every connection (inbound or outbound) gets an id; messages carry it so responses go back on the
 *   connection the request came in on (RFC 3261 §18.2.2). Requests to a peer reuse any open
 *   connection to that address:port (keyed map, inbound connections included); otherwise a new
 *   outbound connection is opened (connect timeout), sourced from the listener's address.
 * - Limits: inbound connections in total (`tcpMaxConnections`, across listeners) and per source IP
 *   (`tcpMaxPerIp`); excess is reset immediately (RST, so no TIME_WAIT is kept) and counted.
 *   Outbound connections have their own cap of `tcpMaxConnections`.
 * - Idle timeout (`tcpIdleTimeoutMs`, reset by traffic either way) closes a connection.
 * - Message deadline (`tcpMsgTimeoutMs`, like Kamailio's tcp_msg_read_timeout): a message must be
 *   complete within it of its first byte, and an inbound connection must deliver its first complete
 *   message within it of being accepted; else the connection is closed (counted 'tcp-msg-timeout').
 *   The idle timer alone is reset by every byte, so a sender trickling bytes (slowloris) would hold
 *   a connection slot for ever. CRLF keep-alives start no message (and do not stop the deadline).
 * - Input is bounded by the framer (`maxMessageSize`); output by `tcpMaxBuffer`: a message that would
 *   queue more than that for a slow peer is dropped and the connection closed (counted).
 * - CRLFCRLF ping → CRLF pong (RFC 5626 §3.5.1). A framing error closes the connection (counted).
 * - Admission (`handlers.admit`): asked for every accepted connection (before the limits) and every
 *   framed message and ping on any connection; a refused connection is reset, a refused
 *   message or ping is dropped and its connection closed (reason 'banned').
 * - Closed / reset connections are removed from every table and reported through `closed`.
 */
import net from 'node:net';
import { formatHost, StreamFramer, type SipParseError } from '../sip/index.js';
import { Counters, ipFamily, noLog, normaliseAddress, toTransportError, type TransportLog } from './common.js';
import { listenError } from './udp.js';
import { TRANSPORT_INFO, type ConnectionInfo, type Transport, type TransportContext, type TransportInfo } from './transport.js';
import { TransportError, type LocalEndpoint } from './types.js';

export interface TcpLimits {
  maxMessageSize: number;
  tcpMaxConnections: number;
  tcpMaxPerIp: number;
  tcpIdleTimeoutMs: number;
  /** deadline for one message (first byte to last; for an inbound connection also accept to first message), default 10000 ms. */
  tcpMsgTimeoutMs?: number;
  tcpMaxBuffer: number;
  /** outbound connect timeout, default 5000 ms. */
  tcpConnectTimeoutMs?: number;
}

export interface TcpConnectionInfo {
  readonly id: number;
  readonly direction: 'in' | 'out';
  /** normalised remote address (IPv4-mapped IPv6 reduced to IPv4, no brackets). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** the listener this connection belongs to (outbound: the endpoint we send as). */
  readonly local: LocalEndpoint;
}

export interface TcpHandlers {
  /**
   * Admission (before the connection limits, before parsing): false refuses a new connection
   * (reset), or drops a framed message / CRLFCRLF ping and closes its connection. The caller counts.
   */
  admit(address: string, port: number, local: LocalEndpoint, kind: 'connection' | 'message' | 'keepalive'): boolean;
  /** one complete framed message. */
  message(data: Buffer, conn: TcpConnectionInfo): void;
  /** the stream could not be framed (the connection is being closed). */
  framingError(err: SipParseError, conn: TcpConnectionInfo): void;
  /** a connection was removed; `reason`: 'closed' | 'reset' | 'idle' | 'msg-timeout' | 'framing' | 'output-overflow' | 'banned' | 'shutdown' | errno code. */
  closed(conn: TcpConnectionInfo, reason: string): void;
  /** (optional) the id of a new connection (the transport layer's, unique across transports); default: this transport's own sequence. */
  connectionId?(): number;
}

/**
 * (optional) How the streams of a TcpTransport are made: plain TCP by default; TLS (./tls.ts) wraps
 * the accepted socket and dials with tls.connect. Framing, limits, deadlines and connection tables
 * stay TcpTransport's, so a TLS connection is counted, limited and reused exactly like a TCP one.
 */
export interface StreamHooks {
  /** the transport name of the listeners' LocalEndpoints and of log lines ('tls'). */
  readonly name: 'tcp' | 'tls';
  /**
   * An accepted socket, after admission and the connection limits: returns the socket to read
   * and write (e.g. a server-side TLSSocket over `raw`), registered at once (its slot counts from
   * accept; its close frees it). Must not throw.
   */
  wrapInbound?(raw: net.Socket, ep: LocalEndpoint): net.Socket;
  /**
   * Open an outbound socket (instead of net.connect). `serverName`: the host name the target was
   * given by, when it was a name (TLS SNI and certificate check). The connection is registered on
   * `readyEvent` ('secureConnect': after the handshake), within the connect timeout. May throw.
   */
  connect?(opts: { host: string; port: number; localAddress: string | undefined; serverName: string | undefined }): { socket: net.Socket; readyEvent: 'connect' | 'secureConnect' };
}

const CRLF = Buffer.from('\r\n');

class Connection {
  closed = false;
  reason: string | undefined;
  framer: StreamFramer | undefined;
  /** the message deadline, while one runs. */
  msgTimer: NodeJS.Timeout | undefined;
  constructor(
    readonly info: TcpConnectionInfo,
    readonly socket: net.Socket,
    readonly key: string,
  ) {}
  destroy(reason: string): void {
    this.reason ??= reason;
    this.socket.destroy();
  }
}

function peerKey(address: string, port: number): string {
  return `${normaliseAddress(address)}|${port}`;
}

/** Drop a connection over a limit with a RST: no FIN handshake and no TIME_WAIT state kept on our side. */
function refuse(sock: net.Socket): void {
  sock.on('error', () => undefined);
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
}

function isAnyAddress(a: string): boolean {
  return a === '0.0.0.0' || a === '::' || a === '';
}

export class TcpTransport {
  private readonly servers: Array<{ server: net.Server; ep: LocalEndpoint }> = [];
  private readonly conns = new Map<number, Connection>();
  private readonly byPeer = new Map<string, Set<Connection>>();
  private readonly pending = new Map<string, Promise<Connection>>();
  private readonly connecting = new Set<net.Socket>();
  private readonly perIp = new Map<string, number>();
  private inbound = 0;
  private outbound = 0;
  private nextId = 1;
  private closing = false;

  constructor(
    private readonly limits: TcpLimits,
    private readonly handlers: TcpHandlers,
    private readonly counters: Counters,
    private readonly log: TransportLog = noLog,
    private readonly hooks: StreamHooks = { name: 'tcp' },
  ) {}

  get connectionCounts(): { total: number; inbound: number; outbound: number } {
    return { total: this.inbound + this.outbound, inbound: this.inbound, outbound: this.outbound };
  }

  /** open connections (for tests and diagnostics). */
  connections(): TcpConnectionInfo[] {
    return [...this.conns.values()].map((c) => c.info);
  }

  isOpen(id: number): boolean {
    const c = this.conns.get(id);
    return c !== undefined && !c.closed;
  }

  /** Close a connection on purpose (e.g. by the core). Returns false when it is not open. */
  closeConnection(id: number, reason = 'closed'): boolean {
    const c = this.conns.get(id);
    if (c === undefined || c.closed) return false;
    c.destroy(reason);
    return true;
  }

  listen(host: string, port: number, advertise: string | undefined): Promise<LocalEndpoint> {
    return new Promise((resolve, reject) => {
      const name = this.hooks.name;
      const server = net.createServer({ noDelay: true });
      const onError = (err: Error): void => {
        server.removeListener('listening', onListening);
        server.close();
        reject(listenError(err, name, host, port));
      };
      const onListening = (): void => {
        server.removeListener('error', onError);
        const a = server.address();
        if (a === null || typeof a === 'string') {
          server.close();
          reject(listenError(new Error('no address'), name, host, port));
          return;
        }
        const ep: LocalEndpoint = { transport: name, address: a.address, port: a.port, advertise: advertise ?? formatHost(a.address) };
        server.on('connection', (sock) => this.accept(sock, ep));
        server.on('error', (e) => this.log('warn', { err: e.message, local: `${name}:${formatHost(ep.address)}:${ep.port}` }, `${name} server error`));
        this.servers.push({ server, ep });
        resolve(ep);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ host, port, backlog: 1024, exclusive: true });
    });
  }

  private accept(sock: net.Socket, ep: LocalEndpoint): void {
    const ra = sock.remoteAddress;
    const rp = sock.remotePort;
    if (this.closing || ra === undefined || rp === undefined) {
      sock.destroy();
      return;
    }
    const ip = normaliseAddress(ra);
    if (!this.handlers.admit(ip, rp, ep, 'connection')) {
      refuse(sock);
      return;
    }
    if (this.inbound >= this.limits.tcpMaxConnections) {
      this.counters.drop('tcp-limit');
      refuse(sock);
      return;
    }
    const n = this.perIp.get(ip) ?? 0;
    if (n >= this.limits.tcpMaxPerIp) {
      this.counters.drop('tcp-per-ip-limit');
      refuse(sock);
      return;
    }
    this.perIp.set(ip, n + 1);
    this.inbound++;
    this.register(this.hooks.wrapInbound === undefined ? sock : this.hooks.wrapInbound(sock, ep), 'in', ip, rp, ep);
  }

  private register(sock: net.Socket, direction: 'in' | 'out', address: string, port: number, local: LocalEndpoint): Connection {
    const info: TcpConnectionInfo = { id: this.handlers.connectionId?.() ?? this.nextId++, direction, remoteAddress: address, remotePort: port, local };
    const key = peerKey(address, port);
    const conn = new Connection(info, sock, key);
    this.conns.set(info.id, conn);
    let set = this.byPeer.get(key);
    if (set === undefined) this.byPeer.set(key, (set = new Set()));
    set.add(conn);
    this.counters.connectionsOpened++;
    sock.setNoDelay(true);
    sock.setTimeout(this.limits.tcpIdleTimeoutMs);
    sock.on('timeout', () => conn.destroy('idle'));
    sock.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    sock.on('end', () => {
      conn.reason ??= 'closed';
      sock.destroy();
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      conn.reason ??= e.code === 'ECONNRESET' ? 'reset' : (e.code ?? 'error');
    });
    sock.on('close', () => this.remove(conn));
    // a fresh inbound connection must bring its first message in time (outbound: we asked for it)
    if (direction === 'in') this.armMsgTimer(conn);
    this.log('debug', { conn: info.id, dir: direction, peer: `${formatHost(address)}:${port}` }, 'tcp connection open');
    return conn;
  }

  /** (Re)start the message deadline of a connection. */
  private armMsgTimer(conn: Connection): void {
    if (conn.msgTimer !== undefined) clearTimeout(conn.msgTimer);
    conn.msgTimer = setTimeout(() => {
      conn.msgTimer = undefined;
      if (conn.closed || conn.socket.destroyed) return;
      this.counters.drop('tcp-msg-timeout');
      this.log('debug', { conn: conn.info.id, buffered: conn.framer?.buffered ?? 0 }, 'tcp message deadline passed: closing');
      conn.destroy('msg-timeout');
    }, this.limits.tcpMsgTimeoutMs ?? 10_000);
    conn.msgTimer.unref();
  }

  private clearMsgTimer(conn: Connection): void {
    if (conn.msgTimer === undefined) return;
    clearTimeout(conn.msgTimer);
    conn.msgTimer = undefined;
  }

  private remove(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.clearMsgTimer(conn);
    this.conns.delete(conn.info.id);
    const set = this.byPeer.get(conn.key);
    if (set !== undefined) {
      set.delete(conn);
      if (set.size === 0) this.byPeer.delete(conn.key);
    }
    if (conn.info.direction === 'in') {
      this.inbound--;
      const ip = conn.info.remoteAddress;
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
    } else this.outbound--;
    this.counters.connectionsClosed++;
    const reason = conn.reason ?? 'closed';
    this.log('debug', { conn: conn.info.id, reason }, 'tcp connection closed');
    try {
      this.handlers.closed(conn.info, reason);
    } catch (e) {
      this.log('error', { err: String(e) }, 'connectionClosed handler threw');
    }
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed || conn.socket.destroyed) return;
    this.counters.bytesIn += chunk.length;
    const framer = (conn.framer ??= new StreamFramer({ maxMessageSize: this.limits.maxMessageSize }));
    let completed = false;
    for (const ev of framer.push(chunk)) {
      if (conn.socket.destroyed) return;
      if ((ev.type === 'message' || ev.type === 'ping') && !this.admitted(conn, ev.type === 'ping' ? 'keepalive' : 'message')) return;
      switch (ev.type) {
        case 'message':
          completed = true;
          this.handlers.message(ev.data, conn.info);
          break;
        case 'ping':
          this.counters.bytesOut += 2;
          conn.socket.write(CRLF);
          break;
        case 'pong':
          break;
        case 'error': {
          const tooLarge = ev.error.code === 'TOO_LARGE';
          this.counters.drop(tooLarge ? 'tcp-too-large' : 'tcp-framing');
          this.log('debug', { conn: conn.info.id, code: ev.error.code, reason: ev.error.reason }, 'tcp framing error');
          conn.destroy(tooLarge ? 'too-large' : 'framing');
          this.handlers.framingError(ev.error, conn.info);
          return;
        }
      }
    }
    if (conn.closed || conn.socket.destroyed) return;
    // message deadline: a message started in this chunk (after one completed, or the first bytes
    // of one) starts it; a completed message with nothing after it stops it; keep-alives change nothing
    if (framer.messagePending) {
      if (completed || conn.msgTimer === undefined) this.armMsgTimer(conn);
    } else if (completed) this.clearMsgTimer(conn);
  }

  /** Ask the admission hook about a received item; a refused one closes the connection. */
  private admitted(conn: Connection, kind: 'message' | 'keepalive'): boolean {
    const i = conn.info;
    if (!this.handlers.admit(i.remoteAddress, i.remotePort, i.local, kind)) {
      conn.destroy('banned');
      return false;
    }
    return true;
  }

  /** Write on a connection, bounded by tcpMaxBuffer. */
  private write(conn: Connection, data: Buffer): Promise<void> {
    const s = conn.socket;
    if (conn.closed || s.destroyed || !s.writable) return Promise.reject(new TransportError('closed', `tcp connection ${conn.info.id} is closed`));
    if (s.writableLength > 0 && s.writableLength + data.length > this.limits.tcpMaxBuffer) {
      this.counters.drop('tcp-output-overflow');
      this.log('warn', { conn: conn.info.id, queued: s.writableLength }, 'tcp output buffer full: closing');
      conn.destroy('output-overflow');
      return Promise.reject(new TransportError('closed', `tcp connection ${conn.info.id}: output buffer full`));
    }
    return new Promise((resolve, reject) => {
      try {
        s.write(data, (err) => {
          if (err) reject(toTransportError(err, `tcp write on connection ${conn.info.id}`));
          else {
            this.counters.bytesOut += data.length;
            resolve();
          }
        });
      } catch (err) {
        reject(toTransportError(err, `tcp write on connection ${conn.info.id}`));
      }
    });
  }

  /** An open connection to address:port, if any. */
  findByPeer(address: string, port: number): number | undefined {
    const set = this.byPeer.get(peerKey(address, port));
    if (set === undefined) return undefined;
    for (const c of set) if (!c.closed && !c.socket.destroyed) return c.info.id;
    return undefined;
  }

  /**
   * Send a framed message: on `connectionId` when still open, else on an open connection to
   * address:port, else on a new outbound connection from `local`. Rejects with TransportError.
   */
  async send(data: Buffer, address: string, port: number, connectionId: number | undefined, local: LocalEndpoint | undefined, serverName?: string): Promise<void> {
    if (this.closing) throw new TransportError('closed', 'transport is closed');
    if (connectionId !== undefined) {
      const c = this.conns.get(connectionId);
      if (c !== undefined && !c.closed && !c.socket.destroyed) return this.write(c, data);
    }
    const existing = this.findByPeer(address, port);
    if (existing !== undefined) return this.write(this.conns.get(existing)!, data);
    const conn = await this.connect(address, port, local, serverName);
    return this.write(conn, data);
  }

  private connect(address: string, port: number, local: LocalEndpoint | undefined, serverName: string | undefined): Promise<Connection> {
    const key = peerKey(address, port);
    const p = this.pending.get(key);
    if (p !== undefined) return p;
    const name = this.hooks.name;
    const where = `${name} connect to ${formatHost(address)}:${port}`;
    if (local === undefined) return Promise.reject(new TransportError('no-listener', `${where}: no ${name.toUpperCase()} listener to send from`));
    if (this.outbound >= this.limits.tcpMaxConnections) return Promise.reject(new TransportError('unreachable', `${where}: outbound connection limit reached`));
    const promise = new Promise<Connection>((resolve, reject) => {
      const fam = ipFamily(address);
      const localAddress = !isAnyAddress(local.address) && ipFamily(local.address) === fam ? local.address : undefined;
      let sock: net.Socket;
      let readyEvent: 'connect' | 'secureConnect' = 'connect';
      try {
        if (this.hooks.connect === undefined) sock = net.connect({ host: address, port, localAddress, noDelay: true });
        else ({ socket: sock, readyEvent } = this.hooks.connect({ host: address, port, localAddress, serverName }));
      } catch (err) {
        reject(toTransportError(err, where));
        return;
      }
      this.connecting.add(sock);
      const timer = setTimeout(() => {
        fail(new TransportError('timeout', `${where}: timed out`));
      }, this.limits.tcpConnectTimeoutMs ?? 5000);
      const done = (): void => {
        clearTimeout(timer);
        this.connecting.delete(sock);
        sock.removeListener('error', onError);
        sock.removeListener('close', onClose);
        sock.removeListener(readyEvent, onConnect);
      };
      const fail = (err: TransportError): void => {
        done();
        sock.on('error', () => undefined);
        sock.destroy();
        reject(err);
      };
      const onError = (err: Error): void => fail(toTransportError(err, where));
      const onClose = (): void => fail(new TransportError('closed', `${where}: closed while connecting`));
      const onConnect = (): void => {
        done();
        if (this.closing) {
          sock.destroy();
          reject(new TransportError('closed', 'transport is closed'));
          return;
        }
        this.outbound++;
        resolve(this.register(sock, 'out', normaliseAddress(sock.remoteAddress ?? address), sock.remotePort ?? port, local));
      };
      sock.once('error', onError);
      sock.once('close', onClose);
      sock.once(readyEvent, onConnect);
    });
    this.pending.set(key, promise);
    const clear = (): void => {
      this.pending.delete(key);
    };
    promise.then(clear, clear);
    return promise;
  }

  async close(): Promise<void> {
    this.closing = true;
    const closed = this.servers.map(
      ({ server }) =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
        }),
    );
    this.servers.length = 0;
    for (const s of this.connecting) s.destroy();
    this.connecting.clear();
    for (const c of [...this.conns.values()]) {
      if (c.closed) continue;
      closed.push(new Promise<void>((resolve) => c.socket.once('close', () => resolve())));
      c.destroy('shutdown');
    }
    // pending connects settle (rejected) on their own 'close'
    await Promise.all([...closed, ...[...this.pending.values()].map((p) => p.then(() => undefined, () => undefined))]);
  }
}

/**
 * The handlers a `TcpTransport` of transport `name` reports to the transport layer's context: the
 * stream transports (TCP, TLS) differ only in their name and stream hooks.
 */
export function streamHandlers(ctx: TransportContext, name: 'tcp' | 'tls'): TcpHandlers {
  return {
    admit: (address, port, _local, kind) => ctx.admit(name, address, port, kind),
    message: (data, c) => ctx.message(data, name, c.remoteAddress, c.remotePort, c.local, c.id),
    framingError: (err, c) => ctx.framingError(err, { ...c, transport: name }),
    closed: (c, reason) => ctx.closed({ ...c, transport: name }, reason),
    connectionId: () => ctx.nextConnectionId(),
  };
}

/**
 * A `Transport` (./transport.ts) over a `TcpTransport`, which keeps its internals (framing, limits,
 * deadlines): everything but the name is delegated; TLS refines listen and send.
 */
export abstract class StreamTransportAdapter implements Transport {
  abstract readonly name: 'tcp' | 'tls';
  abstract readonly info: TransportInfo;
  abstract readonly tcp: TcpTransport;

  listen(host: string, port: number, advertise: string | undefined): Promise<LocalEndpoint> {
    return this.tcp.listen(host, port, advertise);
  }

  send(data: Buffer, address: string, port: number, connectionId: number | undefined, local: LocalEndpoint | undefined, serverName?: string): Promise<void> {
    return this.tcp.send(data, address, port, connectionId, local, serverName);
  }

  connections(): ConnectionInfo[] {
    return this.tcp.connections().map((c) => ({ ...c, transport: this.name }));
  }

  connectionCounts(): { total: number; inbound: number; outbound: number } {
    return this.tcp.connectionCounts;
  }

  isOpen(connectionId: number): boolean {
    return this.tcp.isOpen(connectionId);
  }

  closeConnection(connectionId: number, reason?: string): boolean {
    return this.tcp.closeConnection(connectionId, reason);
  }

  close(): Promise<void> {
    return this.tcp.close();
  }
}

/**
 * The TCP `Transport`: a `StreamTransportAdapter` with plain sockets; connection ids come from the
 * transport layer (`ctx.nextConnectionId`).
 */
export class TcpStreamTransport extends StreamTransportAdapter {
  readonly name = 'tcp' as const;
  readonly info: TransportInfo = TRANSPORT_INFO.tcp;
  readonly tcp: TcpTransport;

  constructor(ctx: TransportContext) {
    super();
    this.tcp = new TcpTransport(ctx.limits, streamHandlers(ctx, 'tcp'), ctx.counters, ctx.log);
  }
}

export const createTcpTransport = (ctx: TransportContext): Transport => new TcpStreamTransport(ctx);
