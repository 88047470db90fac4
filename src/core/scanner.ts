/**
 * Scanner drop (Kamailio's `if ($ua =~ "friendly-scanner|sipcli|...") exit;`): a request whose
 * User-Agent contains one of the configured strings (case-insensitive) is dropped without an answer.
 */
import type { SipRequest } from '../sip/index.js';

export class ScannerFilter {
  private readonly needles: readonly string[];

  constructor(userAgents: readonly string[]) {
    this.needles = userAgents.map((u) => u.toLowerCase()).filter((u) => u.length > 0);
  }

  /** Whether this User-Agent value names a scanner. */
  matchesUserAgent(ua: string): boolean {
    const v = ua.toLowerCase();
    for (const n of this.needles) if (v.includes(n)) return true;
    return false;
  }

  /** Whether any User-Agent header line of the request names a scanner. */
  matches(req: SipRequest): boolean {
    if (this.needles.length === 0) return false;
    for (const ua of req.headerValues('user-agent')) if (this.matchesUserAgent(ua)) return true;
    return false;
  }
}
