/**
 * UDP: `UdpTransport` (the `Transport` of ./transport.ts, registered in ./registry.ts) over one
 * `UdpListener` per configured address (udp4 or udp6 by the address family). Requests we forward
 * and responses we send leave from the listener's socket, so the advertised port is the source
 * port. Socket errors after bind are logged, never thrown. Every datagram is counted (bytes in) and
 * put to the admission hook (a CRLF/NUL-only one as a 'keepalive', then dropped and counted).
 */
import dgram from 'node:dgram';
import { formatHost } from '../sip/index.js';
import { ipFamily, noLog, normaliseAddress, toTransportError, type TransportLog } from './common.js';
import { TRANSPORT_INFO, type ConnectionInfo, type Transport, type TransportContext, type TransportInfo } from './transport.js';
import { TransportError, type LocalEndpoint } from './types.js';

export class ListenError extends Error {
  override readonly name = 'ListenError';
  constructor(
    readonly code: string,
    /** e.g. "udp:127.0.0.1:5060" */
    readonly address: string,
    message: string,
  ) {
    super(message);
  }
}

export function listenError(err: unknown, transport: string, host: string, port: number): ListenError {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : 'ELISTEN';
  const where = `${transport}:${formatHost(host)}:${port}`;
  const why =
    code === 'EADDRINUSE'
      ? 'address already in use'
      : code === 'EADDRNOTAVAIL'
        ? 'address not available on this host'
        : code === 'EACCES'
          ? 'permission denied'
          : err instanceof Error
            ? err.message
            : String(err);
  return new ListenError(code, where, `cannot listen on ${where}: ${why} (${code})`);
}

export type UdpReceive = (data: Buffer, address: string, port: number, ep: LocalEndpoint) => void;

/** SO_RCVBUF / SO_SNDBUF to request after bind (bytes); 0 keeps the OS default. */
export interface UdpBufferSizes {
  readonly recvBytes: number;
  readonly sendBytes: number;
}

/**
 * Linux doubles the requested size to allow for bookkeeping (socket(7)): SO_RCVBUF reads back
 * 2 × min(requested, net.core.rmem_max). Elsewhere it reads back what was granted.
 */
const KERNEL_DOUBLES = process.platform === 'linux';

const SYSCTL = { recv: 'net.core.rmem_max', send: 'net.core.wmem_max' } as const;

interface BufferResult {
  requested: number;
  effective: number;
  capped: boolean;
  error?: string;
}

/** Request one buffer size and read back what the kernel gave; never throws. */
function applyBuffer(s: dgram.Socket, dir: 'recv' | 'send', requested: number): BufferResult | undefined {
  if (requested <= 0) return undefined;
  const get = (): number => (dir === 'recv' ? s.getRecvBufferSize() : s.getSendBufferSize());
  let error: string | undefined;
  try {
    if (dir === 'recv') s.setRecvBufferSize(requested);
    else s.setSendBufferSize(requested);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  let effective: number;
  try {
    effective = get();
  } catch {
    effective = 0;
  }
  const granted = KERNEL_DOUBLES ? Math.floor(effective / 2) : effective;
  return { requested, effective, capped: error === undefined && granted < requested, error };
}

export class UdpListener {
  private socket: dgram.Socket | undefined;
  private ep: LocalEndpoint | undefined;
  readonly family: 4 | 6;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly advertise: string | undefined,
    private readonly onMessage: UdpReceive,
    private readonly log: TransportLog = noLog,
    private readonly buffers?: UdpBufferSizes,
  ) {
    this.family = ipFamily(host) === 6 ? 6 : 4;
  }

  get endpoint(): LocalEndpoint | undefined {
    return this.ep;
  }

  start(): Promise<LocalEndpoint> {
    return new Promise((resolve, reject) => {
      const s = dgram.createSocket({ type: this.family === 6 ? 'udp6' : 'udp4' });
      const onError = (err: Error): void => {
        s.removeListener('listening', onListening);
        try {
          s.close();
        } catch {
          /* never bound */
        }
        reject(listenError(err, 'udp', this.host, this.port));
      };
      const onListening = (): void => {
        s.removeListener('error', onError);
        const a = s.address();
        const ep: LocalEndpoint = { transport: 'udp', address: a.address, port: a.port, advertise: this.advertise ?? formatHost(a.address) };
        this.ep = ep;
        this.socket = s;
        this.applyBuffers(s, `udp:${formatHost(ep.address)}:${ep.port}`);
        s.on('error', (e) => this.log('warn', { err: e.message, local: `udp:${formatHost(ep.address)}:${ep.port}` }, 'udp socket error'));
        s.on('message', (data, rinfo) => this.onMessage(data, rinfo.address, rinfo.port, ep));
        resolve(ep);
      };
      s.once('error', onError);
      s.once('listening', onListening);
      s.bind({ address: this.host, port: this.port, exclusive: true });
    });
  }

  /** The socket's buffer sizes as the kernel reports them now (Linux: twice the granted size); undefined when not bound. */
  bufferSizes(): { recv: number; send: number } | undefined {
    const s = this.socket;
    if (s === undefined) return undefined;
    try {
      return { recv: s.getRecvBufferSize(), send: s.getSendBufferSize() };
    } catch {
      return undefined;
    }
  }

  /**
   * Set SO_RCVBUF / SO_SNDBUF after bind: one info line with the requested and effective sizes, a
   * warn line naming the sysctl when the kernel capped a size (or refused it).
   */
  private applyBuffers(s: dgram.Socket, local: string): void {
    const b = this.buffers;
    if (b === undefined) return;
    const recv = applyBuffer(s, 'recv', b.recvBytes);
    const send = applyBuffer(s, 'send', b.sendBytes);
    if (recv === undefined && send === undefined) return;
    this.log(
      'info',
      {
        local,
        recvRequested: recv?.requested,
        recvEffective: recv?.effective,
        sendRequested: send?.requested,
        sendEffective: send?.effective,
        ...(KERNEL_DOUBLES ? { note: 'the kernel reports twice the granted size' } : {}),
      },
      'udp socket buffers',
    );
    for (const [dir, r] of [
      ['recv', recv],
      ['send', send],
    ] as const) {
      if (r === undefined) continue;
      if (r.error !== undefined) {
        this.log('warn', { local, dir, requested: r.requested, effective: r.effective, err: r.error }, `udp ${dir} buffer size refused`);
      } else if (r.capped) {
        this.log(
          'warn',
          { local, dir, requested: r.requested, effective: r.effective, sysctl: SYSCTL[dir] },
          `udp ${dir} buffer capped by the kernel: raise ${SYSCTL[dir]} to at least ${r.requested} (sysctl -w ${SYSCTL[dir]}=${r.requested})`,
        );
      }
    }
  }

  /** Send one datagram. Resolves when handed to the OS; rejects with TransportError. */
  send(data: Buffer, address: string, port: number): Promise<void> {
    const s = this.socket;
    if (s === undefined) return Promise.reject(new TransportError('closed', 'udp listener is not running'));
    let to = address;
    const fam = ipFamily(address);
    if (fam === 6 && this.family === 4) return Promise.reject(new TransportError('no-listener', `no IPv6 UDP socket to reach ${address}`));
    if (fam === 4 && this.family === 6) to = `::ffff:${address}`;
    return new Promise((resolve, reject) => {
      try {
        s.send(data, port, to, (err) => {
          if (err) reject(toTransportError(err, `udp send to ${formatHost(address)}:${port}`));
          else resolve();
        });
      } catch (err) {
        reject(toTransportError(err, `udp send to ${formatHost(address)}:${port}`));
      }
    });
  }

  close(): Promise<void> {
    const s = this.socket;
    this.socket = undefined;
    if (s === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      try {
        s.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

/** A CRLF / NUL / space-only datagram of at most 64 bytes: a keep-alive, not a message. */
export function isKeepAlive(d: Buffer): boolean {
  if (d.length > 64) return false;
  for (let i = 0; i < d.length; i++) {
    const c = d[i];
    if (c !== 0x0d && c !== 0x0a && c !== 0x00 && c !== 0x20) return false;
  }
  return true;
}

/**
 * What the UDP transport does with each datagram: counted, admitted (the flood guard), a keep-alive
 * dropped, a message handed to the layer. A function of its own so that the start-up warm-up
 * (src/warmup.ts) runs this very code for its synthetic datagrams.
 */
export function receiveDatagram(ctx: TransportContext, data: Buffer, address: string, port: number, local: LocalEndpoint): void {
  ctx.counters.bytesIn += data.length;
  const ip = normaliseAddress(address);
  const keepAlive = isKeepAlive(data);
  if (!ctx.admit('udp', ip, port, keepAlive ? 'keepalive' : 'datagram')) return;
  if (keepAlive) {
    ctx.counters.drop('keepalive');
    return;
  }
  ctx.message(data, 'udp', ip, port, local, undefined);
}

/** The UDP `Transport`: its listeners; connectionless (no connections, `connectionId` ignored). */
export class UdpTransport implements Transport {
  readonly name = 'udp' as const;
  readonly info: TransportInfo = TRANSPORT_INFO.udp;
  private readonly listeners: UdpListener[] = [];

  constructor(private readonly ctx: TransportContext) {}

  private readonly onDatagram = (data: Buffer, address: string, port: number, local: LocalEndpoint): void => receiveDatagram(this.ctx, data, address, port, local);

  async listen(host: string, port: number, advertise: string | undefined): Promise<LocalEndpoint> {
    const u = new UdpListener(host, port, advertise, this.onDatagram, this.ctx.log, this.ctx.options.udp?.buffers);
    const ep = await u.start();
    this.listeners.push(u);
    return ep;
  }

  /** Send from the listener of `local` (the layer picks it: address family, the socket a request came in on). */
  async send(data: Buffer, address: string, port: number, _connectionId: number | undefined, local: LocalEndpoint | undefined): Promise<void> {
    const l = local === undefined ? undefined : this.listeners.find((u) => u.endpoint === local);
    if (l === undefined) throw new TransportError('no-listener', `no UDP listener for IPv${ipFamily(address) === 6 ? 6 : 4}`);
    await l.send(data, address, port);
    this.ctx.counters.bytesOut += data.length;
  }

  connections(): ConnectionInfo[] {
    return [];
  }

  connectionCounts(): { total: number; inbound: number; outbound: number } {
    return { total: 0, inbound: 0, outbound: 0 };
  }

  isOpen(_connectionId: number): boolean {
    return false;
  }

  closeConnection(_connectionId: number): boolean {
    return false;
  }

  async close(): Promise<void> {
    const ls = this.listeners.splice(0, this.listeners.length);
    await Promise.all(ls.map((u) => u.close()));
  }
}

export const createUdpTransport = (ctx: TransportContext): Transport => new UdpTransport(ctx);
