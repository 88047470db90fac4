/**
 * The mutation engine of the wire fuzzer (test/fuzz/wire-fuzz.ts): a seeded PRNG and mutation
 * classes that turn a SIP message into a hostile variant. No I/O; the same seed gives the same bytes.
 *
 * Messages are handled as latin1 strings (one char per octet, so every byte value 0..255 survives the
 * round trip through Buffer.from(s, 'latin1')).
 */

// ------------------------------------------------------------------------------------------ PRNG

/** splitmix32 step: spreads a 32-bit seed over the xoshiro state. */
function splitmix32(a: number): () => number {
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a of a string (32 bits): derives sub-seeds from labels. */
function fnv1a(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** xoshiro128** (Blackman & Vigna), seeded through splitmix32. Deterministic for a given 32-bit seed. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    const sm = splitmix32(seed >>> 0);
    this.a = sm();
    this.b = sm();
    this.c = sm();
    this.d = sm();
  }

  /** An independent stream for `label`, derived from the seed only (not from how much of this one was used). */
  static derive(seed: number, label: string): Rng {
    return new Rng(fnv1a(label, fnv1a(String(seed >>> 0))));
  }

  /** uniform 32-bit unsigned integer. */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** uniform in [0, 1). */
  float(): number {
    return this.u32() / 0x1_0000_0000;
  }

  /** uniform integer in [0, n) (n >= 1). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** uniform integer in [lo, hi], both included. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** pick with weights (same length as items, > 0 in total). */
  weighted<T>(items: readonly T[], weights: readonly number[]): T {
    let total = 0;
    for (const w of weights) total += w;
    let x = this.float() * total;
    for (let i = 0; i < items.length; i++) {
      x -= weights[i]!;
      if (x < 0) return items[i]!;
    }
    return items[items.length - 1]!;
  }

  /** lower-case hex of `n` random octets. */
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += (this.u32() & 0xff).toString(16).padStart(2, '0');
    return s;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

// ------------------------------------------------------------------------------------------ tables

/** Values written in place of a number: sign, overflow at 2^31/2^32/2^53/2^64, floats, hex, empty, non-ASCII digits. */
export const INTERESTING_NUMBERS: readonly string[] = [
  '0', '-1', '-0', '1', '00000000000000000000000001', '255', '256', '65535', '65536', '70', '71', '69',
  '2147483647', '2147483648', '-2147483648', '-2147483649', '4294967295', '4294967296', '4294967297',
  '9007199254740991', '9007199254740993', '18446744073709551615', '18446744073709551616',
  '99999999999999999999999999999999999999999999', '1e3', '1e309', '1.0', '0.5', '0.001', '1.001', '-0.1', '.5', '5.',
  '0x10', '+1', 'NaN', 'Infinity', '-Infinity', '', ' ', '1 2', '1,2', '\xb2', '\xbd', '\xd9\xa3',
];

/** Octet sequences that are not UTF-8 (RFC 3629): lone continuation and lead bytes, overlong forms, surrogates, 0xF8+. */
export const BAD_UTF8: readonly string[] = [
  '\x80', '\xbf', '\xc3', '\xc3\x28', '\xa0\xa1', '\xe2\x28\xa1', '\xe2\x82\x28', '\xe2\x82', '\xf0\x28\x8c\xbc', '\xf0\x90\x28\xbc',
  '\xf8\xa1\xa1\xa1\xa1', '\xfc\xa1\xa1\xa1\xa1\xa1', '\xc0\xaf', '\xc1\xbf', '\xe0\x80\xaf', '\xed\xa0\x80', '\xed\xbf\xbf', '\xf4\x90\x80\x80',
  '\xfe', '\xff', '\xfe\xff',
];

/** Octets written over random positions by the `byte` class. */
const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x3b, 0x2c, 0x3d, 0x22, 0x3c, 0x3e, 0x40, 0x25, 0x5b, 0x5d, 0x5c, 0x2f, 0x3f];

/** Replacements for one token of a header value or start line. */
const INTERESTING_TOKENS: readonly string[] = [
  '', 'sip:', 'sips:', 'tel:+1', 'sip:@', 'sip:a@', 'sip:[::1', 'sip:[::1]:', '[::1]', '[', ']', '[2001:db8::1]', '[::ffff:127.0.0.1]',
  '%', '%0', '%00', '%zz', '%%', '"', '""', '"\\', '<', '>', '<>', '<<sip:a@b>>', ';', ';;;', ';=', '=', '==', '@', '@@', ':', '::',
  ',', ',,,', '*', '\\', '/', '?', '?Route=%3Csip:x%3E', '0.0.0.0', '255.255.255.255', '127.0.0.1:0', '127.0.0.1:65536',
  'localhost', 'example.com', 'SIP/2.0/UDP', 'SIP/2.0/TCP', 'SIP/3.0', 'z9hG4bK', 'tag=', 'branch=', 'lr', 'maddr=127.0.0.1',
  'transport=tcp', 'transport=sctp', 'user=phone', 'received=', 'rport', 'expires=', 'q=', 'a'.repeat(300), '\t', ' \t ',
];

/** Compact and odd spellings of header names. */
const HEADER_NAMES: readonly string[] = [
  'v', 'f', 't', 'i', 'm', 'l', 'c', 'k', 's', 'e', 'o', 'u', 'r', 'x', 'VIA', 'via', 'cSeQ', 'call-id', 'CALL-ID', 'Content-length',
  'Max-forwards', 'Via ', 'Via\t', 'X-', 'Contact', 'Route', 'Record-Route', 'Expires', 'Authorization', 'Proxy-Authorization',
];

// ------------------------------------------------------------------------------------------ message structure

/** A message cut into start line, logical header lines (each with its fold continuations) and the rest. */
export interface Parts {
  start: string;
  /** logical header lines, each possibly containing CRLF + SP/HTAB continuations. */
  headers: string[];
  /** the separator after the headers ('\r\n\r\n' when found, else ''). */
  sep: string;
  body: string;
}

export function splitParts(s: string): Parts {
  const end = s.indexOf('\r\n\r\n');
  const head = end === -1 ? s : s.slice(0, end);
  const body = end === -1 ? '' : s.slice(end + 4);
  const lines = head.split('\r\n');
  const headers: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    const c = l.charCodeAt(0);
    if ((c === 0x20 || c === 0x09) && headers.length > 0) headers[headers.length - 1] += `\r\n${l}`;
    else headers.push(l);
  }
  return { start: lines[0]!, headers, sep: end === -1 ? '' : '\r\n\r\n', body };
}

export function joinParts(p: Parts): string {
  return [p.start, ...p.headers].join('\r\n') + p.sep + p.body;
}

/** Header name of a logical header line (text before the colon, trimmed), lower-cased. */
export function headerName(line: string): string {
  const c = line.indexOf(':');
  return (c === -1 ? line : line.slice(0, c)).trim().toLowerCase();
}

/** Numeric fields a mutation may replace: [start, end) of the digits in the message text. */
export function numericFields(s: string): Array<{ start: number; end: number; what: string }> {
  const out: Array<{ start: number; end: number; what: string }> = [];
  const add = (re: RegExp, what: (m: RegExpExecArray) => string): void => {
    re.lastIndex = 0;
    for (let i = 0; i < 10_000; i++) {
      const m = re.exec(s);
      if (m === null) break;
      const digits = m[m.length - 1]!;
      const start = m.index + m[0].length - digits.length;
      out.push({ start, end: start + digits.length, what: what(m) });
    }
  };
  // header values: Content-Length, CSeq, Max-Forwards, Expires, Min-Expires, Retry-After, Session-Expires, RSeq, Timestamp
  add(/^(content-length|l|cseq|max-forwards|expires|min-expires|retry-after|session-expires|x|rseq|timestamp|min-se)[ \t]*:[ \t]*(\d+)/gim, (m) => m[1]!.toLowerCase());
  // parameters: rport, expires, q, reg-id, ttl, nc, maddr-less numeric params
  add(/;[ \t]*(rport|expires|q|reg-id|ttl|nc|refresher|retry-after|duration)[ \t]*=[ \t]*("?)([\d.]+)/gi, (m) => `;${m[1]!.toLowerCase()}`);
  // ports after a host (Via sent-by, URIs)
  add(/(?:SIP\/2\.0\/[A-Za-z]+[ \t]+|sips?:(?:[^@\s;>,]*@)?)(?:\[[^\]\s]*\]|[A-Za-z0-9.-]+):(\d+)/g, () => 'port');
  // status code of a response
  add(/^SIP\/2\.0 (\d+)/g, () => 'status');
  return out;
}

// ------------------------------------------------------------------------------------------ mutations

export const MUTATION_KINDS = [
  'bitflip', 'byte', 'truncate', 'dup-header', 'del-header', 'number', 'bad-utf8', 'nul', 'overlong-line', 'fold',
  'many-headers', 'many-vias', 'many-contacts', 'line-ending', 'token', 'header-name', 'splice',
] as const;
export type MutationKind = (typeof MUTATION_KINDS)[number];

export interface MutateOptions {
  /** largest result in octets (a UDP datagram must fit in 65507). */
  maxSize: number;
  /** other messages `splice` takes material from. */
  donors?: readonly string[];
}

const DEFAULT_OPTS: MutateOptions = { maxSize: 65_000 };

type Mutator = (r: Rng, s: string, o: MutateOptions) => string;

function insertAt(s: string, at: number, what: string): string {
  return s.slice(0, at) + what + s.slice(at);
}

/** A random header position: index in parts.headers (0 when there are none). */
function headerIndex(r: Rng, p: Parts): number {
  return p.headers.length === 0 ? 0 : r.int(p.headers.length);
}

/** `make(k)` for k = 0, 1 ... up to a count picked from `choices`, stopping before the values (plus `unit` each) exceed `room`. */
function values(r: Rng, choices: readonly number[], room: number, unit: number, make: (k: number) => string): string[] {
  const n = r.pick(choices);
  const out: string[] = [];
  let used = 0;
  for (let k = 0; k < n; k++) {
    const v = make(k);
    used += v.length + unit;
    if (used > room && out.length > 0) break;
    out.push(v);
  }
  return out;
}

const MUTATORS: Record<MutationKind, Mutator> = {
  /** 1-8 distinct bits flipped anywhere (same length). */
  bitflip(r, s) {
    if (s.length === 0) return s;
    const b = Buffer.from(s, 'latin1');
    const n = Math.min(r.range(1, 8), b.length * 8);
    const bits = new Set<number>();
    for (let i = 0; i < 100 && bits.size < n; i++) bits.add(r.int(b.length * 8));
    for (const bit of bits) b[bit >> 3] ^= 1 << (bit & 7);
    return b.toString('latin1');
  },

  /** 1-4 octets overwritten with separators, CR/LF, NUL, 0xFF ... (same length). */
  byte(r, s) {
    if (s.length === 0) return s;
    const b = Buffer.from(s, 'latin1');
    const n = r.range(1, 4);
    for (let i = 0; i < n; i++) b[r.int(b.length)] = r.pick(INTERESTING_BYTES);
    return b.toString('latin1');
  },

  /** a strict prefix. */
  truncate(r, s) {
    return s.slice(0, r.int(s.length));
  },

  /** one header line repeated 1-3 more times (next to it or somewhere else in the header). */
  'dup-header'(r, s) {
    const p = splitParts(s);
    if (p.headers.length === 0) return s;
    const i = headerIndex(r, p);
    const line = p.headers[i]!;
    const n = r.range(1, 3);
    for (let k = 0; k < n; k++) p.headers.splice(r.chance(0.5) ? i : r.int(p.headers.length + 1), 0, line);
    return joinParts(p);
  },

  /** one header line (with its continuations) removed. */
  'del-header'(r, s) {
    const p = splitParts(s);
    if (p.headers.length === 0) return s;
    p.headers.splice(headerIndex(r, p), 1);
    return joinParts(p);
  },

  /** one numeric field (Content-Length, CSeq, Max-Forwards, Expires, ports, rport, q, reg-id, status ...) replaced. */
  number(r, s) {
    const fields = numericFields(s);
    if (fields.length === 0) return s;
    const f = r.pick(fields);
    const v = r.chance(0.85) ? r.pick(INTERESTING_NUMBERS) : String(r.u32() * (r.chance(0.5) ? 1 : -1));
    return s.slice(0, f.start) + v + s.slice(f.end);
  },

  /** an invalid UTF-8 sequence inserted (into a header value or the body when there is one). */
  'bad-utf8'(r, s) {
    return insertAt(s, r.int(s.length + 1), r.pick(BAD_UTF8));
  },

  /** 1-3 NUL octets inserted. */
  nul(r, s) {
    let out = s;
    const n = r.range(1, 3);
    for (let i = 0; i < n; i++) out = insertAt(out, r.int(out.length + 1), r.chance(0.7) ? '\0' : '%00');
    return out;
  },

  /** a header line made long: around the 8 KiB line limit, or tens of KiB. */
  'overlong-line'(r, s, o) {
    const p = splitParts(s);
    const room = o.maxSize - s.length;
    if (room <= 0) return s;
    const n = Math.min(room, r.pick([1000, 8150, 8180, 8191, 8192, 8193, 8200, 16_384, 30_000, 64_000]));
    const fill = r.pick(['a', ' ', ';a=b', ',', '\t', '%41', 'sip:a@b,']);
    const pad = fill.repeat(Math.ceil(n / fill.length)).slice(0, n);
    if (p.headers.length === 0 || r.chance(0.15)) {
      p.start += pad;
    } else {
      const i = headerIndex(r, p);
      p.headers[i] = p.headers[i]! + pad;
    }
    return joinParts(p);
  },

  /** a header line folded (CRLF + SP/HTAB continuation), at a space, after the colon or anywhere. */
  fold(r, s) {
    const p = splitParts(s);
    if (p.headers.length === 0) return s;
    const i = headerIndex(r, p);
    const line = p.headers[i]!;
    const colon = line.indexOf(':');
    const spaces: number[] = [];
    for (let k = 0; k < line.length; k++) if (line[k] === ' ') spaces.push(k);
    // never at 0: a continuation at the start of a line would make the line before it end the header
    const at = r.chance(0.3) && colon >= 0 ? colon + 1 : spaces.length > 0 && r.chance(0.6) ? r.pick(spaces) : r.range(1, Math.max(1, line.length));
    const ws = r.pick([' ', '\t', '  ', ' \t', '\t\t']);
    const fold = r.chance(0.2) ? `\r\n${ws}\r\n${ws}` : `\r\n${ws}`;
    p.headers[i] = insertAt(line, at, fold);
    return joinParts(p);
  },

  /** many header lines added: around the 256-line limit or beyond (unknown names, or copies of one). */
  'many-headers'(r, s, o) {
    const p = splitParts(s);
    const copy = p.headers.length > 0 && r.chance(0.3) ? p.headers[headerIndex(r, p)]! : undefined;
    const add = values(r, [20, 200, 250, 255, 256, 257, 300, 1000, 3000], o.maxSize - s.length, 2, (k) => copy ?? `X-F${k}: ${k}`);
    p.headers.splice(r.int(p.headers.length + 1), 0, ...add);
    return joinParts(p);
  },

  /** many Via values: one per line or comma-separated, around the 70-Via limit or beyond. */
  'many-vias'(r, s, o) {
    const p = splitParts(s);
    const v = (k: number): string => `SIP/2.0/UDP 127.0.0.${(k % 250) + 2}:${5060 + (k % 100)};branch=z9hG4bK${k}x${r.hex(2)}`;
    const vs = values(r, [10, 60, 69, 70, 71, 100, 500, 1500], o.maxSize - s.length, 7, v);
    const lines = r.chance(0.5) ? vs.map((x) => `Via: ${x}`) : [`Via: ${vs.join(r.pick([',', ', ', ' ,\r\n ']))}`];
    const firstVia = p.headers.findIndex((h) => ['via', 'v'].includes(headerName(h)));
    const at = r.chance(0.5) ? p.headers.length : firstVia === -1 ? 0 : firstVia + 1;
    p.headers.splice(at, 0, ...lines);
    return joinParts(p);
  },

  /** many Contact values (with expires, q, reg-id, +sip.instance params), one per line or comma-separated. */
  'many-contacts'(r, s, o) {
    const p = splitParts(s);
    const c = (k: number): string => {
      const params = [r.chance(0.5) ? `;expires=${r.pick(['0', '60', '3600', '-1', '4294967296'])}` : '', r.chance(0.5) ? `;q=${r.pick(['0', '0.5', '1', '1.5', '-1', '0.0001'])}` : '', r.chance(0.3) ? `;reg-id=${k}` : '', r.chance(0.3) ? `;+sip.instance="<urn:uuid:${r.hex(4)}>"` : ''];
      return `<sip:u${k}@127.0.0.${(k % 250) + 2}:${5060 + k}>${params.join('')}`;
    };
    const cs = values(r, [2, 10, 11, 50, 200, 1000], o.maxSize - s.length, 11, c);
    const lines = r.chance(0.5) ? cs.map((x) => `Contact: ${x}`) : [`Contact: ${cs.join(', ')}`];
    p.headers.splice(r.int(p.headers.length + 1), 0, ...lines);
    return joinParts(p);
  },

  /** line ends replaced by bare LF or CR, or an empty line inserted (early end of the header). */
  'line-ending'(r, s) {
    const ends: number[] = [];
    for (let k = s.indexOf('\r\n'); k !== -1 && ends.length < 10_000; k = s.indexOf('\r\n', k + 2)) ends.push(k);
    if (ends.length === 0) return s + '\r\n';
    const mode = r.int(4);
    if (mode === 0) return s.replace(/\r\n/g, '\n');
    const at = r.pick(ends);
    const by = mode === 1 ? '\n' : mode === 2 ? '\r' : '\r\n\r\n';
    return s.slice(0, at) + by + s.slice(at + 2);
  },

  /** one token of the start line or a header value replaced by a structural oddity (quotes, brackets, URIs ...). */
  token(r, s) {
    const spans: Array<[number, number]> = [];
    const re = /[^\s:;,=<>@"[\]?]+/g;
    const head = s.indexOf('\r\n\r\n');
    const limit = head === -1 ? s.length : head;
    for (let k = 0; k < 5000; k++) {
      const m = re.exec(s);
      if (m === null || m.index >= limit) break;
      spans.push([m.index, m.index + m[0].length]);
    }
    if (spans.length === 0) return s;
    const [a, b] = r.pick(spans);
    return s.slice(0, a) + r.pick(INTERESTING_TOKENS) + s.slice(b);
  },

  /** a header name replaced (compact form, other case, space before the colon, another header's name). */
  'header-name'(r, s) {
    const p = splitParts(s);
    if (p.headers.length === 0) return s;
    const i = headerIndex(r, p);
    const line = p.headers[i]!;
    const colon = line.indexOf(':');
    p.headers[i] = r.pick(HEADER_NAMES) + (colon === -1 ? `: ${line}` : line.slice(colon));
    return joinParts(p);
  },

  /** the message cut somewhere and continued with a piece of another one (or of itself). */
  splice(r, s, o) {
    const donors = o.donors !== undefined && o.donors.length > 0 ? o.donors : [s];
    const d = r.pick(donors);
    const out = s.slice(0, r.int(s.length + 1)) + d.slice(r.int(d.length + 1));
    return out.length > o.maxSize ? out.slice(0, o.maxSize) : out;
  },
};

/** Apply one mutation class. */
export function mutateOnce(kind: MutationKind, r: Rng, s: string, opts: MutateOptions = DEFAULT_OPTS): string {
  return MUTATORS[kind](r, s, opts);
}

/** How often each class is chosen by `mutate`. */
const WEIGHTS: Record<MutationKind, number> = {
  bitflip: 6, byte: 6, truncate: 4, 'dup-header': 8, 'del-header': 8, number: 14, 'bad-utf8': 5, nul: 4, 'overlong-line': 2, fold: 5,
  'many-headers': 1, 'many-vias': 2, 'many-contacts': 2, 'line-ending': 3, token: 12, 'header-name': 4, splice: 3,
};
const KIND_WEIGHTS = MUTATION_KINDS.map((k) => WEIGHTS[k]);

/**
 * Stack 1-5 mutations (one most often, like AFL's havoc stage). Returns the bytes and the classes
 * applied, in order.
 */
export function mutate(r: Rng, s: string, opts: MutateOptions = DEFAULT_OPTS): { text: string; ops: MutationKind[] } {
  let n = 1;
  while (n < 5 && r.chance(0.35)) n++;
  const ops: MutationKind[] = [];
  let out = s;
  for (let i = 0; i < n; i++) {
    const k = r.weighted(MUTATION_KINDS, KIND_WEIGHTS);
    ops.push(k);
    out = MUTATORS[k](r, out, opts);
    if (out.length > opts.maxSize) out = out.slice(0, opts.maxSize);
  }
  return { text: out, ops };
}

/**
 * Cut a byte stream into 1..maxChunks pieces at random boundaries (single octets, the middle of a
 * CRLF, anywhere). The pieces concatenate to `data`.
 */
export function chunks(r: Rng, data: Buffer, maxChunks: number): Buffer[] {
  if (data.length <= 1 || maxChunks <= 1) return [data];
  const cuts = new Set<number>();
  const n = r.range(0, Math.min(maxChunks - 1, data.length - 1));
  for (let i = 0; i < n; i++) cuts.add(1 + r.int(data.length - 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(data.subarray(prev, c));
    prev = c;
  }
  out.push(data.subarray(prev));
  return out;
}
