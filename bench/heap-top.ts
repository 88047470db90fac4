/**
 * What a V8 heap snapshot holds, by object kind, and what grew between two snapshots.
 *
 *   node --import tsx bench/heap-top.ts AFTER.heapsnapshot [BEFORE.heapsnapshot] [top=30]
 *
 * Groups nodes by type + name (constructor name for objects, "(string)", "(closure) fn", arrays,
 * "(system) ..."), prints count and self size per group (and the difference to BEFORE), and for the
 * groups that grew most, which group holds them (the first retainer that is not a weak edge).
 * Self sizes only (no retained sizes): enough to see what is kept per request.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

interface Groups {
  count: Map<string, number>;
  size: Map<string, number>;
  /** group → retainer group → count */
  holders: Map<string, Map<string, number>>;
}

function load(path: string): Groups {
  const s = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const nf = s.snapshot.meta.node_fields;
  const ef = s.snapshot.meta.edge_fields;
  const types = s.snapshot.meta.node_types[0];
  const etypes = s.snapshot.meta.edge_types[0];
  const N = nf.length;
  const E = ef.length;
  const iType = nf.indexOf('type');
  const iName = nf.indexOf('name');
  const iSize = nf.indexOf('self_size');
  const iEdges = nf.indexOf('edge_count');
  const eType = ef.indexOf('type');
  const eTo = ef.indexOf('to_node');
  const nodes = s.nodes;
  const count = nodes.length / N;
  const group = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    const t = types[nodes[i * N + iType]!]!;
    const name = s.strings[nodes[i * N + iName]!]!;
    group[i] =
      t === 'string' || t === 'concatenated string' || t === 'sliced string'
        ? `(${t})`
        : t === 'object' || t === 'native'
          ? name.slice(0, 60)
          : t === 'closure'
            ? `(closure) ${name.slice(0, 40)}`
            : `(${t}) ${name.slice(0, 40)}`;
  }
  const g: Groups = { count: new Map(), size: new Map(), holders: new Map() };
  for (let i = 0; i < count; i++) {
    const k = group[i]!;
    g.count.set(k, (g.count.get(k) ?? 0) + 1);
    g.size.set(k, (g.size.get(k) ?? 0) + nodes[i * N + iSize]!);
  }
  // first non-weak retainer of each node
  const firstHolder = new Int32Array(count).fill(-1);
  let e = 0;
  for (let i = 0; i < count; i++) {
    const n = nodes[i * N + iEdges]!;
    for (let k = 0; k < n; k++, e++) {
      const et = etypes[s.edges[e * E + eType]!];
      if (et === 'weak' || et === 'shortcut') continue;
      const to = s.edges[e * E + eTo]! / N;
      if (firstHolder[to] === -1) firstHolder[to] = i;
    }
  }
  for (let i = 0; i < count; i++) {
    const h = firstHolder[i]!;
    if (h < 0) continue;
    const k = group[i]!;
    let m = g.holders.get(k);
    if (m === undefined) g.holders.set(k, (m = new Map()));
    const hk = group[h]!;
    m.set(hk, (m.get(hk) ?? 0) + 1);
  }
  return g;
}

const [afterPath, beforePath, topText] = process.argv.slice(2);
if (afterPath === undefined) {
  console.error('usage: heap-top.ts AFTER.heapsnapshot [BEFORE.heapsnapshot] [top]');
  process.exit(2);
}
const top = Number(topText ?? 30);
const after = load(afterPath);
const before = beforePath !== undefined ? load(beforePath) : undefined;
const rows = [...after.size.keys()].map((k) => ({
  k,
  count: after.count.get(k)!,
  size: after.size.get(k)!,
  dCount: after.count.get(k)! - (before?.count.get(k) ?? 0),
  dSize: after.size.get(k)! - (before?.size.get(k) ?? 0),
}));
const total = rows.reduce((a, r) => a + r.size, 0);
const dTotal = rows.reduce((a, r) => a + r.dSize, 0);
rows.sort((a, b) => (before !== undefined ? b.dSize - a.dSize : b.size - a.size));
console.log(`total self size ${(total / 1048576).toFixed(1)} MB${before !== undefined ? `, grew ${(dTotal / 1048576).toFixed(1)} MB` : ''}`);
console.log('| group | count | self KB | Δ count | Δ self KB | held mostly by |');
console.log('|---|---|---|---|---|---|');
for (const r of rows.slice(0, top)) {
  const holders = [...(after.holders.get(r.k)?.entries() ?? [])].sort((a, b) => b[1] - a[1]).slice(0, 2);
  console.log(
    `| ${r.k.replace(/\|/g, '\\|')} | ${r.count} | ${(r.size / 1024).toFixed(0)} | ${r.dCount} | ${(r.dSize / 1024).toFixed(0)} | ${holders.map(([h, n]) => `${h.replace(/\|/g, '\\|')} (${n})`).join(', ')} |`,
  );
}
