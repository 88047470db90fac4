/** Scanner drop list (src/core/scanner.ts), with its User-Agent verdict cache. */
import { describe, expect, it } from 'vitest';
import { ScannerFilter } from '../../src/core/scanner.js';
import { parseMessage, type SipRequest } from '../../src/sip/index.js';

function options(uas: string[]): SipRequest {
  const text = [
    'OPTIONS sip:example.com SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1',
    'From: <sip:a@example.com>;tag=1',
    'To: <sip:example.com>',
    'Call-ID: c1',
    'CSeq: 1 OPTIONS',
    ...uas.map((u) => `User-Agent: ${u}`),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  return parseMessage(Buffer.from(text, 'latin1')) as SipRequest;
}

describe('ScannerFilter', () => {
  const f = new ScannerFilter(['friendly-scanner', 'SIPVicious']);

  it('matches a configured string anywhere in the User-Agent, case-insensitively, the same every time', () => {
    for (let i = 0; i < 3; i++) {
      expect(f.matches(options(['friendly-scanner']))).toBe(true);
      expect(f.matches(options(['my FRIENDLY-Scanner 1.0']))).toBe(true);
      expect(f.matches(options(['sipvicious']))).toBe(true);
      expect(f.matches(options(['Linphone/5.0']))).toBe(false);
      expect(f.matches(options([]))).toBe(false);
    }
  });

  it('checks every User-Agent line, not only the first', () => {
    expect(f.matches(options(['Linphone/5.0', 'friendly-scanner']))).toBe(true);
    expect(f.matches(options(['Linphone/5.0', 'Zoiper']))).toBe(false);
  });

  it('an empty list matches nothing', () => {
    expect(new ScannerFilter([]).matches(options(['friendly-scanner']))).toBe(false);
    expect(new ScannerFilter(['']).matches(options(['friendly-scanner']))).toBe(false);
  });

  it('stays right for many distinct and very long values (past the cache bounds)', () => {
    const g = new ScannerFilter(['sipcli']);
    for (let i = 0; i < 3000; i++) {
      expect(g.matchesUserAgent(`phone-${i}`)).toBe(false);
      expect(g.matchesUserAgent(`sipcli/${i}`)).toBe(true);
    }
    const long = 'x'.repeat(1000);
    expect(g.matchesUserAgent(long)).toBe(false);
    expect(g.matchesUserAgent(`${long}sipcli`)).toBe(true);
  });
});
