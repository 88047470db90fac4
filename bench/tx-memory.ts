/**
 * Heap held per completed REGISTER (answered 200, waiting out Timer J) or per completed call.
 *
 *   node --expose-gc --import tsx bench/tx-memory.ts [N]          (REGISTER)
 *   node --expose-gc --import tsx bench/tx-memory.ts call [N]     (call)
 *
 * Since the linger table (src/transaction/linger.ts) what is held is a linger entry, not a
 * transaction; the bench counts live transactions + linger entries, so it also runs against the
 * code before it (for the before/after figures).
 *
 * call (N default 10,000): what a proxy's transaction layer holds after a call, before any timer
 * fires: the caller's INVITE (~950 bytes with SDP) gets a 180 and a 200 relayed from a client
 * INVITE transaction to the callee (180 and 200 with SDP fed back through `receiveResponse`), then
 * the caller's BYE is relayed the same way and answered 200. Before the linger table: a server
 * INVITE in Accepted (Timer L), a client INVITE in Accepted (Timer M), a server BYE in Completed
 * (J) and a client BYE in Completed (K); after: an `accepted`, a `resend` and an `absorb` entry.
 *
 * REGISTER:
 * N (default 20,000) REGISTERs (~600 bytes, with Authorization), each parsed from its own Buffer as
 * the transport would hand it over, read the way the registrar reads it (Via, Call-ID, CSeq, From,
 * To, Contact, Authorization, Expires), go through the real transaction layer (fake transport, manual
 * clock so Timer J never fires) and are answered 200 with two Contact headers; responses are routed
 * by the transport's real `responseTarget`. The core keeps no reference. After a forced GC,
 * (heapUsed - baseline) / N is the JS heap held by one completed transaction; arrayBuffers (Buffer
 * memory outside the JS heap: the stored response bytes) is reported separately.
 * Retransmissions of a sample are then checked to still get the 200 back, and after Timer J the
 * table must be empty.
 */
import { buildResponse, parseMessage, SipRequest, type SipResponse } from '../src/sip/index.js';
import { createTransactionLayer, manualClock } from '../src/transaction/index.js';
import { responseTarget } from '../src/transport/index.js';
import type { Source, Target, TransportName } from '../src/transport/types.js';
import { BENCH_LOCAL, BENCH_TIMERS, requireGc } from './bench-common.js';

const gc = requireGc('bench/tx-memory.ts');

const mode = process.argv[2] === 'call' ? 'call' : 'register';
const N = Number((mode === 'call' ? process.argv[3] : process.argv[2]) ?? (mode === 'call' ? 10_000 : 20_000));
const T = BENCH_TIMERS;
const LOCAL = BENCH_LOCAL;

function register(i: number): Buffer {
  const lines = [
    'REGISTER sip:example.com SIP/2.0',
    `Via: SIP/2.0/UDP 192.0.2.${i % 250}:5060;branch=z9hG4bK${i.toString(36)}x7a9c3f21;rport=5060;received=198.51.100.7`,
    'Max-Forwards: 70',
    `To: <sip:user${i}@example.com>`,
    `From: <sip:user${i}@example.com>;tag=${(i * 7919).toString(16)}a4b2`,
    `Call-ID: ${(i * 104729).toString(36)}-843817637684230@998sdasdh09`,
    `CSeq: ${1000 + (i % 50)} REGISTER`,
    `Contact: <sip:user${i}@192.0.2.${i % 250}:5060;transport=udp>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-${i.toString(16).padStart(12, '0')}>"`,
    `Authorization: Digest username="user${i}", realm="example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359${i}", uri="sip:example.com", ` +
      'response="dfe56131d1958046689d83306477ecc0", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001',
    'User-Agent: ExamplePhone/5.1.2',
    'Expires: 3600',
    'Content-Length: 0',
    '',
    '',
  ];
  // a Buffer of its own, as a datagram from the socket (not a slice of Buffer's shared pool)
  const text = lines.join('\r\n');
  const b = Buffer.alloc(text.length);
  b.write(text, 0, 'latin1');
  return b;
}

const SDP = [
  'v=0',
  'o=user1 53655765 2353687637 IN IP4 192.0.2.10',
  's=-',
  'c=IN IP4 192.0.2.10',
  't=0 0',
  'm=audio 6000 RTP/AVP 0 8 101',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:101 telephone-event/8000',
  'a=fmtp:101 0-16',
  'a=ptime:20',
  'a=sendrecv',
  '',
].join('\r\n');

/** a request of the call as it arrives from the caller (INVITE with SDP, or BYE) */
function callRequest(i: number, method: 'INVITE' | 'BYE'): Buffer {
  const body = method === 'INVITE' ? SDP : '';
  const lines = [
    `${method} sip:bob${i}@example.com SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.${i % 250}:5060;branch=z9hG4bK${method[0]}${i.toString(36)}x7a9c3f21;rport=5060;received=198.51.100.7`,
    'Max-Forwards: 70',
    `To: <sip:bob${i}@example.com>${method === 'BYE' ? ';tag=b' + i.toString(36) : ''}`,
    `From: "Alice" <sip:alice${i}@example.com>;tag=${(i * 7919).toString(16)}a4b2`,
    `Call-ID: ${(i * 104729).toString(36)}-843817637684230@998sdasdh09`,
    `CSeq: ${method === 'INVITE' ? 1 : 2} ${method}`,
    `Contact: <sip:alice${i}@192.0.2.${i % 250}:5060;transport=udp>`,
    ...(method === 'INVITE' ? ['Content-Type: application/sdp', 'Allow: INVITE, ACK, CANCEL, BYE, OPTIONS'] : []),
    'User-Agent: ExamplePhone/5.1.2',
    `Content-Length: ${body.length}`,
    '',
    body,
  ];
  const text = lines.join('\r\n');
  const b = Buffer.alloc(text.length);
  b.write(text, 0, 'latin1');
  return b;
}

/** the callee's response to what we sent it, as bytes off the wire */
function calleeResponse(sent: SipRequest, status: number, i: number): SipResponse {
  const withSdp = status === 200 && sent.method === 'INVITE';
  const r = buildResponse(sent, status, {
    toTag: 'b' + i.toString(36),
    headers: [['Contact', `<sip:bob${i}@192.0.2.99:5060>`], ...(withSdp ? ([['Content-Type', 'application/sdp']] as Array<[string, string]>) : [])],
    ...(withSdp ? { body: Buffer.from(SDP, 'latin1') } : {}),
  });
  return parseMessage(r.toBuffer()) as SipResponse;
}

/** relay a downstream response upstream the way the proxy does: our Via removed */
function upstream(r: SipResponse): SipResponse {
  const up = r.clone();
  up.removeFirstValue('via');
  return up;
}

const CALLEE: Target = { transport: 'udp', address: '192.0.2.99', port: 5060 };
const CALLEE_SRC: Source = { transport: 'udp', address: '192.0.2.99', port: 5060, local: { transport: 'udp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' } };

const clock = manualClock(1_000_000);
let sends = 0;
let bytesSent = 0;
const layer = createTransactionLayer({
  transport: {
    send: (d: Buffer, _t: Target) => {
      sends++;
      bytesSent += d.length;
      return Promise.resolve();
    },
    endpoints: () => [LOCAL.udp, LOCAL.tcp],
    endpointFor: (t: TransportName) => (t === 'udp' || t === 'tcp' ? LOCAL[t] : undefined),
  },
  clock,
  timers: T,
  user: {
    request: (req, src) => (mode === 'call' ? relay(req, src) : registrar(req, src)),
    strayResponse: () => undefined,
  },
  responseTarget,
  maxTransactions: N * 4,
});

function registrar(req: SipRequest, src: Source): void {
  // what the registrar reads before answering
  req.topVia();
  req.callId();
  req.cseq();
  req.fromTag();
  req.header('to');
  req.headerValues('contact');
  req.header('authorization');
  req.header('expires');
  const st = layer.createServer(req, src);
  const c = req.header('contact') ?? '';
  st.respond(
    buildResponse(req, 200, {
      toTag: 'reg' + (sends % 1000).toString(36),
      headers: [
        ['Contact', `${c.split(';')[0]};expires=3600`],
        ['Contact', `<sip:other@192.0.2.77:5060;transport=udp>;expires=1200`],
        ['Date', 'Mon, 01 Jan 2024 00:00:00 GMT'],
      ],
    }),
  );
    }

/** a minimal stateful relay of the call's requests (what src/core/proxy.ts does, without policy) */
function relay(req: SipRequest, src: Source): void {
  if (req.method === 'ACK') return;
  const i = Number(/^(?:INVITE|BYE) sip:bob(\d+)@/.exec(req.uriText === '' ? '' : `${req.method} ${req.uriText}`)?.[1] ?? 0);
  const st = layer.createServer(req, src);
  const out = req.clone();
  out.setHeader('Max-Forwards', '69');
  const ct = layer.createClient(out, CALLEE, {
    provisional: (r) => st.respond(upstream(r)),
    final: (r) => st.respond(upstream(r)),
    timeout: () => undefined,
    transportError: () => undefined,
  });
  if (req.method === 'INVITE') layer.receiveResponse(calleeResponse(ct.request, 180, i), CALLEE_SRC);
  layer.receiveResponse(calleeResponse(ct.request, 200, i), CALLEE_SRC);
}

function one(i: number): void {
  if (mode === 'register') {
    layer.receiveRequest(parseMessage(register(i)) as SipRequest, src(i));
    return;
  }
  layer.receiveRequest(parseMessage(callRequest(i, 'INVITE')) as SipRequest, src(i));
  layer.receiveRequest(parseMessage(callRequest(i, 'BYE')) as SipRequest, src(i));
}

/** what the layer holds: live transactions + (since the linger table) linger entries */
function held(): number {
  const s = layer.stats() as { server: number; client: number; lingering?: number };
  return s.server + s.client + (s.lingering ?? 0);
}

const src = (i: number): Source => ({ transport: 'udp', address: `192.0.2.${i % 250}`, port: 5060, local: LOCAL.udp });

/** after the pending send promises have settled (their reactions hold the transactions until then) */
async function heap(): Promise<{ heap: number; buffers: number }> {
  await new Promise((r) => setImmediate(r));
  for (let k = 0; k < 4; k++) gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

// warm up code paths (and JIT) so they do not count
for (let i = 0; i < 200; i++) one(N + i);
clock.advance(64 * T.t1 + 1);
if (held() !== 0) throw new Error('warm-up transactions left');

const base = await heap();
const sent0 = { sends, bytesSent };
for (let i = 0; i < N; i++) one(i);
const after = await heap();
const sentDuring = { sends: sends - sent0.sends, bytes: bytesSent - sent0.bytesSent };
if (process.env.TX_SNAPSHOT !== undefined) (await import('node:v8')).writeHeapSnapshot(process.env.TX_SNAPSHOT);
const stats = layer.stats();
const perUnit = mode === 'call' ? undefined : 1;
if (perUnit !== undefined && held() !== N * perUnit) throw new Error(`expected ${N} held, got ${held()}`);

// sanity: retransmissions are absorbed and answered from the stored bytes
const before = sends;
const retrans = (i: number): Buffer => (mode === 'call' ? callRequest(i, 'BYE') : register(i));
for (let i = 0; i < 100; i++) layer.receiveRequest(parseMessage(retrans(i)) as SipRequest, src(i));
if (sends - before !== 100) throw new Error(`retransmissions answered ${sends - before}/100`);
clock.advance(64 * T.t1 + 1);
const left = layer.stats();
if (held() !== 0 || left.timers !== 0) throw new Error(`after Timer J: ${JSON.stringify(left)}`);

const heapPer = (after.heap - base.heap) / N;
const bufPer = (after.buffers - base.buffers) / N;
console.log(
  JSON.stringify({
    mode,
    n: N,
    held: stats,
    heapUsedPer: Math.round(heapPer),
    arrayBuffersPer: Math.round(bufPer),
    totalPer: Math.round(heapPer + bufPer),
    /** average size of what was sent per REGISTER / call (the stored finals are part of it) */
    bytesSentPer: Math.round(sentDuring.bytes / N),
    sendsPer: +(sentDuring.sends / N).toFixed(2),
    heapUsedDeltaMB: +((after.heap - base.heap) / 1048576).toFixed(2),
    node: process.version,
  }),
);
