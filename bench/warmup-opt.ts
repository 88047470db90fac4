/**
 * What the start-up warm-up (src/warmup.ts) saves: TurboFan optimisations during the first call
 * load after start, with the warm-up off and on. A real server (startServer, SQLite, UDP on
 * 127.0.0.1, an ephemeral port), then LOAD calls through real UDP from a small in-process UA
 * (SIPp's uac-call.xml against uas.xml: INVITE/407/ACK/INVITE+auth/100/180/200/ACK/BYE/200, 20 at
 * a time), with the warm-up's counts as given. No SIPp.
 *
 *   bash bench/warmup-opt.sh                     the table of bench/WARMUP.md (several runs)
 *   stdbuf -o0 node --trace-opt --import tsx bench/warmup-opt.ts REGISTERS CALLS MAX_MS [LOAD=2000]
 *       prints MARK-START / MARK-END around the load and one RESULT line; count the lines
 *       "completed optimizing" (--trace-opt) between the marks. PRELOAD=N: N calls before the
 *       measured load (a process that has had a load already: the floor).
 */
import dgram from 'node:dgram';
import { writeSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../src/config.js';
import { digestHa1, digestResponse } from '../src/core/auth.js';
import { createLogger } from '../src/log.js';
import { startServer } from '../src/server.js';
import { buildResponse, parseMessage, SipRequest, SipResponse } from '../src/sip/index.js';
import { initSchema, openStores } from '../src/store/index.js';

const [registers, calls, maxMs] = process.argv.slice(2, 5).map(Number) as [number, number, number];
const LOAD = Number(process.argv[5] ?? 2000);
const CONCURRENCY = 20;
const DOMAIN = 'sip.test';
const HOST = '127.0.0.1';
const SDP = 'v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';
const mark = (s: string): void => void writeSync(1, `${s}\n`);

const dir = mkdtempSync(join(tmpdir(), 'sipd-warmup-opt-'));
const db = { kind: 'sqlite' as const, path: join(dir, 'sipd.sqlite') };
await initSchema(db);
{
  const st = await openStores({ db, location: { db_mode: 'db-only' } });
  await st.subscribers.add('alice', DOMAIN, 'pw-alice');
  await st.subscribers.add('bob', DOMAIN, 'pw-bob');
  await st.close();
}
const base = loadConfig({ env: { SIPD_LISTEN: `udp:${HOST}:5060`, SIPD_DOMAINS: DOMAIN, SIPD_DB: `sqlite:${db.path}`, SIPD_METRICS: 'off', SIPD_LOG_LEVEL: 'info', SIPD_STATE_DIR: join(dir, 'state') } });
const config = { ...base, listen: [{ transport: 'udp' as const, host: HOST, port: 0 }], location: { ...base.location, db_mode: 'memory' as const }, warmup: { registers, calls, max_ms: maxMs } };
let warmLine: Record<string, unknown> | undefined;
// info level, as in production (one line per request), written nowhere; the warm-up's line kept
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    const s = chunk.toString();
    if (s.includes('"warm-up')) warmLine = JSON.parse(s) as Record<string, unknown>;
    cb();
  },
});
const t0 = performance.now();
const server = await startServer(config, { log: createLogger('info', sink) });
const startMs = performance.now() - t0;
const port = server.endpoints().find((e) => e.transport === 'udp')!.port;

const open = (): Promise<dgram.Socket> =>
  new Promise((r) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, HOST, () => r(s));
  });
const caller = await open();
const callee = await open();
const cPort = caller.address().port;
const bPort = callee.address().port;
const send = (s: dgram.Socket, text: string): void => s.send(Buffer.from(text, 'latin1'), port, HOST);
let seq = 0;
const branch = (): string => `z9hG4bK-b${(++seq).toString(36)}`;
const auth = (ch: string, user: string, pw: string, method: string, uri: string): string => {
  const nonce = /nonce="([^"]+)"/.exec(ch)?.[1] ?? '';
  const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', user, DOMAIN, pw), method, uri, nonce, qop: 'auth', nc: '00000001', cnonce: 'c0ffee' });
  return `Digest username="${user}", realm="${DOMAIN}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`;
};

// the callee: REGISTER (401, 200), then answers INVITE 100/180/200 and BYE 200
let registered: () => void = () => undefined;
const reg = (cseq: number, a?: string): string =>
  [`REGISTER sip:${DOMAIN} SIP/2.0`, `Via: SIP/2.0/UDP ${HOST}:${bPort};branch=${branch()};rport`, 'Max-Forwards: 70', `From: <sip:bob@${DOMAIN}>;tag=rb`, `To: <sip:bob@${DOMAIN}>`, 'Call-ID: reg-bob', `CSeq: ${cseq} REGISTER`, `Contact: <sip:bob@${HOST}:${bPort}>;expires=3600`, ...(a ? [`Authorization: ${a}`] : []), 'Content-Length: 0', '', ''].join('\r\n');
callee.on('message', (data) => {
  const m = parseMessage(data);
  if (m instanceof SipResponse) {
    if (m.status === 401) send(callee, reg(2, auth(m.header('www-authenticate') ?? '', 'bob', 'pw-bob', 'REGISTER', `sip:${DOMAIN}`)));
    else if (m.status === 200) registered();
    return;
  }
  const req = m as SipRequest;
  if (req.method === 'ACK') return;
  const tag = 'b' + (req.callId() ?? '').slice(0, 8);
  const respond = (status: number): void => {
    const sdp = status === 200 && req.method === 'INVITE';
    const r = buildResponse(req, status, {
      toTag: status > 100 ? tag : undefined,
      copyRecordRoute: status > 100 && req.method === 'INVITE',
      headers: status > 100 ? [['Contact', `<sip:bob@${HOST}:${bPort}>`], ...(sdp ? ([['Content-Type', 'application/sdp']] as Array<[string, string]>) : [])] : [],
      ...(sdp ? { body: Buffer.from(SDP, 'latin1') } : {}),
    });
    callee.send(r.toBuffer(), port, HOST);
  };
  if (req.method === 'INVITE') [100, 180, 200].forEach(respond);
  else respond(200);
});
await new Promise<void>((r) => {
  registered = r;
  send(callee, reg(1));
});

// the caller: LOAD calls, CONCURRENCY at a time; per call its wall time
interface Call { id: string; tag: string; to?: string; routes?: string[]; t: number; done: () => void }
const live = new Map<string, Call>();
const times: number[] = [];
const invite = (c: Call, cseq: number, a?: string): string =>
  [`INVITE sip:bob@${DOMAIN} SIP/2.0`, `Via: SIP/2.0/UDP ${HOST}:${cPort};branch=${branch()}`, 'Max-Forwards: 70', `From: <sip:alice@${DOMAIN}>;tag=${c.tag}`, `To: <sip:bob@${DOMAIN}>`, `Call-ID: ${c.id}`, `CSeq: ${cseq} INVITE`, `Contact: <sip:alice@${HOST}:${cPort}>`, ...(a ? [`Proxy-Authorization: ${a}`] : []), 'Content-Type: application/sdp', `Content-Length: ${SDP.length}`, '', SDP].join('\r\n');
const dialog = (c: Call, method: string, cseq: number, ruri: string, b: string, routes: string[]): string =>
  [`${method} ${ruri} SIP/2.0`, `Via: SIP/2.0/UDP ${HOST}:${cPort};branch=${b}`, ...routes.map((r) => `Route: ${r}`), 'Max-Forwards: 70', `From: <sip:alice@${DOMAIN}>;tag=${c.tag}`, `To: ${c.to ?? ''}`, `Call-ID: ${c.id}`, `CSeq: ${cseq} ${method}`, 'Content-Length: 0', '', ''].join('\r\n');
let failures = 0;
caller.on('message', (data) => {
  const res = parseMessage(data) as SipResponse;
  const c = live.get(res.callId() ?? '');
  const cs = res.cseq();
  if (c === undefined || cs === undefined) return;
  if (cs.method === 'INVITE' && res.status === 407) {
    c.to = res.header('to') ?? '';
    send(caller, dialog(c, 'ACK', 1, `sip:bob@${DOMAIN}`, res.topVia()?.branch ?? '', []));
    send(caller, invite(c, 2, auth(res.header('proxy-authenticate') ?? '', 'alice', 'pw-alice', 'INVITE', `sip:bob@${DOMAIN}`)));
  } else if (cs.method === 'INVITE' && res.status === 200) {
    if (c.routes !== undefined) return;
    c.to = res.header('to') ?? '';
    c.routes = res.headerValues('record-route');
    send(caller, dialog(c, 'ACK', 2, `sip:bob@${HOST}:${bPort}`, branch(), c.routes));
    send(caller, dialog(c, 'BYE', 3, `sip:bob@${HOST}:${bPort}`, branch(), c.routes));
  } else if (cs.method === 'BYE' && res.status === 200) {
    live.delete(c.id);
    times.push(performance.now() - c.t);
    c.done();
  } else if (res.status >= 300) {
    failures++;
    live.delete(c.id);
    c.done();
  }
});
const one = (i: number): Promise<void> =>
  new Promise((done) => {
    const c: Call = { id: `bench-${i}-${process.pid}@${HOST}`, tag: `t${i}`, t: performance.now(), done };
    live.set(c.id, c);
    send(caller, invite(c, 1));
  });

let next = 0;
const load = async (n: number): Promise<void> => {
  const end = next + n;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < end) await one(next++);
    }),
  );
};
// PRELOAD=N: N calls before the measured load (a process that has had a load already: the floor)
const PRELOAD = Number(process.env.PRELOAD ?? 0);
if (PRELOAD > 0) {
  await load(PRELOAD);
  times.length = 0;
}
mark('MARK-START');
const l0 = performance.now();
await load(LOAD);
const loadMs = performance.now() - l0;
mark('MARK-END');
const first = times.slice(0, 200).sort((a, b) => a - b);
const all = [...times].sort((a, b) => a - b);
const q = (a: number[], p: number): number => +(a[Math.min(a.length - 1, Math.floor(a.length * p))] ?? 0).toFixed(2);
mark(
  'RESULT ' +
    JSON.stringify({
      warmup: config.warmup,
      warmupLine: warmLine === undefined ? null : { registers: warmLine.registers, calls: warmLine.calls, ms: warmLine.ms },
      startMs: Math.round(startMs),
      load: LOAD,
      preload: PRELOAD,
      failures,
      loadMs: Math.round(loadMs),
      callMs: { first200p50: q(first, 0.5), first200p99: q(first, 0.99), p50: q(all, 0.5), p99: q(all, 0.99), max: q(all, 1) },
    }),
);
caller.close();
callee.close();
await server.stop();
rmSync(dir, { recursive: true, force: true });
