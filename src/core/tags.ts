import { hashLatin1Hex } from './mac.js';
import type { SipRequest } from '../sip/index.js';

/**
 * A To-tag for a response sent without transaction state: derived from the request's Call-ID, top Via
 * branch and CSeq, so a retransmitted request gets an identical reply. `salt` keeps the tags of
 * different responders (challenge, registrar) apart.
 */
export function deterministicToTag(req: SipRequest, salt = ''): string {
  let branch = '';
  try {
    branch = req.topVia()?.branch ?? '';
  } catch {
    branch = req.header('via') ?? '';
  }
  return hashLatin1Hex('sha256', `${salt}${req.callId() ?? ''}\u0000${branch}\u0000${req.header('cseq') ?? ''}`).slice(0, 20);
}
