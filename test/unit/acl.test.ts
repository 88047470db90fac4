/** The trusted-source list (src/core/acl.ts), with its verdict cache in front of BlockList. */
import { describe, expect, it } from 'vitest';
import { Acl, ACL_CACHE_MAX } from '../../src/core/acl.js';

describe('Acl', () => {
  const acl = new Acl(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::1']);

  it('answers by address and subnet, IPv4 and IPv6, the same on every repeat (cached or not)', () => {
    const cases: Array<[string, boolean]> = [
      ['10.1.2.3', true],
      ['11.0.0.1', false],
      ['192.0.2.7', true],
      ['192.0.2.8', false],
      ['2001:db8::5', true],
      ['2001:db9::5', false],
      ['::1', true],
    ];
    for (let round = 0; round < 3; round++) for (const [addr, want] of cases) expect(acl.has(addr), `${addr} round ${round}`).toBe(want);
  });

  it('an empty list trusts nobody', () => {
    expect(new Acl([]).has('127.0.0.1')).toBe(false);
  });

  it('stays right past its cache bound (more distinct sources than it remembers)', () => {
    const a = new Acl(['10.0.0.0/16']);
    for (let i = 0; i < ACL_CACHE_MAX * 2 + 10; i++) {
      const inside = i % 2 === 0;
      const addr = inside ? `10.0.${(i >> 8) & 0xff}.${i & 0xff}` : `10.1.${(i >> 8) & 0xff}.${i & 0xff}`;
      expect(a.has(addr)).toBe(inside);
    }
    expect(a.has('10.0.0.1')).toBe(true);
    expect(a.has('10.1.0.1')).toBe(false);
  });

  it('refuses a malformed entry', () => {
    expect(() => new Acl(['not-an-ip'])).toThrow(/bad trusted address/);
  });
});
