/**
 * A SIP phone on a UDP socket of 127.0.0.1 for tests against a sipd subprocess: sends REGISTERs
 * (answering the digest challenge like a UA) and waits, bounded, for the final response, resending
 * every 500 ms like Timer E while nothing came back.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { digestHa1, digestResponse } from '../../src/core/auth.js';
import { parseAuthHeader, parseMessage, SipResponse } from '../../src/sip/index.js';

const HOST = '127.0.0.1';
let seq = 0;
const uniq = (p: string): string => `${p}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}`;

export interface RegisterOptions {
  /** Contact header value; default `<sip:USER@127.0.0.1:PORT>`; null sends none (a query). */
  contact?: string | null;
  expires?: number;
  callId?: string;
  /** CSeq of the first request; the authenticated one uses the next number. */
  cseq?: number;
}

export class SipPhone {
  private readonly sock = dgram.createSocket('udp4');
  private readonly inbox: Buffer[] = [];
  private waiters: Array<() => void> = [];
  port = 0;
  /** the Call-ID this phone registers with (a UA keeps one per registration). */
  readonly callId = uniq('reg');
  private cseq = 0;

  constructor(
    readonly user: string,
    readonly password: string,
    readonly server: { port: number },
  ) {}

  async open(): Promise<this> {
    this.sock.on('message', (m) => {
      this.inbox.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    await new Promise<void>((r) => this.sock.bind(0, HOST, () => r()));
    this.port = this.sock.address().port;
    return this;
  }

  get aor(): string {
    return `${this.user}@${HOST}`;
  }

  get contact(): string {
    return `sip:${this.user}@${HOST}:${this.port}`;
  }

  private send(text: string): Promise<void> {
    const b = Buffer.from(text, 'latin1');
    return new Promise((resolve, reject) => this.sock.send(b, this.server.port, HOST, (err) => (err ? reject(err) : resolve())));
  }

  /** Send a request and wait (bounded) for its final response, matched by Call-ID and CSeq. */
  async request(text: string, timeoutMs = 10_000): Promise<SipResponse> {
    const callId = /^Call-ID: (.*)$/m.exec(text)![1]!.trim();
    const cseq = /^CSeq: (.*)$/m.exec(text)![1]!.trim();
    await this.send(text);
    const deadline = Date.now() + timeoutMs;
    let nextSend = Date.now() + 500;
    for (let i = 0; i < 100_000; i++) {
      if (Date.now() >= nextSend) {
        await this.send(text);
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
    throw new Error(`no final response to ${cseq} ${callId.slice(0, 40)} within ${timeoutMs} ms`);
  }

  private registerText(o: { contact: string | null; expires: number | undefined; callId: string; cseq: number; authorization?: string }): string {
    return [
      `REGISTER sip:${HOST} SIP/2.0`,
      `Via: SIP/2.0/UDP ${HOST}:${this.port};branch=z9hG4bK${uniq('b')};rport`,
      'Max-Forwards: 70',
      `From: <sip:${this.user}@${HOST}>;tag=${uniq('t')}`,
      `To: <sip:${this.user}@${HOST}>`,
      `Call-ID: ${o.callId}`,
      `CSeq: ${o.cseq} REGISTER`,
      ...(o.contact !== null ? [`Contact: ${o.contact}`] : []),
      ...(o.expires !== undefined ? [`Expires: ${o.expires}`] : []),
      'User-Agent: sipd-test-phone',
      ...(o.authorization !== undefined ? [`Authorization: ${o.authorization}`] : []),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  /** Answer a 401 (MD5 challenge) with the digest of the password. */
  private answer(res: SipResponse): string {
    const challenge = res
      .headerValues('www-authenticate')
      .map((v) => parseAuthHeader(v))
      .find((a) => (a.params.get('algorithm') ?? 'MD5').toUpperCase() === 'MD5');
    if (challenge === undefined) throw new Error(`no MD5 challenge in ${res.status} ${res.reason}`);
    const realm = challenge.params.get('realm')!;
    const nonce = challenge.params.get('nonce')!;
    const uri = `sip:${HOST}`;
    const ha1 = digestHa1('MD5', this.user, realm, this.password);
    const cnonce = randomBytes(8).toString('hex');
    const response = digestResponse({ algorithm: 'MD5', ha1, method: 'REGISTER', uri, nonce, qop: 'auth', nc: '00000001', cnonce });
    return `Digest username="${this.user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`;
  }

  /**
   * REGISTER with digest auth: the first request gets a 401, the second answers it. Returns the
   * final response to the authenticated request (or the first one when it was not a 401).
   */
  async register(o: RegisterOptions = {}): Promise<SipResponse> {
    const contact = o.contact === undefined ? `<${this.contact}>` : o.contact;
    const callId = o.callId ?? this.callId;
    if (o.cseq !== undefined) this.cseq = o.cseq - 1;
    const first = await this.request(this.registerText({ contact, expires: o.expires, callId, cseq: ++this.cseq }));
    if (first.status !== 401) return first;
    return this.request(this.registerText({ contact, expires: o.expires, callId, cseq: ++this.cseq, authorization: this.answer(first) }));
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }
}
