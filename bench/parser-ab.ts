/**
 * Parser A/B for a busy machine: the work of bench/parser.bench.ts's routable / full modes (ours and theirs), timed
 * as CPU time of the process (process.cpuUsage) per batch of 3000 messages, the functions interleaved batch by batch,
 * reporting min / median ns per message and the ratios of the minima and of the 25th percentiles. CPU time leaves
 * out the time the process waits for a core, which is what the load of other processes mostly adds.
 *
 *   npx tsx bench/parser-ab.ts [fn,fn,...] [rounds]     fns: parse routable full vias fromto contacts rr tokens auth T_routable T_full
 */
import { do_not_optimize } from 'mitata';
import sip from 'sip';
import { parseMessage } from '../src/sip/index.js';
import { MESSAGES } from './messages.js';
type M = ReturnType<typeof parseMessage>;
function readAll(m: M): void {
  if (m.isRequest) do_not_optimize(m.uri); else do_not_optimize(m.reason);
  do_not_optimize(m.vias()); do_not_optimize(m.from()); do_not_optimize(m.to()); do_not_optimize(m.callId());
  do_not_optimize(m.cseq()); do_not_optimize(m.maxForwards()); do_not_optimize(m.contentLength()); do_not_optimize(m.contentType());
  do_not_optimize(m.expires()); do_not_optimize(m.minExpires()); do_not_optimize(m.contacts()); do_not_optimize(m.routes());
  do_not_optimize(m.recordRoutes()); do_not_optimize(m.paths());
  do_not_optimize(m.tokens('require')); do_not_optimize(m.tokens('proxy-require')); do_not_optimize(m.tokens('supported'));
  do_not_optimize(m.tokens('unsupported')); do_not_optimize(m.tokens('allow'));
  do_not_optimize(m.auth('authorization')); do_not_optimize(m.auth('proxy-authorization'));
  do_not_optimize(m.auth('www-authenticate')); do_not_optimize(m.auth('proxy-authenticate'));
  do_not_optimize(m.userAgent());
  do_not_optimize(m.body);
}
const TOK = ['require', 'proxy-require', 'supported', 'unsupported', 'allow'];
function fullTheirs(buf: Buffer): unknown {
  const m = sip.parse(buf)!; const h = m.headers;
  if (m.method !== undefined) do_not_optimize(sip.parseUri(m.uri as string));
  if (h.from !== undefined) do_not_optimize(sip.parseUri(h.from.uri));
  if (h.to !== undefined) do_not_optimize(sip.parseUri(h.to.uri));
  if (Array.isArray(h.contact)) for (const c of h.contact) do_not_optimize(sip.parseUri(c.uri));
  for (const t of TOK) { const v = h[t]; if (typeof v === 'string') do_not_optimize(v.split(/\s*,\s*/)); }
  return m;
}
function routableTheirs(buf: Buffer): unknown { const m = sip.parse(buf)!; if (m.method !== undefined) do_not_optimize(sip.parseUri(m.uri as string)); return m; }
const fns: Record<string, (b: Buffer) => unknown> = {
  parse: (b) => parseMessage(b),
  routable: (b) => { const m = parseMessage(b); m.topVia(); m.routes(); m.maxForwards(); m.callId(); m.cseq(); m.fromTag(); m.toTag(); return m; },
  full: (b) => { const m = parseMessage(b); readAll(m); return m; },
  vias: (b) => parseMessage(b).vias(),
  fromto: (b) => { const m = parseMessage(b); m.from(); return m.to(); },
  contacts: (b) => parseMessage(b).contacts(),
  rr: (b) => { const m = parseMessage(b); m.routes(); return m.recordRoutes(); },
  tokens: (b) => { const m = parseMessage(b); for (const t of TOK) m.tokens(t); return m; },
  auth: (b) => parseMessage(b).auth('authorization'),
  T_routable: routableTheirs,
  T_full: fullTheirs,
};
const pick = (process.argv[2] ?? 'parse,routable,full,T_routable,T_full').split(',');
const ROUNDS = Number(process.argv[3] ?? 60);
const B = 3000;
const res: Record<string, number[]> = {};
for (const [name, buf] of MESSAGES) {
  for (const f of pick) res[name + ' ' + f] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const f of pick) {
      const fn = fns[f]!;
      const t0 = process.cpuUsage();
      for (let i = 0; i < B; i++) do_not_optimize(fn(buf));
      const d = process.cpuUsage(t0);
      res[name + ' ' + f]!.push(((d.user + d.system) * 1000) / B);
    }
  }
}
const q = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.floor(p * (a.length - 1))]!;
for (const [name] of MESSAGES) {
  const line = pick.map((f) => { const a = res[name + ' ' + f]!; return `${f} ${q(a, 0).toFixed(0)}/${q(a, 0.5).toFixed(0)}`; });
  const r = (o: string, t: string) => res[name + ' ' + o] && res[name + ' ' + t] ? `${o}: min ${(q(res[name + ' ' + t]!, 0) / q(res[name + ' ' + o]!, 0)).toFixed(2)}x q25 ${(q(res[name + ' ' + t]!, 0.25) / q(res[name + ' ' + o]!, 0.25)).toFixed(2)}x` : '';
  console.log(name.padEnd(14), line.join('  '), '|', r('routable', 'T_routable'), r('full', 'T_full'));
}
