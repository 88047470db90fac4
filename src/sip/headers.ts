/** Header-name knowledge: compact forms, canonical spelling, which headers are comma lists. */

const COMPACT: Record<string, string> = {
  i: 'call-id',
  m: 'contact',
  e: 'content-encoding',
  l: 'content-length',
  c: 'content-type',
  f: 'from',
  s: 'subject',
  k: 'supported',
  t: 'to',
  v: 'via',
  o: 'event',
  u: 'allow-events',
  r: 'refer-to',
  x: 'session-expires',
  y: 'identity',
  b: 'referred-by',
  j: 'reject-contact',
  a: 'accept-contact',
  n: 'identity-info',
  d: 'request-disposition',
};

const CANONICAL: Record<string, string> = {
  'call-id': 'Call-ID',
  cseq: 'CSeq',
  'www-authenticate': 'WWW-Authenticate',
  'mime-version': 'MIME-Version',
  'rack': 'RAck',
  'rseq': 'RSeq',
};

/** Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so several values may share a line. */
export const LIST_HEADERS: ReadonlySet<string> = new Set([
  'via',
  'route',
  'record-route',
  'path',
  'contact',
  'allow',
  'supported',
  'require',
  'proxy-require',
  'unsupported',
  'accept',
  'accept-encoding',
  'accept-language',
  'allow-events',
  'content-encoding',
  'content-language',
  'in-reply-to',
  'service-route',
  'alert-info',
  'call-info',
  'error-info',
  'warning',
]);

/**
 * Keys with a bit in a parsed message's presence mask (SipMessage: the accessors of these headers skip the line scan
 * when the header is absent). At most 31.
 */
const INDEXED_KEYS = [
  'via', 'from', 'to', 'call-id', 'cseq', 'max-forwards', 'content-length', 'content-type', 'expires', 'min-expires',
  'contact', 'route', 'record-route', 'path', 'require', 'proxy-require', 'supported', 'unsupported', 'allow',
  'authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate', 'user-agent',
];
const KEY_BITS: ReadonlyMap<string, number> = new Map(INDEXED_KEYS.map((k, i) => [k, 1 << i]));

/** The presence-mask bit of a header key (lower-case long form), 0 when it has none. */
export function keyBit(key: string): number {
  return KEY_BITS.get(key) ?? 0;
}

/** Lower-case long form of a header name (compact forms expanded). */
export function headerKey(name: string): string {
  const l = name.toLowerCase();
  if (l.length === 1) return COMPACT[l] ?? l;
  return l;
}

/**
 * The same text as an internalized string (as a property name is): two internalized strings are equal only when they
 * are the same string, so comparing a key with another (a literal, or one made here) costs a pointer compare.
 */
export function intern(s: string): string {
  const o: Record<string, number> = {};
  o[s] = 0;
  return Object.keys(o)[0] ?? s;
}

/** Canonical spelling for headers we add ourselves. */
export function canonicalName(key: string): string {
  const hit = CANONICAL_CACHE.get(key);
  if (hit !== undefined) return hit;
  const k = headerKey(key);
  const c = CANONICAL[k] ?? k.replace(/(^|-)([a-z])/g, (_m, d: string, ch: string) => d + ch.toUpperCase());
  if (CANONICAL_CACHE.size < 1024) CANONICAL_CACHE.set(key, c);
  return c;
}

const CANONICAL_CACHE = new Map<string, string>();

/** RFC 3261 token characters. */
const TOKEN_TABLE = (() => {
  const t = new Uint8Array(128);
  for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  for (const ch of "-.!%*_+`'~") t[ch.charCodeAt(0)] = 1;
  return t;
})();

export function isTokenChar(code: number): boolean {
  return code < 128 && TOKEN_TABLE[code] === 1;
}

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTokenChar(s.charCodeAt(i))) return false;
  return true;
}

/**
 * Split a header value on commas that separate list elements: not inside quoted strings,
 * angle brackets or IPv6 brackets. Returns trimmed elements (empty ones included so callers can reject them).
 */
export function splitList(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  if (value.indexOf('"') === -1 && value.indexOf('<') === -1) {
    // no quoted string and no < >: every comma separates (found with indexOf, which is much cheaper than a loop)
    for (let c = value.indexOf(','); c !== -1; c = value.indexOf(',', start)) {
      out.push(trimmedSlice(value, start, c));
      start = c + 1;
    }
    out.push(trimmedSlice(value, start, value.length));
    return out;
  }
  let inQuote = false;
  let angle = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c) i++; // quoted-pair
      else if (c === 0x22) inQuote = false;
      continue;
    }
    if (c === 0x22) inQuote = true;
    else if (c === 0x3c) angle++;
    else if (c === 0x3e) angle = angle > 0 ? angle - 1 : 0;
    else if (c === 0x2c && angle === 0) {
      out.push(trimmedSlice(value, start, i));
      start = i + 1;
    }
  }
  out.push(trimmedSlice(value, start, value.length));
  return out;
}

/**
 * The non-empty elements of splitList(value), appended to `out` (no intermediate array): option tags and tokens.
 */
export function pushNonEmptyElements(value: string, out: string[]): void {
  if (value.indexOf('"') === -1 && value.indexOf('<') === -1) {
    let start = 0;
    for (let c = value.indexOf(','); ; c = value.indexOf(',', start)) {
      const e = c === -1 ? value.length : c;
      let a = start;
      let b = e;
      while (a < b && isJsSpace(value.charCodeAt(a))) a++;
      while (b > a && isJsSpace(value.charCodeAt(b - 1))) b--;
      if (b > a) out.push(value.slice(a, b));
      if (c === -1) return;
      start = c + 1;
    }
  }
  const es = splitList(value);
  for (let k = 0; k < es.length; k++) if (es[k]!.length !== 0) out.push(es[k]!);
}

/** value.slice(a, b).trim() without the intermediate string. */
function trimmedSlice(value: string, a: number, b: number): string {
  while (a < b && isJsSpace(value.charCodeAt(a))) a++;
  while (b > a && isJsSpace(value.charCodeAt(b - 1))) b--;
  return value.slice(a, b);
}

/** What String.prototype.trim removes: ECMAScript WhiteSpace and LineTerminator. */
function isJsSpace(c: number): boolean {
  if (c <= 0xff) return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0;
  return c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}
