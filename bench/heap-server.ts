/**
 * The server's share of a sampled allocation profile of bench/hotpath.bench.ts (written with
 * `--alloc-profile` and ALLOC_OUT=file.json): the UA side of the bench (building requests, parsing
 * the server's answers) is left out, so the figures are what the server allocates.
 *
 *   node --import tsx bench/heap-server.ts file.json [top=40] [stack=FUNCTION]
 *
 * A sample is the server's when its stack passes through the bench's `inbound` (a datagram handed
 * to the core) or through no bench function at all (a Promise continuation of the core, a timer).
 * Prints self bytes by function, inclusive bytes by src/ function, and with `stack=NAME` the
 * callers (up to 6 frames) of the allocations made in functions named NAME.
 */
import { readFileSync } from 'node:fs';

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

const file = process.argv[2];
if (file === undefined) throw new Error('usage: heap-server.ts profile.json [top=N] [stack=NAME]');
const opt = (k: string): string | undefined => process.argv.find((a) => a.startsWith(`${k}=`))?.slice(k.length + 1);
const TOP = Number(opt('top') ?? 40);
const STACK = opt('stack');
const head = (JSON.parse(readFileSync(file, 'utf8')) as { head: Node }).head;

const label = (n: Node): string => {
  const url = n.callFrame.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/');
  return `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
};
const isBench = (n: Node): boolean => /\/bench\//.test(n.callFrame.url);

const self = new Map<string, number>();
const incl = new Map<string, number>();
const callers = new Map<string, number>();
let server = 0;
let ua = 0;
const walk = (n: Node, stack: Node[], viaInbound: boolean, benchSeen: boolean): void => {
  const inb = viaInbound || (isBench(n) && n.callFrame.functionName === 'inbound');
  const bs = benchSeen || (isBench(n) && !['main', 'rounds', 'allocProfile', 'timed'].includes(n.callFrame.functionName) && n.callFrame.functionName !== '');
  stack.push(n);
  if (n.selfSize > 0) {
    if (inb || !bs) {
      server += n.selfSize;
      const me = label(n);
      self.set(me, (self.get(me) ?? 0) + n.selfSize);
      const seen = new Set<string>();
      for (const f of stack) {
        const l = label(f);
        if (seen.has(l) || !l.includes('src/')) continue;
        seen.add(l);
        incl.set(l, (incl.get(l) ?? 0) + n.selfSize);
      }
      if (STACK !== undefined && n.callFrame.functionName === STACK) {
        const k = stack.slice(-7).map((f) => f.callFrame.functionName || '(anon)').join(' < ');
        callers.set(k, (callers.get(k) ?? 0) + n.selfSize);
      }
    } else ua += n.selfSize;
  }
  for (const c of n.children) walk(c, stack, inb, bs);
  stack.pop();
};
walk(head, [], false, false);
const pct = (v: number): string => ((100 * v) / server).toFixed(1).padStart(5);
console.log(`server ${(server / 1e6).toFixed(1)} MB sampled, UA side ${(ua / 1e6).toFixed(1)} MB (left out)`);
console.log('self:');
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`  ${pct(v)} %  ${k}`);
console.log('inclusive (src/):');
for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`  ${pct(v)} %  ${k}`);
if (STACK !== undefined) {
  console.log(`callers of ${STACK}:`);
  for (const [k, v] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`  ${pct(v)} %  ${k.split(' < ').reverse().join(' > ')}`);
}
