import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** Trusted source addresses (CIDR list); requests from them skip authentication (Kamailio permissions/allow_source_address). */
export class Acl {
  private readonly list = new BlockList();
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
    return this.list.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
  }
}
