/**
 * Edges of a running sipd (real subprocess, 127.0.0.1, random ports): method label cardinality
 * of the request metrics.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KNOWN_METHODS } from '../../src/metrics.js';
import { httpRequest, labelValues, sample, total } from '../helpers/http.js';
import { freePort, SipdProcess } from '../helpers/sipd-process.js';

const HOST = '127.0.0.1';

let dir = '';
let port = 0;
let mport = 0;
let sipd: SipdProcess | undefined;

const metrics = async (): Promise<string> => {
  const r = await httpRequest(mport, '/metrics');
  expect(r.status).toBe(200);
  return r.body;
};

/** Poll /metrics (every 100 ms, at most `timeoutMs`) until `pred` holds; returns the last scrape. */
async function waitForMetrics(pred: (text: string) => boolean, timeoutMs: number, what: string): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await metrics();
    if (pred(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sipd-edges-'));
  port = await freePort();
  mport = await freePort();
  const config = join(dir, 'sipd.yaml');
  writeFileSync(config, ['location:', '  db_mode: memory', ''].join('\n'));
  sipd = await SipdProcess.start({
    env: {
      SIPD_LISTEN: `udp:${HOST}:${port},tcp:${HOST}:${port}`,
      SIPD_METRICS: `${HOST}:${mport}`,
      SIPD_DB: `sqlite:${join(dir, 'sipd.sqlite')}`,
      SIPD_DOMAINS: HOST,
      SIPD_LOG_LEVEL: 'debug',
      SIPD_STATE_DIR: join(dir, 'state'),
    },
    args: ['--config', config],
  });
}, 60_000);

afterAll(async () => {
  if (sipd?.exit === undefined) await sipd?.kill('SIGKILL').catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

function request(method: string, callId: string): string {
  return [
    `${method} sip:nobody@${HOST}:${port} SIP/2.0`,
    `Via: SIP/2.0/TCP ${HOST}:9;branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70',
    `From: <sip:a@${HOST}>;tag=${randomBytes(4).toString('hex')}`,
    `To: <sip:nobody@${HOST}>`,
    `Call-ID: ${callId}`,
    `CSeq: 1 ${method}`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

describe('metrics: the method label is bounded', () => {
  it('2,000 requests with random 2 KB method names add one label value ("other"), not 2,000', async () => {
    const sock = net.connect(port, HOST);
    sock.on('data', () => undefined); // drain the replies
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const m0 = await metrics();
    const before = sample(m0, 'sipd_requests_received_total', { method: 'other' });
    const totalBefore = total(m0, 'sipd_requests_received_total');
    // over TCP, so none is lost; in bounded batches, each written out before the next
    for (let batch = 0; batch < 20; batch++) {
      let chunk = '';
      for (let i = 0; i < 100; i++) chunk += request(randomBytes(1024).toString('hex').toUpperCase(), `card-${batch}-${i}`);
      await new Promise<void>((resolve, reject) => sock.write(chunk, (err) => (err ? reject(err) : resolve())));
    }
    const text = await waitForMetrics((t) => total(t, 'sipd_requests_received_total') >= totalBefore + 2000, 30_000, '2,000 requests counted');
    sock.destroy();
    const allowed = new Set([...KNOWN_METHODS, 'other']);
    const received = labelValues(text, 'sipd_requests_received_total', 'method');
    const handled = labelValues(text, 'sipd_request_processing_seconds_count', 'method');
    expect([...received].filter((m) => !allowed.has(m)).length).toBe(0);
    expect([...handled].filter((m) => !allowed.has(m)).length).toBe(0);
    expect(sample(text, 'sipd_requests_received_total', { method: 'other' })).toBe(before + 2000);
  }, 60_000);
});
