/**
 * Edges of a running sipd (real subprocess, 127.0.0.1, random ports): method label cardinality
 * of the request metrics, stray 2xx responses with a malformed second Via, and the TCP message
 * deadline (limits.tcp_msg_timeout_ms, 500 ms here) against a slowloris sender.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KNOWN_METHODS } from '../../src/metrics.js';
import { parseMessage, SipResponse, StreamFramer } from '../../src/sip/index.js';
import { httpRequest, labelValues, sample, total } from '../helpers/http.js';
import { freePort, SipdProcess } from '../helpers/sipd-process.js';

const HOST = '127.0.0.1';
const MSG_TIMEOUT_MS = 500;

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
  writeFileSync(config, ['location:', '  db_mode: memory', 'limits:', `  tcp_msg_timeout_ms: ${MSG_TIMEOUT_MS}`, ''].join('\n'));
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
    const m0 = await metrics();
    const sock = net.connect(port, HOST);
    sock.on('data', () => undefined); // drain the replies
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
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
  /** send `n` copies of a response, then check: counted as `sample` says, no warn line, no stack trace */
  async function strayCase(secondVia: string, counted: (before: string, after: string) => number, debugMsg: string): Promise<void> {
    const before = await metrics();
    const logLinesBefore = sipd!.logs().length;
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, HOST, () => r()));
    const callId = `stray-${randomBytes(4).toString('hex')}`;
    // top Via names sipd (so the proxy would pass a 2xx on statelessly)
    const res = [
      'SIP/2.0 200 OK',
      `Via: SIP/2.0/UDP ${HOST}:${port};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
      `Via: ${secondVia}`,
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
    const after = await waitForMetrics((t) => counted(before, t) >= n, 10_000, 'the stray drops counted');
    expect(counted(before, after)).toBe(n);
    const dropLines = (): number => sipd!.logs().slice(logLinesBefore).filter((l) => l.msg === debugMsg).length;
    await sipd!.waitFor(() => dropLines() >= n, 10_000, 'the debug lines of the drops');
    const lines = sipd!.logs().slice(logLinesBefore);
    // pino levels: 40 warn, 50 error
    expect(lines.filter((l) => (l.level ?? 0) >= 40)).toEqual([]);
    expect(lines.map((l) => JSON.stringify(l)).join('\n')).not.toMatch(/"stack"|\\n\s+at /);
    expect(sipd!.stderr).toBe('');
    const dropped = lines.filter((l) => l.msg === debugMsg);
    expect(dropped).toHaveLength(n);
    expect(dropped[0]!.level).toBe(20);
  }

  it('a stray 2xx with a malformed second Via is a parse error at the transport: counted, debug only, no stack trace', async () => {
    await strayCase('SIP/2.0/UDP ;;;=@@', (b, a) => total(a, 'sipd_parse_errors_total') - total(b, 'sipd_parse_errors_total'), 'parse error');
  });

  it('a forged stray 2xx (our Via host and port, a branch sipd did not sign) is dropped and counted, debug only', async () => {
    const reason = { reason: 'stray-foreign' };
    await strayCase(`SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKvictim`, (b, a) => sample(a, 'sipd_dropped_total', reason) - sample(b, 'sipd_dropped_total', reason), 'stray 2xx not of our making: dropped');
  });
});

/** A TCP SIP client: frames what it receives, answers nothing. */
class TcpClient {
  readonly sock: net.Socket;
  readonly responses: SipResponse[] = [];
  /** CRLF pongs received (outside messages). */
  pongs = 0;
  closed = false;
  private readonly framer = new StreamFramer({ maxMessageSize: 65536 });

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      for (const ev of this.framer.push(d)) {
        if (ev.type === 'message') {
          const m = parseMessage(ev.data);
          if (m instanceof SipResponse) this.responses.push(m);
        } else if (ev.type === 'pong') this.pongs++;
        else if (ev.type === 'ping') this.pongs += 2; // two of our pongs (CRLF each) read as one CRLFCRLF
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => (this.closed = true));
  }

  static connect(): Promise<TcpClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: HOST, port, noDelay: true });
      sock.once('connect', () => resolve(new TcpClient(sock)));
      sock.once('error', reject);
    });
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.sock.write(data, (e) => (e ? reject(e) : resolve())));
  }

  options(callId: string): string {
    return [
      `OPTIONS sip:${HOST}:${port};transport=tcp SIP/2.0`,
      `Via: SIP/2.0/TCP ${HOST}:9;branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
      'Max-Forwards: 70',
      `From: <sip:ping@${HOST}>;tag=${randomBytes(4).toString('hex')}`,
      `To: <sip:${HOST}:${port}>`,
      `Call-ID: ${callId}`,
      'CSeq: 1 OPTIONS',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  /** wait (bounded) for a final response with this Call-ID. */
  async response(callId: string, timeoutMs = 10_000): Promise<SipResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.responses.find((m) => m.callId() === callId && m.status >= 200);
      if (r !== undefined) return r;
      if (this.closed) throw new Error(`connection closed before the response to ${callId}`);
      if (Date.now() > deadline) throw new Error(`no response to ${callId} within ${timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, 10));
    }
  }

  destroy(): void {
    this.sock.destroy();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('TCP message deadline (limits.tcp_msg_timeout_ms)', () => {
  const reason = { reason: 'tcp-msg-timeout' };

  it('a client sending whole messages and CRLF keep-alives stays connected past the deadline', async () => {
    const before = sample(await metrics(), 'sipd_transport_dropped_total', reason);
    const c = await TcpClient.connect();
    try {
      await c.write(c.options('keep-1'));
      expect((await c.response('keep-1')).status).toBe(200);
      // CRLFCRLF pings every 100 ms for 2 s (four times the deadline); each is answered with a pong
      for (let i = 0; i < 20; i++) {
        await c.write('\r\n\r\n');
        await sleep(100);
      }
      await c.write(c.options('keep-2'));
      expect((await c.response('keep-2')).status).toBe(200);
      expect(c.closed).toBe(false);
      expect(c.pongs).toBe(20);
      expect(sample(await metrics(), 'sipd_transport_dropped_total', reason)).toBe(before);
    } finally {
      c.destroy();
    }
  });

  it('a slowloris client trickling one byte at a time is disconnected by the deadline and counted', async () => {
    const before = sample(await metrics(), 'sipd_transport_dropped_total', reason);
    const c = await TcpClient.connect();
    try {
      // a 2 KB request at one byte per 50 ms would take 100 s; the idle timer (120 s) never fires
      const msg = Buffer.from(c.options('slow').replace('Content-Length: 0', `X-Pad: ${'p'.repeat(2000)}\r\nContent-Length: 0`), 'latin1');
      let sent = 0;
      const deadline = Date.now() + 20_000;
      while (!c.closed && sent < 400 && Date.now() < deadline) {
        await c.write(msg.subarray(sent, sent + 1)).catch(() => undefined);
        sent++;
        await sleep(50);
      }
      expect(c.closed).toBe(true);
      expect(sent).toBeLessThan(400);
      expect(c.responses).toEqual([]);
      const after = await waitForMetrics((t) => sample(t, 'sipd_transport_dropped_total', reason) > before, 10_000, 'the tcp-msg-timeout drop');
      expect(sample(after, 'sipd_transport_dropped_total', reason)).toBe(before + 1);
    } finally {
      c.destroy();
    }
  }, 60_000);
});
