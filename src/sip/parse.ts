import { SipParseError, type PartialMessage } from './errors.js';
import { headerKey, intern, isToken, keyBit, splitList } from './headers.js';
import { ReceivedField, SipRequest, SipResponse, type HeaderField } from './message.js';
import { parseUriAt } from './uri.js';

export interface ParseLimits {
  /** whole message, octets (default 64 KiB). */
  maxMessageSize: number;
  /** header lines (default 256). */
  maxHeaders: number;
  /** one logical header line incl. folding, octets (default 8 KiB). */
  maxHeaderLine: number;
  /** Via values across all Via lines (default 70). */
  maxVias: number;
}

export const DEFAULT_LIMITS: Readonly<ParseLimits> = Object.freeze({
  maxMessageSize: 65536,
  maxHeaders: 256,
  maxHeaderLine: 8192,
  maxVias: 70,
});

export interface ParseOptions {
  limits?: Partial<ParseLimits>;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * Parse one SIP message from a datagram (or from a frame cut by StreamFramer).
 * Only the start line and the header framing are parsed here; header values are parsed lazily on access.
 * Throws only SipParseError.
 */
export function parseMessage(data: Buffer, opts: ParseOptions = {}): SipRequest | SipResponse {
  const limits = opts.limits ? { ...DEFAULT_LIMITS, ...opts.limits } : DEFAULT_LIMITS;
  if (data.length > limits.maxMessageSize) throw new SipParseError('TOO_LARGE', 'Message too large');
  let start = 0;
  // RFC 3261 §7.5: ignore CRLFs before the start line
  while (start + 1 < data.length && data[start] === 0x0d && data[start + 1] === 0x0a) start += 2;
  if (start >= data.length) throw new SipParseError('EMPTY', 'Empty message');
  if (data.length <= 8192) {
    // the usual case: scanned on the bytes; undefined when the message has no empty line ending its header section
    let m: SipRequest | SipResponse | undefined;
    try {
      m = parseSmall(data, start, limits);
    } catch (e) {
      // without an empty line the general path below reads the last line differently (trailing CR/LF): let it decide
      if (!(e instanceof SipParseError) || data.indexOf(CRLFCRLF, start) !== -1) throw e;
    }
    if (m !== undefined) return m;
  }
  return parseGeneral(data, start, limits);
}

/** @internal parseMessage without the byte-scanning fast path for small messages (tests compare the two). */
export function parseMessageGeneral(data: Buffer, opts: ParseOptions = {}): SipRequest | SipResponse {
  const limits = opts.limits ? { ...DEFAULT_LIMITS, ...opts.limits } : DEFAULT_LIMITS;
  if (data.length > limits.maxMessageSize) throw new SipParseError('TOO_LARGE', 'Message too large');
  let start = 0;
  while (start + 1 < data.length && data[start] === 0x0d && data[start + 1] === 0x0a) start += 2;
  if (start >= data.length) throw new SipParseError('EMPTY', 'Empty message');
  return parseGeneral(data, start, limits);
}

/** parseMessage from the start line at `start`: the header section is found first, then split into lines. */
function parseGeneral(data: Buffer, start: number, limits: Readonly<ParseLimits>): SipRequest | SipResponse {
  // Small messages (nearly all) are converted once and searched as a string; large ones are searched as bytes
  // so that a big body is not converted. The header section is then scanned in place: head[hs, he).
  let head: string;
  let hs: number;
  let he: number;
  let bodyStart: number;
  if (data.length <= 8192) {
    head = latin1(data, 0, data.length);
    hs = start;
    he = head.indexOf('\r\n\r\n', start);
    if (he === -1) {
      he = trimLineEnds(data, start);
      bodyStart = data.length;
    } else bodyStart = he + 4;
  } else {
    let headEnd = data.indexOf(CRLFCRLF, start);
    if (headEnd === -1) {
      headEnd = trimLineEnds(data, start);
      bodyStart = data.length;
    } else bodyStart = headEnd + 4;
    head = latin1(data, start, headEnd);
    hs = 0;
    he = head.length;
  }
  // the octets of head, at the same offsets
  const bytes = hs === start ? data : data.subarray(start, start + head.length);

  let pos = head.indexOf('\r\n', hs);
  if (pos === -1 || pos > he) pos = he;
  const startLine = head.slice(hs, pos);
  pos += 2;
  const headers: HeaderField[] = [];
  let viaCount = 0;
  // presence bits of the header keys seen (see SipMessage.indexed)
  let mask = 0;
  let clValues: string[] | undefined;
  const maxLine = limits.maxHeaderLine;

  while (pos < he) {
    // one logical header line: continuation lines start with SP or HTAB (folding)
    let end = crlfAt(head, pos, he);
    let folded = false;
    while (end < he && end - pos <= maxLine) {
      const c = head.charCodeAt(end + 2);
      if (c !== 0x20 && c !== 0x09) break;
      folded = true;
      end = crlfAt(head, end + 2, he);
    }
    const lineStart = pos;
    pos = end + 2;
    if (end - lineStart > maxLine) throw new SipParseError('HEADER_TOO_LONG', 'Header line too long', partialOf(startLine, headers));
    if (headers.length >= limits.maxHeaders) throw new SipParseError('TOO_MANY_HEADERS', 'Too many headers', partialOf(startLine, headers));
    const colon = head.indexOf(':', lineStart);
    if (colon <= lineStart || colon >= end) throw new SipParseError('BAD_HEADER', 'Malformed header line', partialOf(startLine, headers));
    let ne = colon;
    while (ne > lineStart && (head.charCodeAt(ne - 1) === 0x20 || head.charCodeAt(ne - 1) === 0x09)) ne--;
    let name: string;
    let key: string | undefined;
    const known = knownName(head, lineStart, ne);
    if (known !== undefined) {
      name = known.name;
      key = known.key;
    } else {
      name = head.slice(lineStart, ne);
      key = keyOfName(name);
      if (key === undefined) throw new SipParseError('BAD_HEADER', 'Bad header name', partialOf(startLine, headers));
    }
    // value = head[vs, ve) when plain (no folding, no trimming beyond SP/HTAB); otherwise vs = -1 and it is `value`
    let value: string | undefined;
    let vs = -1;
    let ve = -1;
    if (folded) value = head.slice(colon + 1, end).replace(/\r\n[ \t]+/g, ' ').trim();
    else {
      vs = colon + 1;
      ve = end;
      while (vs < ve && (head.charCodeAt(vs) === 0x20 || head.charCodeAt(vs) === 0x09)) vs++;
      while (ve > vs && (head.charCodeAt(ve - 1) === 0x20 || head.charCodeAt(ve - 1) === 0x09)) ve--;
      // anything else String.prototype.trim would remove (CR, LF, VT, FF, NBSP) at either end
      if (ve > vs && (trimmable(head.charCodeAt(vs)) || trimmable(head.charCodeAt(ve - 1)))) {
        value = head.slice(vs, ve).trim();
        vs = -1;
      }
    }
    const field = new ReceivedField(name, key, head, bytes, lineStart, end, vs, ve, value);
    headers.push(field);
    mask |= known !== undefined ? known.bit : keyBit(key);
    if (key === 'via') {
      const comma = field.value.indexOf(',');
      viaCount += comma === -1 ? 1 : splitList(field.value).length;
      if (viaCount > limits.maxVias) throw new SipParseError('TOO_MANY_VIAS', 'Too many Via headers', partialOf(startLine, headers));
    } else if (key === 'content-length') (clValues ??= []).push(field.value);
  }

  // body framing (RFC 3261 §18.3): Content-Length decides; a missing one means the rest of the datagram
  let bodyEnd = data.length;
  if (clValues !== undefined) {
    if (clValues.length > 1) throw new SipParseError('BAD_CONTENT_LENGTH', 'Multiple Content-Length', partialOf(startLine, headers));
    const v = clValues[0]!;
    if (!isCl(v)) throw new SipParseError('BAD_CONTENT_LENGTH', 'Bad Content-Length', partialOf(startLine, headers));
    const cl = decimalValue(v);
    const available = data.length - bodyStart;
    if (cl > available) throw new SipParseError('BODY_TRUNCATED', 'Content-Length exceeds body', partialOf(startLine, headers));
    bodyEnd = bodyStart + cl;
  }
  const body = EMPTY; // the body itself is set below, as a range of data (SipMessage.bodyIn)

  const m = startLine.startsWith('SIP/') ? parseStatusLine(startLine, headers, body) : parseRequestLine(startLine, headers, body, head, bytes, hs);
  m.indexed(mask);
  if (bodyStart < bodyEnd) m.bodyIn(data, bodyStart, bodyEnd);
  return m;
}


/**
 * parseMessage for a message of at most 8 KiB with start = the offset of its start line: the same steps as the general
 * path, but the header section is found and split by looking at the bytes of `data` (cheaper to read than the
 * characters of a string), with the values sliced from its latin1 text `head` at the same offsets. The end of the
 * header section is the first empty line, found during the line scan; a message without one returns undefined
 * (the general path handles it).
 */
function parseSmall(data: Buffer, start: number, limits: Readonly<ParseLimits>): SipRequest | SipResponse | undefined {
  const d = data;
  const n = d.length;
  const head = latin1(data, 0, n);
  let pos = crlfAt(head, start, n);
  if (pos >= n) return undefined;
  const startLine = head.slice(start, pos);
  pos += 2;
  const headers: HeaderField[] = [];
  let viaCount = 0;
  // presence bits of the header keys seen (see SipMessage.indexed)
  let mask = 0;
  let clValues: string[] | undefined;
  const maxLine = limits.maxHeaderLine;
  const maxHeaders = limits.maxHeaders;
  let bodyStart = -1;

  while (pos < n) {
    let end = crlfAt(head, pos, n);
    if (end === pos) {
      bodyStart = pos + 2;
      break;
    }
    if (end >= n) return undefined;
    let folded = false;
    while (end - pos <= maxLine) {
      const c = d[end + 2];
      if (c !== 0x20 && c !== 0x09) break;
      folded = true;
      end = crlfAt(head, end + 2, n);
      if (end >= n) return undefined;
    }
    const lineStart = pos;
    pos = end + 2;
    if (end - lineStart > maxLine) throw new SipParseError('HEADER_TOO_LONG', 'Header line too long', partialOf(startLine, headers));
    if (headers.length >= maxHeaders) throw new SipParseError('TOO_MANY_HEADERS', 'Too many headers', partialOf(startLine, headers));
    // the usual line starts with a known name and its ':' (no whitespace between): recognised in one pass over the
    // name; otherwise the colon is searched and the name (without trailing whitespace) looked up
    let colon: number;
    let known = knownPrefixIn(d, lineStart);
    if (known !== undefined) colon = lineStart + known.codes.length;
    else {
      // the name is short: a loop over its octets is cheaper than indexOf
      colon = lineStart;
      while (colon < end && d[colon] !== 0x3a) colon++;
      if (colon <= lineStart || colon >= end) throw new SipParseError('BAD_HEADER', 'Malformed header line', partialOf(startLine, headers));
      let ne = colon;
      while (ne > lineStart && (d[ne - 1] === 0x20 || d[ne - 1] === 0x09)) ne--;
      known = knownNameIn(d, lineStart, ne);
    }
    let name: string;
    let key: string | undefined;
    if (known === undefined) {
      let ne = colon;
      while (ne > lineStart && (d[ne - 1] === 0x20 || d[ne - 1] === 0x09)) ne--;
      name = head.slice(lineStart, ne);
      key = keyOfName(name);
      if (key === undefined) throw new SipParseError('BAD_HEADER', 'Bad header name', partialOf(startLine, headers));
    } else {
      name = known.name;
      key = known.key;
    }
    let value: string | undefined;
    let vs = -1;
    let ve = -1;
    if (folded) value = head.slice(colon + 1, end).replace(/\r\n[ \t]+/g, ' ').trim();
    else {
      vs = colon + 1;
      ve = end;
      while (vs < ve && (d[vs] === 0x20 || d[vs] === 0x09)) vs++;
      while (ve > vs && (d[ve - 1] === 0x20 || d[ve - 1] === 0x09)) ve--;
      if (ve > vs && (trimmable(d[vs]!) || trimmable(d[ve - 1]!))) {
        value = head.slice(vs, ve).trim();
        vs = -1;
      }
    }
    const field = new ReceivedField(name, key, head, d, lineStart, end, vs, ve, value);
    headers.push(field);
    mask |= known !== undefined ? known.bit : keyBit(key);
    if (key === 'via') {
      const comma = field.value.indexOf(',');
      viaCount += comma === -1 ? 1 : splitList(field.value).length;
      if (viaCount > limits.maxVias) throw new SipParseError('TOO_MANY_VIAS', 'Too many Via headers', partialOf(startLine, headers));
    } else if (key === 'content-length') (clValues ??= []).push(field.value);
  }
  if (bodyStart === -1) return undefined;

  let bodyEnd = n;
  if (clValues !== undefined) {
    if (clValues.length > 1) throw new SipParseError('BAD_CONTENT_LENGTH', 'Multiple Content-Length', partialOf(startLine, headers));
    const v = clValues[0]!;
    if (!isCl(v)) throw new SipParseError('BAD_CONTENT_LENGTH', 'Bad Content-Length', partialOf(startLine, headers));
    const cl = decimalValue(v);
    if (cl > n - bodyStart) throw new SipParseError('BODY_TRUNCATED', 'Content-Length exceeds body', partialOf(startLine, headers));
    bodyEnd = bodyStart + cl;
  }
  const body = EMPTY; // the body itself is set below, as a range of data (SipMessage.bodyIn)
  const m = startLine.startsWith('SIP/') ? parseStatusLine(startLine, headers, body) : parseRequestLine(startLine, headers, body, head, data, start);
  m.indexed(mask);
  if (bodyStart < bodyEnd) m.bodyIn(data, bodyStart, bodyEnd);
  return m;
}

/**
 * The known name that d[start...] starts with, directly followed by ':' (so the line's first ':' ends it), or undefined.
 * A name is a token, so it holds no ':' and no CR: the ':' found is the first one and lies within the line.
 */
function knownPrefixIn(d: Buffer, start: number): KnownName | undefined {
  const cands = KNOWN_BY_FIRST[d[start]!];
  if (cands === undefined) return undefined;
  for (let i = 0; i < cands.length; i++) {
    const codes = cands[i]!.codes;
    const len = codes.length;
    if (d[start + len] !== 0x3a) continue;
    let j = 1;
    while (j < len && d[start + j] === codes[j]) j++;
    if (j === len) return cands[i];
  }
  return undefined;
}

/** knownName on the bytes d[start, end). */
function knownNameIn(d: Buffer, start: number, end: number): KnownName | undefined {
  const cands = KNOWN_BY_LENGTH[end - start];
  if (cands === undefined) return undefined;
  const c0 = d[start];
  const cl = d[end - 1];
  for (let i = 0; i < cands.length; i++) {
    const k = cands[i]!;
    if (k.c0 !== c0 || k.cl !== cl) continue;
    const codes = k.codes;
    let j = codes.length - 2;
    while (j > 0 && d[start + j] === codes[j]) j--;
    if (j <= 0) return k;
  }
  return undefined;
}

const EMPTY = Buffer.alloc(0);

/** Buffer's own latin1 decoder (what toString('latin1', s, e) ends in), without the argument handling. */
interface Latin1Sliceable {
  latin1Slice?: (start: number, end: number) => string;
}

function latin1(data: Buffer, start: number, end: number): string {
  const d = data as unknown as Latin1Sliceable;
  return d.latin1Slice !== undefined ? d.latin1Slice(start, end) : data.toString('latin1', start, end);
}

/** /^\d{1,10}$/ without the regex. */
function isCl(v: string): boolean {
  if (v.length === 0 || v.length > 10) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Number(v) for v of 1 to 10 decimal digits (isCl), exact. */
function decimalValue(v: string): number {
  let n = 0;
  for (let i = 0; i < v.length; i++) n = n * 10 + (v.charCodeAt(i) - 0x30);
  return n;
}

/** End of the header section of a datagram without the empty line: trailing CR/LF octets removed. */
function trimLineEnds(data: Buffer, start: number): number {
  let e = data.length;
  while (e > start && (data[e - 1] === 0x0a || data[e - 1] === 0x0d)) e--;
  return e;
}

/** Index of the next CRLF in s[from, limit), or limit. (A one-character indexOf is much faster than a two-character one.) */
function crlfAt(s: string, from: number, limit: number): number {
  for (;;) {
    const r = s.indexOf('\r', from);
    if (r === -1 || r >= limit) return limit;
    if (s.charCodeAt(r + 1) === 0x0a) return r;
    from = r + 1;
  }
}

function trimmable(c: number): boolean {
  return c === 0x0a || c === 0x0b || c === 0x0c || c === 0x0d || c === 0xa0;
}

interface KnownName {
  readonly name: string;
  readonly key: string;
  /** first and last char codes, checked before comparing the whole name */
  readonly c0: number;
  readonly cl: number;
  /** the name's char codes (latin1 bytes) */
  readonly codes: Uint8Array;
  /** keyBit(key) */
  readonly bit: number;
}

/** Frequent header spellings by length, recognised in place without slicing or hashing the name. */
const KNOWN_BY_LENGTH: KnownName[][] = (() => {
  const names = [
    'Via', 'v', 'From', 'f', 'To', 't', 'Call-ID', 'Call-Id', 'i', 'CSeq', 'Max-Forwards', 'Contact', 'm', 'Route', 'Record-Route',
    'Content-Length', 'l', 'Content-Type', 'c', 'Authorization', 'Proxy-Authorization', 'WWW-Authenticate', 'Proxy-Authenticate',
    'Allow', 'Supported', 'k', 'Require', 'Proxy-Require', 'Unsupported', 'User-Agent', 'Server', 'Expires', 'Min-Expires', 'Path',
    'Accept', 'Accept-Encoding', 'Accept-Language', 'Date', 'Subject', 's', 'Event', 'o', 'Allow-Events', 'u', 'Session-Expires', 'x',
    'Min-SE', 'Organization', 'Privacy', 'P-Asserted-Identity', 'P-Preferred-Identity', 'Remote-Party-ID', 'Timestamp', 'Warning',
    'Content-Disposition', 'Content-Encoding', 'MIME-Version', 'RSeq', 'RAck', 'Refer-To', 'Referred-By', 'Reason', 'Service-Route',
    'Authentication-Info', 'Retry-After', 'Subscription-State', 'Call-Info', 'Alert-Info', 'X-Serialnumber',
  ];
  const all = [...names, ...names.map((n) => n.toLowerCase())];
  const table: KnownName[][] = [];
  for (const n of new Set(all)) {
    const key = intern(headerKey(n));
    (table[n.length] ??= []).push({ name: n, key, c0: n.charCodeAt(0), cl: n.charCodeAt(n.length - 1), codes: Uint8Array.from(n, (ch) => ch.charCodeAt(0)), bit: keyBit(key) });
  }
  return table;
})();

/** KNOWN_BY_LENGTH's names by first octet. */
const KNOWN_BY_FIRST: KnownName[][] = (() => {
  const t: KnownName[][] = [];
  for (const list of KNOWN_BY_LENGTH) if (list !== undefined) for (const k of list) (t[k.c0] ??= []).push(k);
  return t;
})();

/** head.startsWith(name, start), without the cost of startsWith on a sliced string; first and last chars already match. */
function sameAt(head: string, start: number, name: string): boolean {
  for (let j = name.length - 2; j > 0; j--) if (head.charCodeAt(start + j) !== name.charCodeAt(j)) return false;
  return true;
}

function knownName(head: string, start: number, end: number): KnownName | undefined {
  const cands = KNOWN_BY_LENGTH[end - start];
  if (cands === undefined) return undefined;
  const c0 = head.charCodeAt(start);
  const cl = head.charCodeAt(end - 1);
  for (let i = 0; i < cands.length; i++) {
    const k = cands[i]!;
    if (k.c0 === c0 && k.cl === cl && sameAt(head, start, k.name)) return k;
  }
  return undefined;
}

/** Header name as written -> key. Names seen before skip the token check and the lower-casing. Bounded. */
const KEY_CACHE = new Map<string, string>();
const KEY_CACHE_MAX = 4096;

function keyOfName(name: string): string | undefined {
  const k = KEY_CACHE.get(name);
  if (k !== undefined) return k;
  if (!isToken(name)) return undefined;
  if (KEY_CACHE.size >= KEY_CACHE_MAX) return headerKey(name);
  const key = intern(headerKey(name));
  KEY_CACHE.set(name, key);
  return key;
}
const VERSION_RE = /^SIP\/\d{1,3}\.\d{1,3}$/i;

/**
 * Request-Line `line`, which is head[hs, hs + line.length) (the Request-URI is parsed there, in the flat string, whose
 * octets are `bytes`).
 */
function parseRequestLine(line: string, headers: HeaderField[], body: Buffer, head: string, bytes: Uint8Array, hs: number): SipRequest {
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 === -1 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || line.indexOf(' ', sp2 + 1) !== -1 || sp2 === sp1 + 1 || sp2 === line.length - 1) {
    throw new SipParseError('BAD_START_LINE', 'Malformed Request-Line', partialOf(line, headers));
  }
  const method = line.slice(0, sp1);
  const uriText = line.slice(sp1 + 1, sp2);
  const version = line.slice(sp2 + 1);
  if (!isToken(method)) throw new SipParseError('BAD_METHOD', 'Bad method', partialOf(line, headers));
  if (version !== 'SIP/2.0' && !VERSION_RE.test(version)) throw new SipParseError('BAD_VERSION', 'Bad SIP version', partialOf(line, headers));
  let uri;
  try {
    uri = parseUriAt(head, bytes, hs + sp1 + 1, hs + sp2, uriText);
  } catch (e) {
    if (e instanceof SipParseError) throw new SipParseError('BAD_URI', 'Bad Request-URI', partialOf(line, headers));
    throw e;
  }
  return new SipRequest(method, uriText, headers, body, version === 'SIP/2.0' ? version : version.toUpperCase(), line, uri);
}

function parseStatusLine(line: string, headers: HeaderField[], body: Buffer): SipResponse {
  const sp1 = line.indexOf(' ');
  if (sp1 === -1) throw new SipParseError('BAD_START_LINE', 'Malformed Status-Line', partialOf(line, headers));
  const version = line.slice(0, sp1);
  if (!VERSION_RE.test(version)) throw new SipParseError('BAD_VERSION', 'Bad SIP version', partialOf(line, headers));
  const rest = line.slice(sp1 + 1);
  const sp2 = rest.indexOf(' ');
  const codeText = sp2 === -1 ? rest : rest.slice(0, sp2);
  if (!/^[1-6]\d\d$/.test(codeText)) throw new SipParseError('BAD_STATUS', 'Bad status code', partialOf(line, headers));
  const reason = sp2 === -1 ? '' : rest.slice(sp2 + 1);
  for (let i = 0; i < reason.length; i++) {
    const c = reason.charCodeAt(i);
    if (c < 0x20 && c !== 0x09) throw new SipParseError('BAD_START_LINE', 'Bad reason phrase', partialOf(line, headers));
  }
  return new SipResponse(Number(codeText), reason, headers, body, version.toUpperCase(), line);
}

function partialOf(startLine: string, headers: HeaderField[]): PartialMessage {
  const p: PartialMessage = {};
  const isResponse = startLine.startsWith('SIP/');
  p.isRequest = !isResponse;
  if (!isResponse) {
    const sp = startLine.indexOf(' ');
    if (sp > 0) p.method = startLine.slice(0, sp);
  }
  for (const h of headers) {
    switch (h.key) {
      case 'via':
        (p.via ??= []).push(h.value);
        break;
      case 'call-id':
        p.callId ??= h.value;
        break;
      case 'cseq':
        p.cseq ??= h.value;
        break;
      case 'from':
        p.from ??= h.value;
        break;
      case 'to':
        p.to ??= h.value;
        break;
    }
  }
  return p;
}

/** Attach what is readable of a message to an error thrown after the header section was parsed. */
export function partialFromHeaders(startLine: string, headers: HeaderField[]): PartialMessage {
  return partialOf(startLine, headers);
}
