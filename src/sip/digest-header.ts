import { SipParseError } from './errors.js';
import { scratchBytes } from './bytes.js';
import { isToken, isTokenChar } from './headers.js';
import { ParamList } from './params.js';

/** Authorization / Proxy-Authorization credentials or WWW-/Proxy-Authenticate challenge. */
export interface AuthHeader {
  /** auth scheme as written, e.g. "Digest". */
  readonly scheme: string;
  /** parameters: names lower-cased, quotes removed, quoted-pairs decoded. */
  readonly params: ReadonlyMap<string, string>;
  readonly raw: string;
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x09;

/** RFC 3261 token characters, by octet. */
const TOKEN = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 128; c++) if (isTokenChar(c)) t[c] = 1;
  return t;
})();

const N_STOP = 1;
const N_UPPER = 2;
const N_OTHER = 3;
/** Octets of an auth parameter name by class: N_STOP '=' ',' SP HTAB, N_UPPER upper-case letter, N_OTHER not a token character, 0 other token characters. */
const NAME_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = c === 0x3d || c === 0x2c || isWs(c) ? N_STOP : c >= 0x41 && c <= 0x5a ? N_UPPER : TOKEN[c] === 1 ? 0 : N_OTHER;
  return t;
})();

/** Frequent (lower-case) Digest parameter names by length, with their octets. */
const AUTH_NAMES: Array<Array<[string, Uint8Array]>> = (() => {
  const t: Array<Array<[string, Uint8Array]>> = [];
  for (const n of ['username', 'realm', 'nonce', 'uri', 'response', 'algorithm', 'cnonce', 'qop', 'nc', 'opaque', 'stale', 'domain']) {
    (t[n.length] ??= []).push([n, Uint8Array.from(n, (ch) => ch.charCodeAt(0))]);
  }
  return t;
})();

/** b[from, to) as one of AUTH_NAMES, or undefined. */
function authNameIn(b: Uint8Array, from: number, to: number): string | undefined {
  const cands = AUTH_NAMES[to - from];
  if (cands === undefined) return undefined;
  for (let j = 0; j < cands.length; j++) {
    const c = cands[j]![1];
    let k = 0;
    while (k < c.length && b[from + k] === c[k]) k++;
    if (k === c.length) return cands[j]![0];
  }
  return undefined;
}

function bad(reason: string): SipParseError {
  return new SipParseError('BAD_AUTH', reason);
}

/**
 * Parse `scheme param=value, param="quoted, value", ...`. Commas inside quoted strings are not separators.
 * Parameter counts are bounded by the header length limit of the parser.
 */
export function parseAuthHeader(raw: string): AuthHeader {
  return parseAuthHeaderAt(raw, scratchBytes(raw), 0, raw.length, raw);
}

/** parseAuthHeader(raw) where raw = src.slice(start, end), scanning in place (b: the octets of src, see bytes.ts). */
export function parseAuthHeaderAt(src: string, b: Uint8Array, start: number, end: number, raw: string): AuthHeader {
  const s = src;
  const n = end;
  let i = start;
  while (i < n && isWs(b[i]!)) i++;
  const ss = i;
  while (i < n && !isWs(b[i]!)) i++;
  const scheme = s.slice(ss, i);
  if (!isToken(scheme)) throw bad('bad auth scheme');
  const params = new ParamList<string>();
  // the first backslash at or after start (none in the usual header): a quoted value before it has no quoted-pair,
  // so its closing quote is found with indexOf instead of a loop over its octets
  // (searched in raw = s[start, n), so that the search stops at the end of this header)
  let bs = raw.indexOf('\\', i - start);
  bs = bs === -1 ? n : bs + start;
  for (;;) {
    while (i < n && (isWs(b[i]!) || b[i]! === 0x2c)) i++;
    if (i >= n) break;
    const ns = i;
    // token check and case while scanning (as isToken(name), then name.toLowerCase() only when needed)
    let upper = false;
    let token = true;
    for (; i < n; i++) {
      const t = NAME_CLASS[b[i]!]!;
      if (t === 0) continue;
      if (t === N_STOP) break;
      if (t === N_UPPER) upper = true;
      else token = false;
    }
    if (i === ns || !token) throw bad('bad auth parameter');
    // lower-cased only when needed; a frequent name reuses its constant (no slice, hash already known)
    const key = upper ? s.slice(ns, i).toLowerCase() : (authNameIn(b, ns, i) ?? s.slice(ns, i));
    while (i < n && isWs(b[i]!)) i++;
    if (i >= n || b[i]! !== 0x3d) throw bad('auth parameter without value');
    i++;
    while (i < n && isWs(b[i]!)) i++;
    let value = '';
    let q: number;
    if (i < n && b[i]! === 0x22 && (q = raw.indexOf('"', i + 1 - start)) !== -1 && (q += start) < bs) {
      // closed before any backslash (q < bs <= n)
      value = s.slice(i + 1, q);
      i = q + 1;
    } else if (i < n && b[i]! === 0x22) {
      i++;
      let closed = false;
      let start = i;
      while (i < n) {
        const c = b[i]!;
        if (c === 0x5c) {
          value += s.slice(start, i);
          if (i + 1 < n) value += s[i + 1];
          i += 2;
          start = i;
          continue;
        }
        if (c === 0x22) {
          value += s.slice(start, i);
          i++;
          closed = true;
          break;
        }
        i++;
      }
      if (!closed) throw bad('unterminated quoted auth value');
    } else {
      const vs = i;
      while (i < n && b[i]! !== 0x2c && !isWs(b[i]!)) i++;
      value = s.slice(vs, i);
    }
    if (!params.put(key, value)) throw bad('duplicate auth parameter');
    while (i < n && isWs(b[i]!)) i++;
    if (i < n && b[i]! !== 0x2c) throw bad('bad auth parameter list');
  }
  return { scheme, params, raw };
}

/** Build a challenge / credentials value. Values listed in `bare` are written without quotes. */
export function formatAuthHeader(scheme: string, params: ReadonlyArray<readonly [string, string]>, bare: ReadonlySet<string> = BARE): string {
  const parts = params.map(([k, v]) => (bare.has(k) ? `${k}=${v}` : `${k}="${v.replace(/(["\\])/g, '\\$1')}"`));
  return `${scheme} ${parts.join(', ')}`;
}

const BARE: ReadonlySet<string> = new Set(['algorithm', 'stale', 'nc']);
