/**
 * A tiny SIP user agent over one TCP connection (the way a phone behind NAT, or a browser over
 * WebSocket, talks to its registrar): it dials sipd from a given 127.x.y.z address, sends requests
 * and waits (bounded) for their final response on that connection, answers digest challenges, and
 * as a callee answers INVITE with 180/200 (Record-Route echoed, its own Contact) and other requests
 * with 200 — all on the same connection. It has no listener: whatever reaches it came over the flow.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { parseMessage, SipRequest, SipResponse, StreamFramer } from '../../src/sip/index.js';
import { UdpUa } from './sip-ua.js';

export class TcpUa {
  /** every request that reached this UA, in order */
  readonly received: SipRequest[] = [];
  private readonly responses: SipResponse[] = [];
  private waiters: Array<() => void> = [];
  private readonly tag = randomBytes(4).toString('hex');
  private readonly framer = new StreamFramer({ maxMessageSize: 65536 });
  closed = false;

  private constructor(
    readonly sock: net.Socket,
    readonly address: string,
    /** the Contact this UA puts in REGISTER and in its answers */
    public contact: string,
  ) {
    sock.on('data', (d: Buffer) => {
      for (const ev of this.framer.push(d)) if (ev.type === 'message') this.onMessage(ev.data);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(o: { address: string; server: { host: string; port: number }; contact: string }): Promise<TcpUa> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: o.server.host, port: o.server.port, localAddress: o.address, noDelay: true });
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new TcpUa(sock, o.address, o.contact));
      });
    });
  }

  get port(): number {
    return this.sock.localPort ?? 0;
  }

  /** close the connection (FIN) and wait until it is closed. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((r) => {
      this.sock.once('close', () => r());
      this.sock.end();
      setTimeout(() => this.sock.destroy(), 1000).unref();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private onMessage(data: Buffer): void {
    let m;
    try {
      m = parseMessage(data);
    } catch {
      return;
    }
    if (m instanceof SipResponse) this.responses.push(m);
    else {
      this.received.push(m);
      this.respondTo(m);
    }
    this.wake();
  }

  private respondTo(req: SipRequest): void {
    if (req.method === 'ACK') return;
    const lines = ['SIP/2.0 200 OK'];
    for (const v of req.headerValues('via')) lines.push(`Via: ${v}`);
    lines.push(`From: ${req.header('from')}`);
    const to = req.header('to')!;
    lines.push(`To: ${/;\s*tag=/i.test(to) ? to : `${to};tag=${this.tag}`}`);
    lines.push(`Call-ID: ${req.callId()}`, `CSeq: ${req.header('cseq')}`);
    if (req.method === 'INVITE') {
      for (const rr of req.headerValues('record-route')) lines.push(`Record-Route: ${rr}`);
      lines.push(`Contact: <${this.contact.replace(/^<|>.*$/g, '')}>`);
    }
    lines.push('Content-Length: 0', '', '');
    if (req.method === 'INVITE') {
      const ringing = [...lines];
      ringing[0] = 'SIP/2.0 180 Ringing';
      this.sock.write(Buffer.from(ringing.join('\r\n'), 'latin1'));
    }
    this.sock.write(Buffer.from(lines.join('\r\n'), 'latin1'));
  }

  send(text: string): void {
    this.sock.write(Buffer.from(text, 'latin1'));
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

  /** Send a request once (TCP is reliable) and wait for its final response on this connection. */
  async request(text: string, timeoutMs = 8000): Promise<SipResponse> {
    const callId = /^Call-ID: (.*)$/m.exec(text)![1]!.trim();
    const cseq = /^CSeq: (.*)$/m.exec(text)![1]!.trim();
    const start = this.responses.length;
    const match = (r: SipResponse): boolean => r.callId() === callId && r.header('cseq') === cseq && r.status >= 200;
    this.send(text);
    await this.waitFor(() => this.responses.slice(start).some(match), timeoutMs, `the final response to ${text.split('\r\n')[0]}`);
    return this.responses.slice(start).find(match)!;
  }

  build(o: { method: string; ruri: string; from: string; to: string; callId: string; cseq: number; extra?: string[] }): string {
    return [
      `${o.method} ${o.ruri} SIP/2.0`,
      // a browser-like Via: an unresolvable sent-by; responses must come back on the connection
      `Via: SIP/2.0/TCP ${randomBytes(4).toString('hex')}.invalid;branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
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

  /**
   * REGISTER user@domain with `this.contact` (a full Contact header value, parameters included) and
   * `extra` headers, through the 401 dance. Returns the final response.
   */
  async register(user: string, domain: string, password: string, extra: string[] = [], callId = `reg-${randomBytes(6).toString('hex')}`): Promise<SipResponse> {
    const base = { method: 'REGISTER', ruri: `sip:${domain}`, from: `<sip:${user}@${domain}>;tag=${this.tag}`, to: `<sip:${user}@${domain}>`, callId };
    const headers = [`Contact: ${this.contact}`, 'Expires: 600', ...extra];
    const ch = await this.request(this.build({ ...base, cseq: 1, extra: headers }));
    if (ch.status !== 401) return ch;
    return this.request(this.build({ ...base, cseq: 2, extra: [...headers, UdpUa.credentials(ch, user, password, 'REGISTER', `sip:${domain}`)] }));
  }
}
