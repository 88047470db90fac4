/** src/core/flood.ts (per-source limiter with bans) and src/core/scanner.ts, on an injected clock. */
import { describe, expect, it } from 'vitest';
import { Acl } from '../../src/core/acl.js';
import { FloodGuard, type BanEvent, type FloodGuardOptions } from '../../src/core/flood.js';
import { ScannerFilter } from '../../src/core/scanner.js';
import { parseMessage, SipRequest } from '../../src/sip/index.js';

function guard(o: Partial<FloodGuardOptions> = {}): { g: FloodGuard; bans: BanEvent[]; clock: { t: number } } {
  const clock = { t: 1_000_000 };
  const bans: BanEvent[] = [];
  const g = new FloodGuard({
    windowMs: 1000,
    maxRequests: 10,
    banMs: 60_000,
    exempt: new Acl([]),
    now: () => clock.t,
    onBan: (b) => bans.push(b),
    ...o,
  });
  return { g, bans, clock };
}

/** admit `n` items from `ip`; how many were admitted. */
function send(g: FloodGuard, ip: string, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (g.admit(ip)) ok++;
  return ok;
}

describe('FloodGuard', () => {
  it('admits maxRequests per window; the next item bans the source, with one onBan', () => {
    const { g, bans } = guard();
    expect(send(g, '192.0.2.1', 10)).toBe(10);
    expect(bans).toEqual([]);
    expect(g.admit('192.0.2.1')).toBe(false);
    expect(bans).toEqual([{ ip: '192.0.2.1', requests: 11, seconds: 60 }]);
    expect(g.isBanned('192.0.2.1')).toBe(true);
    // everything else from it is dropped, and no further ban is reported
    expect(send(g, '192.0.2.1', 1000)).toBe(0);
    expect(bans).toHaveLength(1);
    expect(g.stats()).toEqual({ tracked: 0, banned: 1, bans: 1, dropped: 1001 });
  });

  it('counts per source: another source is not affected by a banned one', () => {
    const { g, bans } = guard();
    send(g, '192.0.2.1', 11);
    expect(send(g, '192.0.2.2', 10)).toBe(10);
    expect(send(g, '2001:db8::1', 10)).toBe(10);
    expect(bans.map((b) => b.ip)).toEqual(['192.0.2.1']);
    expect(g.stats().tracked).toBe(2);
  });

  it('a steady rate just under the limit is never banned (1000 windows)', () => {
    const { g, bans, clock } = guard();
    // 9 items per second, evenly spaced
    for (let i = 0; i < 9000; i++) {
      clock.t += 111;
      expect(g.admit('192.0.2.1')).toBe(true);
    }
    expect(bans).toEqual([]);
  });

  it('a steady rate just over the limit is banned within one window', () => {
    const { g, bans, clock } = guard();
    let n = 0;
    // 11 per second, evenly spaced
    while (g.admit('192.0.2.1')) {
      clock.t += 90;
      if (++n > 1000) break;
    }
    expect(bans).toHaveLength(1);
    expect(n).toBeLessThanOrEqual(11 + 11);
  });

  it('sliding window: a burst at the end of one window and one at the start of the next cannot reach twice the limit', () => {
    const { g, bans, clock } = guard();
    clock.t += 999; // late in the window that started at the first item
    g.admit('192.0.2.9'); // (another source, to start nothing here)
    const start = clock.t;
    expect(g.admit('192.0.2.1')).toBe(true); // window starts now
    clock.t = start + 990;
    expect(send(g, '192.0.2.1', 9)).toBe(9); // 10 in this window
    clock.t = start + 1000; // next window; the previous one still overlaps by ~100 %
    expect(g.admit('192.0.2.1')).toBe(false);
    expect(bans).toEqual([{ ip: '192.0.2.1', requests: 11, seconds: 60 }]);
  });

  it('the previous window weighs less as it slides out', () => {
    const { g, bans, clock } = guard();
    const start = clock.t;
    expect(send(g, '192.0.2.1', 10)).toBe(10);
    clock.t = start + 1500; // half of the previous window still overlaps: ~5 of its 10 count
    expect(send(g, '192.0.2.1', 5)).toBe(5);
    expect(g.admit('192.0.2.1')).toBe(false);
    expect(bans).toEqual([{ ip: '192.0.2.1', requests: 11, seconds: 60 }]);
    // two windows later nothing of the past counts
    const { g: g2, bans: bans2, clock: c2 } = guard();
    const s2 = c2.t;
    send(g2, '192.0.2.1', 10);
    c2.t = s2 + 2000;
    expect(send(g2, '192.0.2.1', 10)).toBe(10);
    expect(bans2).toEqual([]);
  });

  it('a ban expires after banMs; the source starts from zero, and a new flood is a new ban (logged again)', () => {
    const { g, bans, clock } = guard();
    send(g, '192.0.2.1', 11);
    clock.t += 59_999;
    expect(g.admit('192.0.2.1')).toBe(false);
    expect(g.stats().banned).toBe(1);
    clock.t += 1;
    expect(g.stats().banned).toBe(0);
    expect(g.isBanned('192.0.2.1')).toBe(false);
    expect(send(g, '192.0.2.1', 10)).toBe(10);
    expect(bans).toHaveLength(1);
    expect(g.admit('192.0.2.1')).toBe(false);
    expect(bans).toHaveLength(2);
    expect(g.stats().bans).toBe(2);
  });

  it('bans expire in order, each after its own banMs', () => {
    const { g, clock } = guard({ maxRequests: 1 });
    send(g, '192.0.2.1', 2);
    clock.t += 30_000;
    send(g, '192.0.2.2', 2);
    expect(g.stats().banned).toBe(2);
    clock.t += 30_000;
    expect(g.isBanned('192.0.2.1')).toBe(false);
    expect(g.isBanned('192.0.2.2')).toBe(true);
    clock.t += 30_000;
    expect(g.stats().banned).toBe(0);
  });

  it('exempt sources (IPs and CIDRs) are never counted, tracked or banned', () => {
    const { g, bans } = guard({ exempt: new Acl(['127.0.0.1', '::1', '10.0.0.0/8']) });
    expect(send(g, '127.0.0.1', 10_000)).toBe(10_000);
    expect(send(g, '::1', 10_000)).toBe(10_000);
    expect(send(g, '10.1.2.3', 10_000)).toBe(10_000);
    expect(bans).toEqual([]);
    expect(g.stats().tracked).toBe(0);
    // 127.0.0.2 is not in the list
    expect(send(g, '127.0.0.2', 11)).toBe(10);
    expect(bans.map((b) => b.ip)).toEqual(['127.0.0.2']);
  });

  it('maxRequests 0 disables it', () => {
    const { g, bans } = guard({ maxRequests: 0 });
    expect(send(g, '192.0.2.1', 100_000)).toBe(100_000);
    expect(bans).toEqual([]);
    expect(g.stats().tracked).toBe(0);
  });

  it('memory is bounded: an address-spraying sender never grows the table past maxSources; a flooder is still banned', () => {
    const { g, bans } = guard({ maxSources: 100 });
    for (let i = 0; i < 100_000; i++) {
      expect(g.admit(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)).toBe(true);
      expect(g.stats().tracked).toBeLessThanOrEqual(100);
    }
    expect(bans).toEqual([]);
    expect(send(g, '192.0.2.1', 20)).toBe(10);
    expect(bans.map((b) => b.ip)).toEqual(['192.0.2.1']);
  });

  it('a source active in every window outlives idle ones when the table is full', () => {
    const { g, bans, clock } = guard({ maxSources: 100 });
    for (let round = 0; round < 10; round++) {
      expect(send(g, '192.0.2.1', 5)).toBe(5);
      // 50 new sources a window: the table overflows every other window
      for (let i = 0; i < 50; i++) g.admit(`10.0.${round}.${i}`);
      clock.t += 1000;
    }
    // back at the end of the last window: its 5 items are still counted (a forgotten entry would admit 10)
    clock.t -= 1;
    expect(send(g, '192.0.2.1', 10)).toBe(5);
    expect(bans.map((b) => b.ip)).toEqual(['192.0.2.1']);
  });

  it('idle sources are forgotten first when the table is full', () => {
    const { g, clock } = guard({ maxSources: 10 });
    for (let i = 0; i < 10; i++) g.admit(`192.0.2.${i}`);
    clock.t += 5000;
    g.admit('198.51.100.1');
    // every idle entry was swept, the new one kept
    expect(g.stats().tracked).toBe(1);
  });

  it('bans are bounded too: beyond maxSources the ban ending first makes room', () => {
    const { g, bans, clock } = guard({ maxSources: 5, maxRequests: 1 });
    for (let i = 0; i < 8; i++) {
      send(g, `192.0.2.${i}`, 2);
      clock.t += 1;
    }
    expect(bans).toHaveLength(8);
    expect(g.stats().banned).toBe(5);
    expect(g.isBanned('192.0.2.0')).toBe(false);
    expect(g.isBanned('192.0.2.2')).toBe(false);
    expect(g.isBanned('192.0.2.3')).toBe(true);
    expect(g.isBanned('192.0.2.7')).toBe(true);
  });

  it('a clock that steps backwards does not inflate the count', () => {
    const { g, bans, clock } = guard();
    send(g, '192.0.2.1', 5);
    clock.t -= 10_000;
    expect(send(g, '192.0.2.1', 5)).toBe(5);
    expect(bans).toEqual([]);
  });
});

function req(userAgents: string[]): SipRequest {
  const text = [
    'OPTIONS sip:100@127.0.0.1 SIP/2.0',
    'Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-1',
    'Max-Forwards: 70',
    'From: <sip:100@127.0.0.1>;tag=1',
    'To: <sip:100@127.0.0.1>',
    'Call-ID: 1',
    'CSeq: 1 OPTIONS',
    ...userAgents.map((u) => `User-Agent: ${u}`),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  const m = parseMessage(Buffer.from(text));
  if (!(m instanceof SipRequest)) throw new Error('not a request');
  return m;
}

const DEFAULTS = ['friendly-scanner', 'sipvicious', 'sipcli', 'VaxSIPUserAgent', 'sundayddr', 'iWar', 'sip-scan'];

describe('ScannerFilter', () => {
  const f = new ScannerFilter(DEFAULTS);

  it('matches the scanners case-insensitively, anywhere in the value', () => {
    for (const ua of ['friendly-scanner', 'Friendly-Scanner', 'sipvicious 0.3.3', 'SIPVicious', 'sipcli/v1.8', 'VaxSIPUserAgent/3.1', 'vaxsipuseragent', 'sundayddr', 'iWar', 'IWAR 0.1', 'sip-scan', 'x (friendly-scanner)'])
      expect(f.matchesUserAgent(ua), ua).toBe(true);
  });

  it('does not match ordinary phones', () => {
    for (const ua of ['Linphone/5.2.0 (belle-sip/5.2.0)', 'Yealink SIP-T46S 66.86.0.15', 'PolycomVVX-VVX_411-UA/6.4.0', 'Zoiper rv2.10', 'MicroSIP/3.21.3', 'baresip v3.10.1', 'sipp', 'Grandstream GXP2170', ''])
      expect(f.matchesUserAgent(ua), ua).toBe(false);
  });

  it('checks every User-Agent line of a request; none means no match', () => {
    expect(f.matches(req(['friendly-scanner']))).toBe(true);
    expect(f.matches(req(['Linphone/5.2.0', 'friendly-scanner']))).toBe(true);
    expect(f.matches(req(['Linphone/5.2.0']))).toBe(false);
    expect(f.matches(req([]))).toBe(false);
  });

  it('an empty list (or empty strings) matches nothing', () => {
    expect(new ScannerFilter([]).matches(req(['friendly-scanner']))).toBe(false);
    expect(new ScannerFilter(['']).matches(req(['friendly-scanner']))).toBe(false);
  });
});
