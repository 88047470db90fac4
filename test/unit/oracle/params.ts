/** Oracle for test/unit/sip-bytes.test.ts: this file as it was in src/sip at main 85887c8 (string scans, before the octet scans). Do not edit. */
import { SipParseError, type SipParseErrorCode } from '../../../src/sip/errors.js';
import { isTokenChar } from './headers.js';

/** Parameters keyed by lower-case name; a value of null means the parameter had no `=value`. */
export type Params = ReadonlyMap<string, string | null>;

/** The parameters of an element without any: one shared instance (read-only, so sharing it is safe). */
export const EMPTY_PARAMS: Params = new Map<string, string | null>();

const isWs = (c: number): boolean => c === 0x20 || c === 0x09;

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

/**
 * Parse generic header parameters (`;name[=value]` repeated), as in Via, From/To, Contact.
 * `s` (from `start`) is what follows the element's main part; it must be empty or start with `;`.
 * Values may be tokens, quoted strings (kept with their quotes) or IPv6 references.
 * LWS around `;` and `=` is allowed. Empty parameters are an error. Only s[start, end) is read.
 */
export function parseHeaderParams(s: string, code: SipParseErrorCode, what: string, start = 0, end = s.length): Params {
  const params = new Map<string, string | null>();
  scanHeaderParams(s, code, what, start, end, params, undefined);
  return params;
}

/**
 * parseHeaderParams(s, code, what, start, end).get(want) without building the Map: the value of the last
 * parameter named `want` (lower case), null when it has no value, undefined when absent. Throws as parseHeaderParams.
 */
export function headerParam(s: string, code: SipParseErrorCode, what: string, start: number, end: number, want: string): string | null | undefined {
  return scanHeaderParams(s, code, what, start, end, undefined, want);
}

/** The parser of parseHeaderParams / headerParam: fills `params` if given, returns the value of `want` if given. */
function scanHeaderParams(s: string, code: SipParseErrorCode, what: string, start: number, end: number, params: Map<string, string | null> | undefined, want: string | undefined): string | null | undefined {
  let found: string | null | undefined;
  let i = start;
  const n = end;
  while (i < n && isWs(s.charCodeAt(i))) i++;
  while (i < n) {
    if (s.charCodeAt(i) !== 0x3b) throw new SipParseError(code, `bad ${what} parameters`);
    i++;
    while (i < n && isWs(s.charCodeAt(i))) i++;
    const ns = i;
    let upper = false;
    let token = true;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 0x3b || c === 0x3d || c === 0x20 || c === 0x09) break;
      if (c >= 0x41 && c <= 0x5a) upper = true;
      else if (!isTokenChar(c)) token = false;
      i++;
    }
    if (i === ns || !token) throw new SipParseError(code, `bad ${what} parameter name`);
    const name = upper ? s.slice(ns, i).toLowerCase() : (commonName(s, ns, i) ?? s.slice(ns, i));
    while (i < n && isWs(s.charCodeAt(i))) i++;
    let value: string | null = null;
    if (i < n && s.charCodeAt(i) === 0x3d) {
      i++;
      while (i < n && isWs(s.charCodeAt(i))) i++;
      const vs = i;
      if (i < n && s.charCodeAt(i) === 0x22) {
        i++;
        while (i < n && s.charCodeAt(i) !== 0x22) {
          if (s.charCodeAt(i) === 0x5c) i++;
          i++;
        }
        if (i >= n) throw new SipParseError(code, `unterminated quote in ${what}`);
        i++;
      } else {
        while (i < n) {
          const c = s.charCodeAt(i);
          if (c === 0x3b || isWs(c)) break;
          i++;
        }
      }
      value = s.slice(vs, i);
      if (value.length === 0) throw new SipParseError(code, `empty ${what} parameter value`);
      while (i < n && isWs(s.charCodeAt(i))) i++;
    }
    if (params !== undefined) params.set(name, value);
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
