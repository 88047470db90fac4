/**
 * A small UDP SIP client for tests against a sipd subprocess: bound to a chosen loopback address
 * (127.x.y.z: every one is local on `lo`), it builds simple requests, waits (bounded) for their
 * final responses and collects everything it receives. Every wait is bounded in time.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { buildResponse, parseMessage, SipRequest, SipResponse } from '../../src/sip/index.js';

let seq = 0;
export const uniq = (p: string): string => `${p}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}`;

export class UdpClient {
  private readonly sock = dgram.createSocket('udp4');
  /** every datagram received, in order. */
  readonly inbox: Buffer[] = [];
  /** final responses received, by Call-ID. */
  private readonly byCallId = new Map<string, SipResponse[]>();
  private waiters: Array<() => void> = [];
  port = 0;
  /** when set, every request received is answered with this status (a stand-in UAS). */
  autoAnswer: number | undefined;

  constructor(readonly address = '127.0.0.1') {}

  async open(): Promise<this> {
    this.sock.on('message', (m, rinfo) => {
      this.inbox.push(m);
      try {
        const r = parseMessage(m);
        if (r instanceof SipRequest && this.autoAnswer !== undefined && r.method !== 'ACK') {
          void this.send(buildResponse(r, this.autoAnswer, { toTag: 'uas' }).toBuffer(), rinfo.port, rinfo.address).catch(() => undefined);
        }
        const id = r.callId();
        if (r instanceof SipResponse && r.status >= 200 && id !== undefined) {
          const list = this.byCallId.get(id);
          if (list === undefined) this.byCallId.set(id, [r]);
          else list.push(r);
        }
      } catch {
        /* not SIP: kept in the inbox only */
      }
      for (const w of this.waiters.splice(0)) w();
    });
    await new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(0, this.address, () => resolve());
    });
    this.port = this.sock.address().port;
    return this;
  }

  send(data: Buffer | string, port: number, host = '127.0.0.1'): Promise<void> {
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    return new Promise((resolve, reject) => this.sock.send(b, port, host, (err) => (err ? reject(err) : resolve())));
  }

  /** the final responses received so far for this Call-ID. */
  finals(callId: string): SipResponse[] {
    return this.byCallId.get(callId) ?? [];
  }

  /** Send a request and wait for its final response (matched by Call-ID and CSeq); retransmits every 500 ms like Timer E. */
  async request(text: string, port: number, timeoutMs = 10_000): Promise<SipResponse> {
    const callId = /^Call-ID: (.*)$/m.exec(text)![1]!.trim();
    const cseq = /^CSeq: (.*)$/m.exec(text)![1]!.trim();
    await this.send(text, port);
    const deadline = Date.now() + timeoutMs;
    let nextSend = Date.now() + 500;
    for (;;) {
      const got = this.finals(callId).find((r) => r.header('cseq')?.trim() === cseq);
      if (got !== undefined) return got;
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (Date.now() >= nextSend) {
        await this.send(text, port);
        nextSend = Date.now() + 500;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    throw new Error(`no final response to ${callId} from ${this.address} within ${timeoutMs} ms`);
  }

  /** OPTIONS to the server itself (answered 200 by sipd, no auth). */
  options(serverPort: number, callId = uniq('opt'), extra: string[] = []): string {
    return [
      `OPTIONS sip:127.0.0.1:${serverPort} SIP/2.0`,
      `Via: SIP/2.0/UDP ${this.address}:${this.port};branch=z9hG4bK${uniq('b')};rport`,
      'Max-Forwards: 70',
      `From: <sip:ping@${this.address}>;tag=${uniq('t')}`,
      `To: <sip:127.0.0.1:${serverPort}>`,
      `Call-ID: ${callId}`,
      'CSeq: 1 OPTIONS',
      ...extra,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  /** REGISTER for user@127.0.0.1 without credentials (answered 401). */
  register(user: string, callId = uniq('reg'), extra: string[] = []): string {
    return [
      'REGISTER sip:127.0.0.1 SIP/2.0',
      `Via: SIP/2.0/UDP ${this.address}:${this.port};branch=z9hG4bK${uniq('b')};rport`,
      'Max-Forwards: 70',
      `From: <sip:${user}@127.0.0.1>;tag=${uniq('t')}`,
      `To: <sip:${user}@127.0.0.1>`,
      `Call-ID: ${callId}`,
      'CSeq: 1 REGISTER',
      `Contact: <sip:${user}@${this.address}:${this.port}>`,
      'Expires: 60',
      ...extra,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }
}

/** Value of one Prometheus sample (`name{labels}` as prom-client prints it, or a bare name); 0 when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) got[kv[1]!] = kv[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

/** Sum of every sample of a family (all label sets). */
export function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}

export async function metricsText(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}
