import { SipParseError } from './errors.js';
import { freshBytes, scratchBytes } from './bytes.js';
import { EMPTY_PARAMS, ParamList, commonNameIn, type Params } from './params.js';

/** URI headers of a URI without any: one shared read-only instance. */
const EMPTY_HEADERS: ReadonlyMap<string, string> = new Map<string, string>();

/** A SIP or SIPS URI (RFC 3261 §19.1). `raw` is the text as received and is what gets forwarded. */
export interface SipUri {
  readonly scheme: 'sip' | 'sips';
  /** user part with %-escapes decoded once (may contain any octet, e.g. NUL). */
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** host as written, lower-cased; IPv6 references keep their brackets: `[2001:db8::1]`. */
  readonly host: string;
  readonly port: number | undefined;
  /** uri-parameters, names lower-cased and values decoded once. */
  readonly params: Params;
  /** headers part after `?`, decoded once (name -> value); empty map when absent. */
  readonly headers: ReadonlyMap<string, string>;
  readonly raw: string;
}

/** tel: URI (RFC 3966), parsed just enough to route and compare. */
export interface TelUri {
  readonly scheme: 'tel';
  readonly number: string;
  readonly params: Params;
  readonly raw: string;
}

/** Any other absoluteURI: kept opaque so the core can answer 416. */
export interface OpaqueUri {
  readonly scheme: string;
  readonly raw: string;
  readonly opaque: true;
}

export type Uri = SipUri | TelUri | OpaqueUri;

export function isSipUri(u: Uri): u is SipUri {
  return u.scheme === 'sip' || u.scheme === 'sips';
}

const HEX = /^[0-9a-fA-F]{2}$/;

/** Decode %HH escapes once. Invalid escapes are kept literally. */
export function unescapeOnce(s: string): string {
  if (s.indexOf('%') === -1) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '%' && i + 2 < s.length + 0 && HEX.test(s.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out += ch;
  }
  return out;
}

function isSchemeChar(c: number, first: boolean): boolean {
  const alpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  if (first) return alpha;
  return alpha || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e;
}

function bad(reason: string): SipParseError {
  return new SipParseError('BAD_URI', reason);
}

function isHostnameChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e || c === 0x5f;
}

function checkIPv6(inner: string): void {
  if (inner.length < 2 || inner.length > 45) throw bad('bad IPv6 reference');
  for (let i = 0; i < inner.length; i++) {
    const c = inner.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) || c === 0x3a || c === 0x2e;
    if (!ok) throw bad('bad IPv6 reference');
  }
  if (inner.indexOf(':') === -1) throw bad('bad IPv6 reference');
}

/**
 * Parse host[:port] at the start of `s`. Returns the host (lower-cased, IPv6 with brackets),
 * the optional port and the index where parsing stopped.
 */
export function parseHostPort(s: string, start: number, stopAt: string, limit: number = s.length): { host: string; port: number | undefined; end: number } {
  return hostPortAt(s, freshBytes(s), start, stopAt, limit);
}

/** parseHostPort where b holds the octets of s (see bytes.ts). */
export function hostPortAt(s: string, b: Uint8Array, start: number, stopAt: string, limit: number): { host: string; port: number | undefined; end: number } {
  let i = start;
  let host: string;
  if (b[i] === 0x5b) {
    const close = s.indexOf(']', i);
    if (close === -1 || close >= limit) throw bad('unterminated IPv6 reference');
    checkIPv6(s.slice(i + 1, close));
    host = s.slice(i, close + 1).toLowerCase();
    i = close + 1;
  } else {
    const hs = i;
    let cls = 0;
    for (let t: number; i < limit && (t = HOST_CLASS[b[i]!]!) !== 0; i++) cls |= t;
    const upper = cls >= 2;
    if (i === hs) throw bad('missing host');
    const c0 = b[hs];
    if (c0 === 0x2d || c0 === 0x2e) throw bad('bad host');
    host = upper ? s.slice(hs, i).toLowerCase() : s.slice(hs, i);
  }
  let port: number | undefined;
  if (i < limit && b[i] === 0x3a) {
    i++;
    const ps = i;
    let p = 0;
    while (i < limit) {
      const c = b[i]!;
      if (c < 0x30 || c > 0x39) break;
      p = p * 10 + (c - 0x30);
      i++;
    }
    if (i === ps || i - ps > 5) throw bad('bad port');
    if (p > 65535) throw bad('bad port');
    port = p;
  }
  // (a one-character stopAt, the usual ';', compared as an octet: a character above U+00FF reads as 0xFF, not ';')
  if (i < limit && (stopAt.length === 1 && stopAt.charCodeAt(0) < 0xff ? b[i] !== stopAt.charCodeAt(0) : stopAt.indexOf(s[i]!) === -1)) throw bad('bad host');
  return { host, port, end: i };
}

function parseUriParams(s: string, from = 0, to = s.length): Params {
  if (from >= to) return EMPTY_PARAMS;
  const params = new ParamList<string | null>();
  let p = from;
  for (;;) {
    let e = s.indexOf(';', p);
    if (e === -1 || e > to) e = to;
    if (e === p) throw bad('empty uri parameter');
    const eq = s.indexOf('=', p);
    if (eq === -1 || eq >= e) params.put(lowerUnescaped(s.slice(p, e)), null);
    else {
      if (eq === p) throw bad('empty uri parameter name');
      params.put(lowerUnescaped(s.slice(p, eq)), unescapeOnce(s.slice(eq + 1, e)));
    }
    if (e >= to) break;
    p = e + 1;
    if (p >= to) throw bad('empty uri parameter');
  }
  return params;
}

function lowerUnescaped(name: string): string {
  return unescapeOnce(name).toLowerCase();
}

function hasSpaceOrCtl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x3c || c === 0x3e || c === 0x22) return true;
  }
  return false;
}

/** Parse any URI. SIP/SIPS are parsed fully, tel partly, others kept opaque. Throws SipParseError(BAD_URI). */
export function parseUri(raw: string): Uri {
  // the usual shape (lower-case sip:/sips:, no escapes, headers, IPv6 or errors) in one pass; anything else below
  return parseUriAt(raw, scratchBytes(raw), 0, raw.length, raw);
}

/**
 * parseUri(raw) where raw = src.slice(start, end) and b holds the octets of src (see bytes.ts); the usual shape is
 * scanned in place (see parseViaAt).
 */
export function parseUriAt(src: string, b: Uint8Array, start: number, end: number, raw: string): Uri {
  if (end - start >= 4 && b[start] === 0x73 && b[start + 1] === 0x69 && b[start + 2] === 0x70) {
    const c3 = b[start + 3];
    const fast =
      c3 === 0x3a ? plainSipUri('sip', src, b, start + 4, end, raw) : c3 === 0x73 && end - start >= 5 && b[start + 4] === 0x3a ? plainSipUri('sips', src, b, start + 5, end, raw) : undefined;
    if (fast !== undefined && fast !== null) return fast;
  }
  return parseUriGeneral(raw);
}

/**
 * Throws what parseUriAt(src, b, start, end, src.slice(start, end)) throws; for the usual shape (plainSipUri's) without
 * building the URI or slicing its text.
 */
export function checkUriAt(src: string, b: Uint8Array, start: number, end: number): void {
  if (end - start >= 4 && b[start] === 0x73 && b[start + 1] === 0x69 && b[start + 2] === 0x70) {
    const c3 = b[start + 3];
    const fast =
      c3 === 0x3a ? plainSipUri('sip', src, b, start + 4, end, undefined) : c3 === 0x73 && end - start >= 5 && b[start + 4] === 0x3a ? plainSipUri('sips', src, b, start + 5, end, undefined) : undefined;
    if (fast !== undefined) return;
  }
  parseUriGeneral(src.slice(start, end));
}

/**
 * A SIP/SIPS URI after "scheme:" (src from offset p to n; raw = the whole URI text) in one scan, for URIs made only of printable ASCII without `%`, `?`,
 * `[`, `]` (and none of the characters that make it invalid: controls, space, `<`, `>`, `"`). Returns exactly what
 * parseSipUriRest returns for such a URI, or undefined (not that shape, or an error to report): the caller then
 * runs the general parser.
 */
function plainSipUri(scheme: 'sip' | 'sips', src: string, b: Uint8Array, p: number, n: number, raw: string | undefined): SipUri | null | undefined {
  // raw undefined: only check (checkUriAt): null where a URI would be returned, and nothing built
  const build = raw !== undefined;
  // the last '@' ends the userinfo (found with indexOf, not a loop); every octet is checked once below: the
  // userinfo here, the host and port by their scans, the parameters by theirs
  // searched in raw (= src[n - raw.length, n)), so that a URI without '@' does not search the rest of the message
  let at = -1;
  if (build) {
    const off = n - raw.length;
    at = raw.indexOf('@', p - off);
    if (at !== -1) {
      for (let nx = raw.indexOf('@', at + 1); nx !== -1; nx = raw.indexOf('@', at + 1)) at = nx;
      at += off;
    }
  } else {
    for (let k = n - 1; k >= p; k--) {
      if (b[k] === 0x40) {
        at = k;
        break;
      }
    }
  }
  let user: string | undefined;
  let password: string | undefined;
  let i = p;
  if (at !== -1) {
    let colon = -1;
    for (let k = p; k < at; k++) {
      const t = USER_CLASS[b[k]!]!;
      if (t === 0) continue;
      if (t === P_BAD) return undefined;
      if (colon === -1) colon = k;
    }
    const ue = colon === -1 ? at : colon;
    if (ue === p) return undefined;
    if (build) {
      user = src.slice(p, ue);
      if (ue !== at) password = src.slice(ue + 1, at);
    }
    i = at + 1;
  }
  // host [":" port], then ';' or the end
  const hs = i;
  let cls = 0;
  for (let t: number; i < n && (t = HOST_CLASS[b[i]!]!) !== 0; i++) cls |= t;
  const upper = cls >= 2;
  if (i === hs) return undefined;
  const h0 = b[hs];
  if (h0 === 0x2d || h0 === 0x2e) return undefined;
  const host = !build ? '' : upper ? src.slice(hs, i).toLowerCase() : src.slice(hs, i);
  let port: number | undefined;
  if (i < n && b[i] === 0x3a) {
    i++;
    const ps = i;
    let v = 0;
    while (i < n) {
      const c = b[i]!;
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
      i++;
    }
    if (i === ps || i - ps > 5 || v > 65535) return undefined;
    port = v;
  }
  let params: Params = EMPTY_PARAMS;
  if (i < n) {
    if (b[i] !== 0x3b) return undefined;
    const ps = build ? new ParamList<string | null>() : undefined;
    if (ps !== undefined) params = ps;
    i++;
    // uri-parameters: ';'-separated, `name[=value]`; an empty parameter (or name) is an error
    while (i < n) {
      const ns = i;
      let eq = -1;
      let up = false;
      for (; i < n; i++) {
        const t = PARAM_CLASS[b[i]!]!;
        if (t === 0) continue;
        if (t === P_SEMI) break;
        if (t === P_EQ) {
          if (eq === -1) eq = i;
        } else if (t === P_BAD) return undefined;
        else if (eq === -1) up = true;
      }
      if (i === ns || eq === ns) return undefined;
      if (ps !== undefined) {
        const ne = eq === -1 ? i : eq;
        const name = up ? src.slice(ns, ne).toLowerCase() : (commonNameIn(b, ns, ne) ?? src.slice(ns, ne));
        ps.put(name, eq === -1 ? null : src.slice(eq + 1, i));
      }
      if (i >= n) break;
      i++;
      if (i >= n) return undefined;
    }
  }
  if (!build) return null;
  return { scheme, user, password, host, port, params, headers: EMPTY_HEADERS, raw };
}

/** An octet that keeps a URI off the plain path: controls, space, non-ASCII, `%` `?` `[` `]` `<` `>` `"`. */
function plainUriBad(c: number): boolean {
  return c <= 0x20 || c >= 0x7f || c === 0x25 || c === 0x3f || c === 0x5b || c === 0x5d || c === 0x3c || c === 0x3e || c === 0x22;
}

/** Host octets by class: 1 lower-case letter, digit, '.', '-', '_'; 2 upper-case letter; 0 anything else. */
const HOST_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f ? 1 : c >= 0x41 && c <= 0x5a ? 2 : 0;
  return t;
})();

const P_BAD = 3;
/** Octets of a plain URI's userinfo by class: P_BAD (plainUriBad), 1 ':', 0 anything else. */
const USER_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = plainUriBad(c) ? P_BAD : c === 0x3a ? 1 : 0;
  return t;
})();

const P_SEMI = 1;
const P_EQ = 2;
const P_UPPER = 4;
/** Octets of a plain URI's parameters by class: ';', '=', plainUriBad, upper-case letter, 0 anything else. */
const PARAM_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = c === 0x3b ? P_SEMI : c === 0x3d ? P_EQ : plainUriBad(c) ? P_BAD : c >= 0x41 && c <= 0x5a ? P_UPPER : 0;
  return t;
})();

function parseUriGeneral(raw: string): Uri {
  if (raw.length === 0) throw bad('empty URI');
  let i = 0;
  while (i < raw.length && isSchemeChar(raw.charCodeAt(i), i === 0)) i++;
  if (i === 0 || i >= raw.length || raw.charCodeAt(i) !== 0x3a) throw bad('bad URI scheme');
  if (hasSpaceOrCtl(raw)) throw bad('bad character in URI');
  const scheme = i === 3 && raw.startsWith('sip') ? 'sip' : i === 4 && raw.startsWith('sips') ? 'sips' : raw.slice(0, i).toLowerCase();
  if (scheme === 'sip' || scheme === 'sips') return parseSipUriRest(scheme, raw, i + 1);
  const rest = raw.slice(i + 1);
  if (scheme === 'tel') {
    const semi = rest.indexOf(';');
    const number = semi === -1 ? rest : rest.slice(0, semi);
    if (number.length === 0) throw bad('empty tel number');
    return { scheme: 'tel', number, params: parseUriParams(semi === -1 ? '' : rest.slice(semi + 1)), raw };
  }
  if (rest.length === 0) throw bad('empty URI');
  return { scheme, raw, opaque: true };
}

/** SIP/SIPS URI after "scheme:" (offset p of raw). */
function parseSipUriRest(scheme: 'sip' | 'sips', raw: string, p: number): SipUri {
  // '@' appears in no uri-parameter or header, so the last one ends the userinfo (which may hold '?' and ';')
  let at = raw.indexOf('@', p);
  if (at !== -1) for (let nx = raw.indexOf('@', at + 1); nx !== -1; nx = raw.indexOf('@', at + 1)) at = nx;
  let user: string | undefined;
  let password: string | undefined;
  let hostStart = p;
  if (at !== -1) {
    const colon = raw.indexOf(':', p);
    const ue = colon === -1 || colon > at ? at : colon;
    if (ue === p) throw bad('empty user');
    user = unescapeOnce(raw.slice(p, ue));
    if (ue !== at) password = unescapeOnce(raw.slice(ue + 1, at));
    hostStart = at + 1;
  }
  const q = raw.indexOf('?', hostStart);
  const hpEnd = q === -1 ? raw.length : q;
  const hp = parseHostPort(raw, hostStart, ';', hpEnd);
  const params = hp.end < hpEnd ? parseUriParams(raw, hp.end + 1, hpEnd) : EMPTY_PARAMS;
  let headers = EMPTY_HEADERS;
  if (q !== -1) {
    const hm = new Map<string, string>();
    headers = hm;
    const hs = raw.slice(q + 1);
    if (hs.length === 0) throw bad('empty URI headers');
    for (const h of hs.split('&')) {
      const eq = h.indexOf('=');
      if (eq <= 0) throw bad('bad URI header');
      hm.set(unescapeOnce(h.slice(0, eq)), unescapeOnce(h.slice(eq + 1)));
    }
  }
  return { scheme, user, password, host: hp.host, port: hp.port, params, headers, raw };
}

/** Parse and require a SIP/SIPS URI. */
export function parseSipUri(raw: string): SipUri {
  const u = parseUri(raw);
  if (!isSipUri(u)) throw bad('not a SIP URI');
  return u;
}

const SPECIAL_PARAMS = ['user', 'ttl', 'method', 'maddr', 'transport'];

/** URI comparison of RFC 3261 §19.1.4. */
export function uriEquals(a: Uri, b: Uri): boolean {
  if (a.scheme !== b.scheme) return false;
  if (!isSipUri(a) || !isSipUri(b)) {
    if (a.scheme === 'tel' && b.scheme === 'tel') {
      const ta = a as TelUri;
      const tb = b as TelUri;
      return ta.number.replace(/[-.()]/g, '') === tb.number.replace(/[-.()]/g, '') && paramsEqualLoose(ta.params, tb.params);
    }
    return a.raw === b.raw;
  }
  if (a.user !== b.user || a.password !== b.password) return false;
  if (a.host !== b.host || a.port !== b.port) return false;
  for (const p of SPECIAL_PARAMS) {
    const va = a.params.get(p);
    const vb = b.params.get(p);
    if (va === undefined && vb === undefined) continue;
    if (va === undefined || vb === undefined) return false;
    if ((va ?? '').toLowerCase() !== (vb ?? '').toLowerCase()) return false;
  }
  if (!paramsEqualLoose(a.params, b.params)) return false;
  if (a.headers.size !== b.headers.size) return false;
  for (const [k, v] of a.headers) {
    let found = false;
    for (const [k2, v2] of b.headers) if (k2.toLowerCase() === k.toLowerCase() && v2 === v) found = true;
    if (!found) return false;
  }
  return true;
}

function paramsEqualLoose(a: Params, b: Params): boolean {
  for (const [k, va] of a) {
    if (!b.has(k)) continue;
    const vb = b.get(k);
    if ((va ?? '').toLowerCase() !== (vb ?? '').toLowerCase()) return false;
  }
  return true;
}

/** Host without IPv6 brackets, for socket APIs. */
export function hostAddress(host: string): string {
  return host.charCodeAt(0) === 0x5b ? host.slice(1, -1) : host;
}

/** Format a host for a URI or Via: IPv6 addresses get brackets. */
export function formatHost(addr: string): string {
  return addr.indexOf(':') !== -1 && addr.charCodeAt(0) !== 0x5b ? `[${addr}]` : addr;
}
