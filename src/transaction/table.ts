import { MAGIC_COOKIE, type SipMessage, type SipRequest, type Via } from '../sip/index.js';

/**
 * Transaction matching keys.
 *
 * Server (RFC 3261 §17.2.3): with an RFC 3261 branch (`z9hG4bK` followed by at least one more
 * character) the key is branch + sent-by + method, ACK counting as INVITE. CANCEL has its own key
 * (method CANCEL); `inviteKeyForCancel` gives the key of the INVITE it refers to.
 *
 * Otherwise (RFC 2543 peers, and the bare `z9hG4bK` of RFC 4475 "badbranch") the key is
 * Request-URI + From tag + Call-ID + CSeq number + method + top Via (transport, sent-by, branch);
 * the To tag is compared separately by the caller: INVITE/non-INVITE against the creating request's
 * To tag, ACK against the To tag of the response the transaction sent.
 *
 * Client (§17.1.3): branch of the top Via + CSeq method.
 */
export interface ServerKey {
  readonly key: string;
  /** true for the RFC 2543 fallback: the caller must also compare To tags. */
  readonly legacy: boolean;
}

export function isRfc3261Branch(branch: string | undefined): branch is string {
  return branch !== undefined && branch.length > MAGIC_COOKIE.length && branch.startsWith(MAGIC_COOKIE);
}

function sentBy(v: Via): string {
  const port = v.port ?? (v.transport === 'TLS' || v.transport === 'WSS' ? 5061 : 5060);
  return `${v.host}:${port}`;
}

/**
 * Key of the server transaction `req` belongs to, with `method` overriding the request's method
 * (ACK → INVITE, CANCEL lookup → INVITE). Throws SipParseError when the top Via / CSeq are malformed.
 */
export function serverKey(req: SipRequest, method = req.method === 'ACK' ? 'INVITE' : req.method): ServerKey | undefined {
  const via = req.topVia();
  if (via === undefined) return undefined;
  if (isRfc3261Branch(via.branch)) return { key: `${via.branch}|${sentBy(via)}|${method}`, legacy: false };
  const cseq = req.cseq();
  const callId = req.callId();
  if (cseq === undefined || callId === undefined) return undefined;
  const key = [
    '2543',
    method,
    req.uriText,
    req.fromTag() ?? '',
    callId,
    String(cseq.seq),
    `${via.transport} ${sentBy(via)} ${via.branch ?? ''}`,
  ].join('|');
  return { key, legacy: true };
}

export function clientKey(branch: string, method: string): string {
  return `${branch}|${method}`;
}

/** Client key of a response: top Via branch + CSeq method; undefined when either is missing. */
export function responseClientKey(res: SipMessage): string | undefined {
  const via = res.topVia();
  const cseq = res.cseq();
  if (via?.branch === undefined || cseq === undefined) return undefined;
  return clientKey(via.branch, cseq.method);
}

/** A table of transactions keyed by their matching key. */
export class TxTable<T> {
  private readonly map = new Map<string, T>();
  get size(): number {
    return this.map.size;
  }
  get(key: string): T | undefined {
    return this.map.get(key);
  }
  set(key: string, tx: T): void {
    this.map.set(key, tx);
  }
  delete(key: string, tx?: T): void {
    if (tx !== undefined && this.map.get(key) !== tx) return;
    this.map.delete(key);
  }
  values(): T[] {
    return [...this.map.values()];
  }
  clear(): void {
    this.map.clear();
  }
}
