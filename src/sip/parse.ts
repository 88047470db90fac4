import { SipParseError, type PartialMessage } from './errors.js';
import { headerKey, isToken, splitList } from './headers.js';
import { SipRequest, SipResponse, type HeaderField } from './message.js';
import { parseUri } from './uri.js';

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

  let headEnd = data.indexOf(CRLFCRLF, start);
  let bodyStart: number;
  if (headEnd === -1) {
    // datagram without the empty line: headers run to the end, no body
    headEnd = data.length;
    while (headEnd > start && (data[headEnd - 1] === 0x0a || data[headEnd - 1] === 0x0d)) headEnd--;
    bodyStart = data.length;
  } else bodyStart = headEnd + 4;

  const head = data.toString('latin1', start, headEnd);
  const lines = head.split('\r\n');
  const startLine = lines[0]!;
  const headers: HeaderField[] = [];
  let viaCount = 0;
  let clValues: string[] | undefined;

  for (let li = 1; li < lines.length; li++) {
    let raw = lines[li]!;
    // folding: continuation lines start with SP or HTAB
    while (li + 1 < lines.length) {
      const next = lines[li + 1]!;
      const c = next.charCodeAt(0);
      if (c !== 0x20 && c !== 0x09) break;
      raw += '\r\n' + next;
      li++;
      if (raw.length > limits.maxHeaderLine) break;
    }
    if (raw.length > limits.maxHeaderLine) throw new SipParseError('HEADER_TOO_LONG', 'Header line too long', partialOf(startLine, headers));
    if (headers.length >= limits.maxHeaders) throw new SipParseError('TOO_MANY_HEADERS', 'Too many headers', partialOf(startLine, headers));
    const colon = raw.indexOf(':');
    if (colon <= 0) throw new SipParseError('BAD_HEADER', 'Malformed header line', partialOf(startLine, headers));
    let ne = colon;
    while (ne > 0 && (raw.charCodeAt(ne - 1) === 0x20 || raw.charCodeAt(ne - 1) === 0x09)) ne--;
    const name = raw.slice(0, ne);
    if (!isToken(name)) throw new SipParseError('BAD_HEADER', 'Bad header name', partialOf(startLine, headers));
    let value = raw.slice(colon + 1);
    if (value.indexOf('\r\n') !== -1) value = value.replace(/\r\n[ \t]+/g, ' ');
    value = value.trim();
    const key = headerKey(name);
    headers.push({ name, key, value, raw });
    if (key === 'via') {
      viaCount += value.indexOf(',') === -1 ? 1 : splitList(value).length;
      if (viaCount > limits.maxVias) throw new SipParseError('TOO_MANY_VIAS', 'Too many Via headers', partialOf(startLine, headers));
    } else if (key === 'content-length') (clValues ??= []).push(value);
  }

  // body framing (RFC 3261 §18.3): Content-Length decides; a missing one means the rest of the datagram
  let bodyEnd = data.length;
  if (clValues !== undefined) {
    if (clValues.length > 1) throw new SipParseError('BAD_CONTENT_LENGTH', 'Multiple Content-Length', partialOf(startLine, headers));
    const v = clValues[0]!;
    if (!/^\d{1,10}$/.test(v)) throw new SipParseError('BAD_CONTENT_LENGTH', 'Bad Content-Length', partialOf(startLine, headers));
    const cl = Number(v);
    const available = data.length - bodyStart;
    if (cl > available) throw new SipParseError('BODY_TRUNCATED', 'Content-Length exceeds body', partialOf(startLine, headers));
    bodyEnd = bodyStart + cl;
  }
  const body = bodyStart >= bodyEnd ? EMPTY : data.subarray(bodyStart, bodyEnd);

  if (startLine.startsWith('SIP/')) return parseStatusLine(startLine, headers, body);
  return parseRequestLine(startLine, headers, body);
}

const EMPTY = Buffer.alloc(0);
const VERSION_RE = /^SIP\/\d{1,3}\.\d{1,3}$/i;

function parseRequestLine(line: string, headers: HeaderField[], body: Buffer): SipRequest {
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 === -1 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || line.indexOf(' ', sp2 + 1) !== -1 || sp2 === sp1 + 1 || sp2 === line.length - 1) {
    throw new SipParseError('BAD_START_LINE', 'Malformed Request-Line', partialOf(line, headers));
  }
  const method = line.slice(0, sp1);
  const uriText = line.slice(sp1 + 1, sp2);
  const version = line.slice(sp2 + 1);
  if (!isToken(method)) throw new SipParseError('BAD_METHOD', 'Bad method', partialOf(line, headers));
  if (!VERSION_RE.test(version)) throw new SipParseError('BAD_VERSION', 'Bad SIP version', partialOf(line, headers));
  let uri;
  try {
    uri = parseUri(uriText);
  } catch (e) {
    if (e instanceof SipParseError) throw new SipParseError('BAD_URI', 'Bad Request-URI', partialOf(line, headers));
    throw e;
  }
  return new SipRequest(method, uriText, headers, body, version.toUpperCase(), line, uri);
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
