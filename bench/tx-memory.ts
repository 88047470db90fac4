/**
 * Heap held per completed server non-INVITE transaction (a REGISTER answered 200, waiting out Timer J).
 *
 *   node --expose-gc --import tsx bench/tx-memory.ts [N]
 *
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
import { buildResponse, parseMessage, SipRequest } from '../src/sip/index.js';
import { createTransactionLayer, manualClock, type TimerSettings } from '../src/transaction/index.js';
import { responseTarget } from '../src/transport/index.js';
import type { LocalEndpoint, Source, Target, TransportName } from '../src/transport/types.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run with node --expose-gc --import tsx bench/tx-memory.ts');
  process.exit(2);
}

const N = Number(process.argv[2] ?? 20_000);
const T: TimerSettings = { t1: 500, t2: 4000, t4: 5000, timerC: 180_000, trying: 200 };
const LOCAL: Record<TransportName, LocalEndpoint> = {
  udp: { transport: 'udp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' },
  tcp: { transport: 'tcp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' },
};

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

const clock = manualClock(1_000_000);
let sends = 0;
const layer = createTransactionLayer({
  transport: {
    send: (_d: Buffer, _t: Target) => {
      sends++;
      return Promise.resolve();
    },
    endpoints: () => [LOCAL.udp, LOCAL.tcp],
    endpointFor: (t: TransportName) => LOCAL[t],
  },
  clock,
  timers: T,
  user: {
    request: (req, src) => {
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
    },
    strayResponse: () => undefined,
  },
  responseTarget,
  maxTransactions: N * 2,
});

const src = (i: number): Source => ({ transport: 'udp', address: `192.0.2.${i % 250}`, port: 5060, local: LOCAL.udp });

function heap(): { heap: number; buffers: number } {
  for (let k = 0; k < 4; k++) gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

// warm up code paths (and JIT) so they do not count
for (let i = 0; i < 200; i++) layer.receiveRequest(parseMessage(register(N + i)) as SipRequest, src(i));
clock.advance(64 * T.t1 + 1);
if (layer.stats().server !== 0) throw new Error('warm-up transactions left');

const base = heap();
for (let i = 0; i < N; i++) layer.receiveRequest(parseMessage(register(i)) as SipRequest, src(i));
const after = heap();
if (process.env.TX_SNAPSHOT !== undefined) (await import('node:v8')).writeHeapSnapshot(process.env.TX_SNAPSHOT);
const live = layer.stats().server;
if (live !== N) throw new Error(`expected ${N} live transactions, got ${live}`);

// sanity: retransmissions are absorbed and answered from the stored bytes
const before = sends;
for (let i = 0; i < 100; i++) layer.receiveRequest(parseMessage(register(i)) as SipRequest, src(i));
if (sends - before !== 100) throw new Error(`retransmissions answered ${sends - before}/100`);
clock.advance(64 * T.t1 + 1);
const left = layer.stats();
if (left.server !== 0 || left.timers !== 0) throw new Error(`after Timer J: ${JSON.stringify(left)}`);

const heapPer = (after.heap - base.heap) / N;
const bufPer = (after.buffers - base.buffers) / N;
console.log(
  JSON.stringify({
    n: N,
    heapUsedPerTx: Math.round(heapPer),
    arrayBuffersPerTx: Math.round(bufPer),
    totalPerTx: Math.round(heapPer + bufPer),
    heapUsedDeltaMB: +((after.heap - base.heap) / 1048576).toFixed(2),
    node: process.version,
  }),
);
