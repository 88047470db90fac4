/**
 * Test helpers for test/integration/relay*.test.ts: a minimal stateful relay built from the real
 * transport layer (src/transport, UDP + TCP listeners on 127.0.0.1, ephemeral ports) and the real
 * transaction layer (src/transaction, real clock, short timers), plus a UAC and a UAS written with
 * plain `dgram` / `net` sockets that speak hand-written SIP.
 *
 * The relay: every request but ACK gets a server transaction and is forwarded through a client
 * transaction to one configured UAS target; provisionals (> 100) and finals go back upstream with
 * the top Via stripped. ACK (for a 2xx) and stray 2xx responses are forwarded statelessly.
 * The transport's `dropHook` records every message in and out, and drops the ones the test picks.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { buildResponse, parseMessage, SipRequest, SipResponse, StreamFramer } from '../../src/sip/index.js';
import {
  createTransactionLayer,
  realClock,
  type TimerSettings,
  type TransactionLayerImpl,
} from '../../src/transaction/index.js';
import {
  createTransportLayer,
  responseTarget,
  type HookPeer,
  type SipTransportLayer,
  type Source,
  type Target,
  type TransportLimits,
  type TransportName,
} from '../../src/transport/index.js';

export type Msg = SipRequest | SipResponse;

/** Short timers: T1 = 50 ms, so Timers B/F/H/L/M/J are 3.2 s. */
export const TIMERS: TimerSettings = { t1: 50, t2: 400, t4: 500, timerC: 20_000, trying: 50, timerD: 500 };

const HANG_GUARD = 10_000;

export const LIMITS: TransportLimits = {
  maxMessageSize: 65536,
  maxHeaders: 256,
  maxHeaderLine: 8192,
  maxVias: 70,
  tcpMaxConnections: 100,
  tcpMaxPerIp: 100,
  tcpIdleTimeoutMs: 60_000,
  tcpMaxBuffer: 131072,
};

/** Wait until `pred` holds (polled every 5 ms); rejects after a hang guard. Not a timed assertion. */
export function until(pred: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pred()) return resolve();
    const t0 = Date.now();
    const iv = setInterval(() => {
      if (pred()) {
        clearInterval(iv);
        resolve();
      } else if (Date.now() - t0 > HANG_GUARD) {
        clearInterval(iv);
        reject(new Error(`timed out waiting for ${what}`));
      }
    }, 5);
  });
}

// ------------------------------------------------------------------------------------------ peers

/** A SIP endpoint of the test (UAC or UAS): records every message it receives. */
export abstract class Peer {
  abstract readonly transport: TransportName;
  readonly inbox: Msg[] = [];
  private handlers: Array<(m: Msg) => void> = [];

  /** the port to put into Via / Contact (UDP socket port, TCP UAC's local port, TCP UAS's listening port). */
  abstract get port(): number;
  /** send to the relay (UAC side: UDP to the relay's UDP port, TCP on the UAC's connection). */
  abstract send(data: string | Buffer): void;
  /** answer a request received: where it came from (UDP) or on its connection (TCP). */
  abstract reply(to: SipRequest, data: Buffer): void;
  abstract close(): void;

  protected deliver(m: Msg): void {
    this.inbox.push(m);
    for (const h of this.handlers) h(m);
  }
  on(h: (m: Msg) => void): void {
    this.handlers.push(h);
  }
  requests(method: string): SipRequest[] {
    return this.inbox.filter((m): m is SipRequest => m instanceof SipRequest && m.method === method);
  }
  responses(method: string, status?: number): SipResponse[] {
    return this.inbox.filter(
      (m): m is SipResponse => m instanceof SipResponse && m.cseq()?.method === method && (status === undefined || m.status === status),
    );
  }
}

const bytes = (text: string | Buffer): Buffer => (typeof text === 'string' ? Buffer.from(text, 'latin1') : text);

export class UdpPeer extends Peer {
  readonly transport = 'udp';
  /** the relay's UDP port, where `send` goes. */
  relayPort = 0;
  private readonly from = new WeakMap<Msg, number>();

  private constructor(readonly sock: dgram.Socket) {
    super();
    sock.on('message', (data, rinfo) => {
      const m = parseMessage(data);
      this.from.set(m, rinfo.port);
      this.deliver(m);
    });
  }

  static create(): Promise<UdpPeer> {
    return new Promise((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      s.once('error', reject);
      s.bind(0, '127.0.0.1', () => resolve(new UdpPeer(s)));
    });
  }

  get port(): number {
    return this.sock.address().port;
  }
  send(data: string | Buffer): void {
    this.sock.send(bytes(data), this.relayPort, '127.0.0.1');
  }
  reply(to: SipRequest, data: Buffer): void {
    this.sock.send(data, this.from.get(to) ?? this.relayPort, '127.0.0.1');
  }
  close(): void {
    this.sock.close();
  }
}

/** Frame a TCP byte stream into SIP messages (Content-Length framing, src/sip StreamFramer). */
function onFrames(sock: net.Socket, fn: (m: Msg) => void): void {
  const framer = new StreamFramer({ maxMessageSize: LIMITS.maxMessageSize });
  sock.on('data', (chunk: Buffer) => {
    for (const ev of framer.push(chunk)) {
      if (ev.type === 'message') fn(parseMessage(ev.data));
      else if (ev.type === 'error') sock.destroy();
    }
  });
  sock.on('error', () => undefined);
}

/** A UAC over TCP: one connection to the relay and no listener, so every response must come back on it. */
export class TcpUac extends Peer {
  readonly transport = 'tcp';
  private constructor(readonly sock: net.Socket) {
    super();
    onFrames(sock, (m) => this.deliver(m));
  }

  static connect(relayTcpPort: number): Promise<TcpUac> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: relayTcpPort, noDelay: true });
      s.once('error', reject);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new TcpUac(s));
      });
    });
  }

  get port(): number {
    return this.sock.localPort ?? 0;
  }
  send(data: string | Buffer): void {
    this.sock.write(bytes(data));
  }
  reply(_to: SipRequest, data: Buffer): void {
    this.sock.write(data);
  }
  close(): void {
    this.sock.destroy();
  }
}

/** A UAS over TCP: listens; answers every request on the connection it arrived on. */
export class TcpUas extends Peer {
  readonly transport = 'tcp';
  readonly connections: net.Socket[] = [];
  private readonly conn = new WeakMap<Msg, net.Socket>();

  private constructor(readonly server: net.Server) {
    super();
    server.on('connection', (sock) => {
      sock.setNoDelay(true);
      this.connections.push(sock);
      onFrames(sock, (m) => {
        this.conn.set(m, sock);
        this.deliver(m);
      });
    });
  }

  static listen(): Promise<TcpUas> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => resolve(new TcpUas(srv)));
    });
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }
  send(_data: string | Buffer): void {
    throw new Error('the TCP UAS sends requests to nobody');
  }
  reply(to: SipRequest, data: Buffer): void {
    const sock = this.conn.get(to);
    if (sock === undefined) throw new Error('request not received by this UAS');
    sock.write(data);
  }
  close(): void {
    for (const s of this.connections) s.destroy();
    this.server.close();
  }
}

// ------------------------------------------------------------------------------------------ relay

/** One message seen by the relay transport's drop hook. */
export interface Wire {
  dir: 'in' | 'out';
  data: Buffer;
  msg: Msg | undefined;
  peer: HookPeer;
  dropped: boolean;
}

export type DropFn = (w: Omit<Wire, 'dropped'>) => boolean;

export interface Relay {
  layer: TransactionLayerImpl;
  transport: SipTransportLayer;
  /** methods of the requests that reached the relay core (not absorbed by a transaction). */
  seen: string[];
  /** every message through the drop hook, in order. */
  wire: Wire[];
  /** messages that left (or were dropped on their way out) towards a peer port. */
  out(port: number): Wire[];
  setDrop(fn: DropFn): void;
  udpPort: number;
  tcpPort: number;
  close(): Promise<void>;
}

function parseOrUndefined(data: Buffer): Msg | undefined {
  try {
    return parseMessage(data);
  } catch {
    return undefined;
  }
}

/** Start the relay; every request is forwarded to `uas()`. */
export async function startRelay(uas: () => Target, timers: TimerSettings = TIMERS): Promise<Relay> {
  const seen: string[] = [];
  const wire: Wire[] = [];
  let drop: DropFn = () => false;
  let layer: TransactionLayerImpl;
  const transport = createTransportLayer({
    listen: [
      { transport: 'udp', host: '127.0.0.1', port: 0 },
      { transport: 'tcp', host: '127.0.0.1', port: 0 },
    ],
    limits: LIMITS,
    events: {
      request: (req, src) => layer.receiveRequest(req, src),
      response: (res, src) => layer.receiveResponse(res, src),
      parseError: () => undefined,
    },
    dropHook: (dir, data, peer) => {
      const w = { dir, data: Buffer.from(data), msg: parseOrUndefined(data), peer };
      const dropped = drop(w);
      wire.push({ ...w, dropped });
      return dropped;
    },
  });

  const forwardCopy = (req: SipRequest): SipRequest => {
    const f = req.clone();
    f.setHeader('Max-Forwards', String((req.maxForwards() ?? 70) - 1));
    return f;
  };
  const upstream = (res: SipResponse): SipResponse => {
    const r = res.clone();
    r.removeFirstValue('via');
    return r;
  };

  layer = createTransactionLayer({
    transport,
    clock: realClock(),
    timers,
    responseTarget,
    user: {
      request(req: SipRequest, src: Source) {
        seen.push(req.method);
        const target = uas();
        if (req.method === 'ACK') {
          // ACK for a 2xx: forwarded as its own request (RFC 6026)
          const f = forwardCopy(req);
          f.addHeader('Via', layer.viaFor(target, layer.newBranch()), 'top');
          layer.sendStateless(f, target);
          return;
        }
        const st = layer.createServer(req, src);
        if (req.method === 'CANCEL') {
          st.respond(buildResponse(req, 200));
          return;
        }
        layer.createClient(forwardCopy(req), target, {
          provisional: (res) => {
            if (res.status > 100) st.respond(upstream(res));
          },
          final: (res) => st.respond(upstream(res)),
          timeout: () => st.respond(buildResponse(req, 408)),
          transportError: () => st.respond(buildResponse(req, 503)),
        });
      },
      strayResponse(res: SipResponse) {
        // a 2xx retransmission after the client transaction ended: strip our Via, route by the next
        // one (§18.2.2; no request source is known here, as in src/server.ts)
        if (res.status < 200 || res.status >= 300) return;
        const r = upstream(res);
        if (r.topVia() === undefined) return;
        transport.send(r.toBuffer(), responseTarget(r)).catch(() => undefined);
      },
    },
  });
  await transport.start();
  return {
    layer,
    transport,
    seen,
    wire,
    out: (port) => wire.filter((w) => w.dir === 'out' && w.peer.port === port),
    setDrop(fn) {
      drop = fn;
    },
    udpPort: transport.endpointFor('udp', 4)!.port,
    tcpPort: transport.endpointFor('tcp', 4)!.port,
    async close() {
      layer.close();
      await transport.close();
    },
  };
}

// ------------------------------------------------------------------------------------------ the call

let n = 0;

/** A request from the UAC, with its Via naming its transport and port. */
export function uacRequest(method: string, uac: Peer, o: { callId: string; cseq: number; toTag?: string; branch?: string }): string {
  const branch = o.branch ?? `z9hG4bKuac${++n}`;
  const tp = uac.transport.toUpperCase();
  return [
    `${method} sip:bob@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/${tp} 127.0.0.1:${uac.port};branch=${branch}`,
    'Max-Forwards: 70',
    `From: "Alice" <sip:alice@127.0.0.1>;tag=a1`,
    `To: <sip:bob@127.0.0.1>${o.toTag !== undefined ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq} ${method}`,
    `Contact: <sip:alice@127.0.0.1:${uac.port};transport=${uac.transport}>`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/**
 * UAS behaviour: answers BYE with 200; `answer` sends its 2xx to INVITE and retransmits it every T1
 * until the ACK (§13.3.1.4 — a UAS does so over TCP too).
 */
export function uasBehaviour(uas: Peer, t1 = TIMERS.t1) {
  uas.on((m) => {
    if (m instanceof SipRequest && m.method === 'BYE') uas.reply(m, buildResponse(m, 200).toBuffer());
  });
  return {
    ring(inv: SipRequest): void {
      uas.reply(inv, buildResponse(inv, 180, { toTag: 'b1' }).toBuffer());
    },
    answer(inv: SipRequest): void {
      const contact = `<sip:bob@127.0.0.1:${uas.port};transport=${uas.transport}>`;
      const ok = buildResponse(inv, 200, { toTag: 'b1', headers: [['Contact', contact]] }).toBuffer();
      let tries = 0;
      const resend = (): void => {
        if (uas.requests('ACK').length > 0 || tries++ > 30) return;
        uas.reply(inv, ok);
        setTimeout(resend, t1).unref();
      };
      resend();
    },
  };
}

/** UAC non-INVITE behaviour over UDP: retransmit every T1 until a final response arrives (Timer E, simplified). */
export function sendUntilFinal(uac: Peer, text: string, method: string, t1 = TIMERS.t1): void {
  let tries = 0;
  const go = (): void => {
    if (uac.responses(method).some((r) => r.status >= 200) || tries++ > 30) return;
    uac.send(text);
    setTimeout(go, t1).unref();
  };
  go();
}

export const isInvite = (m: Msg | undefined): boolean => m instanceof SipRequest && m.method === 'INVITE';
