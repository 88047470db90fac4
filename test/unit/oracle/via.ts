/** Oracle for test/unit/sip-bytes.test.ts: this file as it was in src/sip at main 85887c8 (string scans, before the octet scans). Do not edit. */
import { SipParseError } from '../../../src/sip/errors.js';
import { isToken } from './headers.js';
import { EMPTY_PARAMS, parseHeaderParams, type Params } from './params.js';
import { parseHostPort } from './uri.js';

export interface Via {
  /** e.g. "SIP/2.0" */
  readonly protocol: string;
  /** upper-cased transport: UDP, TCP, TLS, SCTP, WS, WSS or any token. */
  readonly transport: string;
  /** sent-by host, lower-cased; IPv6 with brackets. */
  readonly host: string;
  readonly port: number | undefined;
  readonly params: Params;
  readonly branch: string | undefined;
  /** received parameter; brackets (RFC 5118 form) removed. */
  readonly received: string | undefined;
  /** rport: a number, `true` when present without a value, undefined when absent. */
  readonly rport: number | true | undefined;
  readonly maddr: string | undefined;
  readonly ttl: number | undefined;
  /** the value as received (one comma element). */
  readonly raw: string;
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x09;

function bad(reason: string): SipParseError {
  return new SipParseError('BAD_VIA', reason);
}

function skipWs(s: string, i: number, n: number): number {
  while (i < n && isWs(s.charCodeAt(i))) i++;
  return i;
}

/** End of a sent-protocol token: stops at '/', ';' or whitespace. */
function tokenEnd(s: string, i: number, n: number): number {
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === 0x2f || c === 0x3b || c === 0x20 || c === 0x09) break;
    i++;
  }
  return i;
}

/** Position after a '/' surrounded by optional whitespace. */
function slashAt(s: string, i: number, n: number): number {
  i = skipWs(s, i, n);
  if (i >= n || s.charCodeAt(i) !== 0x2f) throw bad('bad sent-protocol');
  return skipWs(s, i + 1, n);
}

function hasWsIn(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (isWs(s.charCodeAt(i))) return true;
  return false;
}

/** UDP, TCP or TLS (any case) at s[i, i+3) as the upper-case constant, or ''. */
function knownTransport(s: string, i: number): string {
  const a = s.charCodeAt(i) & 0xdf;
  const b = s.charCodeAt(i + 1) & 0xdf;
  const c = s.charCodeAt(i + 2) & 0xdf;
  if (a === 0x55 && b === 0x44 && c === 0x50) return 'UDP';
  if (a === 0x54 && b === 0x43 && c === 0x50) return 'TCP';
  if (a === 0x54 && b === 0x4c && c === 0x53) return 'TLS';
  return '';
}

/** Parse one via-parm (one element of the comma list). */
export function parseVia(raw: string): Via {
  return parseViaAt(raw, 0, raw.length, raw);
}

/**
 * parseVia(raw) where raw = src.slice(start, end), scanning src in place: a header value is a slice of the
 * received text, and characters of a flat string are cheaper to read than those of a slice.
 */
export function parseViaAt(src: string, start: number, end: number, raw: string): Via {
  const s = src;
  const n = end;
  let i = skipWs(s, start, n);
  let protocol: string;
  let transport: string;
  if (i + 8 <= n && s.startsWith('SIP/2.0/', i)) {
    // the usual spelling, without slicing name and version
    protocol = 'SIP/2.0';
    i = skipWs(s, i + 8, n);
  } else {
    let e = tokenEnd(s, i, n);
    const name = s.slice(i, e);
    i = slashAt(s, e, n);
    e = tokenEnd(s, i, n);
    const version = s.slice(i, e);
    i = slashAt(s, e, n);
    if (!isToken(name) || !isToken(version)) throw bad('bad sent-protocol');
    protocol = name.length === 3 && version === '2.0' && (name === 'SIP' || name === 'sip') ? 'SIP/2.0' : `${name.toUpperCase()}/${version}`;
  }
  const e = tokenEnd(s, i, n);
  transport = e - i === 3 ? knownTransport(s, i) : '';
  if (transport === '') {
    const t = s.slice(i, e);
    if (!isToken(t)) throw bad('bad sent-protocol');
    transport = t.toUpperCase();
  }
  i = skipWs(s, e, n);
  if (i >= n) throw bad('missing sent-by');
  // sent-by = host [ SWS ":" SWS port ]; it ends at the first ';' (sent-by holds none)
  let end2 = s.indexOf(';', i);
  if (end2 === -1 || end2 > n) end2 = n;
  let hp;
  try {
    hp = hasWsIn(s, i, end2) ? parseHostPort(compactSentBy(s.slice(i, end2)), 0, ';') : parseHostPort(s, i, ';', end2);
  } catch (err) {
    if (err instanceof SipParseError) throw bad('bad sent-by');
    throw err;
  }
  const params = end2 === n ? EMPTY_PARAMS : parseHeaderParams(s, 'BAD_VIA', 'Via', end2, n);
  const branch = params.get('branch');
  const received = params.get('received');
  const rport = params.get('rport');
  const maddr = params.get('maddr');
  const ttl = params.get('ttl');
  let rportValue: number | true | undefined;
  if (rport === null) rportValue = true;
  else if (rport !== undefined) {
    if (!isDigits(rport, 5)) throw bad('bad rport');
    rportValue = Number(rport);
  }
  let ttlValue: number | undefined;
  if (ttl !== undefined && ttl !== null) {
    if (!isDigits(ttl, 3)) throw bad('bad ttl');
    ttlValue = Number(ttl);
  }
  if (branch === null) throw bad('empty branch');
  if (received === null) throw bad('empty received');
  return {
    protocol,
    transport,
    host: hp.host,
    port: hp.port,
    params,
    branch,
    received: received === undefined ? undefined : received.charCodeAt(0) === 0x5b ? received.slice(1, -1) : received,
    rport: rportValue,
    maddr: maddr ?? undefined,
    ttl: ttlValue,
    raw,
  };
}

function isDigits(v: string, max: number): boolean {
  if (v.length === 0 || v.length > max) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** sent-by with whitespace: remove LWS around the ':' (after an IPv6 reference's ']'); any other whitespace is an error. */
function compactSentBy(seg: string): string {
  const close = seg.indexOf(']');
  const trimmed = (close === -1 ? seg.replace(/[ \t]*:[ \t]*/, ':') : seg.slice(0, close + 1) + seg.slice(close + 1).replace(/[ \t]*:[ \t]*/, ':')).trimEnd();
  if (/[ \t]/.test(trimmed)) throw bad('bad sent-by');
  return trimmed;
}

/** Value for a Via we generate. */
export function formatVia(transport: string, host: string, port: number | undefined, branch: string, extra = ''): string {
  return `SIP/2.0/${transport.toUpperCase()} ${host}${port !== undefined ? ':' + port : ''};branch=${branch}${extra}`;
}

export const MAGIC_COOKIE = 'z9hG4bK';
