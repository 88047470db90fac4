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
import { digestHa1, digestResponse } from '../../src/core/auth.js';
import { parseAuthHeader, parseMessage, SipRequest, type SipResponse } from '../../src/sip/index.js';
import { answerChallenge, SipClient } from '../helpers/sip-client.js';
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

// ------------------------------------------------------------------------------------ calls

/** A UA on one connection (TLS) or socket (UDP): builds requests, answers requests it is sent. */
interface Leg {
  readonly user: string;
  readonly password: string;
  readonly transport: 'TLS' | 'UDP';
  readonly port: number;
  request(text: string): Promise<SipResponse>;
  send(text: string): Promise<void>;
  /** the next request of `method` sent to this UA (bounded wait). */
  next(method: string): Promise<SipRequest>;
}

function tlsLeg(c: TlsSipClient, user: string, password: string): Leg {
  let taken = 0;
  return {
    user,
    password,
    transport: 'TLS',
    port: c.localPort,
    request: (t) => c.request(t),
    send: (t) => c.send(t),
    async next(method) {
      await c.until(() => c.requests.slice(taken).some((r) => r.method === method), 10_000, `a ${method}`);
      const i = c.requests.findIndex((r, k) => k >= taken && r.method === method);
      taken = i + 1;
      return c.requests[i]!;
    },
  };
}

/** UDP leg over SipClient: requests it is sent are read from its inbox. */
function udpLeg(c: SipClient, sipdPort: number, user: string, password: string): Leg {
  const seen = new Set<string>();
  const inbox = (c as unknown as { inbox: Buffer[] }).inbox;
  return {
    user,
    password,
    transport: 'UDP',
    port: c.port,
    request: (t) => c.request(t, sipdPort),
    send: (t) => c.send(t, sipdPort),
    async next(method) {
      for (let i = 0; i < 200; i++) {
        for (const b of inbox) {
          const m = parseMessage(b);
          const key = `${m instanceof SipRequest ? m.method : ''}|${m.callId()}|${m.header('cseq')}`;
          if (m instanceof SipRequest && m.method === method && !seen.has(key)) {
            seen.add(key);
            return m;
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no ${method} arrived`);
    },
  };
}

function via(l: Leg): string {
  return `Via: SIP/2.0/${l.transport} ${HOST}:${l.port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`;
}

function contact(l: Leg): string {
  return `<sip:${l.user}@${HOST}:${l.port}${l.transport === 'TLS' ? ';transport=tls' : ''}>`;
}

async function register(l: Leg): Promise<void> {
  const callId = uniq('reg');
  const reg = (cseq: number, auth?: string): string =>
    [`REGISTER sip:${HOST} SIP/2.0`, via(l), 'Max-Forwards: 70', `From: <sip:${l.user}@${HOST}>;tag=${randomBytes(4).toString('hex')}`, `To: <sip:${l.user}@${HOST}>`, `Call-ID: ${callId}`, `CSeq: ${cseq} REGISTER`, `Contact: ${contact(l)}`, 'Expires: 300', ...(auth !== undefined ? [`Authorization: ${auth}`] : []), 'Content-Length: 0', '', ''].join('\r\n');
  const ch = await l.request(reg(1));
  expect(ch.status).toBe(401);
  const ok = await l.request(reg(2, answerChallenge(ch, l.user, l.password, `sip:${HOST}`).header));
  expect(ok.status).toBe(200);
}

function proxyAuth(ch: SipResponse, l: Leg, method: string, uri: string): string {
  const a = ch.headerValues('proxy-authenticate').map((v) => parseAuthHeader(v)).find((x) => (x.params.get('algorithm') ?? 'MD5').toUpperCase() === 'MD5')!;
  const realm = a.params.get('realm')!;
  const nonce = a.params.get('nonce')!;
  const cnonce = randomBytes(8).toString('hex');
  const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', l.user, realm, l.password), method, uri, nonce, qop: 'auth', nc: '00000001', cnonce });
  return `Digest username="${l.user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`;
}

/** The response of a UAS to `req`: Vias, From, To (+tag), Call-ID, CSeq and Record-Route copied. */
function answer(req: SipRequest, status: number, reason: string, toTag: string, l: Leg): string {
  const to = req.header('to')!;
  return [
    `SIP/2.0 ${status} ${reason}`,
    ...req.headerValues('via').map((v) => `Via: ${v}`),
    ...req.headerValues('record-route').map((v) => `Record-Route: ${v}`),
    `From: ${req.header('from')!}`,
    `To: ${/;tag=/.test(to) ? to : `${to};tag=${toTag}`}`,
    `Call-ID: ${req.callId()!}`,
    `CSeq: ${req.header('cseq')!}`,
    `Contact: ${contact(l)}`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/**
 * An authenticated call from `a` to `b` through sipd: INVITE (407, then with credentials), 180 and
 * 200 from b, ACK and BYE (from b) along the recorded route. Returns what b received.
 */
async function call(a: Leg, b: Leg): Promise<{ invite: SipRequest; ok: SipResponse; ack: SipRequest; bye: SipResponse }> {
  const callId = uniq('call');
  const fromTag = randomBytes(4).toString('hex');
  const ruri = `sip:${b.user}@${HOST}`;
  const invite = (cseq: number, auth?: string): string =>
    [`INVITE ${ruri} SIP/2.0`, via(a), 'Max-Forwards: 70', `From: <sip:${a.user}@${HOST}>;tag=${fromTag}`, `To: <${ruri}>`, `Call-ID: ${callId}`, `CSeq: ${cseq} INVITE`, `Contact: ${contact(a)}`, ...(auth !== undefined ? [`Proxy-Authorization: ${auth}`] : []), 'Content-Length: 0', '', ''].join('\r\n');
  const ch = await a.request(invite(1));
  expect(ch.status).toBe(407);
  await a.send(`ACK ${ruri} SIP/2.0\r\n${ch.headerValues('via').map((v) => `Via: ${v}`).join('\r\n')}\r\nMax-Forwards: 70\r\nFrom: <sip:${a.user}@${HOST}>;tag=${fromTag}\r\nTo: ${ch.header('to')!}\r\nCall-ID: ${callId}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`);
  const pending = a.request(invite(2, proxyAuth(ch, a, 'INVITE', ruri)));
  const inv = await b.next('INVITE');
  const toTag = randomBytes(4).toString('hex');
  await b.send(answer(inv, 180, 'Ringing', toTag, b));
  await b.send(answer(inv, 200, 'OK', toTag, b));
  const ok = await pending;
  expect(ok.status).toBe(200);
  // the route set: Record-Route of the 2xx, reversed for the caller
  const rr = ok.headerValues('record-route').flatMap((v) => v.split(/,(?=\s*<)/).map((x) => x.trim()));
  const bContact = /<([^>]+)>/.exec(ok.header('contact')!)![1]!;
  await a.send([`ACK ${bContact} SIP/2.0`, via(a), 'Max-Forwards: 70', ...[...rr].reverse().map((r) => `Route: ${r}`), `From: <sip:${a.user}@${HOST}>;tag=${fromTag}`, `To: ${ok.header('to')!}`, `Call-ID: ${callId}`, 'CSeq: 2 ACK', 'Content-Length: 0', '', ''].join('\r\n'));
  const ack = await b.next('ACK');
  // the callee hangs up along its route set (Record-Route in order)
  const bRr = inv.headerValues('record-route').flatMap((v) => v.split(/,(?=\s*<)/).map((x) => x.trim()));
  const aContact = /<([^>]+)>/.exec(inv.header('contact')!)![1]!;
  const byeDone = b.request([`BYE ${aContact} SIP/2.0`, via(b), 'Max-Forwards: 70', ...bRr.map((r) => `Route: ${r}`), `From: ${inv.header('to')!.includes('tag=') ? inv.header('to')! : `${inv.header('to')!};tag=${toTag}`}`, `To: ${inv.header('from')!}`, `Call-ID: ${callId}`, 'CSeq: 1 BYE', 'Content-Length: 0', '', ''].join('\r\n'));
  const bye = await a.next('BYE');
  await a.send(answer(bye, 200, 'OK', fromTag, a));
  return { invite: inv, ok, ack, bye: await byeDone };
}

describe('calls over TLS through sipd', () => {
  let sipd: SipdProcess | undefined;
  let port = 0;
  const users = ['alice', 'bob', 'carol'].map((u) => ({ user: `${u}${randomBytes(2).toString('hex')}`, password: `pw-${randomBytes(9).toString('hex')}` }));
  const closers: Array<() => unknown> = [];

  beforeAll(async () => {
    port = await freePort();
    const dbEnv = { SIPD_DB: `sqlite:${join(dir, 'calls.sqlite')}`, SIPD_DOMAINS: HOST, SIPD_STATE_DIR: join(dir, 'state-calls') };
    for (const u of users) {
      const add = await sipctl(dbEnv, ['add', `${u.user}@${HOST}`, u.password]);
      expect(add.code, add.stderr).toBe(0);
    }
    sipd = await SipdProcess.start({
      env: { ...dbEnv, SIPD_LISTEN: `udp:${HOST}:${port},tls:${HOST}:${port}`, SIPD_METRICS: 'off', SIPD_LOG_LEVEL: 'info', SIPD_TLS_CERT: server1.cert, SIPD_TLS_KEY: server1.key },
    });
  }, 60_000);

  afterAll(async () => {
    for (const c of closers) await c();
    if (sipd?.exit === undefined) await sipd?.kill('SIGKILL').catch(() => undefined);
  });

  const tlsUa = async (i: number): Promise<Leg> => {
    const c = await TlsSipClient.connect({ host: HOST, port, ca: pki.ca.certPem, servername: 'sip.test' });
    closers.push(() => c.close());
    return tlsLeg(c, users[i]!.user, users[i]!.password);
  };

  it('two UAs registered over TLS call each other (digest auth); every hop stays on TLS, Record-Route says transport=tls', async () => {
    const alice = await tlsUa(0);
    const bob = await tlsUa(1);
    await register(alice);
    await register(bob);
    const r = await call(alice, bob);
    expect(r.invite.topVia()?.transport).toBe('TLS');
    expect(r.invite.header('proxy-authorization')).toBeUndefined();
    expect(r.invite.headerValues('record-route').join(',')).toContain(`${HOST}:${port};transport=tls;lr`);
    expect(r.ack.topVia()?.transport).toBe('TLS');
    expect(r.bye.status).toBe(200);
  });

  it('a call TLS → UDP: the UDP phone gets it over UDP with a double Record-Route (tls and udp)', async () => {
    const alice = await tlsUa(0);
    const cc = await new SipClient().open();
    closers.push(() => cc.close());
    const carol = udpLeg(cc, port, users[2]!.user, users[2]!.password);
    await register(alice);
    await register(carol);
    const r = await call(alice, carol);
    expect(r.invite.topVia()?.transport).toBe('UDP');
    const rr = r.invite.headerValues('record-route').join(',');
    expect(rr).toContain(`${HOST}:${port};transport=tls;lr`);
    expect(rr).toMatch(new RegExp(`<sip:${HOST.replace(/\./g, '\\.')}:${port};lr`));
    expect(r.bye.status).toBe(200);
  });

  it('a sips: request for a phone registered over UDP never leaves over UDP: 480, the phone gets nothing', async () => {
    const c = await TlsSipClient.connect({ host: HOST, port, ca: pki.ca.certPem, servername: 'sip.test' });
    closers.push(() => c.close());
    const alice = tlsLeg(c, users[0]!.user, users[0]!.password);
    const cc = await new SipClient().open();
    closers.push(() => cc.close());
    const carol = udpLeg(cc, port, users[2]!.user, users[2]!.password);
    await register(alice);
    await register(carol);
    const callId = uniq('sips');
    const ruri = `sips:${carol.user}@${HOST}`;
    const invite = (cseq: number, auth?: string): string =>
      [`INVITE ${ruri} SIP/2.0`, via(alice), 'Max-Forwards: 70', `From: <sips:${alice.user}@${HOST}>;tag=f${cseq}`, `To: <${ruri}>`, `Call-ID: ${callId}`, `CSeq: ${cseq} INVITE`, `Contact: <sips:${alice.user}@${HOST}:${alice.port}>`, ...(auth !== undefined ? [`Proxy-Authorization: ${auth}`] : []), 'Content-Length: 0', '', ''].join('\r\n');
    const ch = await alice.request(invite(1));
    expect(ch.status).toBe(407);
    const r = await alice.request(invite(2, proxyAuth(ch, alice, 'INVITE', ruri)));
    expect(r.status).toBe(480);
    const inbox = (cc as unknown as { inbox: Buffer[] }).inbox;
    expect(inbox.map((b) => b.toString('latin1')).filter((t) => t.startsWith('INVITE'))).toEqual([]);
  });
});
