/**
 * Start-up warm-up: synthetic SIP traffic through a throwaway copy of the core before the real
 * sockets open, so that V8's optimising compiler does its work for the call path before the first
 * real load arrives (bench/WARMUP.md: in a fresh process the first seconds of a call load were
 * slow while TurboFan's concurrent threads took most of the core).
 *
 * The copy is built by the composition root's own `buildCore` (injected: src/server.ts passes it)
 * with the real settings and the server's own parts (randomness, routing events — with a logger
 * that writes nowhere and metrics of a registry of their own, so the per-request log line and
 * counters run as in the server and nothing is logged or counted), but nothing of the real
 * server's state: memory stores holding one synthetic subscriber (behind the credential cache, as
 * the database is), a manual clock, its own secret, and a transport layer (src/transport's `createTransportLayer`, so its receive path —
 * limits, top-Via check, §18.2.1 received/rport — and its send path run as for a datagram) over a
 * capture-only fake UDP transport: what the core sends is read by simulated UAs in this module,
 * never written to a socket. Every message the core receives is a Buffer of its own, made the way a
 * UDP datagram's is (see `wire`).
 *
 * One register: REGISTER → 401 → REGISTER with Authorization → 200 (a refresh of the synthetic
 * callee's binding). One call (SIPp's uac-call.xml against uas.xml, as bench/call-heap.ts):
 * INVITE → 407 → ACK, INVITE with Proxy-Authorization → 100 → relayed to the callee, which answers
 * 100, 180, 200 (SDP, Record-Route copied) → 180, 200 relayed → ACK (Route set) relayed → BYE → 200
 * relayed. A flow that breaks (a call without its 200 for INVITE or BYE, a REGISTER without its
 * 200) rejects: the caller logs it and goes on.
 *
 * Bounded: `registers`, `calls` and a wall-time budget `max_ms` (checked before each batch). At the
 * end the loop yields a few times so that optimised code finishes compiling and gets installed,
 * then the copy is closed (transactions and their manual timers, the fake transport); it leaves no
 * timer or handle behind.
 */
import { randomBytes } from 'node:crypto';
import { serialize } from 'node:v8';
import type { Core, CoreDeps, CoreSettings } from './server.js';
import { digestHa1, digestResponse } from './core/auth.js';
import { buildResponse, MAGIC_COOKIE, parseMessage, SipRequest, SipResponse } from './sip/index.js';
import { CachedSubscriberStore, MemoryLocationStore, MemorySubscriberStore, type SubscriberStore } from './store/index.js';
import { manualClock, realClock } from './transaction/index.js';
import { createTransportLayer, TRANSPORT_INFO, type ConnectionInfo, type Transport, type TransportContext } from './transport/index.js';
import type { TransportLimits } from './transport/transport.js';
import type { LocalEndpoint, Target, TransportEvents, TransportLayer } from './transport/types.js';
import { receiveDatagram } from './transport/udp.js';

/** `warmup` of the configuration: counts and budget; 0 (any of them) disables the warm-up. */
export interface WarmupSettings {
  readonly registers: number;
  readonly calls: number;
  readonly max_ms: number;
}

export interface WarmupResult {
  /** REGISTERs completed (each: 401, then 200 to the one with credentials). */
  readonly registers: number;
  /** calls completed (each: 200 for the INVITE and for the BYE). */
  readonly calls: number;
  /** wall time spent (by `elapsed`), including the final yields. */
  readonly ms: number;
  /** true when the budget ran out before the counts were done. */
  readonly budgetSpent: boolean;
}

export interface WarmupDeps {
  readonly settings: CoreSettings;
  readonly warmup: WarmupSettings;
  /** the transport limits the real transport layer gets (parse limits included). */
  readonly limits: TransportLimits;
  /**
   * the throwaway core (src/server.ts `warmupBuild`: `buildCore` with the server's parts) on what
   * the warm-up gives: its transport, stores, clock and secret; `onError` gets the core's error events.
   */
  readonly build: (w: WarmupCoreDeps) => Core;
  /**
   * the transport events of a throwaway core (src/server.ts `warmupEvents`: the server's own
   * `transportEvents`, so that the layer's calls into them are warmed for the server's); default: to
   * the core's transactions directly, a parse error failing the warm-up.
   */
  readonly events?: (core: Core, layer: TransportLayer) => TransportEvents;
  /** wall clock for the budget, in ms (default performance.now); injected by tests. */
  readonly elapsed?: () => number;
}

/** What the warm-up gives its throwaway core. */
export type WarmupCoreDeps = Pick<CoreDeps, 'transport' | 'subscribers' | 'locations' | 'secret' | 'clock' | 'now'> & { readonly onError: (msg: string) => void };

/** A warm-up function (what startServer calls; tests inject a failing one). */
export type WarmUp = (d: WarmupDeps) => Promise<WarmupResult>;

/** the warm-up does nothing when a count or the budget is 0. */
export const warmupEnabled = (w: WarmupSettings): boolean => w.max_ms > 0 && (w.registers > 0 || w.calls > 0);

/** calls (or registers) started together, then run to their end before the budget is checked again. */
const BATCH = 20;
/** rounds of the event loop one batch may take (promise chains of the stores, the credential cache). */
const MAX_ROUNDS = 200;
/** copies of the core used in turn (see warmUp). */
const RIGS = 2;
/** yields at the end, for concurrent compile jobs to finish and be installed (setTimeout of 1 ms each). */
const FINAL_YIELDS = 8;

/** the warm-up's synthetic subscriber: only in its throwaway memory store, never in the server's (tests check that). */
export const WARMUP_USER = 'sipd-warmup';
export const WARMUP_PASSWORD = 'warmup';
const USER = WARMUP_USER;
const PASSWORD = WARMUP_PASSWORD;
const LOCAL: LocalEndpoint = { transport: 'udp', address: '192.0.2.1', port: 5060, advertise: '192.0.2.1' };
/** the callee's registered contact (TEST-NET-2) and the callers (TEST-NET-3): never real peers, and nothing is sent anyway */
const CALLEE = { address: '198.51.100.9', port: 5070 };
const SDP = 'v=0\r\no=user1 53655765 2353687637 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';

/** the fake UDP transport: datagrams in through the layer's context, what is sent captured. */
class CaptureUdp implements Transport {
  readonly name = 'udp' as const;
  readonly info = TRANSPORT_INFO.udp;
  constructor(
    private readonly ctx: TransportContext,
    private readonly out: Array<{ data: Buffer; address: string; port: number }>,
  ) {}
  /** what UdpTransport does per datagram (src/transport/udp.ts `receiveDatagram`), without the socket. */
  datagram(data: Buffer, address: string, port: number): void {
    receiveDatagram(this.ctx, data, address, port, LOCAL);
  }
  listen(): Promise<LocalEndpoint> {
    return Promise.resolve(LOCAL);
  }
  send(data: Buffer, address: string, port: number): Promise<void> {
    this.out.push({ data, address, port });
    this.ctx.counters.bytesOut += data.length;
    return Promise.resolve();
  }
  connections(): ConnectionInfo[] {
    return [];
  }
  connectionCounts(): { total: number; inbound: number; outbound: number } {
    return { total: 0, inbound: 0, outbound: 0 };
  }
  isOpen(): boolean {
    return false;
  }
  closeConnection(): boolean {
    return false;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** one copy of the core the warm-up drives, with its transport layer and fake UDP transport. */
interface Rig {
  readonly layer: ReturnType<typeof createTransportLayer>;
  readonly core: Core;
  readonly udp: () => CaptureUdp;
}

interface Call {
  readonly callId: string;
  readonly fromTag: string;
  readonly address: string;
  readonly port: number;
  readonly rport: boolean;
  toHeader?: string;
  routes?: string[];
  invite200: boolean;
  bye200: boolean;
  failed?: string;
}

/**
 * `text` in a Buffer made by Node's C++ side, as a received datagram is (dgram hands up such
 * Buffers: their prototype set after creation gives them another hidden class than Buffers made in
 * JS, and code optimised for one is deoptimised by the other — measured, bench/WARMUP.md). A
 * `v8.serialize` of a one-byte string is such a Buffer; its length is chosen so that the whole of
 * it is then overwritten with the message. A Buffer made in JS when that does not work out.
 */
function wire(text: string): Buffer {
  const len = text.length;
  let b: Buffer | undefined;
  // serialized: 2 bytes of header, a tag byte, the length as a varint, the characters
  for (let varint = 1; varint <= 3 && b === undefined; varint++) {
    const n = len - 3 - varint;
    if (n < 0 || (n < 128 ? 1 : n < 16384 ? 2 : 3) !== varint) continue;
    const s = serialize('x'.repeat(n));
    if (s.length === len) b = s;
  }
  b ??= Buffer.allocUnsafe(len);
  b.write(text, 0, 'latin1');
  return b;
}

/** the Authorization / Proxy-Authorization value answering a challenge (its first algorithm, its qop). */
function answer(challenge: string, method: string, uri: string, realmDefault: string): string {
  const param = (k: string): string | undefined => new RegExp(`\\b${k}="?([^",]+)"?`, 'i').exec(challenge)?.[1];
  const nonce = param('nonce') ?? '';
  const realm = param('realm') ?? realmDefault;
  const opaque = param('opaque');
  const algorithm = (param('algorithm') ?? 'MD5').toUpperCase() === 'SHA-256' ? 'SHA-256' : 'MD5';
  const qop = /\bqop="?[^"]*\bauth\b/i.test(challenge) ? 'auth' : undefined;
  const ha1 = digestHa1(algorithm, USER, realm, PASSWORD);
  const cnonce = 'c0ffee42';
  const nc = '00000001';
  const response = digestResponse({ algorithm, ha1, method, uri, nonce, ...(qop !== undefined ? { qop, nc, cnonce } : {}) });
  return (
    `Digest username="${USER}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=${algorithm}` +
    (qop !== undefined ? `, qop=${qop}, nc=${nc}, cnonce="${cnonce}"` : '') +
    (opaque !== undefined ? `, opaque="${opaque}"` : '')
  );
}

/** Run the warm-up; rejects when a flow breaks (the caller logs and goes on). */
export async function warmUp(d: WarmupDeps): Promise<WarmupResult> {
  const elapsed = d.elapsed ?? ((): number => performance.now());
  const t0 = elapsed();
  const w = d.warmup;
  if (!warmupEnabled(w)) return { registers: 0, calls: 0, ms: 0, budgetSpent: false };
  const s = d.settings;
  const domain = s.domains[0]!.toLowerCase();
  const clock = manualClock(Date.now());
  const now = (): number => clock.now();
  const wallNow = (): number => Date.now();
  const failures: string[] = [];
  const fail = (why: string): void => void (failures.length < 10 && failures.push(why));

  const subscribersMem = new MemorySubscriberStore();
  await subscribersMem.add(USER, domain, PASSWORD);
  // the credential cache the real server has in front of its database (src/store/index.ts openStores)
  const ttl = s.auth.credential_cache_ttl_ms;
  const cached =
    ttl > 0
      ? new CachedSubscriberStore(subscribersMem, {
          ttlMs: ttl,
          now,
          schedule: (fn, ms) => {
            const h = clock.setTimer(ms, fn);
            return () => clock.clearTimer(h);
          },
        })
      : undefined;
  const subscribers: SubscriberStore = cached ?? subscribersMem;
  const locations = new MemoryLocationStore(now);

  const outbox: Array<{ data: Buffer; address: string; port: number }> = [];
  /**
   * RIGS copies of the core, each with its transport layer, used in turn (one batch each): V8
   * records the functions a call site has seen; with one copy it optimises for that copy's closures
   * and deoptimises when the server's own (made at the same source lines) arrive ("wrong call
   * target"); having seen two closures of one source line it optimises for any closure of that line.
   * For the same reason every other copy runs on the wall clock (the server's kind of Clock).
   */
  const rigs: Rig[] = [];
  for (let k = 0; k < RIGS; k++) {
    let udp: CaptureUdp | undefined;
    const layer = createTransportLayer({
      listen: [{ transport: 'udp', host: LOCAL.address, port: LOCAL.port }],
      limits: d.limits,
      factories: {
        udp: (ctx) => {
          udp = new CaptureUdp(ctx, outbox);
          return udp;
        },
      },
    });
    // every other copy on the wall clock, as the server is (its timers are cleared by tx.close())
    const wall = k % 2 === 1;
    const core = d.build({ transport: layer, subscribers, locations, secret: randomBytes(32), clock: wall ? realClock() : clock, now: wall ? wallNow : now, onError: (msg) => fail(`core error: ${msg}`) });
    rigs.push({ layer, core, udp: () => udp! });
  }
  let rig = rigs[0]!;
  let rigTurn = 0;
  const nextRig = (): void => {
    rig = rigs[++rigTurn % rigs.length]!;
  };
  let seq = 0;
  const branch = (): string => `${MAGIC_COOKIE}-w${(++seq).toString(36)}`;
  const toSipd = (text: string, address: string, port: number): void => rig.udp().datagram(wire(text), address, port);

  // ---- the simulated UAs, reacting to what the core sent
  const calls = new Map<string, Call>();
  const regs = new Map<string, (res: SipResponse) => void>();

  const invite = (c: Call, cseq: number, auth?: string): string =>
    [
      `INVITE sip:${USER}@${domain} SIP/2.0`,
      `Via: SIP/2.0/UDP ${c.address}:${c.port};branch=${branch()}${c.rport ? ';rport' : ''}`,
      'Max-Forwards: 70',
      `From: <sip:${USER}@${domain}>;tag=${c.fromTag}`,
      `To: <sip:${USER}@${domain}>`,
      `Call-ID: ${c.callId}`,
      `CSeq: ${cseq} INVITE`,
      `Contact: <sip:caller@${c.address}:${c.port};transport=udp>`,
      ...(auth !== undefined ? [`Proxy-Authorization: ${auth}`] : []),
      'Content-Type: application/sdp',
      `Content-Length: ${SDP.length}`,
      '',
      SDP,
    ].join('\r\n');
  const inDialog = (c: Call, method: 'ACK' | 'BYE', cseq: number, ruri: string, viaBranch: string, routes: readonly string[]): string =>
    [
      `${method} ${ruri} SIP/2.0`,
      `Via: SIP/2.0/UDP ${c.address}:${c.port};branch=${viaBranch}${c.rport ? ';rport' : ''}`,
      ...routes.map((r) => `Route: ${r}`),
      'Max-Forwards: 70',
      `From: <sip:${USER}@${domain}>;tag=${c.fromTag}`,
      `To: ${c.toHeader ?? ''}`,
      `Call-ID: ${c.callId}`,
      `CSeq: ${cseq} ${method}`,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');

  const caller = (res: SipResponse): void => {
    const c = calls.get(res.callId() ?? '');
    if (c === undefined || c.failed !== undefined) return;
    const cseq = res.cseq();
    if (cseq === undefined) return;
    if (cseq.method === 'INVITE' && res.status === 407) {
      c.toHeader = res.header('to') ?? '';
      // the ACK of the 407 (same branch), then the INVITE with credentials
      toSipd(inDialog(c, 'ACK', cseq.seq, `sip:${USER}@${domain}`, res.topVia()?.branch ?? '', []), c.address, c.port);
      toSipd(invite(c, cseq.seq + 1, answer(res.header('proxy-authenticate') ?? '', 'INVITE', `sip:${USER}@${domain}`, domain)), c.address, c.port);
    } else if (cseq.method === 'INVITE' && res.status === 200) {
      if (c.invite200) return; // a retransmission
      c.invite200 = true;
      c.toHeader = res.header('to') ?? '';
      c.routes = res.headerValues('record-route');
      const target = `sip:${USER}@${CALLEE.address}:${CALLEE.port}`;
      toSipd(inDialog(c, 'ACK', cseq.seq, target, branch(), c.routes), c.address, c.port);
      toSipd(inDialog(c, 'BYE', cseq.seq + 1, target, branch(), c.routes), c.address, c.port);
    } else if (cseq.method === 'BYE' && res.status === 200) {
      c.bye200 = true;
    } else if (res.status >= 300) {
      c.failed = `${cseq.method} answered ${res.status}`;
    }
  };

  const callee = (data: Buffer): void => {
    const req = parseMessage(data);
    if (!(req instanceof SipRequest) || req.method === 'ACK') return;
    const tag = 'w' + (req.callId() ?? '').slice(0, 8);
    const respond = (status: number): void => {
      const withSdp = status === 200 && req.method === 'INVITE';
      const r = buildResponse(req, status, {
        toTag: status > 100 ? tag : undefined,
        copyRecordRoute: status > 100 && req.method === 'INVITE',
        headers: status > 100 ? [['Contact', `<sip:${USER}@${CALLEE.address}:${CALLEE.port}>`], ...(withSdp ? ([['Content-Type', 'application/sdp']] as Array<[string, string]>) : [])] : [],
        ...(withSdp ? { body: Buffer.from(SDP, 'latin1') } : {}),
      });
      rig.udp().datagram(wire(r.toString()), CALLEE.address, CALLEE.port);
    };
    if (req.method === 'INVITE') {
      respond(100);
      respond(180);
      respond(200);
    } else respond(200);
  };

  const deliver = (m: { data: Buffer; address: string; port: number }): void => {
    if (m.address === CALLEE.address && m.port === CALLEE.port) {
      const first = parseMessage(m.data);
      if (first instanceof SipRequest) return callee(m.data);
      const r = regs.get(first.callId() ?? '');
      if (r !== undefined) r(first as SipResponse);
      return;
    }
    const res = parseMessage(m.data);
    if (res instanceof SipResponse) caller(res);
  };

  const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
  /** deliver what the core sent until it is quiet (a 1 ms step of the manual clock when idle). */
  const pump = async (): Promise<void> => {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      while (outbox.length > 0) deliver(outbox.shift()!);
      await settle();
      if (outbox.length > 0) continue;
      clock.advance(1);
      await settle();
      if (outbox.length === 0) return;
    }
  };

  // ---- registers: the callee's binding, refreshed; REGISTER → 401 → REGISTER with Authorization → 200
  const expires = Math.max(s.registrar.min_expires, Math.min(3600, s.registrar.max_expires));
  let regCseq = 0;
  let registered = 0;
  const register = (callId: string, auth?: string): void => {
    toSipd(
      [
        `REGISTER sip:${domain} SIP/2.0`,
        `Via: SIP/2.0/UDP ${CALLEE.address}:${CALLEE.port};branch=${branch()}`,
        'Max-Forwards: 70',
        `From: <sip:${USER}@${domain}>;tag=r${callId}`,
        `To: <sip:${USER}@${domain}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${++regCseq} REGISTER`,
        `Contact: <sip:${USER}@${CALLEE.address}:${CALLEE.port}>;expires=${expires}`,
        ...(auth !== undefined ? [`Authorization: ${auth}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
      CALLEE.address,
      CALLEE.port,
    );
  };
  /** `n` REGISTERs at once (Call-IDs of their own, one contact): how many got their 200 */
  const registerBatch = async (n: number): Promise<number> => {
    let ok = 0;
    const ids: string[] = [];
    for (let k = 0; k < n; k++) {
      const callId = `reg-${(++seq).toString(36)}-${USER}@${CALLEE.address}`;
      ids.push(callId);
      regs.set(callId, (res) => {
        if (res.status === 401) register(callId, answer(res.header('www-authenticate') ?? '', 'REGISTER', `sip:${domain}`, domain));
        else if (res.status === 200) ok++;
        else fail(`REGISTER answered ${res.status}`);
      });
      register(callId);
    }
    await pump();
    for (const id of ids) regs.delete(id);
    if (ok < n) fail(`${n - ok} of ${n} REGISTERs got no 200`);
    return ok;
  };

  const spent = (): boolean => elapsed() - t0 >= w.max_ms;
  let budgetSpent = false;
  let callsDone = 0;
  try {
    for (const r of rigs) {
      await r.layer.start(
        d.events?.(r.core, r.layer) ?? {
          request: (req, src) => r.core.tx.receiveRequest(req, src),
          response: (res, src) => r.core.tx.receiveResponse(res, src),
          parseError: (err) => fail(`parse error: ${err.reason}`),
        },
      );
    }
    // at least one REGISTER when there are calls: they go to its binding; then batches of
    // REGISTERs and of calls interleaved in proportion (the budget may end either)
    const registers = Math.max(w.registers, w.calls > 0 ? 1 : 0);
    let started = 0;
    while ((registered < registers || started < w.calls) && failures.length === 0) {
      if (registered > 0 && spent()) {
        budgetSpent = true;
        break;
      }
      if (registered === 0 || (registered < registers && (started >= w.calls || registered / registers <= started / w.calls))) {
        registered += await registerBatch(Math.min(BATCH, registers - registered));
        nextRig();
        continue;
      }
      const batch: Call[] = [];
      for (let k = 0; k < BATCH && started < w.calls; k++, started++) {
        const i = started;
        const c: Call = {
          callId: `w${i.toString(36)}-${seq.toString(36)}@203.0.113.${(i % 200) + 1}`,
          fromTag: `f${i.toString(36)}`,
          address: `203.0.113.${(i % 200) + 1}`,
          port: 5060 + (i % 7),
          rport: i % 2 === 1,
          invite200: false,
          bye200: false,
        };
        calls.set(c.callId, c);
        batch.push(c);
        toSipd(invite(c, 1), c.address, c.port);
      }
      await pump();
      for (const c of batch) {
        calls.delete(c.callId);
        if (c.invite200 && c.bye200) callsDone++;
        else fail(`call ${c.callId}: ${c.failed ?? `no 200 for ${c.invite200 ? 'BYE' : 'INVITE'}`}`);
      }
      nextRig();
    }
    // let the concurrent compiler finish: optimised code is installed when the main thread runs
    for (let k = 0; k < FINAL_YIELDS; k++) await new Promise((r) => setTimeout(r, 1));
  } finally {
    for (const r of rigs) {
      r.core.tx.close();
      await r.layer.close();
    }
    await cached?.close();
    outbox.length = 0;
    calls.clear();
  }
  if (failures.length > 0) throw new Error(`warm-up flow broke: ${failures.join('; ')}`);
  return { registers: registered, calls: callsDone, ms: elapsed() - t0, budgetSpent };
}
