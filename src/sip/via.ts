import { SipParseError } from './errors.js';
import { isToken } from './headers.js';
import { parseHeaderParams, type Params } from './params.js';
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

/** Parse one via-parm (one element of the comma list). */
export function parseVia(raw: string): Via {
  const s = raw;
  const n = s.length;
  let i = 0;
  const skip = (): void => {
    while (i < n && isWs(s.charCodeAt(i))) i++;
  };
  const token = (): string => {
    const st = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c === 0x2f || c === 0x3b || isWs(c)) break;
      i++;
    }
    return s.slice(st, i);
  };
  const slash = (): void => {
    skip();
    if (s.charCodeAt(i) !== 0x2f) throw bad('bad sent-protocol');
    i++;
    skip();
  };
  skip();
  const name = token();
  slash();
  const version = token();
  slash();
  const transport = token();
  if (!isToken(name) || !isToken(version) || !isToken(transport)) throw bad('bad sent-protocol');
  skip();
  if (i >= n) throw bad('missing sent-by');
  // sent-by = host [ SWS ":" SWS port ]
  let hp;
  try {
    const compact = compactSentBy(s, i);
    hp = parseHostPort(compact.text, 0, ';');
    i = compact.map(hp.end);
  } catch (e) {
    if (e instanceof SipParseError) throw bad('bad sent-by');
    throw e;
  }
  const params = parseHeaderParams(s.slice(i), 'BAD_VIA', 'Via');
  const branch = params.get('branch');
  const received = params.get('received');
  const rport = params.get('rport');
  const maddr = params.get('maddr');
  const ttl = params.get('ttl');
  let rportValue: number | true | undefined;
  if (rport === null) rportValue = true;
  else if (rport !== undefined) {
    if (!/^\d{1,5}$/.test(rport)) throw bad('bad rport');
    rportValue = Number(rport);
  }
  let ttlValue: number | undefined;
  if (ttl !== undefined && ttl !== null) {
    if (!/^\d{1,3}$/.test(ttl)) throw bad('bad ttl');
    ttlValue = Number(ttl);
  }
  if (branch === null) throw bad('empty branch');
  if (received === null) throw bad('empty received');
  return {
    protocol: `${name.toUpperCase()}/${version}`,
    transport: transport.toUpperCase(),
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

/** Remove LWS around the ':' of sent-by so parseHostPort sees host:port; map indices back. */
function compactSentBy(s: string, start: number): { text: string; map: (idx: number) => number } {
  // find end of sent-by: first ';' or end (sent-by has no ';')
  let end = s.indexOf(';', start);
  if (end === -1) end = s.length;
  const seg = s.slice(start, end);
  const close = seg.indexOf(']');
  const trimmed = (close === -1 ? seg.replace(/[ \t]*:[ \t]*/, ':') : seg.slice(0, close + 1) + seg.slice(close + 1).replace(/[ \t]*:[ \t]*/, ':')).trimEnd();
  if (/[ \t]/.test(trimmed)) throw bad('bad sent-by');
  return { text: trimmed, map: (idx: number) => (idx >= trimmed.length ? end : start + idx) };
}

/** Value for a Via we generate. */
export function formatVia(transport: string, host: string, port: number | undefined, branch: string, extra = ''): string {
  return `SIP/2.0/${transport.toUpperCase()} ${host}${port !== undefined ? ':' + port : ''};branch=${branch}${extra}`;
}

export const MAGIC_COOKIE = 'z9hG4bK';
