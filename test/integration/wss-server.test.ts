/**
 * sipd with a wss: listener as a real subprocess on 127.0.0.1: the WebSocket-over-TLS listener uses the
 * certificate of the tls block (openssl-made in the test), reloads it on SIGHUP for new handshakes, and
 * a wss: listener without a certificate is one error line at start.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseMessage, type SipResponse } from '../../src/sip/index.js';
import { makePki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { freePort, runSipd, SipdProcess } from '../helpers/sipd-process.js';

const HOST = '127.0.0.1';
let pki: TestPki;
let server1: CertFiles;
let server2: CertFiles;
let dir = '';
beforeAll(() => {
  pki = makePki();
  server1 = pki.issue('wss1', 'sip.test', ['IP:127.0.0.1', 'DNS:sip.test']);
  server2 = pki.issue('wss2', 'sip.test', ['IP:127.0.0.1', 'DNS:sip.test']);
  dir = mkdtempSync(join(tmpdir(), 'sipd-wss-'));
});
afterAll(() => {
  pki.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const fp = (c: CertFiles): string => new X509Certificate(c.certPem).fingerprint256;

interface WssPhone {
  readonly ws: WebSocket;
  /** the server certificate's SHA-256 fingerprint seen in the handshake */
  readonly fingerprint: string;
  next(timeoutMs?: number): Promise<SipResponse>;
}

/** A wss client asking for the sip sub-protocol, verifying the server against the test CA (SNI sip.test). */
function connect(port: number): Promise<WssPhone> {
  return new Promise((resolve, reject) => {
    let fingerprint = '';
    const inbox: SipResponse[] = [];
    const waiters: Array<(r: SipResponse) => void> = [];
    // ws passes TLS options (ca, servername) through to tls.connect; its ClientOptions type does not list servername
    const opts: WebSocket.ClientOptions & { servername: string } = { ca: pki.ca.certPem, servername: 'sip.test', handshakeTimeout: 5000 };
    const ws = new WebSocket(`wss://${HOST}:${port}/`, 'sip', opts);
    ws.on('upgrade', (res: IncomingMessage) => {
      fingerprint = (res.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? '';
    });
    ws.on('message', (data: Buffer) => {
      const m = parseMessage(Buffer.from(data)) as SipResponse;
      const w = waiters.shift();
      if (w !== undefined) w(m);
      else inbox.push(m);
    });
    ws.once('error', reject);
    ws.once('open', () => {
      resolve({
        ws,
        fingerprint,
        next: (timeoutMs = 5000) =>
          new Promise<SipResponse>((res, rej) => {
            const m = inbox.shift();
            if (m !== undefined) return res(m);
            const t = setTimeout(() => rej(new Error('no SIP message over wss')), timeoutMs);
            waiters.push((r) => {
              clearTimeout(t);
              res(r);
            });
          }),
      });
    });
  });
}

function register(user: string): string {
  return [
    `REGISTER sip:${HOST} SIP/2.0`,
    `Via: SIP/2.0/WSS ${randomBytes(4).toString('hex')}.invalid;branch=z9hG4bK${randomBytes(6).toString('hex')}`,
    'Max-Forwards: 70',
    `From: <sip:${user}@${HOST}>;tag=${randomBytes(4).toString('hex')}`,
    `To: <sip:${user}@${HOST}>`,
    `Call-ID: ${randomBytes(8).toString('hex')}`,
    'CSeq: 1 REGISTER',
    `Contact: <sip:${user}@${randomBytes(4).toString('hex')}.invalid;transport=ws>`,
    'Expires: 300',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

describe('sipd with a wss listener', () => {
  it('a wss listener without a certificate: exit non-zero, one line naming the missing key', async () => {
    const port = await freePort();
    const r = await runSipd({
      env: {
        SIPD_LISTEN: `udp:${HOST}:${port},wss:${HOST}:${port}`,
        SIPD_DB: `sqlite:${join(dir, 'nocert.sqlite')}`,
        SIPD_DOMAINS: HOST,
        SIPD_METRICS: 'off',
        SIPD_STATE_DIR: join(dir, 'state-nocert'),
        SIPD_TLS_CERT: server1.cert,
      },
    });
    expect(r.code).not.toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toEqual(['sipd: config: tls.key: required for the wss listener (set tls.key or SIPD_TLS_KEY)']);
  });

  describe('running', () => {
    let sipd: SipdProcess | undefined;
    let wport = 0;
    const phones: WssPhone[] = [];
    const certPath = (): string => join(dir, 'live.crt');
    const keyPath = (): string => join(dir, 'live.key');

    beforeAll(async () => {
      const port = await freePort();
      wport = await freePort();
      copyFileSync(server1.cert, certPath());
      copyFileSync(server1.key, keyPath());
      sipd = await SipdProcess.start({
        env: {
          SIPD_DB: `sqlite:${join(dir, 'run.sqlite')}`,
          SIPD_DOMAINS: HOST,
          SIPD_STATE_DIR: join(dir, 'state-run'),
          SIPD_LISTEN: `udp:${HOST}:${port},wss:${HOST}:${wport}`,
          SIPD_METRICS: 'off',
          SIPD_LOG_LEVEL: 'info',
          SIPD_TLS_CERT: certPath(),
          SIPD_TLS_KEY: keyPath(),
        },
      });
    }, 60_000);

    afterAll(async () => {
      for (const p of phones) p.ws.terminate();
      if (sipd?.exit === undefined) await sipd?.kill('SIGKILL').catch(() => undefined);
    });

    it('serves the sip sub-protocol over TLS with the tls block certificate: a REGISTER is challenged on the connection', async () => {
      expect(sipd!.logs().find((l) => l.msg === 'sipd started')?.listen).toContain(`wss:${HOST}:${wport}`);
      const p = await connect(wport);
      phones.push(p);
      expect(p.ws.protocol).toBe('sip');
      expect(p.fingerprint).toBe(fp(server1));
      p.ws.send(register('alice'));
      const r = await p.next();
      expect(r.status).toBe(401);
      expect(r.topVia()?.transport).toBe('WSS');
    });

    it('SIGHUP: a new wss handshake gets the new certificate, the established connection keeps working', async () => {
      const old = await connect(wport);
      phones.push(old);
      expect(old.fingerprint).toBe(fp(server1));
      copyFileSync(server2.cert, certPath());
      copyFileSync(server2.key, keyPath());
      const reloads = (): number => sipd!.logs().filter((l) => l.msg === 'tls certificate reloaded' && l.why === 'SIGHUP').length;
      const before = reloads();
      sipd!.child.kill('SIGHUP');
      await sipd!.waitFor(() => reloads() > before, 10_000, 'the reload line');
      const fresh = await connect(wport);
      phones.push(fresh);
      expect(fresh.fingerprint).toBe(fp(server2));
      old.ws.send(register('bob'));
      expect((await old.next()).status).toBe(401);
      fresh.ws.send(register('carol'));
      expect((await fresh.next()).status).toBe(401);
    });
  });
});
