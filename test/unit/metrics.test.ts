/** src/metrics.ts: label values a peer controls stay bounded. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KNOWN_METHODS, methodLabel, Metrics } from '../../src/metrics.js';

describe('methodLabel', () => {
  it('keeps the methods sipd allows (RFC 3261, 3262, 3311, 2976, 3428, 3515, 6665) and PUBLISH', () => {
    for (const m of ['INVITE', 'ACK', 'CANCEL', 'BYE', 'OPTIONS', 'REGISTER', 'PRACK', 'UPDATE', 'INFO', 'MESSAGE', 'REFER', 'NOTIFY', 'SUBSCRIBE', 'PUBLISH']) {
      expect(methodLabel(m), m).toBe(m);
    }
    expect([...KNOWN_METHODS].sort()).toEqual(['ACK', 'BYE', 'CANCEL', 'INFO', 'INVITE', 'MESSAGE', 'NOTIFY', 'OPTIONS', 'PRACK', 'PUBLISH', 'REFER', 'REGISTER', 'SUBSCRIBE', 'UPDATE']);
  });
  it('maps every other method to "other" (method names are case-sensitive: "invite" is not INVITE)', () => {
    for (const m of ['NEWMETHOD', 'invite', 'Register', 'INVITEX', 'X'.repeat(2000), 'constructor', '__proto__', 'toString', '']) {
      expect(methodLabel(m), m).toBe('other');
    }
  });
});

describe('Metrics: request counters by method', () => {
  it('2,000 random method names add one label value ("other"), to the counter and the histogram', async () => {
    const m = new Metrics(false);
    m.requestReceived('INVITE');
    m.requestHandled('INVITE', 0.001);
    for (let i = 0; i < 2000; i++) {
      const method = randomBytes(1024).toString('hex').toUpperCase();
      m.requestReceived(method);
      m.requestHandled(method, 0.001);
    }
    const received = await m.requests.get();
    expect(received.values.map((v) => [v.labels.method, v.value]).sort()).toEqual([
      ['INVITE', 1],
      ['other', 2000],
    ]);
    const handled = await m.requestDuration.get();
    const methods = new Set(handled.values.map((v) => v.labels.method));
    expect([...methods].sort()).toEqual(['INVITE', 'other']);
    expect((await m.registry.metrics()).length).toBeLessThan(20_000);
  });
});
