import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** Most verdicts an Acl remembers. */
export const ACL_CACHE_MAX = 4096;

/** Trusted source addresses (CIDR list); requests from them skip authentication (Kamailio permissions/allow_source_address). */
export class Acl {
  private readonly list = new BlockList();
  /**
   * address → verdict, bounded (cleared when full: an address-spraying source only loses the cache).
   * The list never changes after construction, so a verdict never goes stale.
   */
  private readonly verdicts = new Map<string, boolean>();
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const [addr, bits] = c.split('/');
      if (addr === undefined) continue;
      const type = isIPv6(addr) ? 'ipv6' : 'ipv4';
      if (!isIPv4(addr) && !isIPv6(addr)) throw new Error(`bad trusted address: ${c}`);
      if (bits === undefined) this.list.addAddress(addr, type);
      else this.list.addSubnet(addr, Number(bits), type);
    }
    this.size = cidrs.length;
  }

  has(address: string): boolean {
    if (this.size === 0) return false;
    // BlockList.check makes a native SocketAddress per call: remember the verdicts of recent sources
    const known = this.verdicts.get(address);
    if (known !== undefined) return known;
    const v = this.list.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
    if (this.verdicts.size >= ACL_CACHE_MAX) this.verdicts.clear();
    this.verdicts.set(address, v);
    return v;
  }
}
