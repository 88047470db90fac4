/** Oracle for test/unit/sip-bytes.test.ts: this file as it was in src/sip at main 85887c8 (string scans, before the octet scans). Do not edit. */
import { SipParseError } from '../../../src/sip/errors.js';
import { isToken, isTokenChar } from './headers.js';

/** Authorization / Proxy-Authorization credentials or WWW-/Proxy-Authenticate challenge. */
export interface AuthHeader {
  /** auth scheme as written, e.g. "Digest". */
  readonly scheme: string;
  /** parameters: names lower-cased, quotes removed, quoted-pairs decoded. */
  readonly params: Map<string, string>;
  readonly raw: string;
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x09;

function bad(reason: string): SipParseError {
  return new SipParseError('BAD_AUTH', reason);
}

/**
 * Parse `scheme param=value, param="quoted, value", ...`. Commas inside quoted strings are not separators.
 * Parameter counts are bounded by the header length limit of the parser.
 */
export function parseAuthHeader(raw: string): AuthHeader {
  return parseAuthHeaderAt(raw, 0, raw.length, raw);
}

/** parseAuthHeader(raw) where raw = src.slice(start, end), scanning src in place. */
export function parseAuthHeaderAt(src: string, start: number, end: number, raw: string): AuthHeader {
  const s = src;
  const n = end;
  let i = start;
  while (i < n && isWs(s.charCodeAt(i))) i++;
  const ss = i;
  while (i < n && !isWs(s.charCodeAt(i))) i++;
  const scheme = s.slice(ss, i);
  if (!isToken(scheme)) throw bad('bad auth scheme');
  const params = new Map<string, string>();
  for (;;) {
    while (i < n && (isWs(s.charCodeAt(i)) || s.charCodeAt(i) === 0x2c)) i++;
    if (i >= n) break;
    const ns = i;
    // token check and case while scanning (as isToken(name), then name.toLowerCase() only when needed)
    let upper = false;
    let token = true;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 0x3d || c === 0x2c || isWs(c)) break;
      if (c >= 0x41 && c <= 0x5a) upper = true;
      else if (!isTokenChar(c)) token = false;
      i++;
    }
    if (i === ns || !token) throw bad('bad auth parameter');
    const name = s.slice(ns, i);
    while (i < n && isWs(s.charCodeAt(i))) i++;
    if (i >= n || s.charCodeAt(i) !== 0x3d) throw bad('auth parameter without value');
    i++;
    while (i < n && isWs(s.charCodeAt(i))) i++;
    let value = '';
    if (i < n && s.charCodeAt(i) === 0x22) {
      i++;
      let closed = false;
      let start = i;
      while (i < n) {
        const c = s.charCodeAt(i);
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
      while (i < n && s.charCodeAt(i) !== 0x2c && !isWs(s.charCodeAt(i))) i++;
      value = s.slice(vs, i);
    }
    const key = upper ? name.toLowerCase() : name;
    if (params.has(key)) throw bad('duplicate auth parameter');
    params.set(key, value);
    while (i < n && isWs(s.charCodeAt(i))) i++;
    if (i < n && s.charCodeAt(i) !== 0x2c) throw bad('bad auth parameter list');
  }
  return { scheme, params, raw };
}

/** Build a challenge / credentials value. Values listed in `bare` are written without quotes. */
export function formatAuthHeader(scheme: string, params: ReadonlyArray<readonly [string, string]>, bare: ReadonlySet<string> = BARE): string {
  const parts = params.map(([k, v]) => (bare.has(k) ? `${k}=${v}` : `${k}="${v.replace(/(["\\])/g, '\\$1')}"`));
  return `${scheme} ${parts.join(', ')}`;
}

const BARE: ReadonlySet<string> = new Set(['algorithm', 'stale', 'nc']);
