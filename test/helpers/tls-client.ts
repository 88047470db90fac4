/**
 * A minimal SIP-over-TLS client for tests: one TLS connection (CA-verified, SNI), messages cut by
 * the stream framer, requests matched to their final response by Call-ID and CSeq, and requests
 * sent to it (it is called over the same connection) collected in `requests`. Every wait is bounded.
 */
import tls from 'node:tls';
import { parseMessage, SipRequest, SipResponse, StreamFramer } from '../../src/sip/index.js';

export interface TlsClientOptions {
  host: string;
  port: number;
  /** CA bundle (PEM) the server certificate is verified against. */
  ca: string;
  /** SNI and the name checked (default: none, the address is checked). */
  servername?: string;
  /** client certificate and key (PEM), for verify_client servers. */
  cert?: string;
  key?: string;
}

export class TlsSipClient {
  readonly responses: SipResponse[] = [];
  readonly requests: SipRequest[] = [];
  private readonly framer = new StreamFramer({ maxMessageSize: 65536 });
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      for (const ev of this.framer.push(chunk)) {
        if (ev.type !== 'message') continue;
        const m = parseMessage(ev.data);
        if (m instanceof SipResponse) this.responses.push(m);
        else if (m instanceof SipRequest) this.requests.push(m);
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(o: TlsClientOptions): Promise<TlsSipClient> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: o.host, port: o.port, ca: o.ca, ...(o.servername !== undefined ? { servername: o.servername } : {}), ...(o.cert !== undefined ? { cert: o.cert, key: o.key } : {}) });
      const fail = (e: Error): void => reject(e);
      s.once('error', fail);
      s.once('secureConnect', () => {
        s.removeListener('error', fail);
        resolve(new TlsSipClient(s));
      });
    });
  }

  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  /** the server certificate's SHA-256 fingerprint. */
  fingerprint(): string {
    return this.socket.getPeerCertificate().fingerprint256;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait until `pred()` holds, re-checked on every received chunk; at most `timeoutMs`. */
  async until(pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  send(text: string): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(Buffer.from(text, 'latin1'), (e) => (e ? reject(e) : resolve())));
  }

  /** Send a request and wait for its final response (matched by Call-ID and CSeq). */
  async request(text: string, timeoutMs = 10_000): Promise<SipResponse> {
    const req = parseMessage(Buffer.from(text, 'latin1'));
    if (!(req instanceof SipRequest)) throw new Error('not a request');
    const callId = req.callId();
    const cseq = req.header('cseq');
    const match = (r: SipResponse): boolean => r.status >= 200 && r.callId() === callId && r.header('cseq') === cseq;
    await this.send(text);
    await this.until(() => this.responses.some(match), timeoutMs, `the final response to ${req.method} ${callId}`);
    return this.responses.find(match)!;
  }

  close(): void {
    this.socket.destroy();
  }
}
