import { checkRequest, type Rejection, type SipRequest } from '../sip/index.js';

/** Option tags this proxy supports in Proxy-Require (none: like Kamailio's stock config). */
export const SUPPORTED_PROXY_REQUIRE: ReadonlySet<string> = new Set<string>();

/**
 * Request validation of RFC 3261 §16.3 (Kamailio sanity_check): message syntax and mandatory headers
 * (400), version (505), URI scheme (416), CSeq (400/501), Proxy-Require (420 + Unsupported).
 * Max-Forwards (483) and loops (482) are separate pipeline steps. Returns null when the request may proceed.
 */
export function sanityCheck(req: SipRequest): Rejection | null {
  const r = checkRequest(req);
  if (r) return r;
  if (req.method === 'ACK' || req.method === 'CANCEL' || !req.has('proxy-require')) return null;
  const unsupported = req.tokens('proxy-require').filter((t) => !SUPPORTED_PROXY_REQUIRE.has(t.toLowerCase()));
  if (unsupported.length > 0) return { status: 420, reason: 'Bad Extension', headers: [['Unsupported', unsupported.join(', ')]] };
  return null;
}
