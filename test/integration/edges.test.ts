/**
 * Edges of a running sipd (real subprocess, 127.0.0.1, random ports): method label cardinality
 * of the request metrics, stray 2xx responses with a malformed second Via.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
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

describe('stray 2xx responses', () => {
  it('a stray 2xx whose second Via is malformed is dropped and counted, with no warn line or stack trace', async () => {
    const before = await metrics();
    const logLinesBefore = sipd!.logs().length;
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, HOST, () => r()));
    const callId = `stray-${randomBytes(4).toString('hex')}`;
    // top Via names sipd (so the proxy would pass the 2xx on statelessly), the next one is garbage
    const res = [
      'SIP/2.0 200 OK',
      `Via: SIP/2.0/UDP ${HOST}:${port};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
      'Via: SIP/2.0/UDP ;;;=@@',
      `From: <sip:a@${HOST}>;tag=1`,
      `To: <sip:b@${HOST}>;tag=2`,
      `Call-ID: ${callId}`,
      'CSeq: 1 INVITE',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    const n = 5;
    for (let i = 0; i < n; i++) await new Promise<void>((resolve, reject) => client.send(res, port, HOST, (e) => (e ? reject(e) : resolve())));
    client.close();
    const reason = { reason: 'stray-unroutable' };
    const after = await waitForMetrics((t) => sample(t, 'sipd_dropped_total', reason) >= sample(before, 'sipd_dropped_total', reason) + n, 10_000, 'the stray drops counted');
    expect(sample(after, 'sipd_dropped_total', reason) - sample(before, 'sipd_dropped_total', reason)).toBe(n);
    const dropLines = (): number => sipd!.logs().slice(logLinesBefore).filter((l) => l.msg === 'stray response dropped: no route').length;
    await sipd!.waitFor(() => dropLines() >= n, 10_000, 'the debug lines of the drops');
    const lines = sipd!.logs().slice(logLinesBefore);
    // pino levels: 40 warn, 50 error
    expect(lines.filter((l) => (l.level ?? 0) >= 40)).toEqual([]);
    expect(lines.map((l) => JSON.stringify(l)).join('\n')).not.toMatch(/"stack"|\\n\s+at /);
    expect(sipd!.stderr).toBe('');
    const dropped = lines.filter((l) => l.msg === 'stray response dropped: no route');
    expect(dropped).toHaveLength(n);
    expect(dropped[0]!.level).toBe(20);
  });
});
