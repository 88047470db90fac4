/**
 * sipd over TLS as a real subprocess on 127.0.0.1 (certificates made by openssl in the test):
 * a missing certificate file is one error line; REGISTER with digest auth over TLS; SIGHUP and a
 * change of the files reload the certificate for new handshakes while an established connection
 * keeps working; a bad new certificate is one error line and the old one stays.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerChallenge } from '../helpers/sip-client.js';
import { makePki, type CertFiles, type TestPki } from '../helpers/certs.js';
import { freePort, runSipd, sipctl, SipdProcess } from '../helpers/sipd-process.js';
import { TlsSipClient } from '../helpers/tls-client.js';
import { X509Certificate } from 'node:crypto';

const HOST = '127.0.0.1';
let pki: TestPki;
let server1: CertFiles;
let server2: CertFiles;
let dir = '';
beforeAll(() => {
  pki = makePki();
  server1 = pki.issue('server1', 'sip.test', ['IP:127.0.0.1', 'DNS:sip.test']);
  server2 = pki.issue('server2', 'sip.test', ['IP:127.0.0.1', 'DNS:sip.test']);
  dir = mkdtempSync(join(tmpdir(), 'sipd-tls-'));
});
afterAll(() => {
  pki.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const fp = (c: CertFiles): string => new X509Certificate(c.certPem).fingerprint256;
let seq = 0;
const uniq = (p: string): string => `${p}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}`;

function options(port: number, callId = uniq('opt')): string {
  return [
    `OPTIONS sip:${HOST}:${port};transport=tls SIP/2.0`,
    `Via: SIP/2.0/TLS ${HOST}:5061;branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70',
    `From: <sip:probe@${HOST}>;tag=${randomBytes(4).toString('hex')}`,
    `To: <sip:${HOST}>`,
    `Call-ID: ${callId}`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

describe('sipd TLS start-up', () => {
  it('a tls listener whose certificate file is missing: exit non-zero, one line naming the key and the file', async () => {
    const port = await freePort();
    const missing = join(dir, 'nope.pem');
    const r = await runSipd({
      env: {
        SIPD_LISTEN: `udp:${HOST}:${port},tls:${HOST}:${port}`,
        SIPD_DB: `sqlite:${join(dir, 'start.sqlite')}`,
        SIPD_DOMAINS: HOST,
        SIPD_METRICS: 'off',
        SIPD_STATE_DIR: join(dir, 'state-start'),
        SIPD_TLS_CERT: missing,
        SIPD_TLS_KEY: server1.key,
      },
    });
    expect(r.code).not.toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toEqual([`sipd: config: tls.cert: ${missing}: no such file`]);
  });

  it('a key that does not match the certificate: one line', async () => {
    const port = await freePort();
    const r = await runSipd({
      env: {
        SIPD_LISTEN: `tls:${HOST}:${port}`,
        SIPD_DB: `sqlite:${join(dir, 'start2.sqlite')}`,
        SIPD_DOMAINS: HOST,
        SIPD_METRICS: 'off',
        SIPD_STATE_DIR: join(dir, 'state-start2'),
        SIPD_TLS_CERT: server1.cert,
        SIPD_TLS_KEY: server2.key,
      },
    });
    expect(r.code).not.toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^sipd: config: tls: .*key values mismatch/);
  });
});

describe('sipd running with a tls listener', () => {
  let sipd: SipdProcess | undefined;
  let port = 0;
  let dbEnv: Record<string, string> = {};
  const certPath = (): string => join(dir, 'live.crt');
  const keyPath = (): string => join(dir, 'live.key');
  const user = `alice${randomBytes(2).toString('hex')}`;
  const password = `pw-${randomBytes(9).toString('hex')}`;
  const clients: TlsSipClient[] = [];
  const connect = async (): Promise<TlsSipClient> => {
    const c = await TlsSipClient.connect({ host: HOST, port, ca: pki.ca.certPem, servername: 'sip.test' });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    port = await freePort();
    copyFileSync(server1.cert, certPath());
    copyFileSync(server1.key, keyPath());
    dbEnv = { SIPD_DB: `sqlite:${join(dir, 'run.sqlite')}`, SIPD_DOMAINS: HOST, SIPD_STATE_DIR: join(dir, 'state-run') };
    const add = await sipctl(dbEnv, ['add', `${user}@${HOST}`, password]);
    expect(add.code, add.stderr).toBe(0);
    sipd = await SipdProcess.start({
      env: { ...dbEnv, SIPD_LISTEN: `udp:${HOST}:${port},tls:${HOST}:${port}`, SIPD_METRICS: 'off', SIPD_LOG_LEVEL: 'info', SIPD_TLS_CERT: certPath(), SIPD_TLS_KEY: keyPath() },
    });
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    if (sipd?.exit === undefined) await sipd?.kill('SIGKILL').catch(() => undefined);
  });

  it('listens on tls and answers OPTIONS over TLS, verified against the CA with SNI', async () => {
    expect(sipd!.logs().find((l) => l.msg === 'sipd started')?.listen).toContain(`tls:${HOST}:${port}`);
    const c = await connect();
    expect(c.fingerprint()).toBe(fp(server1));
    const r = await c.request(options(port));
    expect(r.status).toBe(200);
    expect(r.topVia()?.transport).toBe('TLS');
  });

  it('REGISTER with digest auth over TLS: 401, then 200 with the binding', async () => {
    const c = await connect();
    const callId = uniq('reg');
    const reg = (cseq: number, auth?: string): string =>
      [
        `REGISTER sip:${HOST} SIP/2.0`,
        `Via: SIP/2.0/TLS ${HOST}:${c.localPort};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
        'Max-Forwards: 70',
        `From: <sip:${user}@${HOST}>;tag=${randomBytes(4).toString('hex')}`,
        `To: <sip:${user}@${HOST}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} REGISTER`,
        `Contact: <sip:${user}@${HOST}:${c.localPort};transport=tls>`,
        'Expires: 300',
        ...(auth !== undefined ? [`Authorization: ${auth}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    const challenge = await c.request(reg(1));
    expect(challenge.status).toBe(401);
    const ok = await c.request(reg(2, answerChallenge(challenge, user, password, `sip:${HOST}`).header));
    expect(ok.status).toBe(200);
    expect(ok.headerValues('contact').join(',')).toContain('transport=tls');
  });

  it('SIGHUP: new handshakes get the new certificate, the established connection keeps working', async () => {
    const old = await connect();
    expect(old.fingerprint()).toBe(fp(server1));
    copyFileSync(server2.cert, certPath());
    copyFileSync(server2.key, keyPath());
    const reloads = (): number => sipd!.logs().filter((l) => l.msg === 'tls certificate reloaded' && l.why === 'SIGHUP').length;
    const before = reloads();
    sipd!.child.kill('SIGHUP');
    await sipd!.waitFor(() => reloads() > before, 10_000, 'the reload line');
    const fresh = await connect();
    expect(fresh.fingerprint()).toBe(fp(server2));
    expect((await old.request(options(port))).status).toBe(200);
    expect((await fresh.request(options(port))).status).toBe(200);
    expect(old.closed).toBe(false);
  });

  it('a changed file is reloaded without a signal; a bad new certificate is one error line and the old one stays', async () => {
    // back to server1 by rewriting the files (seen by the file watcher)
    copyFileSync(server1.key, keyPath());
    copyFileSync(server1.cert, certPath());
    const lines = (msg: string): number => sipd!.logs().filter((l) => l.msg === msg && l.why === 'file change').length;
    const before = lines('tls certificate reloaded');
    await sipd!.waitFor(() => lines('tls certificate reloaded') > before, 15_000, 'the reload after the file change');
    expect((await connect()).fingerprint()).toBe(fp(server1));

    const failedBefore = lines('tls certificate reload failed; keeping the current certificate');
    writeFileSync(certPath(), '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    await sipd!.waitFor(() => lines('tls certificate reload failed; keeping the current certificate') > failedBefore, 15_000, 'the failed reload line');
    const c = await connect();
    expect(c.fingerprint()).toBe(fp(server1));
    expect((await c.request(options(port))).status).toBe(200);
    expect(sipd!.exit).toBeUndefined();
  });
});
