/**
 * A minimal UDP SIP client for tests (requests with UAC-style retransmission, matched by Call-ID and
 * CSeq) and the answer to an MD5 digest challenge.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { digestHa1, digestResponse } from '../../src/core/auth.js';
import { parseAuthHeader, parseMessage, SipResponse } from '../../src/sip/index.js';

export class SipClient {
  private readonly sock = dgram.createSocket('udp4');
  private readonly inbox: Buffer[] = [];
  private waiters: Array<() => void> = [];
  port = 0;

  /** `host`: the local address to bind; `serverHost`: where the server is (by default the same address). */
  constructor(
    readonly host = '127.0.0.1',
    readonly serverHost = host,
  ) {}

  async open(): Promise<this> {
    this.sock.on('message', (m) => {
      this.inbox.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    await new Promise<void>((r) => this.sock.bind(0, this.host, () => r()));
    this.port = this.sock.address().port;
    return this;
  }

  send(data: Buffer | string, port: number): Promise<void> {
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    return new Promise((resolve, reject) => this.sock.send(b, port, this.serverHost, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Send a request and wait (bounded) for its final response, matched by Call-ID and CSeq. Like a UAC
   * over UDP (Timer E), it retransmits every 500 ms while nothing came back: a datagram may be lost.
   */
  async request(text: string, port: number, timeoutMs = 10_000): Promise<SipResponse> {
    const callId = /^Call-ID: (.*)$/m.exec(text)![1]!.trim();
    const cseq = /^CSeq: (.*)$/m.exec(text)![1]!.trim();
    await this.send(text, port);
    const deadline = Date.now() + timeoutMs;
    let nextSend = Date.now() + 500;
    for (let i = 0; i < 100_000; i++) {
      if (Date.now() >= nextSend) {
        await this.send(text, port);
        nextSend = Date.now() + 500;
      }
      for (let j = 0; j < this.inbox.length; j++) {
        let m;
        try {
          m = parseMessage(this.inbox[j]!);
        } catch {
          continue;
        }
        if (m instanceof SipResponse && m.callId() === callId && m.header('cseq')?.trim() === cseq && m.status >= 200) {
          this.inbox.splice(j, 1);
          return m;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    throw new Error(`no final response to ${cseq} ${callId} within ${timeoutMs} ms`);
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }
}

/**
 * Answer a 401 (MD5 challenge) to a REGISTER for `uri` with the digest of `password`; returns the
 * Authorization value and the secrets it involved.
 */
export function answerChallenge(res: SipResponse, user: string, password: string, uri = 'sip:127.0.0.1'): { header: string; ha1: string; response: string } {
  const challenge = res
    .headerValues('www-authenticate')
    .map((v) => parseAuthHeader(v))
    .find((a) => (a.params.get('algorithm') ?? 'MD5').toUpperCase() === 'MD5');
  if (challenge === undefined) throw new Error(`no MD5 challenge in ${res.headerValues('www-authenticate').join(' | ')}`);
  const realm = challenge.params.get('realm')!;
  const nonce = challenge.params.get('nonce')!;
  const ha1 = digestHa1('MD5', user, realm, password);
  const cnonce = randomBytes(8).toString('hex');
  const response = digestResponse({ algorithm: 'MD5', ha1, method: 'REGISTER', uri, nonce, qop: 'auth', nc: '00000001', cnonce });
  const header = `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`;
  return { header, ha1, response };
}
