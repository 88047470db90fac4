/**
 * A tiny SIP user agent over UDP for integration tests against a running sipd: it sends requests
 * and waits (bounded) for their final response, answers digest challenges, registers, and can act as
 * a callee (answers INVITE with 180/200 echoing Record-Route, BYE and other requests with 200).
 * Everything it receives is kept in `received` so a test can assert what reached it and what did not.
 * Binds to a given 127.x.y.z address, so that every party of a test has its own IP.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { digestHa1, digestResponse } from '../../src/core/auth.js';
import { parseAuthHeader, parseMessage, SipRequest, SipResponse } from '../../src/sip/index.js';

export interface UaOptions {
  /** address to bind (127.x.y.z) */
  address: string;
  /** the SIP server to talk to */
  server: { host: string; port: number };
  /** act as a callee: answer requests that reach us */
  answer?: boolean | ((req: SipRequest) => number);
}

export class UdpUa {
  readonly sock = dgram.createSocket('udp4');
  port = 0;
  /** every request that reached this UA, in order */
  readonly received: SipRequest[] = [];
  private readonly responses: SipResponse[] = [];
  private waiters: Array<() => void> = [];
  private readonly tag = randomBytes(4).toString('hex');

  constructor(readonly o: UaOptions) {}

  static async open(o: UaOptions): Promise<UdpUa> {
    const ua = new UdpUa(o);
    ua.sock.on('message', (m, rinfo) => ua.onMessage(m, rinfo.address, rinfo.port));
    ua.sock.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      ua.sock.once('error', reject);
      ua.sock.bind(0, o.address, () => resolve());
    });
    ua.port = ua.sock.address().port;
    return ua;
  }

  get uri(): string {
    return `sip:${this.o.address}:${this.port}`;
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }

  private onMessage(data: Buffer, address: string, port: number): void {
    let m;
    try {
      m = parseMessage(data);
    } catch {
      return;
    }
    if (m instanceof SipResponse) this.responses.push(m);
    else {
      this.received.push(m);
      if (this.o.answer !== undefined && this.o.answer !== false) this.respondTo(m, address, port);
    }
    for (const w of this.waiters.splice(0)) w();
  }

  private respondTo(req: SipRequest, address: string, port: number): void {
    if (req.method === 'ACK') return;
    const status = typeof this.o.answer === 'function' ? this.o.answer(req) : 200;
    const lines = [`SIP/2.0 ${status} ${status === 200 ? 'OK' : 'Whatever'}`];
    for (const v of req.headerValues('via')) lines.push(`Via: ${v}`);
    lines.push(`From: ${req.header('from')}`);
    const to = req.header('to')!;
    lines.push(`To: ${/;\s*tag=/i.test(to) ? to : `${to};tag=${this.tag}`}`);
    lines.push(`Call-ID: ${req.callId()}`, `CSeq: ${req.header('cseq')}`);
    if (req.method === 'INVITE' && status < 300) {
      for (const rr of req.headerValues('record-route')) lines.push(`Record-Route: ${rr}`);
      lines.push(`Contact: <${this.uri}>`);
    }
    lines.push('Content-Length: 0', '', '');
    if (req.method === 'INVITE' && status === 200) {
      const ringing = [...lines];
      ringing[0] = 'SIP/2.0 180 Ringing';
      this.sock.send(Buffer.from(ringing.join('\r\n'), 'latin1'), port, address);
    }
    this.sock.send(Buffer.from(lines.join('\r\n'), 'latin1'), port, address);
  }

  send(text: string): Promise<void> {
    return new Promise((resolve, reject) => this.sock.send(Buffer.from(text, 'latin1'), this.o.server.port, this.o.server.host, (e) => (e ? reject(e) : resolve())));
  }

  /** wait (bounded) until `pred` holds over what was received */
  async waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 100_000 && !pred(); i++) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Send a request (retransmitted every 500 ms while unanswered) and wait for its final response. */
  async request(text: string, timeoutMs = 8000): Promise<SipResponse> {
    const callId = /^Call-ID: (.*)$/m.exec(text)![1]!.trim();
    const cseq = /^CSeq: (.*)$/m.exec(text)![1]!.trim();
    const match = (r: SipResponse): boolean => r.callId() === callId && r.header('cseq') === cseq && r.status >= 200;
    const start = this.responses.length;
    await this.send(text);
    const deadline = Date.now() + timeoutMs;
    let resend = Date.now() + 500;
    for (let i = 0; i < 100_000; i++) {
      const got = this.responses.slice(start).find(match);
      if (got !== undefined) return got;
      if (Date.now() >= deadline) throw new Error(`no final response to ${text.split('\r\n')[0]} (${callId}) within ${timeoutMs} ms`);
      if (Date.now() >= resend) {
        resend = Date.now() + 500;
        await this.send(text);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    throw new Error('unreachable');
  }

  /** all responses received so far for a Call-ID */
  responsesFor(callId: string): SipResponse[] {
    return this.responses.filter((r) => r.callId() === callId);
  }

  via(branch = `z9hG4bK${randomBytes(6).toString('hex')}`): string {
    return `SIP/2.0/UDP ${this.o.address}:${this.port};branch=${branch};rport`;
  }

  /** A request text from this UA. */
  build(o: { method: string; ruri: string; from: string; to: string; callId: string; cseq: number; extra?: string[]; branch?: string }): string {
    return [
      `${o.method} ${o.ruri} SIP/2.0`,
      `Via: ${this.via(o.branch)}`,
      'Max-Forwards: 70',
      `From: ${o.from}`,
      `To: ${o.to}`,
      `Call-ID: ${o.callId}`,
      `CSeq: ${o.cseq} ${o.method}`,
      ...(o.extra ?? []),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  /** The credentials header answering a 401/407. */
  static credentials(ch: SipResponse, user: string, password: string, method: string, uri: string): string {
    const www = ch.status === 401;
    const value = ch.headerValues(www ? 'www-authenticate' : 'proxy-authenticate')[0]!;
    const a = parseAuthHeader(value);
    const realm = a.params.get('realm')!;
    const nonce = a.params.get('nonce')!;
    const opaque = a.params.get('opaque');
    const cnonce = randomBytes(4).toString('hex');
    const nc = '00000001';
    const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', user, realm, password), method, uri, nonce, qop: 'auth', nc, cnonce });
    return `${www ? 'Authorization' : 'Proxy-Authorization'}: Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=${nc}, cnonce="${cnonce}"${opaque !== undefined ? `, opaque="${opaque}"` : ''}`;
  }

  /** REGISTER user@domain with this UA's address as contact (401 dance). Returns the final response. */
  async register(user: string, domain: string, password: string): Promise<SipResponse> {
    const callId = `reg-${randomBytes(6).toString('hex')}`;
    const base = { method: 'REGISTER', ruri: `sip:${domain}`, from: `<sip:${user}@${domain}>;tag=${this.tag}`, to: `<sip:${user}@${domain}>`, callId };
    const contact = `Contact: <sip:${user}@${this.o.address}:${this.port}>`;
    const ch = await this.request(this.build({ ...base, cseq: 1, extra: [contact, 'Expires: 600'] }));
    if (ch.status !== 401) return ch;
    return this.request(this.build({ ...base, cseq: 2, extra: [contact, 'Expires: 600', UdpUa.credentials(ch, user, password, 'REGISTER', `sip:${domain}`)] }));
  }

  /**
   * An authenticated INVITE from user@domain to `ruri` (407 dance, ACK of the 407), then the ACK of a
   * 2xx along the route set. Returns the final response of the authenticated INVITE.
   */
  async call(user: string, domain: string, password: string, ruri: string, callId = `call-${randomBytes(6).toString('hex')}`): Promise<SipResponse> {
    const from = `<sip:${user}@${domain}>;tag=${this.tag}`;
    const contact = `Contact: <sip:${user}@${this.o.address}:${this.port}>`;
    const b1 = `z9hG4bK${randomBytes(6).toString('hex')}`;
    const ch = await this.request(this.build({ method: 'INVITE', ruri, from, to: `<${ruri}>`, callId, cseq: 1, extra: [contact], branch: b1 }));
    if (ch.status !== 407) return ch;
    await this.send(this.build({ method: 'ACK', ruri, from, to: ch.header('to')!, callId, cseq: 1, branch: b1 }));
    const res = await this.request(this.build({ method: 'INVITE', ruri, from, to: `<${ruri}>`, callId, cseq: 2, extra: [contact, UdpUa.credentials(ch, user, password, 'INVITE', ruri)] }));
    if (res.status >= 300) {
      await this.send(this.build({ method: 'ACK', ruri, from, to: res.header('to')!, callId, cseq: 2, branch: res.topVia()!.branch }));
    }
    return res;
  }
}
