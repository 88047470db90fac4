/**
 * The admin verbs of sipd's HTTP endpoint (DELETE /location/AOR, used by `sipctl ul rm`) against a
 * real sipd subprocess: token (generated into state_dir or set explicitly), Host check, admin off
 * on a non-loopback endpoint without an explicit token (in a private network namespace, so that
 * 0.0.0.0 is loopback only), sipctl end to end, and the secrets surviving a restart.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHa1, digestResponse } from '../../src/core/auth.js';
import { parseAuthHeader, parseMessage, SipResponse } from '../../src/sip/index.js';
import { httpRequest, sample, type HttpReply } from '../helpers/http.js';
import { createNetns, netnsAvailable, type Netns } from '../helpers/netns.js';
import { baseEnv, freePort, ROOT, SIPCTL, sipctl, SipdProcess } from '../helpers/sipd-process.js';
import { openStores } from '../../src/store/index.js';

const HOST = '127.0.0.1';
const CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

// ------------------------------------------------------------------ a UDP SIP client with digest

class SipClient {
  private readonly sock = dgram.createSocket('udp4');
  private readonly inbox: Buffer[] = [];
  port = 0;

  async open(): Promise<this> {
    this.sock.on('message', (m) => this.inbox.push(m));
    await new Promise<void>((r) => this.sock.bind(0, HOST, () => r()));
    this.port = this.sock.address().port;
    return this;
  }

  /** send, retransmitting every 500 ms, until a final response with this Call-ID and CSeq (bounded). */
  async request(text: string, serverPort: number, timeoutMs = 10_000): Promise<SipResponse> {
    const callId = /^Call-ID: (.*)$/m.exec(text)![1]!.trim();
    const cseq = /^CSeq: (.*)$/m.exec(text)![1]!.trim();
    const deadline = Date.now() + timeoutMs;
    let nextSend = 0;
    while (Date.now() < deadline) {
      if (Date.now() >= nextSend) {
        this.sock.send(Buffer.from(text, 'latin1'), serverPort, HOST);
        nextSend = Date.now() + 500;
      }
      for (let j = 0; j < this.inbox.length; j++) {
        const m = parseMessage(this.inbox[j]!);
        if (m instanceof SipResponse && m.callId() === callId && m.header('cseq')?.trim() === cseq && m.status >= 200) {
          this.inbox.splice(j, 1);
          return m;
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no final response to ${cseq} ${callId} within ${timeoutMs} ms`);
  }

  register(serverPort: number, user: string, callId: string, cseq: number, authorization?: string): string {
    return [
      `REGISTER sip:${HOST} SIP/2.0`,
      `Via: SIP/2.0/UDP ${HOST}:${this.port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
      'Max-Forwards: 70',
      `From: <sip:${user}@${HOST}>;tag=${randomBytes(4).toString('hex')}`,
      `To: <sip:${user}@${HOST}>`,
      `Call-ID: ${callId}`,
      `CSeq: ${cseq} REGISTER`,
      `Contact: <sip:${user}@${HOST}:${this.port}>`,
      'Expires: 3600',
      ...(authorization !== undefined ? [`Authorization: ${authorization}`] : []),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }
}

function answer(challenge401: SipResponse, user: string, password: string): string {
  const ch = challenge401.headerValues('www-authenticate').map((v) => parseAuthHeader(v))[0]!;
  const realm = ch.params.get('realm')!;
  const nonce = ch.params.get('nonce')!;
  const uri = `sip:${HOST}`;
  const cnonce = randomBytes(8).toString('hex');
  const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', user, realm, password), method: 'REGISTER', uri, nonce, qop: 'auth', nc: '00000001', cnonce });
  return `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`;
}

/** REGISTER with digest (401, then the answer): the 200. */
async function registerWithAuth(c: SipClient, serverPort: number, user: string, password: string): Promise<SipResponse> {
  const callId = `reg-${randomBytes(6).toString('hex')}`;
  const r1 = await c.request(c.register(serverPort, user, callId, 1), serverPort);
  expect(r1.status).toBe(401);
  const r2 = await c.request(c.register(serverPort, user, callId, 2, answer(r1, user, password)), serverPort);
  expect(r2.status).toBe(200);
  return r2;
}

// ====================================================================== metrics on 127.0.0.1

describe('admin verbs on a loopback metrics endpoint (token generated into state_dir)', () => {
  let dir = '';
  let port = 0;
  let mport = 0;
  let state = '';
  let env: Record<string, string> = {};
  let config = '';
  let sipd: SipdProcess | undefined;
  let client: SipClient;
  let token = '';
  const user = `alice${randomBytes(2).toString('hex')}`;
  const password = `pw-${randomBytes(9).toString('hex')}`;
  const aor = `${user}@${HOST}`;

  const contacts = async (): Promise<number> => sample((await httpRequest(mport, '/metrics')).body, 'sipd_registered_contacts');
  const del = (path: string, headers: Record<string, string> = {}): Promise<HttpReply> => httpRequest(mport, path, { method: 'DELETE', headers });
  const refusedLines = (): number => sipd!.logs().filter((l) => l.msg === 'admin request refused').length;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sipd-admin-'));
    state = join(dir, 'state');
    port = await freePort();
    mport = await freePort();
    env = {
      SIPD_LISTEN: `udp:${HOST}:${port},tcp:${HOST}:${port}`,
      SIPD_METRICS: `${HOST}:${mport}`,
      SIPD_DB: `sqlite:${join(dir, 'sipd.sqlite')}`,
      SIPD_DOMAINS: HOST,
      SIPD_STATE_DIR: state,
      SIPD_LOG_LEVEL: 'info',
    };
    // registrations only in memory (no flush before shutdown): only the admin verb reaches them
    config = join(dir, 'sipd.yaml');
    writeFileSync(config, ['location:', '  db_mode: write-back', '  flush_interval_ms: 3600000', ''].join('\n'));
    const add = await sipctl(env, ['add', aor, password]);
    expect(add.code, add.stderr).toBe(0);
    sipd = await SipdProcess.start({ env, args: ['--config', config] });
    client = await new SipClient().open();
    await registerWithAuth(client, port, user, password);
    token = readFileSync(join(state, 'admin.token'), 'latin1').trim();
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    if (sipd?.exit === undefined) await sipd?.kill('SIGKILL').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('generates admin.token and auth.secret (mode 0600) in state_dir and logs neither', () => {
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const secret = readFileSync(join(state, 'auth.secret'), 'latin1').trim();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(join(state, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(statSync(join(state, 'auth.secret')).mode & 0o777).toBe(0o600);
    expect(sipd!.stdout).not.toContain(token);
    expect(sipd!.stdout).not.toContain(secret);
    expect(sipd!.logs().find((l) => l.msg === 'sipd started')?.admin).toBe('on');
  });

  it('/metrics and /healthz need no token', async () => {
    expect((await httpRequest(mport, '/metrics')).status).toBe(200);
    expect((await httpRequest(mport, '/healthz')).status).toBe(200);
    expect(await contacts()).toBe(1);
  });

  it('DELETE without a token: 401, the binding is kept, one warn line without any token', async () => {
    const before = refusedLines();
    const r = await del(`/location/${aor}`);
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer');
    expect(await contacts()).toBe(1);
    await sipd!.waitFor(() => refusedLines() === before + 1, 5_000, 'the refusal log line');
    const line = sipd!.logs().filter((l) => l.msg === 'admin request refused').at(-1)!;
    expect(line.level).toBe(40);
    expect(line.reason).toBe('no-token');
  });

  it('DELETE with a wrong token (also a prefix of the right one, or Basic): 401, the binding is kept, the token is not logged', async () => {
    const wrong = `x${token.slice(1)}`;
    for (const authorization of [`Bearer ${wrong}`, `Bearer ${token.slice(0, 32)}`, `Bearer ${token}x`, `Basic ${Buffer.from(`admin:${token}`).toString('base64')}`]) {
      const r = await del(`/location/${aor}`, { authorization });
      expect(r.status, authorization).toBe(401);
    }
    expect(await contacts()).toBe(1);
    expect(sipd!.stdout).not.toContain(wrong);
    expect(sipd!.stdout).not.toContain(token.slice(0, 32));
  });

  it('DELETE with the token but a foreign Host header (DNS rebinding): 403, the binding is kept', async () => {
    for (const host of [`evil.example:${mport}`, 'evil.example', `127.0.0.1:${mport + 1}`, `localhost.evil.example:${mport}`, `127.0.0.2:${mport}`, `127.0.0.1:${mport}.evil.example`]) {
      const r = await del(`/location/${aor}`, { authorization: `Bearer ${token}`, host });
      expect(r.status, JSON.stringify(host)).toBe(403);
    }
    // HTTP/1.0 without any Host header
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(mport, HOST, () => sock.write(`DELETE /location/${aor} HTTP/1.0\r\nAuthorization: Bearer ${token}\r\n\r\n`));
      let got = '';
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => (got += d));
      sock.on('end', () => resolve(got));
      sock.on('error', reject);
      sock.setTimeout(10_000, () => sock.destroy(new Error('timed out')));
    });
    expect(raw).toMatch(/^HTTP\/1\.[01] 403 /);
    expect(await contacts()).toBe(1);
  });

  it('DELETE /location/ with an empty or malformed AOR: 400', async () => {
    for (const path of ['/location/', `/location/@${HOST}`, `/location/${user}@`, '/location/%E0%A4%A', `/location/${'a'.repeat(600)}@${HOST}`]) {
      const r = await del(path, { authorization: `Bearer ${token}` });
      expect(r.status, path).toBe(400);
    }
    expect(await contacts()).toBe(1);
  });

  it('the user part is case-sensitive: DELETE /location/UPPER@host removes nothing', async () => {
    const r = await del(`/location/${user.toUpperCase()}@${HOST}`, { authorization: `Bearer ${token}` });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ aor: `${user.toUpperCase()}@${HOST}`, removed: 0 });
    expect(await contacts()).toBe(1);
  });

  it('DELETE with the token and Host localhost:PORT removes the registrations', async () => {
    const r = await del(`/location/sip:${aor}`, { authorization: `Bearer ${token}`, host: `localhost:${mport}` });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ aor, removed: 1 });
    expect(await contacts()).toBe(0);
  });

  it('sipctl ul rm sends the token from <state_dir>/admin.token: the running server drops the binding', async () => {
    await registerWithAuth(client, port, user, password);
    expect(await contacts()).toBe(1);
    const rm = await sipctl(env, ['ul', 'rm', aor]);
    expect(rm).toEqual({ code: 0, stdout: `removed 1 contact of ${aor}\n`, stderr: '' });
    expect(await contacts()).toBe(0);
  });

  it('sipctl ul rm with a wrong SIPD_ADMIN_TOKEN still removes from the database and says in one line that the running sipd was not updated', async () => {
    await registerWithAuth(client, port, user, password);
    // the same binding in the database (the running server only flushes at shutdown)
    const stores = await openStores({ db: { kind: 'sqlite', path: join(dir, 'sipd.sqlite') }, location: { db_mode: 'db-only' } });
    const now = Date.now();
    await stores.locations.save({ aor, username: user, domain: HOST, contact: `sip:${user}@${HOST}:${client.port}`, expires: now + 3_600_000, q: null, callId: 'db-copy', cseq: 1, ruid: `ruid-${now}`, lastModified: now, flags: 0, cflags: 0 });
    await stores.close();
    const rm = await sipctl({ ...env, SIPD_ADMIN_TOKEN: 'not-the-token-0123456789' }, ['ul', 'rm', aor]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toBe(`removed 1 contact of ${aor}\n`);
    expect(rm.stderr).toBe(`sipctl: warning: running sipd not updated: it refused the admin token (401)\n`);
    expect(await contacts()).toBe(1);
    const ok = await sipctl(env, ['ul', 'rm', aor]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await contacts()).toBe(0);
  });

  it('a restart reuses admin.token and auth.secret: a nonce issued before the restart is still recognised as ours (stale=true, not forged)', async () => {
    const callId = `restart-${randomBytes(6).toString('hex')}`;
    const r1 = await client.request(client.register(port, user, callId, 1), port);
    expect(r1.status).toBe(401);
    expect(await sipd!.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    sipd = await SipdProcess.start({ env, args: ['--config', config] });
    // the new process cannot know whether the nonce was used before (its replay memory is gone), so
    // it asks again, but with stale=true: the phone retries with the same password without asking
    // its user. With a new random secret per start the old nonce would be a forgery (no stale).
    const r2 = await client.request(client.register(port, user, callId, 2, answer(r1, user, password)), port);
    expect(r2.status).toBe(401);
    const ch = parseAuthHeader(r2.headerValues('www-authenticate')[0]!);
    expect(ch.params.get('stale')?.toLowerCase()).toBe('true');
    const r3 = await client.request(client.register(port, user, callId, 3, answer(r2, user, password)), port);
    expect(r3.status).toBe(200);
    expect(readFileSync(join(state, 'admin.token'), 'latin1').trim()).toBe(token);
    const r = await del(`/location/${aor}`, { authorization: `Bearer ${token}` });
    expect(JSON.parse(r.body)).toEqual({ aor, removed: 1 });
  }, 60_000);
});

// =========================================================== metrics on 0.0.0.0 (private netns)

const avail = netnsAvailable();
if (!avail.ok) {
  if (CI) console.error(`admin: network namespaces are required under CI: ${avail.reason}`);
  else console.warn(`admin (0.0.0.0 endpoint): SKIPPED (not counted as passed): ${avail.reason}`);
}

/** An HTTP request made from inside the namespace (a node child run with `ip netns exec`). */
async function nsHttp(ns: Netns, port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<HttpReply> {
  const script = `
    const [port, method, path, headers] = JSON.parse(process.argv[1]);
    const req = require('node:http').request({ host: '127.0.0.1', port, path, method, headers, timeout: 10000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body, headers: res.headers })));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => { console.error(e.message); process.exit(1); });
    req.end();`;
  const r = await ns.exec([process.execPath, '-e', script, JSON.stringify([port, method, path, headers])], 20_000);
  if (r.code !== 0) throw new Error(`http in namespace failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as HttpReply;
}

describe.runIf(avail.ok || CI)('admin verbs on a 0.0.0.0 metrics endpoint (sipd in a private network namespace)', () => {
  let ns: Netns;
  let dir = '';
  const running: SipdProcess[] = [];

  const start = async (extra: Record<string, string>, mport: number): Promise<{ sipd: SipdProcess; env: Record<string, string> }> => {
    const env = {
      SIPD_LISTEN: `udp:${HOST}:${mport - 4000},tcp:${HOST}:${mport - 4000}`,
      SIPD_METRICS: `0.0.0.0:${mport}`,
      SIPD_DB: `sqlite:${join(dir, `sipd-${mport}.sqlite`)}`,
      SIPD_DOMAINS: HOST,
      SIPD_STATE_DIR: join(dir, `state-${mport}`),
      SIPD_LOG_LEVEL: 'info',
      ...extra,
    };
    const sipd = await SipdProcess.start({ env, prefix: ns.prefix });
    running.push(sipd);
    return { sipd, env };
  };

  beforeAll(async () => {
    const made = await createNetns('sipd-admin');
    if (!made.ok) throw new Error(`cannot create a network namespace: ${made.reason}`);
    ns = made.ns;
    dir = mkdtempSync(join(tmpdir(), 'sipd-admin-ns-'));
  }, 60_000);

  afterAll(async () => {
    for (const p of running) if (p.exit === undefined) await p.kill('SIGKILL').catch(() => undefined);
    await ns?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('without an explicit token, admin verbs are off (even with the generated token); /metrics and /healthz stay open', async () => {
    const { sipd, env } = await start({}, 9090);
    expect(sipd.logs().find((l) => l.msg === 'sipd started')?.admin).toMatch(/^off/);
    const generated = readFileSync(join(env.SIPD_STATE_DIR!, 'admin.token'), 'latin1').trim();
    const r = await nsHttp(ns, 9090, 'DELETE', `/location/alice@${HOST}`, { authorization: `Bearer ${generated}` });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).error).toMatch(/admin verbs are off.*0\.0\.0\.0.*admin\.token/);
    expect((await nsHttp(ns, 9090, 'GET', '/metrics')).status).toBe(200);
    expect((await nsHttp(ns, 9090, 'GET', '/healthz')).status).toBe(200);
  });

  it('with SIPD_ADMIN_TOKEN set, admin verbs are on (token and Host still checked), and sipctl ul rm uses the token', async () => {
    const explicit = `explicit-${randomBytes(12).toString('hex')}`;
    const { sipd, env } = await start({ SIPD_ADMIN_TOKEN: explicit }, 9091);
    expect(sipd.logs().find((l) => l.msg === 'sipd started')?.admin).toBe('on');
    expect((await nsHttp(ns, 9091, 'DELETE', `/location/alice@${HOST}`)).status).toBe(401);
    expect((await nsHttp(ns, 9091, 'DELETE', `/location/alice@${HOST}`, { authorization: `Bearer ${explicit}`, host: 'attacker.example:9091' })).status).toBe(403);
    const ok = await nsHttp(ns, 9091, 'DELETE', `/location/alice@${HOST}`, { authorization: `Bearer ${explicit}` });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ aor: `alice@${HOST}`, removed: 0 });
    // sipctl inside the namespace: reaches the server (0.0.0.0 → 127.0.0.1) with the token; nothing registered
    const rm = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        ns.prefix[0]!,
        [...ns.prefix.slice(1), process.execPath, '--import', 'tsx', SIPCTL, 'ul', 'rm', `alice@${HOST}`],
        { cwd: ROOT, env: { ...baseEnv(), ...env }, timeout: 30_000 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
      );
    });
    expect(rm).toEqual({ code: 1, stdout: '', stderr: `sipctl: no registrations for alice@${HOST}\n` });
    expect(sipd.logs().filter((l) => l.msg === 'registrations removed by admin').map((l) => l.aor)).toEqual([`alice@${HOST}`, `alice@${HOST}`]);
  });
});
