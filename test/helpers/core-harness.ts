/**
 * A harness for the core (Router + Proxy) without sockets: a fake TransportLayer that records what
 * is sent, and the core as src/server.ts builds it (`buildCore`: the REAL transaction layer, here on
 * a manual clock, the real DigestAuthenticator over a MemorySubscriberStore and the real Registrar
 * over a MemoryLocationStore).
 *
 * Feed requests/responses as text (or parsed messages) from a `Source`; then look at `sent`.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { loadConfig } from '../../src/config.js';
import { digestHa1, digestResponse } from '../../src/core/auth.js';
import { type Denial, type RoutingEvents } from '../../src/core/routing.js';
import { buildCore, type CoreSettings } from '../../src/server.js';
import type { ResponseSteps } from '../../src/core/response-steps.js';
import { FlowTable } from '../../src/core/flows.js';
import { buildResponse, parseMessage, SipRequest, SipResponse, parseAuthHeader } from '../../src/sip/index.js';
import { MemoryLocationStore, MemorySubscriberStore } from '../../src/store/index.js';
import { manualClock, type ManualClock, type TimerSettings } from '../../src/transaction/index.js';
import type { LocalEndpoint, Source, Target, TransportName } from '../../src/transport/types.js';

export const DOMAIN = 'example.com';
export const FOREIGN = 'other.net';
export const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);
export const TIMERS: TimerSettings = { t1: 500, t2: 4000, t4: 5000, timerC: 180_000, trying: 200 };

export const UDP_EP: LocalEndpoint = { transport: 'udp', address: '127.0.0.1', port: 5060, advertise: '127.0.0.1' };
export const TCP_EP: LocalEndpoint = { transport: 'tcp', address: '127.0.0.1', port: 5060, advertise: '127.0.0.1' };
export const WS_EP: LocalEndpoint = { transport: 'ws', address: '127.0.0.1', port: 8080, advertise: '127.0.0.1' };
/** our Record-Route / Route URI on UDP */
export const OUR_RR = '<sip:127.0.0.1:5060;lr>';
export const OUR_RR_TCP = '<sip:127.0.0.1:5060;transport=tcp;lr>';

export interface Sent {
  readonly data: Buffer;
  readonly target: Target;
  readonly msg: SipRequest | SipResponse;
}

let connSeq = 0;
export function udpSrc(address: string, port: number): Source {
  return { transport: 'udp', address, port, local: UDP_EP };
}
export function tcpSrc(address: string, port: number): Source {
  return { transport: 'tcp', address, port, connectionId: ++connSeq, local: TCP_EP };
}
/** a browser phone's WebSocket connection (the harness has a ws listener only with `ws: true`). */
export function wsSrc(address: string, port: number): Source {
  return { transport: 'ws', address, port, connectionId: ++connSeq, local: WS_EP };
}

/** §18.2.2 for the fake transport: reliable → the connection; UDP → received/rport, else sent-by. */
export function responseTarget(res: SipResponse, src?: Source): Target {
  const v = res.topVia();
  if (v === undefined) throw new Error('response without Via');
  const transport: TransportName = v.transport === 'TCP' || v.transport === 'TLS' ? 'tcp' : 'udp';
  if (src !== undefined && src.transport === 'tcp' && transport === 'tcp') {
    return { transport, address: src.address, port: src.port, connectionId: src.connectionId };
  }
  const port = typeof v.rport === 'number' ? v.rport : (v.port ?? 5060);
  return { transport, address: v.received ?? v.host, port };
}

export interface HarnessOptions {
  /** subscribers as [user, password] in DOMAIN */
  users?: ReadonlyArray<readonly [string, string]>;
  trusted?: string[];
  natReceived?: boolean;
  /** name → numeric address for resolve() (no DNS); unknown names resolve to nothing. */
  hosts?: Record<string, string>;
  /** scanner User-Agent drop list (default: off). */
  scanners?: string[];
  /** a ws listener (WS_EP) besides UDP and TCP (ignored when `endpoints` is given). */
  ws?: boolean;
  /** the local endpoints (default UDP_EP and TCP_EP). */
  endpoints?: readonly LocalEndpoint[];
  /** the proxy's response steps (src/core/response-steps.ts; default none). */
  steps?: ResponseSteps;
  /** keep a flow table (RFC 5626 flows, src/core/flows.ts), as src/server.ts does (default: none). */
  flows?: boolean;
}

export interface Handled {
  method: string;
  result: number | 'relayed' | 'dropped' | 'absorbed';
  why: string;
}

export type Harness = Awaited<ReturnType<typeof createHarness>>;

/** The configuration defaults (config/default.yaml) with the harness's settings over them. */
function harnessSettings(opts: HarnessOptions): CoreSettings {
  const d = loadConfig({ env: {} });
  return {
    domains: [DOMAIN],
    auth: { ...d.auth, enabled: true, algorithms: ['MD5'], qop: 'auth', nonce_lifetime_s: 300, check_uri: true, nc_window: 1000, trusted_ips: opts.trusted ?? [] },
    registrar: { min_expires: 60, default_expires: 3600, max_expires: 3600, max_contacts: 10, nat_received: opts.natReceived ?? true },
    timers: { t1_ms: TIMERS.t1, t2_ms: TIMERS.t2, t4_ms: TIMERS.t4, timer_c_ms: TIMERS.timerC, trying_ms: TIMERS.trying },
    limits: { ...d.limits, max_transactions: 100_000 },
    scanners: { enabled: opts.scanners !== undefined, user_agents: opts.scanners ?? [] },
  };
}

export async function createHarness(opts: HarnessOptions = {}) {
  const clock: ManualClock = manualClock(T0);
  const now = (): number => clock.now();
  const sent: Sent[] = [];
  const handled: Handled[] = [];
  const denials: Denial[] = [];
  /** reasons passed to RoutingEvents.drop, in order. */
  const drops: string[] = [];
  const hosts = opts.hosts ?? {};
  const endpoints = opts.endpoints ?? (opts.ws === true ? [UDP_EP, TCP_EP, WS_EP] : [UDP_EP, TCP_EP]);

  const transport = {
    send(data: Buffer, target: Target): Promise<void> {
      sent.push({ data, target, msg: parseMessage(data) });
      return Promise.resolve();
    },
    endpoints: () => endpoints,
    endpointFor: (t: TransportName, family: 4 | 6) => (family === 4 ? endpoints.find((e) => e.transport === t) : undefined),
    resolve(host: string, port: number | undefined, tp: TransportName | undefined, _sips: boolean): Promise<Target[]> {
      const bare = host.startsWith('[') ? host.slice(1, -1) : host;
      const address = isIP(bare) !== 0 ? bare : hosts[host.toLowerCase()];
      if (address === undefined) return Promise.resolve([]);
      return Promise.resolve([{ transport: tp ?? 'udp', address, port: port ?? 5060 }]);
    },
    // as the transport layer: an IP literal is answered at once, a name through resolve (above)
    resolveNow(host: string, port: number | undefined, tp: TransportName | undefined, _sips: boolean): Target[] | undefined {
      const bare = host.startsWith('[') ? host.slice(1, -1) : host;
      return isIP(bare) !== 0 ? [{ transport: tp ?? 'udp', address: bare, port: port ?? 5060 }] : undefined;
    },
  };

  const subscribers = new MemorySubscriberStore();
  for (const [u, p] of opts.users ?? [
    ['alice', 'alicepw'],
    ['bob', 'bobpw'],
  ]) {
    await subscribers.add(u, DOMAIN, p);
  }
  const locations = new MemoryLocationStore(now);

  let rnd = 0;
  let authRnd = 0;
  let ruid = 0;
  const flows = opts.flows === true ? new FlowTable() : undefined;
  const tagFor = (req: SipRequest): string =>
    createHash('md5').update(`${req.callId() ?? ''}|${req.topVia()?.branch ?? ''}|${req.fromTag() ?? ''}`).digest('hex').slice(0, 16);
  const events: RoutingEvents = {
    handled: (req, _src, result, why) => void handled.push({ method: req.method, result, why }),
    challenge: () => undefined,
    authFailure: () => undefined,
    drop: (reason) => void drops.push(reason),
    denied: (reason) => void denials.push(reason),
    response: () => undefined,
    debug: () => undefined,
    // an internal error in the pipeline is a bug: surface it as an unhandled rejection, which fails the run
    error: (obj, msg) => {
      throw new Error(`${msg}: ${JSON.stringify(obj)}`);
    },
  };
  // the server's own wiring (src/server.ts buildCore) over the fake transport, memory stores and a manual clock
  const core = buildCore({
    settings: harnessSettings(opts),
    transport,
    subscribers,
    locations,
    secret: Buffer.from('0123456789abcdef0123456789abcdef'),
    clock,
    now,
    random: {
      branch: () => (++rnd).toString(16).padStart(8, '0'),
      bytes: (n) => {
        const b = Buffer.alloc(n);
        b.writeUInt32BE(++authRnd % 0xffffffff, 0);
        return b;
      },
      ruid: () => `ruid-${++ruid}`,
    },
    responseTarget,
    events,
    toTag: tagFor,
    ...(flows !== undefined ? { flows } : {}),
    ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
  });
  const { tx, proxy, router, authenticator, registrar } = core;

  /** let promise chains (store lookups, auth) run to completion. */
  async function settle(): Promise<void> {
    for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
  }

  /** what the transport layer would hand up: the top Via gets received/rport (§18.2.1, RFC 3581). */
  function arrive<M extends SipRequest | SipResponse>(m: M, src: Source): M {
    if (m instanceof SipRequest) {
      const v = m.topVia();
      if (v !== undefined) {
        const rport = v.rport !== undefined ? src.port : undefined;
        const received = v.host !== src.address || rport !== undefined ? src.address : undefined;
        m.setViaReceived(received, rport);
      }
    }
    return m;
  }

  const h = {
    clock,
    tx,
    proxy,
    router,
    locations,
    subscribers,
    authenticator,
    registrar,
    flows,
    sent,
    handled,
    /** relay-policy refusals, in order. */
    denials,
    drops,

    settle,

    /** everything sent since the last take(), removed from the record. */
    take(): Sent[] {
      return sent.splice(0, sent.length);
    },

    /** feed a request (text or parsed) from `src`; waits for the core to finish. */
    async request(m: string | SipRequest, src: Source): Promise<Sent[]> {
      const req = typeof m === 'string' ? parseRequest(m) : parseRequest(m.toBuffer());
      tx.receiveRequest(arrive(req, src), src);
      await settle();
      return h.take();
    },

    /** feed a response (text or parsed) from `src`. */
    async response(m: string | SipResponse, src: Source): Promise<Sent[]> {
      const res = typeof m === 'string' ? parseResponse(m) : parseResponse(m.toBuffer());
      tx.receiveResponse(res, src);
      await settle();
      return h.take();
    },

    /** advance fake time, firing timers; returns what was sent meanwhile. */
    async advance(ms: number): Promise<Sent[]> {
      clock.advance(ms);
      await settle();
      return h.take();
    },

    /** fire every timer (bounded) and report the transaction tables. */
    async drain(): Promise<{ server: number; client: number; lingering: number; timers: number }> {
      for (let i = 0; i < 5; i++) {
        clock.runAll();
        await settle();
      }
      return tx.stats();
    },

    /**
     * Register `user` with `contact` from `src` with digest credentials (401 dance). Returns the 200.
     */
    async register(user: string, password: string, contact: string, src: Source, extra: string[] = []): Promise<SipResponse> {
      const callId = `reg-${user}-${contact}`;
      const first = request({ method: 'REGISTER', ruri: `sip:${DOMAIN}`, from: `<sip:${user}@${DOMAIN}>;tag=r${user}`, to: `<sip:${user}@${DOMAIN}>`, callId, cseq: 1, via: viaOf(src), extra: [`Contact: ${contact}`, ...extra] });
      const ch = only(await h.request(first, src), SipResponse);
      if (ch.status !== 401) throw new Error(`expected 401, got ${ch.status}`);
      const second = request({
        method: 'REGISTER',
        ruri: `sip:${DOMAIN}`,
        from: `<sip:${user}@${DOMAIN}>;tag=r${user}`,
        to: `<sip:${user}@${DOMAIN}>`,
        callId,
        cseq: 2,
        via: viaOf(src),
        extra: [`Contact: ${contact}`, ...extra, credentials(ch, 'www', user, password, 'REGISTER', `sip:${DOMAIN}`)],
      });
      const ok = only(await h.request(second, src), SipResponse);
      if (ok.status !== 200) throw new Error(`REGISTER: expected 200, got ${ok.status} ${ok.reason}`);
      return ok;
    },
  };
  return h;
}

// ------------------------------------------------------------------------------------------ messages

export function parseRequest(text: string | Buffer): SipRequest {
  const m = parseMessage(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);
  if (!(m instanceof SipRequest)) throw new Error('not a request');
  return m;
}

export function parseResponse(text: string | Buffer): SipResponse {
  const m = parseMessage(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);
  if (!(m instanceof SipResponse)) throw new Error('not a response');
  return m;
}

let branchSeq = 0;
export function newBranch(): string {
  return `z9hG4bK-t${++branchSeq}`;
}

/** a Via header value for a UA at `src` (rport asked). */
export function viaOf(src: Source, branch = newBranch()): string {
  return `SIP/2.0/${src.transport.toUpperCase()} ${src.address}:${src.port};branch=${branch};rport`;
}

export interface RequestSpec {
  method: string;
  ruri: string;
  from: string;
  to: string;
  callId: string;
  cseq: number;
  via: string | string[];
  maxForwards?: number | null;
  extra?: string[];
  body?: string;
}

export function request(s: RequestSpec): string {
  const vias = Array.isArray(s.via) ? s.via : [s.via];
  const body = s.body ?? '';
  return [
    `${s.method} ${s.ruri} SIP/2.0`,
    ...vias.map((v) => `Via: ${v}`),
    ...(s.maxForwards === null ? [] : [`Max-Forwards: ${s.maxForwards ?? 70}`]),
    `From: ${s.from}`,
    `To: ${s.to}`,
    `Call-ID: ${s.callId}`,
    `CSeq: ${s.cseq} ${s.method === 'ACK' || s.method === 'CANCEL' ? s.method : s.method}`,
    ...(s.extra ?? []),
    `Content-Length: ${Buffer.byteLength(body, 'latin1')}`,
    '',
    body,
  ].join('\r\n');
}

/** The Authorization / Proxy-Authorization header line answering the challenge in `ch`. */
export function credentials(ch: SipResponse, kind: 'www' | 'proxy', user: string, password: string, method: string, uri: string, nc = '00000001'): string {
  const value = ch.headerValues(kind === 'www' ? 'www-authenticate' : 'proxy-authenticate')[0];
  if (value === undefined) throw new Error('no challenge');
  const a = parseAuthHeader(value);
  const realm = a.params.get('realm')!;
  const nonce = a.params.get('nonce')!;
  const opaque = a.params.get('opaque');
  const cnonce = 'c0ffee';
  const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', user, realm, password), method, uri, nonce, qop: 'auth', nc, cnonce });
  const name = kind === 'www' ? 'Authorization' : 'Proxy-Authorization';
  return `${name}: Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=${nc}, cnonce="${cnonce}"${opaque !== undefined ? `, opaque="${opaque}"` : ''}`;
}

/**
 * A response of a downstream UA to a request the proxy sent: every Via copied, a To-tag, and for
 * 18x/2xx the Record-Route set and a Contact.
 */
export function answer(req: SipRequest, status: number, o: { toTag?: string; contact?: string; headers?: Array<[string, string]>; reason?: string } = {}): SipResponse {
  const dialog = status > 100 && status < 300;
  const headers: Array<[string, string]> = [...(o.headers ?? [])];
  if (dialog && o.contact !== undefined) headers.push(['Contact', o.contact]);
  return buildResponse(req, status, { toTag: o.toTag ?? (status > 100 ? 'uas-tag' : undefined), copyRecordRoute: dialog, headers, reason: o.reason });
}

/** the single message of `list`, of type `T`. */
export function only<T extends SipRequest | SipResponse>(list: readonly Sent[], type: new (...args: never[]) => T): T {
  if (list.length !== 1) throw new Error(`expected one message, got ${list.length}: ${list.map((s) => s.msg.toString().split('\r\n')[0]).join(' | ')}`);
  const m = list[0]!.msg;
  if (!(m instanceof type)) throw new Error(`unexpected ${m.toString().split('\r\n')[0]}`);
  return m;
}

export function requests(list: readonly Sent[], method?: string): Array<Sent & { msg: SipRequest }> {
  return list.filter((s): s is Sent & { msg: SipRequest } => s.msg instanceof SipRequest && (method === undefined || s.msg.method === method));
}

export function responses(list: readonly Sent[], status?: number): Array<Sent & { msg: SipResponse }> {
  return list.filter((s): s is Sent & { msg: SipResponse } => s.msg instanceof SipResponse && (status === undefined || s.msg.status === status));
}

/** first line of each sent message (for failure messages). */
export function lines(list: readonly Sent[]): string[] {
  return list.map((s) => s.msg.toString().split('\r\n')[0]!);
}

export interface CallSpec {
  from?: string;
  fromUser?: string;
  password?: string;
  ruri?: string;
  to?: string;
  callId?: string;
  src: Source;
  extra?: string[];
  method?: string;
}

export interface AuthedRequest {
  /** the request as the UA sent it (with credentials) */
  req: SipRequest;
  /** the 407 of the first attempt */
  challenge: SipResponse;
  /** what the proxy sent in answer to the authenticated request */
  out: Sent[];
}

/**
 * A UA's request from a local user through the 407 dance: request without credentials → 407,
 * ACK of the 407 (absorbed), the request again with Proxy-Authorization. Returns what was sent for it.
 */
export async function authedRequest(h: Harness, c: CallSpec): Promise<AuthedRequest> {
  const method = c.method ?? 'INVITE';
  const user = c.fromUser ?? 'alice';
  const ruri = c.ruri ?? `sip:bob@${DOMAIN}`;
  const from = c.from ?? `"Alice" <sip:${user}@${DOMAIN}>;tag=a-${user}`;
  const to = c.to ?? `<${ruri}>`;
  const callId = c.callId ?? `call-${newBranch()}`;
  const body = method === 'INVITE' ? 'v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n' : '';
  const ctype = method === 'INVITE' ? ['Content-Type: application/sdp'] : [];
  const contact = [`Contact: <sip:${user}@${c.src.address}:${c.src.port}${c.src.transport === 'tcp' ? ';transport=tcp' : ''}>`];
  const b1 = newBranch();
  const first = request({ method, ruri, from, to, callId, cseq: 1, via: viaOf(c.src, b1), extra: [...contact, ...ctype, ...(c.extra ?? [])], body });
  const chOut = await h.request(first, c.src);
  const challenge = only(chOut, SipResponse);
  if (challenge.status !== 407) throw new Error(`expected 407, got ${challenge.status}`);
  if (method === 'INVITE') {
    const ack = request({ method: 'ACK', ruri, from, to: challenge.header('to')!, callId, cseq: 1, via: viaOf(c.src, b1) });
    const ackOut = await h.request(ack, c.src);
    if (ackOut.length !== 0) throw new Error(`ACK of the 407 was not absorbed: ${lines(ackOut).join(' | ')}`);
  }
  const text = request({
    method,
    ruri,
    from,
    to,
    callId,
    cseq: 2,
    via: viaOf(c.src),
    extra: [...contact, ...ctype, ...(c.extra ?? []), credentials(challenge, 'proxy', user, c.password ?? `${user}pw`, method, ruri)],
    body,
  });
  const req = parseRequest(text);
  const out = await h.request(text, c.src);
  return { req, challenge, out };
}

/** Record-Route / Route values with our integrity token (`;sdt=…`) taken out, for comparisons. */
export function withoutTokens(values: readonly string[]): string[] {
  return values.map((v) => v.replace(/;sdt=[A-Za-z0-9_-]*/g, ''));
}

/** the `sdt` token of a Record-Route value of ours, if any. */
export function tokenOf(value: string): string | undefined {
  return /;sdt=([A-Za-z0-9_-]+)/.exec(value)?.[1];
}
