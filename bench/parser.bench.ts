/**
 * Parser benchmark: src/sip vs the `sip` npm package, same process, same messages (bench/messages.ts).
 *
 *   npm run bench                  (tsx bench/parser.bench.ts)
 *   npm run bench -- --quick       (shorter sampling, for a smoke run)
 *
 * Both sides start from the Buffer a socket hands over. `sip.parse(buf)` converts it itself with
 * buf.toString('binary') (its own code path for socket data), so that conversion is inside its timing.
 * For edit + serialize, both sides end with a Buffer ready for socket.send: ours from toBuffer(),
 * theirs Buffer.from(sip.stringify(m), 'latin1').
 *
 * Three measurements per message:
 *  (a) parse to routable: ours = parseMessage + topVia + routes + maxForwards + callId + cseq + fromTag + toTag;
 *      theirs = sip.parse (which parses every header it knows, eagerly).
 *  (b) full parse: ours reads every header it knows; theirs sip.parse.
 *  (c) proxy edit + serialize: requests: add received/rport to the top Via, push a Via, pop the first Route,
 *      decrement Max-Forwards, push a Record-Route (INVITE); responses: pop the top Via. Then serialise.
 * Then a size-scaling table: full parse of pathological but well-formed headers of 1..64 KiB.
 */
import { bench, do_not_optimize, measure, run } from 'mitata';
import sip, { type SipNpmMessage } from 'sip';
import { formatVia, parseMessage, type SipRequest, type SipResponse } from '../src/sip/index.js';
import { MESSAGES, scaled } from './messages.js';

const quick = process.argv.includes('--quick');

// ------------------------------------------------------------------ ours

function routable(buf: Buffer): unknown {
  const m = parseMessage(buf);
  m.topVia();
  m.routes();
  m.maxForwards();
  m.callId();
  m.cseq();
  m.fromTag();
  m.toTag();
  return m;
}

function readAll(m: SipRequest | SipResponse): void {
  if (m.isRequest) do_not_optimize(m.uri);
  else do_not_optimize(m.reason);
  do_not_optimize(m.vias());
  do_not_optimize(m.from());
  do_not_optimize(m.to());
  do_not_optimize(m.callId());
  do_not_optimize(m.cseq());
  do_not_optimize(m.maxForwards());
  do_not_optimize(m.contentLength());
  do_not_optimize(m.contentType());
  do_not_optimize(m.expires());
  do_not_optimize(m.minExpires());
  do_not_optimize(m.contacts());
  do_not_optimize(m.routes());
  do_not_optimize(m.recordRoutes());
  do_not_optimize(m.paths());
  do_not_optimize(m.tokens('require'));
  do_not_optimize(m.tokens('proxy-require'));
  do_not_optimize(m.tokens('supported'));
  do_not_optimize(m.tokens('unsupported'));
  do_not_optimize(m.tokens('allow'));
  do_not_optimize(m.auth('authorization'));
  do_not_optimize(m.auth('proxy-authorization'));
  do_not_optimize(m.auth('www-authenticate'));
  do_not_optimize(m.auth('proxy-authenticate'));
  do_not_optimize(m.userAgent());
}

function full(buf: Buffer): unknown {
  const m = parseMessage(buf);
  readAll(m);
  return m;
}

const PROXY_VIA = formatVia('UDP', '203.0.113.1', 5060, 'z9hG4bKproxy0001');
const PROXY_RR = '<sip:203.0.113.1;lr>';

function editOurs(buf: Buffer): Buffer {
  const m = parseMessage(buf);
  if (m.isRequest) {
    m.setViaReceived('198.51.100.77', 5060);
    m.removeFirstValue('route');
    const mf = m.maxForwards();
    if (mf !== undefined) m.setHeader('max-forwards', String(mf - 1));
    if (m.method === 'INVITE') m.addHeader('record-route', PROXY_RR, 'before');
    m.addHeader('via', PROXY_VIA, 'before');
  } else {
    m.removeFirstValue('via');
  }
  return m.toBuffer();
}

// ------------------------------------------------------------------ theirs

function theirsParse(buf: Buffer): SipNpmMessage {
  const m = sip.parse(buf);
  if (m === undefined) throw new Error('sip.parse failed');
  return m;
}

function editTheirs(buf: Buffer): Buffer {
  const m = theirsParse(buf);
  const h = m.headers;
  if (m.method !== undefined) {
    const top = h.via[0];
    top.params.received = '198.51.100.77';
    if ('rport' in top.params) top.params.rport = '5060';
    if (Array.isArray(h.route)) h.route.shift();
    if (h['max-forwards'] !== undefined) h['max-forwards'] = String(Number(h['max-forwards']) - 1);
    if (m.method === 'INVITE') (h['record-route'] ??= []).unshift({ uri: sip.parseUri('sip:203.0.113.1;lr'), params: {} });
    h.via.unshift({ version: '2.0', protocol: 'UDP', host: '203.0.113.1', port: 5060, params: { branch: 'z9hG4bKproxy0001' } });
  } else {
    h.via.shift();
  }
  return Buffer.from(sip.stringify(m), 'latin1');
}

// ------------------------------------------------------------------ sanity: both sides do the same work

for (const [name, buf] of MESSAGES) {
  const a = parseMessage(editOurs(buf));
  const b = parseMessage(editTheirs(buf));
  const pick = (m: SipRequest | SipResponse): unknown[] => [
    m.vias().map((v) => [v.host, v.port, v.branch, v.received]),
    m.routes().map((r) => r.uri.raw),
    m.recordRoutes().length,
    m.maxForwards(),
    m.callId(),
    m.cseq(),
    m.body.length,
  ];
  const pa = JSON.stringify(pick(a));
  const pb = JSON.stringify(pick(b));
  if (pa !== pb) throw new Error(`${name}: the two edit paths disagree:\n ours   ${pa}\n theirs ${pb}`);
}

// ------------------------------------------------------------------ run

const CASES = ['routable', 'full', 'edit'] as const;
for (const [name, buf] of MESSAGES) {
  bench(`ours   routable  ${name}`, () => routable(buf));
  bench(`theirs routable  ${name}`, () => theirsParse(buf));
  bench(`ours   full      ${name}`, () => full(buf));
  bench(`theirs full      ${name}`, () => theirsParse(buf));
  bench(`ours   edit+ser  ${name}`, () => editOurs(buf));
  bench(`theirs edit+ser  ${name}`, () => editTheirs(buf));
}

const result = await run({ format: quick ? 'quiet' : 'mitata' });
const avg = new Map<string, number>();
for (const t of result.benchmarks) for (const r of t.runs) if (r.stats) avg.set(r.name, r.stats.avg);

const TARGET: Record<(typeof CASES)[number], number> = { routable: 3, full: 1.5, edit: 3 };
const LABEL: Record<(typeof CASES)[number], string> = { routable: 'routable', full: 'full    ', edit: 'edit+ser' };
const rows: string[] = [];
rows.push('| message | measurement | ours msg/s | sip msg/s | ratio | target |');
rows.push('|---|---|---:|---:|---:|---:|');
for (const [name] of MESSAGES) {
  for (const c of CASES) {
    const o = avg.get(`ours   ${LABEL[c]}  ${name}`)!;
    const t = avg.get(`theirs ${LABEL[c]}  ${name}`)!;
    const ratio = t / o;
    rows.push(`| ${name} | ${c} | ${fmt(1e9 / o)} | ${fmt(1e9 / t)} | ${ratio.toFixed(2)}x | ${ratio >= TARGET[c] ? 'ok' : 'MISSED'} (>= ${TARGET[c]}x) |`);
  }
}
console.log('\n' + rows.join('\n'));

// ------------------------------------------------------------------ size scaling

const BIG = { limits: { maxMessageSize: 1 << 20, maxHeaderLine: 1 << 20 } };
const KINDS = ['via-params', 'contact-list', 'quoted-pairs', 'auth-params'] as const;
const SIZES = [1, 2, 4, 8, 16, 64];
const scaleRows: string[] = [];
scaleRows.push(`| header kind | ${SIZES.map((s) => `${s} KiB`).join(' | ')} | ns/byte at 1 KiB -> 64 KiB |`);
scaleRows.push(`|---|${SIZES.map(() => '---:').join('|')}|---|`);
for (const kind of KINDS) {
  const cells: string[] = [];
  const perByte: number[] = [];
  for (const kb of SIZES) {
    const buf = scaled(kind, kb);
    readAll(parseMessage(buf, BIG)); // must not throw
    const s = await measure(() => {
      const m = parseMessage(buf, BIG);
      readAll(m);
    }, quick ? { min_cpu_time: 50e6 } : { min_cpu_time: 300e6 });
    cells.push(`${(s.avg / 1000).toFixed(1)} us`);
    perByte.push(s.avg / buf.length);
  }
  scaleRows.push(`| ${kind} | ${cells.join(' | ')} | ${perByte[0]!.toFixed(2)} -> ${perByte[perByte.length - 1]!.toFixed(2)} |`);
}
console.log('\nFull parse time vs header size (parseMessage + every accessor, 1 MiB limits):\n');
console.log(scaleRows.join('\n'));

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`;
}
