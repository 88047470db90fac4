/**
 * The wire fuzzer's mutation engine (test/fuzz/mutate.ts): the PRNG is deterministic for a seed, and
 * each mutation class produces what it claims.
 */
import { isUtf8 } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import {
  BAD_UTF8, INTERESTING_NUMBERS, MUTATION_KINDS, Rng, chunks, headerName, mutate, mutateOnce, numericFields, splitParts, type MutationKind,
} from './mutate.js';
import { corpusSeeds, everyTemplate, type SeedContext } from './seeds.js';
import { ROOT } from '../helpers/sipd-process.js';

const CTX: SeedContext = { transport: 'UDP', self: { host: '127.0.0.1', port: 40000 }, sipd: { host: '127.0.0.1', port: 5060 }, domain: '127.0.0.1' };

const REGISTER = [
  'REGISTER sip:127.0.0.1 SIP/2.0',
  'Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1234;rport',
  'Max-Forwards: 70',
  'From: <sip:alice@127.0.0.1>;tag=abc',
  'To: <sip:alice@127.0.0.1>',
  'Call-ID: c1@host',
  'CSeq: 7 REGISTER',
  'Contact: <sip:alice@127.0.0.1:40000>;expires=60;q=0.5;reg-id=1',
  'Expires: 3600',
  'Content-Length: 0',
  '',
  '',
].join('\r\n');

/** logical header lines by name, in order. */
const names = (s: string): string[] => splitParts(s).headers.map(headerName);
const count = (xs: readonly string[], x: string): number => xs.filter((y) => y === x).length;
const bitDistance = (a: string, b: string): number => {
  let n = 0;
  for (let i = 0; i < a.length; i++) for (let x = a.charCodeAt(i) ^ b.charCodeAt(i); x !== 0; x &= x - 1) n++;
  return n;
};

/** Run one class under many seeds. */
function each(kind: MutationKind, f: (out: string, r: Rng) => void, n = 200): void {
  for (let seed = 1; seed <= n; seed++) f(mutateOnce(kind, new Rng(seed), REGISTER), new Rng(seed));
}

describe('Rng', () => {
  it('is deterministic for a seed, and different seeds give different streams', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xs = Array.from({ length: 100 }, () => a.u32());
    expect(Array.from({ length: 100 }, () => b.u32())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c.u32())).not.toEqual(xs);
    expect(new Set(xs).size).toBeGreaterThan(95);
  });

  it('derive() depends on the seed and the label only', () => {
    const used = new Rng(7);
    for (let i = 0; i < 10; i++) used.u32();
    expect(Rng.derive(7, 'udp').u32()).toBe(Rng.derive(7, 'udp').u32());
    expect(Rng.derive(7, 'udp').u32()).not.toBe(Rng.derive(7, 'tcp').u32());
    expect(Rng.derive(7, 'udp').u32()).not.toBe(Rng.derive(8, 'udp').u32());
  });

  it('int() and range() stay in bounds', () => {
    const r = new Rng(1);
    for (let i = 0; i < 10_000; i++) {
      const x = r.int(7);
      expect(x >= 0 && x < 7 && Number.isInteger(x)).toBe(true);
      const y = r.range(-3, 3);
      expect(y >= -3 && y <= 3).toBe(true);
    }
  });
});

describe('mutate', () => {
  it('gives the same bytes and the same classes for the same seed, over templates and the corpus', () => {
    const seeds = [...everyTemplate(new Rng(5), CTX), ...corpusSeeds(ROOT)].map((s) => s.text);
    const run = (seed: number): Array<{ text: string; ops: MutationKind[] }> => {
      const r = new Rng(seed);
      return seeds.map((s) => mutate(r, s, { maxSize: 65_000, donors: seeds }));
    };
    const a = run(99);
    expect(run(99)).toEqual(a);
    expect(run(100).map((x) => x.text)).not.toEqual(a.map((x) => x.text));
    for (const m of a) {
      expect(m.ops.length).toBeGreaterThanOrEqual(1);
      expect(m.text.length).toBeLessThanOrEqual(65_000);
    }
  });

  it('uses every class', () => {
    const r = new Rng(3);
    const seen = new Set<MutationKind>();
    for (let i = 0; i < 2000; i++) for (const k of mutate(r, REGISTER).ops) seen.add(k);
    expect([...seen].sort()).toEqual([...MUTATION_KINDS].sort());
  });

  it('keeps every result within maxSize, even for the growing classes', () => {
    for (const kind of ['overlong-line', 'many-headers', 'many-vias', 'many-contacts', 'splice'] as const) {
      for (let seed = 1; seed <= 50; seed++) expect(mutateOnce(kind, new Rng(seed), REGISTER, { maxSize: 2000 }).length).toBeLessThanOrEqual(2000);
    }
  });
});

describe('each mutation class produces what it claims', () => {
  it('bitflip: same length, 1 to 8 bits differ', () => {
    each('bitflip', (out) => {
      expect(out.length).toBe(REGISTER.length);
      const d = bitDistance(out, REGISTER);
      expect(d).toBeGreaterThanOrEqual(1);
      expect(d).toBeLessThanOrEqual(8);
    });
  });

  it('byte: same length, at most 4 octets differ and every new one is from the table', () => {
    each('byte', (out) => {
      expect(out.length).toBe(REGISTER.length);
      const diff = [...out].filter((ch, i) => ch !== REGISTER[i]);
      expect(diff.length).toBeLessThanOrEqual(4);
      for (const ch of diff) expect([0x00, 0xff, 0x7f, 0x80, 0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x3b, 0x2c, 0x3d, 0x22, 0x3c, 0x3e, 0x40, 0x25, 0x5b, 0x5d, 0x5c, 0x2f, 0x3f]).toContain(ch.charCodeAt(0));
    });
  });

  it('truncate: a strict prefix', () => {
    each('truncate', (out) => {
      expect(out.length).toBeLessThan(REGISTER.length);
      expect(REGISTER.startsWith(out)).toBe(true);
    });
  });

  it('dup-header: one header line occurs 1 to 3 more times, the others unchanged', () => {
    const before = names(REGISTER);
    each('dup-header', (out) => {
      const after = names(out);
      const extra = after.length - before.length;
      expect(extra).toBeGreaterThanOrEqual(1);
      expect(extra).toBeLessThanOrEqual(3);
      const grown = [...new Set(after)].filter((n) => count(after, n) !== count(before, n));
      expect(grown).toHaveLength(1);
      expect(count(after, grown[0]!) - count(before, grown[0]!)).toBe(extra);
      expect(splitParts(out).start).toBe(splitParts(REGISTER).start);
    });
  });

  it('del-header: exactly one header line is gone, the rest in order', () => {
    const before = splitParts(REGISTER).headers;
    each('del-header', (out) => {
      const after = splitParts(out).headers;
      expect(after).toHaveLength(before.length - 1);
      const gone = before.findIndex((h, i) => after[i] !== h);
      expect(after).toEqual(before.filter((_, i) => i !== gone));
    });
  });

  it('number: one numeric field (Content-Length, CSeq, Max-Forwards, Expires, port, rport, q, reg-id ...) gets another value', () => {
    const fields = numericFields(REGISTER);
    expect(fields.map((f) => f.what).sort()).toEqual([';expires', ';q', ';reg-id', 'content-length', 'cseq', 'expires', 'max-forwards', 'port', 'port'].sort());
    const hit = new Set<string>();
    each('number', (out) => {
      // the text around exactly one field is unchanged; the field holds an interesting or a random (possibly negative) number
      const f = fields.find((x) => out.startsWith(REGISTER.slice(0, x.start)) && out.endsWith(REGISTER.slice(x.end)) && out.length - (REGISTER.length - (x.end - x.start)) >= 0);
      expect(f, out).toBeDefined();
      const value = out.slice(f!.start, out.length - (REGISTER.length - f!.end));
      expect(INTERESTING_NUMBERS.includes(value) || /^-?\d+$/.test(value), value).toBe(true);
      hit.add(f!.what);
    }, 400);
    expect(hit.size).toBe(new Set(fields.map((f) => f.what)).size);
  });

  it('bad-utf8: the result is not UTF-8 and holds one sequence from the table', () => {
    expect(isUtf8(Buffer.from(REGISTER, 'latin1'))).toBe(true);
    for (const b of BAD_UTF8) expect(isUtf8(Buffer.from(b, 'latin1')), JSON.stringify(b)).toBe(false);
    each('bad-utf8', (out) => {
      expect(isUtf8(Buffer.from(out, 'latin1'))).toBe(false);
      expect(BAD_UTF8.some((b) => out.length === REGISTER.length + b.length && out.includes(b))).toBe(true);
    });
  });

  it('nul: NUL octets (or %00) inserted, nothing else changed', () => {
    each('nul', (out) => {
      expect(out.includes('\0') || out.includes('%00')).toBe(true);
      expect(out.replace(/\0|%00/g, '')).toBe(REGISTER);
    });
  });

  it('overlong-line: one line grows by at least 1000 octets', () => {
    const longest = (s: string): number => Math.max(...s.split('\r\n').map((l) => l.length));
    each('overlong-line', (out) => {
      expect(longest(out)).toBeGreaterThanOrEqual(1000);
      expect(out.split('\r\n')).toHaveLength(REGISTER.split('\r\n').length);
    });
  });

  it('fold: a continuation line (CRLF then SP/HTAB) appears in the header; unfolded, the header names are the same', () => {
    each('fold', (out) => {
      const head = out.slice(0, out.indexOf('\r\n\r\n'));
      expect(/\r\n[ \t]/.test(head)).toBe(true);
      expect(/\r\n[ \t]/.test(REGISTER.slice(0, REGISTER.indexOf('\r\n\r\n')))).toBe(false);
      expect(splitParts(out).headers).toHaveLength(splitParts(REGISTER).headers.length);
    });
  });

  it('many-headers: at least 20 header lines added', () => {
    each('many-headers', (out) => expect(splitParts(out).headers.length).toBeGreaterThanOrEqual(splitParts(REGISTER).headers.length + 20));
  });

  it('many-vias: at least 10 Via values added', () => {
    each('many-vias', (out) => {
      const vias = splitParts(out).headers.filter((h) => headerName(h) === 'via').join(',').match(/SIP\/2\.0\/UDP/g) ?? [];
      expect(vias.length).toBeGreaterThanOrEqual(11);
    });
  });

  it('many-contacts: at least 2 Contact values added', () => {
    each('many-contacts', (out) => {
      const contacts = splitParts(out).headers.filter((h) => headerName(h) === 'contact').join(',').match(/<sip:/g) ?? [];
      expect(contacts.length).toBeGreaterThanOrEqual(3);
    });
  });

  it('line-ending: a CRLF became LF, CR or an empty line', () => {
    each('line-ending', (out) => {
      expect(out).not.toBe(REGISTER);
      const crlfs = (s: string): number => s.split('\r\n').length - 1;
      const lfOnly = out.replace(/\r\n/g, '').includes('\n');
      const crOnly = out.replace(/\r\n/g, '').includes('\r');
      expect(lfOnly || crOnly || crlfs(out) === crlfs(REGISTER) + 1).toBe(true);
    });
  });

  it('token: the start line or a header value differs, the body and the line count do not', () => {
    each('token', (out) => {
      expect(out.endsWith('\r\n\r\n')).toBe(true);
      expect(out.split('\r\n').length).toBe(REGISTER.split('\r\n').length);
    });
  });

  it('header-name: one header name replaced, the values kept', () => {
    const values = (s: string): string[] => splitParts(s).headers.map((h) => h.slice(h.indexOf(':')));
    each('header-name', (out) => {
      expect(values(out)).toEqual(values(REGISTER));
      expect(splitParts(out).headers.filter((h, i) => h !== splitParts(REGISTER).headers[i]).length).toBeLessThanOrEqual(1);
    });
  });

  it('splice: a prefix of the message followed by a suffix of a donor', () => {
    const donor = 'SIP/2.0 200 OK\r\nVia: x\r\n\r\n';
    for (let seed = 1; seed <= 200; seed++) {
      const out = mutateOnce('splice', new Rng(seed), REGISTER, { maxSize: 65_000, donors: [donor] });
      const ok = Array.from({ length: REGISTER.length + 1 }, (_, i) => i).some((i) => out.startsWith(REGISTER.slice(0, i)) && donor.endsWith(out.slice(i)));
      expect(ok, out).toBe(true);
    }
  });
});

describe('chunks', () => {
  it('cuts a stream into at most maxChunks non-empty pieces that concatenate to it', () => {
    const data = Buffer.from(REGISTER.repeat(3), 'latin1');
    let multi = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const parts = chunks(new Rng(seed), data, 8);
      expect(Buffer.concat(parts).equals(data)).toBe(true);
      expect(parts.length).toBeLessThanOrEqual(8);
      for (const p of parts) expect(p.length).toBeGreaterThan(0);
      if (parts.length > 1) multi++;
    }
    expect(multi).toBeGreaterThan(200);
  });
});
