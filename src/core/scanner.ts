/**
 * Scanner drop (Kamailio's `if ($ua =~ "friendly-scanner|sipcli|...") exit;`): a request whose
 * User-Agent contains one of the configured strings (case-insensitive) is dropped without an answer.
 */
import type { SipRequest } from '../sip/index.js';

/** Most User-Agent verdicts remembered, and the longest value remembered. */
const SCANNER_CACHE_MAX = 1024;
const SCANNER_CACHE_VALUE_MAX = 256;

export class ScannerFilter {
  private readonly needles: readonly string[];

  constructor(userAgents: readonly string[]) {
    this.needles = userAgents.map((u) => u.toLowerCase()).filter((u) => u.length > 0);
  }

  /**
   * User-Agent value → verdict for the values seen last (phones of one kind send the same one every
   * time): no lower-casing and searching per request. Bounded; cleared when full.
   */
  private readonly verdicts = new Map<string, boolean>();

  /** Whether this User-Agent value names a scanner. */
  matchesUserAgent(ua: string): boolean {
    const known = this.verdicts.get(ua);
    if (known !== undefined) return known;
    const v = ua.toLowerCase();
    let hit = false;
    for (const n of this.needles) {
      if (v.includes(n)) {
        hit = true;
        break;
      }
    }
    // long values (made up per request, e.g. by a fuzzer) are not remembered
    if (ua.length <= SCANNER_CACHE_VALUE_MAX) {
      if (this.verdicts.size >= SCANNER_CACHE_MAX) this.verdicts.clear();
      this.verdicts.set(ua, hit);
    }
    return hit;
  }

  /** Whether any User-Agent header line of the request names a scanner. */
  matches(req: SipRequest): boolean {
    if (this.needles.length === 0) return false;
    // every User-Agent line counts (no array of their values made)
    const hs = req.headers;
    for (let i = 0; i < hs.length; i++) if (hs[i]!.key === 'user-agent' && this.matchesUserAgent(hs[i]!.value)) return true;
    return false;
  }
}
