import { SipParseError } from './errors.js';
import type { SipRequest, SipResponse } from './message.js';
import { isSipUri } from './uri.js';

/** Methods this stack knows; an unknown method is still proxied, but a CSeq mismatch on it is 501. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE',
]);

/** A rejection: status code and a short reason phrase. */
export interface Rejection {
  readonly status: number;
  readonly reason: string;
  readonly headers?: ReadonlyArray<readonly [string, string]>;
}

const SINGLE = ['call-id', 'to', 'from', 'cseq', 'max-forwards', 'content-length', 'content-type'];

const MANDATORY = ['via', 'from', 'to', 'call-id', 'cseq'];

type Message = SipRequest | SipResponse;

/**
 * The reason of the SipParseError the accessor `read` (a method of the message, e.g. `m.vias`)
 * throws, undefined when it parses. A method reference, not a closure: nothing allocated per check.
 */
function parseFailure(m: Message, read: (this: Message) => unknown): string | undefined {
  try {
    read.call(m);
    return undefined;
  } catch (e) {
    if (e instanceof SipParseError) return e.reason;
    throw e;
  }
}

/**
 * Message-level checks every element must make on a parsed request (RFC 3261 §8.2, §16.3 step 1):
 * version, URI scheme, mandatory and single-valued headers, CSeq, and the syntax of the headers the core reads.
 * Returns null when the request is well formed.
 */
export function checkRequest(req: SipRequest): Rejection | null {
  if (req.version !== 'SIP/2.0') return { status: 505, reason: 'Version Not Supported' };
  const uri = req.uri;
  if (!isSipUri(uri) && uri.scheme !== 'tel') return { status: 416, reason: 'Unsupported URI Scheme' };
  if (isSipUri(uri) && uri.headers.size > 0) return { status: 400, reason: 'Headers in Request-URI' };
  for (const h of MANDATORY) {
    if (!req.has(h)) return { status: 400, reason: `Missing ${h === 'call-id' ? 'Call-ID' : h === 'cseq' ? 'CSeq' : h[0]!.toUpperCase() + h.slice(1)}` };
  }
  for (const h of SINGLE) if (req.count(h) > 1) return { status: 400, reason: `Multiple ${h} headers` };
  let err = parseFailure(req, req.vias);
  if (err) return { status: 400, reason: err };
  for (const v of req.vias()) if (v.protocol !== 'SIP/2.0') return { status: 505, reason: 'Version Not Supported' };
  // From and To checked without building them where they are not parsed yet (from() / to() parse what is read later)
  err = parseFailure(req, req.checkFrom) ?? parseFailure(req, req.checkTo) ?? parseFailure(req, req.cseq) ?? parseFailure(req, req.maxForwards);
  if (err) return { status: 400, reason: err };
  if (req.callId() === '') return { status: 400, reason: 'Empty Call-ID' };
  const cseq = req.cseq()!;
  if (cseq.method !== req.method) {
    return KNOWN_METHODS.has(req.method) ? { status: 400, reason: 'CSeq method mismatch' } : { status: 501, reason: 'Not Implemented' };
  }
  if (req.has('contact')) {
    err = parseFailure(req, req.contacts);
    if (err) return { status: 400, reason: err };
  }
  if (req.has('route')) {
    err = parseFailure(req, req.routes);
    if (err) return { status: 400, reason: err };
  }
  return null;
}

/** Checks on a received response; a response that fails them is dropped (never answered). */
export function checkResponse(res: SipResponse): string | null {
  if (res.version !== 'SIP/2.0') return 'Version Not Supported';
  for (const h of MANDATORY) if (!res.has(h)) return `Missing ${h}`;
  for (const h of SINGLE) if (res.count(h) > 1) return `Multiple ${h} headers`;
  return parseFailure(res, res.vias) ?? parseFailure(res, res.cseq) ?? parseFailure(res, res.from) ?? parseFailure(res, res.to) ?? null;
}
