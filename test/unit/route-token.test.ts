/** Record-Route integrity tokens (src/core/route-token.ts): what verifies, what does not, and the hop rules. */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hopKey, RouteTokens } from '../../src/core/route-token.js';

const KEY = Buffer.from('0123456789abcdef0123456789abcdef');
const tokens = new RouteTokens(KEY);
const parties = { a: [hopKey('203.0.113.5', '*')], b: [hopKey('192.0.2.20', '*'), hopKey('192.0.2.20', 5062)], privilegedCaller: false };

function verified(t: string, callId = 'c1', tags: Array<string | undefined> = ['m1', 'b1']) {
  const v = tokens.verify(t, callId, tags);
  if (!v.ok) throw new Error(`token did not verify: ${v.reason}`);
  return v;
}

describe('RouteTokens', () => {
  it('verifies for its Call-ID in both directions (the dialog tag as From-tag or as To-tag)', () => {
    const t = tokens.issue('c1', 'm1', parties);
    expect(t).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(tokens.verify(t, 'c1', ['m1', 'b1']).ok).toBe(true);
    expect(tokens.verify(t, 'c1', ['b1', 'm1']).ok).toBe(true);
  });

  it('has the documented format (HMAC-SHA256 hop hashes and MAC): tokens issued by an earlier process with the same key still verify', () => {
    const hmac = (...parts: Array<string | Buffer>): Buffer => {
      const h = createHmac('sha256', KEY);
      for (const p of parts) if (typeof p === 'string') h.update(p, 'latin1');
      else h.update(p);
      return h.digest();
    };
    const callId = 'call-\u00e9@host';
    const p = { a: [hopKey('203.0.113.5', '*'), hopKey('203.0.113.5', '*')], b: parties.b, privilegedCaller: true };
    const hops = [p.a[0]!, ...p.b].map((k) => hmac('hop\u0000', callId, '\u0000', k).subarray(0, 4));
    const signed = Buffer.concat([Buffer.from([1, 1, 1, 2]), ...hops]);
    const want = Buffer.concat([signed, hmac('rr\u0000', callId, '\u0000', 'm1', '\u0000', signed).subarray(0, 12)]).toString('base64url');
    expect(tokens.issue(callId, 'm1', p)).toBe(want);
    const v = verified(want, callId, ['b1', 'm1']);
    expect(v.a).toEqual([hops[0]!.toString('hex')]);
    expect(v.b).toEqual(hops.slice(1).map((h) => h.toString('hex')));
    expect(tokens.branchMac('abc.def')).toBe(hmac('branch\u0000', 'abc.def').toString('hex').slice(0, 8));
  });

  it('does not verify for another Call-ID, other tags, another key, or any altered byte', () => {
    const t = tokens.issue('c1', 'm1', parties);
    expect(tokens.verify(t, 'c2', ['m1', 'b1'])).toEqual({ ok: false, reason: 'forged' });
    expect(tokens.verify(t, 'c1', ['x', 'b1'])).toEqual({ ok: false, reason: 'forged' });
    expect(new RouteTokens(Buffer.from('another key, 16+ bytes long')).verify(t, 'c1', ['m1'])).toEqual({ ok: false, reason: 'forged' });
    const raw = Buffer.from(t, 'base64url');
    for (let i = 0; i < raw.length; i++) {
      const copy = Buffer.from(raw);
      copy[i] = copy[i]! ^ 0x01;
      expect(tokens.verify(copy.toString('base64url'), 'c1', ['m1']).ok).toBe(false);
    }
    expect(tokens.verify('', 'c1', ['m1'])).toEqual({ ok: false, reason: 'malformed' });
    expect(tokens.verify('not a token!', 'c1', ['m1'])).toEqual({ ok: false, reason: 'malformed' });
    expect(tokens.verify(t.slice(0, -4), 'c1', ['m1'])).toEqual({ ok: false, reason: 'malformed' });
  });

  it('sides: a source IP belongs to the side whose IP|* hop it is', () => {
    const v = verified(tokens.issue('c1', 'm1', parties));
    expect(tokens.sidesOf(v, '203.0.113.5')).toEqual({ a: true, b: false });
    expect(tokens.sidesOf(v, '192.0.2.20')).toEqual({ a: false, b: true });
    expect(tokens.sidesOf(v, '198.51.100.50')).toEqual({ a: false, b: false });
  });

  it('hops: from A only to B (exact or any port of a B IP), from B only to A', () => {
    const v = verified(tokens.issue('c1', 'm1', parties));
    const A = { a: true, b: false };
    const B = { a: false, b: true };
    expect(tokens.allows(v, A, '192.0.2.20', 5062)).toBe(true);
    expect(tokens.allows(v, A, '192.0.2.20', 5999)).toBe(true);
    expect(tokens.allows(v, A, '198.51.100.50', 5060)).toBe(false);
    expect(tokens.allows(v, A, '203.0.113.5', 5060)).toBe(false);
    expect(tokens.allows(v, B, '203.0.113.5', 40000)).toBe(true);
    expect(tokens.allows(v, B, '198.51.100.50', 5060)).toBe(false);
    expect(tokens.allows(v, { a: false, b: false }, '192.0.2.20', 5062)).toBe(false);
  });

  it('a privileged caller side may go anywhere; its callee side still only back to the caller', () => {
    const v = verified(tokens.issue('c1', 'm1', { ...parties, privilegedCaller: true }));
    expect(tokens.allows(v, { a: true, b: false }, '198.51.100.50', 5060)).toBe(true);
    expect(tokens.allows(v, { a: false, b: true }, '198.51.100.50', 5060)).toBe(false);
  });

  it('the hop list of one side is capped, and the token stays short enough for a Record-Route', () => {
    const many = Array.from({ length: 20 }, (_, i) => hopKey(`10.0.0.${i}`, 5060));
    const t = tokens.issue('c1', 'm1', { a: many, b: many, privilegedCaller: false });
    expect(t.length).toBeLessThanOrEqual(64);
    const v = verified(t);
    expect(v.a).toHaveLength(4);
    expect(tokens.allows(v, { a: false, b: true }, '10.0.0.3', 5060)).toBe(true);
    expect(tokens.allows(v, { a: false, b: true }, '10.0.0.4', 5060)).toBe(false);
  });
});
