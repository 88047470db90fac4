import { SipParseError } from './errors.js';
import { isToken } from './headers.js';
import { freshBytes, scratchBytes } from './bytes.js';
import { EMPTY_PARAMS, headerParamsAt, ParamList, type Params } from './params.js';
import { hostPortAt } from './uri.js';

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

function bad(reason: string): SipParseError {
  return new SipParseError('BAD_VIA', reason);
}

function skipWs(b: Uint8Array, i: number, n: number): number {
  while (i < n && (b[i] === 0x20 || b[i] === 0x09)) i++;
  return i;
}

/** End of a sent-protocol token: stops at '/', ';' or whitespace. */
function tokenEnd(b: Uint8Array, i: number, n: number): number {
  while (i < n) {
    const c = b[i];
    if (c === 0x2f || c === 0x3b || c === 0x20 || c === 0x09) break;
    i++;
  }
  return i;
}

/** Position after a '/' surrounded by optional whitespace. */
function slashAt(b: Uint8Array, i: number, n: number): number {
  i = skipWs(b, i, n);
  if (i >= n || b[i] !== 0x2f) throw bad('bad sent-protocol');
  return skipWs(b, i + 1, n);
}

/** UDP, TCP or TLS (any case) at b[i, i+3) as the upper-case constant, or ''. */
function knownTransport(b: Uint8Array, i: number): string {
  const x = b[i]! & 0xdf;
  const y = b[i + 1]! & 0xdf;
  const z = b[i + 2]! & 0xdf;
  if (x === 0x55 && y === 0x44 && z === 0x50) return 'UDP';
  if (x === 0x54 && y === 0x43 && z === 0x50) return 'TCP';
  if (x === 0x54 && y === 0x4c && z === 0x53) return 'TLS';
  return '';
}

/** "SIP/2.0/" at b[i, i+8). */
function sip20At(b: Uint8Array, i: number): boolean {
  return b[i] === 0x53 && b[i + 1] === 0x49 && b[i + 2] === 0x50 && b[i + 3] === 0x2f && b[i + 4] === 0x32 && b[i + 5] === 0x2e && b[i + 6] === 0x30 && b[i + 7] === 0x2f;
}

/** Parse one via-parm (one element of the comma list). */
export function parseVia(raw: string): Via {
  return parseViaAt(raw, scratchBytes(raw), 0, raw.length, raw);
}

/**
 * parseVia(raw) where raw = src.slice(start, end), scanning in place: a header value is a slice of the received
 * text, whose octets b (b[k] = src.charCodeAt(k), see bytes.ts) are cheaper to read than the characters of a slice.
 */
export function parseViaAt(src: string, b: Uint8Array, start: number, end: number, raw: string): Via {
  const s = src;
  const n = end;
  let i = skipWs(b, start, n);
  let protocol: string;
  let transport: string;
  if (i + 8 <= n && sip20At(b, i)) {
    // the usual spelling, without slicing name and version
    protocol = 'SIP/2.0';
    i = skipWs(b, i + 8, n);
  } else {
    let e = tokenEnd(b, i, n);
    const name = s.slice(i, e);
    i = slashAt(b, e, n);
    e = tokenEnd(b, i, n);
    const version = s.slice(i, e);
    i = slashAt(b, e, n);
    if (!isToken(name) || !isToken(version)) throw bad('bad sent-protocol');
    protocol = name.length === 3 && version === '2.0' && (name === 'SIP' || name === 'sip') ? 'SIP/2.0' : `${name.toUpperCase()}/${version}`;
  }
  const e = tokenEnd(b, i, n);
  transport = e - i === 3 ? knownTransport(b, i) : '';
  if (transport === '') {
    const t = s.slice(i, e);
    if (!isToken(t)) throw bad('bad sent-protocol');
    transport = t.toUpperCase();
  }
  i = skipWs(b, e, n);
  if (i >= n) throw bad('missing sent-by');
  // sent-by = host [ SWS ":" SWS port ]; it ends at the first ';' (sent-by holds none)
  // the usual sent-by (host[:port] directly followed by ';' or the end): host and port hold no ';', so where the scan
  // stops is that first ';' (end2), and the result is what the scan up to end2 below gives; otherwise (an error, or
  // whitespace to compact) the steps below decide
  let hp = plainSentBy(s, b, i, n);
  let end2 = hp === undefined ? -1 : hp.end;
  if (hp === undefined) {
    // searched in raw (= s[start, n)), so that a Via without parameters does not search the rest of the message
    end2 = raw.indexOf(';', i - start);
    end2 = end2 === -1 ? n : end2 + start;
    try {
      // without whitespace, sent-by is host[:port] up to end2; with some (LWS around ':', trailing), hostPortAt on the
      // received text stops at it and throws, and the compacted text is parsed instead
      try {
        hp = hostPortAt(s, b, i, ';', end2);
      } catch (err) {
        if (!(err instanceof SipParseError) || !hasWs(b, i, end2)) throw err;
        const sb = compactSentBy(s.slice(i, end2));
        hp = hostPortAt(sb, freshBytes(sb), 0, ';', sb.length);
      }
    } catch (err) {
      if (err instanceof SipParseError) throw bad('bad sent-by');
      throw err;
    }
  }
  // the parameters, with the five Via reads of them picked up during the scan
  let branch: string | null | undefined;
  let received: string | null | undefined;
  let rport: string | null | undefined;
  let maddr: string | null | undefined;
  let ttl: string | null | undefined;
  let params: Params = EMPTY_PARAMS;
  if (end2 !== n) {
    const pm = headerParamsAt(s, b, 'BAD_VIA', 'Via', end2, n);
    params = pm;
    branch = pm.get('branch');
    received = pm.get('received');
    rport = pm.get('rport');
    maddr = pm.get('maddr');
    ttl = pm.get('ttl');
  }
  let rportValue: number | true | undefined;
  if (rport === null) rportValue = true;
  else if (rport !== undefined) {
    rportValue = digitsValue(rport, 5);
    if (rportValue === -1) throw bad('bad rport');
  }
  let ttlValue: number | undefined;
  if (ttl !== undefined && ttl !== null) {
    ttlValue = digitsValue(ttl, 3);
    if (ttlValue === -1) throw bad('bad ttl');
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

/**
 * parseVia(edited), built from `via` without parsing again, where `edited` is via.raw after setViaReceived's edit: a
 * `received` parameter replaced (`receivedReplaced`) or appended with the value `received`, and, when `rportReplaced`,
 * the rport parameter's value made `rport`. Undefined where that is not certain to be what parseVia(edited) gives
 * (then the caller parses `edited`): a quoted value in via.raw (a ';' in it is not a parameter's), a parameter name
 * that occurs twice (the edit may have changed the one the parser does not keep), a new value the parser would read
 * otherwise (other octets than those of an IP address or a host name), an rport that is not 0..99999, a `received`
 * appended or an rport kept where via has one of those.
 * @internal (SipMessage.setViaReceived)
 */
export function viaWithReceived(via: Via, edited: string, received: string | undefined, receivedReplaced: boolean, rport: number | undefined, rportReplaced: boolean): Via | undefined {
  const raw = via.raw;
  if (raw.indexOf('"') !== -1) return undefined;
  const old = via.params;
  // without quotes, every ';' starts a parameter: as many as the names in params when no name occurs twice
  let semis = 0;
  for (let k = raw.indexOf(';'); k !== -1; k = raw.indexOf(';', k + 1)) semis++;
  if (semis !== old.size) return undefined;
  let rportValue = via.rport;
  if (rportReplaced) {
    if (rport === undefined || !Number.isInteger(rport) || rport < 0 || rport > 99999) return undefined;
    rportValue = rport;
  } else if (rport !== undefined && old.has('rport')) return undefined;
  let receivedValue = via.received;
  if (received !== undefined) {
    if (!plainValue(received)) return undefined;
    if (!receivedReplaced && old.has('received')) return undefined;
    receivedValue = received.charCodeAt(0) === 0x5b ? received.slice(1, -1) : received;
  } else if (receivedReplaced) return undefined;
  const params = new ParamList<string | null>();
  old.forEach(copyParam, params);
  if (rportReplaced) params.put('rport', String(rport));
  if (received !== undefined) params.put('received', received);
  return {
    protocol: via.protocol,
    transport: via.transport,
    host: via.host,
    port: via.port,
    params,
    branch: via.branch,
    received: receivedValue,
    rport: rportValue,
    maddr: via.maddr,
    ttl: via.ttl,
    raw: edited,
  };
}

function copyParam(this: ParamList<string | null>, value: string | null, name: string): void {
  this.put(name, value);
}

/** A non-empty value of letters, digits and . : - _ % [ ] only (an IP address, an IPv6 reference, a host name). */
function plainValue(v: string): boolean {
  if (v.length === 0) return false;
  for (let k = 0; k < v.length; k++) {
    const c = v.charCodeAt(k);
    const ok = (c >= 0x30 && c <= 0x3a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2e || c === 0x2d || c === 0x5f || c === 0x25 || c === 0x5b || c === 0x5d;
    if (!ok) return false;
  }
  return true;
}

/** hostPortAt(s, b, i, ';', n), or undefined where it throws. */
function plainSentBy(s: string, b: Uint8Array, i: number, n: number): { host: string; port: number | undefined; end: number } | undefined {
  try {
    return hostPortAt(s, b, i, ';', n);
  } catch (err) {
    if (err instanceof SipParseError) return undefined;
    throw err;
  }
}

/** True when b[from, to) holds SP or HTAB. */
function hasWs(b: Uint8Array, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (b[k] === 0x20 || b[k] === 0x09) return true;
  return false;
}

/** Value of 1 to max decimal digits (as Number(v)), or -1 when v is not that. */
function digitsValue(v: string, max: number): number {
  if (v.length === 0 || v.length > max) return -1;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    n = n * 10 + (c - 0x30);
  }
  return n;
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
