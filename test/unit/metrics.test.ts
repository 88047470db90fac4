/**
 * Metrics whose label values come from input stay bounded: a method label for every distinct
 * method name a peer can invent would grow the registry (and /metrics) without limit.
 */
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics.js';
import { KNOWN_METHODS } from '../../src/sip/index.js';

async function series(m: Metrics, name: string): Promise<string[]> {
  const text = await m.registry.metrics();
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('Metrics: request method labels', () => {
  it('counts the known methods by name and every other method under "other"', async () => {
    const m = new Metrics(false);
    for (const method of KNOWN_METHODS) m.requestReceived(method);
    for (let i = 0; i < 1000; i++) m.requestReceived(`FUZZ${i}`);
    m.requestReceived('a'.repeat(300));
    const lines = await series(m, 'sipd_requests_received_total');
    expect(lines).toHaveLength(KNOWN_METHODS.size + 1);
    expect(lines).toContain('sipd_requests_received_total{method="other"} 1001');
    expect(lines).toContain('sipd_requests_received_total{method="INVITE"} 1');
  });

  it('observes processing time under the same bounded labels', async () => {
    const m = new Metrics(false);
    m.requestHandled('REGISTER', 0.001);
    for (let i = 0; i < 1000; i++) m.requestHandled(`X${i}`, 0.001);
    const counts = await series(m, 'sipd_request_processing_seconds_count');
    expect(counts.sort()).toEqual(['sipd_request_processing_seconds_count{method="REGISTER"} 1', 'sipd_request_processing_seconds_count{method="other"} 1000']);
  });
});
