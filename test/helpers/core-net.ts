/**
 * The real core (Router + Proxy + Registrar over memory stores) on the real transport and
 * transaction layers, UDP and TCP on 127.0.0.1 (ephemeral ports), in the test process: for tests
 * that give the Proxy response steps (src/core/response-steps.ts) and talk to it with real UAs.
 * Digest auth is off (every party is reached through the location lookup of DOMAIN); the registrar
 * keeps the registered Contact (no NAT `received`), so a TCP UA is reached on its listener.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Acl } from '../../src/core/acl.js';
import { Proxy } from '../../src/core/proxy.js';
import { Registrar } from '../../src/core/registrar.js';
import type { ResponseSteps } from '../../src/core/response-steps.js';
import { RouteTokens } from '../../src/core/route-token.js';
import { Router } from '../../src/core/routing.js';
import { buildResponse, parseMessage, SipRequest, SipResponse, StreamFramer } from '../../src/sip/index.js';
import { MemoryLocationStore } from '../../src/store/index.js';
import { createTransactionLayer, realClock, type TransactionLayerImpl } from '../../src/transaction/index.js';
import { createTransportLayer, responseTarget, type SipTransportLayer } from '../../src/transport/index.js';
import { LIMITS, TIMERS } from './relay.js';

export const NET_DOMAIN = 'sip.test';

export interface NetCore {
  transport: SipTransportLayer;
  tx: TransactionLayerImpl;
  proxy: Proxy;
  locations: MemoryLocationStore;
  udpPort: number;
  tcpPort: number;
  /** messages the core logged as internal errors (a test asserts there are none). */
  errors: string[];
  close(): Promise<void>;
}

export async function startNetCore(steps?: ResponseSteps): Promise<NetCore> {
  let tx: TransactionLayerImpl | undefined;
  let router: Router | undefined;
  let proxy: Proxy | undefined;
  const errors: string[] = [];
  const transport = createTransportLayer({
    listen: [
      { transport: 'udp', host: '127.0.0.1', port: 0 },
      { transport: 'tcp', host: '127.0.0.1', port: 0 },
    ],
    limits: LIMITS,
    events: {
      request: (req, src) => tx?.receiveRequest(req, src),
      response: (res, src) => tx?.receiveResponse(res, src),
      parseError: () => undefined,
    },
  });
  tx = createTransactionLayer({
    transport,
    clock: realClock(),
    timers: TIMERS,
    responseTarget,
    user: {
      request: (req, src) => router?.onRequest(req, src),
      strayResponse: (res) =>
        proxy?.strayResponse(res, (r) => {
          transport.send(r.toBuffer(), responseTarget(r)).catch(() => undefined);
        }),
    },
  });
  proxy = new Proxy({
    tx,
    transport,
    random: () => randomBytes(8).toString('hex'),
    routeTokens: new RouteTokens(randomBytes(32)),
    ...(process.env.CORE_NET_DEBUG !== undefined ? { debug: (o: Record<string, unknown>, m: string) => console.log(m, JSON.stringify(o)) } : {}),
    ...(steps !== undefined ? { steps } : {}),
  });
  const now = (): number => Date.now();
  const locations = new MemoryLocationStore(now);
  const isOurDomain = (h: string): boolean => h.toLowerCase() === NET_DOMAIN;
  let ruid = 0;
  const registrar = new Registrar({
    locations,
    domains: isOurDomain,
    minExpires: 60,
    defaultExpires: 3600,
    maxExpires: 3600,
    maxContacts: 10,
    natReceived: false,
    now,
    newRuid: () => `ruid-${++ruid}`,
  });
  router = new Router({
    tx,
    proxy,
    auth: undefined,
    registrar,
    locations,
    scanners: undefined,
    trusted: new Acl([]),
    isOurDomain,
    toTag: (req) => createHash('md5').update(`${req.callId() ?? ''}|${req.topVia()?.branch ?? ''}`).digest('hex').slice(0, 16),
    events: {
      handled: () => undefined,
      challenge: () => undefined,
      authFailure: () => undefined,
      drop: () => undefined,
      denied: () => undefined,
      response: () => undefined,
      error: (obj, msg) => void errors.push(`${msg}: ${JSON.stringify(obj)}`),
    },
  });
  await transport.start();
  const layer = tx;
  return {
    transport,
    tx: layer,
    proxy,
    locations,
    udpPort: transport.endpointFor('udp', 4)!.port,
    tcpPort: transport.endpointFor('tcp', 4)!.port,
    errors,
    async close() {
      layer.close();
      await transport.close();
    },
  };
}

/**
 * A SIP UA over TCP bound to a 127.x.y.z address: it listens (its Contact names the listener, with
 * transport=tcp), registers over a connection of its own, answers INVITE with 180/200 (Record-Route
 * echoed) and BYE with 200 on the connection a request came in on, and can send requests on that
 * connection too (the one sipd opened to it).
 */
export class TcpUa {
  readonly received: SipRequest[] = [];
  readonly responses: SipResponse[] = [];
  private readonly conns = new WeakMap<SipRequest, net.Socket>();
  private readonly sockets: net.Socket[] = [];
  private readonly tag = randomBytes(4).toString('hex');
  port = 0;

  private constructor(
    readonly address: string,
    private readonly server: net.Server,
    private readonly sipd: { port: number },
  ) {
    server.on('connection', (s) => this.attach(s));
  }

  static async open(address: string, sipd: { port: number }): Promise<TcpUa> {
    const srv = net.createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, address, () => resolve());
    });
    const ua = new TcpUa(address, srv, sipd);
    const a = srv.address();
    ua.port = typeof a === 'object' && a !== null ? a.port : 0;
    return ua;
  }

  get contact(): string {
    return `sip:bob@${this.address}:${this.port};transport=tcp`;
  }

  private attach(s: net.Socket): void {
    this.sockets.push(s);
    s.setNoDelay(true);
    s.on('error', () => undefined);
    const framer = new StreamFramer({ maxMessageSize: LIMITS.maxMessageSize });
    s.on('data', (chunk: Buffer) => {
      for (const ev of framer.push(chunk)) {
        if (ev.type !== 'message') {
          s.destroy();
          return;
        }
        const m = parseMessage(ev.data);
        if (m instanceof SipResponse) this.responses.push(m);
        else {
          this.received.push(m);
          this.conns.set(m, s);
          this.answer(m, s);
        }
      }
    });
  }

  private answer(req: SipRequest, s: net.Socket): void {
    if (req.method === 'ACK') return;
    const headers: Array<[string, string]> = [];
    if (req.method === 'INVITE') {
      headers.push(['Contact', `<${this.contact}>`]);
      s.write(buildResponse(req, 180, { toTag: this.tag, copyRecordRoute: true, headers }).toBuffer());
    }
    s.write(buildResponse(req, 200, { toTag: this.tag, copyRecordRoute: req.method === 'INVITE', headers }).toBuffer());
  }

  /** REGISTER bob@domain over a new connection to sipd; resolves with the final response. */
  async register(user: string, domain: string): Promise<SipResponse> {
    const s = net.connect({ host: '127.0.0.1', port: this.sipd.port, localAddress: this.address });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.once('connect', () => resolve());
    });
    this.attach(s);
    const callId = `reg-${randomBytes(6).toString('hex')}`;
    const lport = s.localPort ?? 0;
    s.write(
      [
        `REGISTER sip:${domain} SIP/2.0`,
        `Via: SIP/2.0/TCP ${this.address}:${lport};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
        'Max-Forwards: 70',
        `From: <sip:${user}@${domain}>;tag=${this.tag}`,
        `To: <sip:${user}@${domain}>`,
        `Call-ID: ${callId}`,
        'CSeq: 1 REGISTER',
        `Contact: <${this.contact}>`,
        'Expires: 600',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    await this.waitFor(() => this.responses.some((r) => r.callId() === callId && r.status >= 200), 'REGISTER final');
    return this.responses.find((r) => r.callId() === callId && r.status >= 200)!;
  }

  /** send raw text on the connection `req` arrived on (an in-dialog request of ours). */
  sendOn(req: SipRequest, text: string): void {
    const s = this.conns.get(req);
    if (s === undefined) throw new Error('request not received here');
    s.write(Buffer.from(text, 'latin1'));
  }

  /** wait (bounded by a hang guard, not a timed assertion) until `pred` holds. */
  async waitFor(pred: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 2000; i++) {
      if (pred()) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}
