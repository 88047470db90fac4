import { SipParseError, type SipParseErrorCode } from './errors.js';
import { scratchBytes } from './bytes.js';
import { isTokenChar } from './headers.js';

/** Parameters keyed by lower-case name; a value of null means the parameter had no `=value`. */
export type Params = ReadonlyMap<string, string | null>;

/** above this many entries a ParamList also keeps a Map from name to entry number (so that building it stays linear) */
const LINEAR_MAX = 16;

/**
 * The ReadonlyMap the parsers return for a parameter set: the first four entries in fields of the object itself,
 * further ones in an array (name, value, name, value ...), in insertion order, found by a linear scan (a parameter
 * set is small; one of more than LINEAR_MAX names gets a Map index as well). Cheaper to build than a Map (no hash
 * table, no hashing of the names). Same behaviour as a Map filled with set(): a name put twice keeps its first
 * position and takes the last value.
 */
export class ParamList<V> implements ReadonlyMap<string, V> {
  private n: number;
  private k0: string | undefined;
  private v0: V | undefined;
  private k1: string | undefined;
  private v1: V | undefined;
  private k2: string | undefined;
  private v2: V | undefined;
  private k3: string | undefined;
  private v3: V | undefined;
  /** entries 4.. as name, value, name, value ... */
  private more: Array<string | V> | undefined;
  /** entry number by name, once there are more than LINEAR_MAX */
  private idx: Map<string, number> | undefined;

  constructor() {
    this.n = 0;
    this.k0 = undefined;
    this.v0 = undefined;
    this.k1 = undefined;
    this.v1 = undefined;
    this.k2 = undefined;
    this.v2 = undefined;
    this.k3 = undefined;
    this.v3 = undefined;
    this.more = undefined;
    this.idx = undefined;
  }

  /** @internal (the parsers) Map.set(name, value); returns false when the name was already there (its value replaced). */
  put(name: string, value: V): boolean {
    const i = this.find(name);
    if (i !== -1) {
      this.setValueAt(i, value);
      return false;
    }
    const n = this.n;
    if (n === 0) {
      this.k0 = name;
      this.v0 = value;
    } else if (n === 1) {
      this.k1 = name;
      this.v1 = value;
    } else if (n === 2) {
      this.k2 = name;
      this.v2 = value;
    } else if (n === 3) {
      this.k3 = name;
      this.v3 = value;
    } else (this.more ??= []).push(name, value);
    this.n = n + 1;
    if (this.idx !== undefined) this.idx.set(name, n);
    else if (n + 1 > LINEAR_MAX) {
      const m = new Map<string, number>();
      for (let j = 0; j <= n; j++) m.set(this.keyAt(j), j);
      this.idx = m;
    }
    return true;
  }

  /** entry number of name, or -1 */
  private find(name: string): number {
    const idx = this.idx;
    if (idx !== undefined) return idx.get(name) ?? -1;
    const n = this.n;
    if (n === 0) return -1;
    if (this.k0 === name) return 0;
    if (n === 1) return -1;
    if (this.k1 === name) return 1;
    if (n === 2) return -1;
    if (this.k2 === name) return 2;
    if (n === 3) return -1;
    if (this.k3 === name) return 3;
    const m = this.more;
    if (m !== undefined) for (let j = 0; j < m.length; j += 2) if (m[j] === name) return 4 + (j >> 1);
    return -1;
  }

  private keyAt(i: number): string {
    return (i === 0 ? this.k0 : i === 1 ? this.k1 : i === 2 ? this.k2 : i === 3 ? this.k3 : this.more![(i - 4) * 2]) as string;
  }

  private valueAt(i: number): V {
    return (i === 0 ? this.v0 : i === 1 ? this.v1 : i === 2 ? this.v2 : i === 3 ? this.v3 : this.more![(i - 4) * 2 + 1]) as V;
  }

  private setValueAt(i: number, v: V): void {
    if (i === 0) this.v0 = v;
    else if (i === 1) this.v1 = v;
    else if (i === 2) this.v2 = v;
    else if (i === 3) this.v3 = v;
    else this.more![(i - 4) * 2 + 1] = v;
  }

  get size(): number {
    return this.n;
  }

  get(name: string): V | undefined {
    const i = this.find(name);
    return i === -1 ? undefined : this.valueAt(i);
  }

  has(name: string): boolean {
    return this.find(name) !== -1;
  }

  forEach(fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void, thisArg?: unknown): void {
    for (let i = 0; i < this.n; i++) fn.call(thisArg, this.valueAt(i), this.keyAt(i), this);
  }

  *entries(): MapIterator<[string, V]> {
    for (let i = 0; i < this.n; i++) yield [this.keyAt(i), this.valueAt(i)];
  }

  *keys(): MapIterator<string> {
    for (let i = 0; i < this.n; i++) yield this.keyAt(i);
  }

  *values(): MapIterator<V> {
    for (let i = 0; i < this.n; i++) yield this.valueAt(i);
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'ParamList';
  }
}

/** The parameters of an element without any: one shared instance (read-only, so sharing it is safe). */
export const EMPTY_PARAMS: Params = new ParamList<string | null>();

/** Frequent parameter names, by length: a match reuses the constant (hash already computed for Map keys). */
const COMMON: string[][] = (() => {
  const t: string[][] = [];
  for (const n of ['branch', 'tag', 'rport', 'received', 'lr', 'transport', 'expires', 'q', 'maddr', 'ttl', 'user', 'ob', 'reg-id', '+sip.instance', 'ftag', 'method']) (t[n.length] ??= []).push(n);
  return t;
})();

/** s[from, to) as one of the COMMON names (lower case), or undefined. First characters are compared before the rest. */
export function commonName(s: string, from: number, to: number): string | undefined {
  const cands = COMMON[to - from];
  if (cands === undefined) return undefined;
  const c0 = s.charCodeAt(from);
  for (let j = 0; j < cands.length; j++) {
    const c = cands[j]!;
    if (c.charCodeAt(0) !== c0) continue;
    let k = 1;
    while (k < c.length && s.charCodeAt(from + k) === c.charCodeAt(k)) k++;
    if (k === c.length) return c;
  }
  return undefined;
}

/** COMMON with each name's octets. */
const COMMON_CODES: Uint8Array[][] = COMMON.map((names) => names.map((n) => Uint8Array.from(n, (ch) => ch.charCodeAt(0))));

/** commonName on the octets b[from, to). */
export function commonNameIn(b: Uint8Array, from: number, to: number): string | undefined {
  const codes = COMMON_CODES[to - from];
  if (codes === undefined) return undefined;
  const c0 = b[from];
  for (let j = 0; j < codes.length; j++) {
    const c = codes[j]!;
    if (c[0] !== c0) continue;
    let k = 1;
    while (k < c.length && b[from + k] === c[k]) k++;
    if (k === c.length) return COMMON[to - from]![j];
  }
  return undefined;
}

/** RFC 3261 token characters, by octet (0 above 0x7f). */
const TOKEN = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 128; c++) if (isTokenChar(c)) t[c] = 1;
  return t;
})();

const N_STOP = 1;
const N_UPPER = 2;
const N_OTHER = 3;
/**
 * Octets of a parameter name by class: N_STOP ';' '=' SP HTAB (which end it), N_UPPER upper-case letter, N_OTHER not a
 * token character, 0 any other token character.
 */
const NAME_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = c === 0x3b || c === 0x3d || c === 0x20 || c === 0x09 ? N_STOP : c >= 0x41 && c <= 0x5a ? N_UPPER : TOKEN[c] === 1 ? 0 : N_OTHER;
  return t;
})();

/** Octets that end an unquoted parameter value: ';' SP HTAB. */
const VALUE_END = (() => {
  const t = new Uint8Array(256);
  t[0x3b] = t[0x20] = t[0x09] = 1;
  return t;
})();

/**
 * Parse generic header parameters (`;name[=value]` repeated), as in Via, From/To, Contact.
 * `s` (from `start`) is what follows the element's main part; it must be empty or start with `;`.
 * Values may be tokens, quoted strings (kept with their quotes) or IPv6 references.
 * LWS around `;` and `=` is allowed. Empty parameters are an error. Only s[start, end) is read.
 */
export function parseHeaderParams(s: string, code: SipParseErrorCode, what: string, start = 0, end = s.length): Params {
  return headerParamsAt(s, scratchBytes(s), code, what, start, end);
}

/** parseHeaderParams where b holds the octets of s (see bytes.ts). */
export function headerParamsAt(s: string, b: Uint8Array, code: SipParseErrorCode, what: string, start: number, end: number): Params {
  const params = new ParamList<string | null>();
  scanHeaderParams(s, b, code, what, start, end, params, undefined);
  return params;
}

/**
 * parseHeaderParams(s, code, what, start, end).get(want) without building the Map: the value of the last
 * parameter named `want` (lower case), null when it has no value, undefined when absent. Throws as parseHeaderParams.
 * b holds the octets of s.
 */
export function headerParam(s: string, b: Uint8Array, code: SipParseErrorCode, what: string, start: number, end: number, want: string): string | null | undefined {
  return scanHeaderParams(s, b, code, what, start, end, undefined, want);
}

/** Throws what parseHeaderParams(s, code, what, start, end) throws, without building anything. b holds the octets of s. */
export function checkHeaderParams(s: string, b: Uint8Array, code: SipParseErrorCode, what: string, start: number, end: number): void {
  scanHeaderParams(s, b, code, what, start, end, undefined, undefined);
}

/**
 * The parser of parseHeaderParams / headerParam: fills `params` if given, returns the value of `want` if given (with
 * neither, only checks: no name or value is sliced).
 */
function scanHeaderParams(s: string, b: Uint8Array, code: SipParseErrorCode, what: string, start: number, end: number, params: ParamList<string | null> | undefined, want: string | undefined): string | null | undefined {
  let found: string | null | undefined;
  let i = start;
  const n = end;
  while (i < n && (b[i] === 0x20 || b[i] === 0x09)) i++;
  while (i < n) {
    if (b[i] !== 0x3b) throw new SipParseError(code, `bad ${what} parameters`);
    i++;
    while (i < n && (b[i] === 0x20 || b[i] === 0x09)) i++;
    const ns = i;
    let upper = false;
    let token = true;
    for (; i < n; i++) {
      const t = NAME_CLASS[b[i]!]!;
      if (t === 0) continue;
      if (t === N_STOP) break;
      if (t === N_UPPER) upper = true;
      else token = false;
    }
    if (i === ns || !token) throw new SipParseError(code, `bad ${what} parameter name`);
    const name = params === undefined && want === undefined ? '' : upper ? s.slice(ns, i).toLowerCase() : (commonNameIn(b, ns, i) ?? s.slice(ns, i));
    while (i < n && (b[i] === 0x20 || b[i] === 0x09)) i++;
    let value: string | null = null;
    if (i < n && b[i] === 0x3d) {
      i++;
      while (i < n && (b[i] === 0x20 || b[i] === 0x09)) i++;
      const vs = i;
      if (i < n && b[i] === 0x22) {
        i++;
        while (i < n && b[i] !== 0x22) {
          if (b[i] === 0x5c) i++;
          i++;
        }
        if (i >= n) throw new SipParseError(code, `unterminated quote in ${what}`);
        i++;
      } else {
        while (i < n && VALUE_END[b[i]!] !== 1) i++;
      }
      if (i === vs) throw new SipParseError(code, `empty ${what} parameter value`);
      value = params !== undefined || (want !== undefined && name === want) ? s.slice(vs, i) : '';
      while (i < n && (b[i] === 0x20 || b[i] === 0x09)) i++;
    }
    if (params !== undefined) params.put(name, value);
    else if (name === want) found = value;
  }
  return found;
}

/** Remove surrounding quotes and quoted-pair escapes from a quoted-string value; other values unchanged. */
export function unquote(v: string): string {
  if (v.length >= 2 && v.charCodeAt(0) === 0x22 && v.charCodeAt(v.length - 1) === 0x22) {
    const inner = v.slice(1, -1);
    return inner.indexOf('\\') === -1 ? inner : inner.replace(/\\([\s\S])/g, '$1');
  }
  return v;
}

export function quote(v: string): string {
  return '"' + v.replace(/(["\\])/g, '\\$1') + '"';
}

export function formatParams(params: Params): string {
  let out = '';
  for (const [k, v] of params) out += v === null ? `;${k}` : `;${k}=${v}`;
  return out;
}
