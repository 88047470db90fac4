import { canonicalName, headerKey } from './headers.js';
import { SipResponse, type HeaderField, type SipRequest } from './message.js';

/** Standard reason phrases for the codes a proxy/registrar sends. */
export const REASONS: Readonly<Record<number, string>> = {
  100: 'Trying',
  180: 'Ringing',
  181: 'Call Is Being Forwarded',
  182: 'Queued',
  183: 'Session Progress',
  200: 'OK',
  202: 'Accepted',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  410: 'Gone',
  413: 'Request Entity Too Large',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  421: 'Extension Required',
  423: 'Interval Too Brief',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  484: 'Address Incomplete',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  491: 'Request Pending',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  600: 'Busy Everywhere',
  603: 'Decline',
  604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
};

export interface ResponseOptions {
  reason?: string;
  /** To-tag to add when the request's To has none (not added to 100 Trying). */
  toTag?: string;
  /** extra headers, in order, appended after the copied ones. */
  headers?: ReadonlyArray<readonly [string, string]>;
  body?: Buffer;
  contentType?: string;
  /** copy Record-Route (a UAS answering a dialog-creating request). */
  copyRecordRoute?: boolean;
}

const COPIED = new Set(['via', 'from', 'to', 'call-id', 'cseq']);

/**
 * Build a response to `req` (RFC 3261 §8.2.6): Via (all values), From, To, Call-ID and CSeq are
 * copied byte for byte; a To-tag is added when asked and absent.
 */
export function buildResponse(req: SipRequest, status: number, opts: ResponseOptions = {}): SipResponse {
  const headers: HeaderField[] = [];
  const hs = req.headerList;
  for (let i = 0; i < hs.length; i++) {
    const h = hs[i]!;
    if (COPIED.has(h.key) || (opts.copyRecordRoute === true && h.key === 'record-route')) {
      if (h.key === 'to' && opts.toTag !== undefined && status > 100 && !hasTag(h.value)) {
        headers.push({ name: h.name, key: h.key, value: `${h.value};tag=${opts.toTag}`, raw: null });
      } else headers.push(h);
    }
  }
  const extra = opts.headers;
  if (extra !== undefined) for (const [n, v] of extra) headers.push({ name: canonicalName(n), key: keyOf(n), value: v, raw: null });
  const body = opts.body ?? EMPTY_BODY;
  if (opts.contentType !== undefined) headers.push({ name: 'Content-Type', key: 'content-type', value: opts.contentType, raw: null });
  const res = new SipResponse(status, '', headers, body);
  res.setStatus(status, opts.reason ?? REASONS[status] ?? defaultReason(status));
  res.adoptTopVia(req);
  return res;
}

/** The body of a response built without one: shared (a Buffer of length 0 holds nothing to change). */
const EMPTY_BODY = Buffer.alloc(0);

const KEY_CACHE = new Map<string, string>();
/** headerKey(name), kept for the few names responses are built with (no lower-cased copy per response). */
function keyOf(name: string): string {
  const hit = KEY_CACHE.get(name);
  if (hit !== undefined) return hit;
  const k = headerKey(name);
  if (KEY_CACHE.size < 1024) KEY_CACHE.set(name, k);
  return k;
}

function hasTag(toValue: string): boolean {
  // tag parameter outside the URI brackets: /;[ \t]*tag[ \t]*=/i after the last '>', scanned in place
  const gt = toValue.lastIndexOf('>');
  const n = toValue.length;
  for (let semi = toValue.indexOf(';', gt === -1 ? 0 : gt); semi !== -1; semi = toValue.indexOf(';', semi + 1)) {
    let i = semi + 1;
    while (i < n && isSpTab(toValue.charCodeAt(i))) i++;
    if (i + 3 > n || (toValue.charCodeAt(i) | 0x20) !== 0x74 || (toValue.charCodeAt(i + 1) | 0x20) !== 0x61 || (toValue.charCodeAt(i + 2) | 0x20) !== 0x67) continue;
    i += 3;
    while (i < n && isSpTab(toValue.charCodeAt(i))) i++;
    if (toValue.charCodeAt(i) === 0x3d) return true;
  }
  return false;
}

const isSpTab = (c: number): boolean => c === 0x20 || c === 0x09;

function defaultReason(status: number): string {
  if (status < 200) return 'Provisional';
  if (status < 300) return 'OK';
  if (status < 400) return 'Redirect';
  if (status < 500) return 'Client Error';
  if (status < 600) return 'Server Error';
  return 'Global Failure';
}

/** Serialise any message (same as msg.toBuffer()). */
export function serialize(msg: { toBuffer(): Buffer }): Buffer {
  return msg.toBuffer();
}
