/**
 * Browser phones over WebSocket (RFC 7118) in a real browser: Debian's headless Chromium driven by
 * playwright-core loads a page served by this test that runs JsSIP (from npm, bundled here with
 * esbuild), registers over WS with digest auth to a running sipd (ws: listener, Origin allow-list
 * naming the page's origin), and:
 *   - calls a phone registered over UDP (a test UA answering with a WebRTC-shaped SDP),
 *   - is called by that UDP phone,
 *   - calls a second browser phone;
 * the JsSIP session states (confirmed, ended) are read back from the page, and the UDP phone's
 * view (ACK, BYE received) is checked too. No media flows (no ICE peer): the SIP dialogs are tested.
 *
 * Skipped with a printed reason only where /usr/bin/chromium is absent and CI is unset.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMessage, SipRequest, SipResponse } from '../../src/sip/index.js';
import { UdpUa } from '../helpers/sip-ua.js';
import { freePort, ROOT, sipctl, SipdProcess } from '../helpers/sipd-process.js';

const HOST = '127.0.0.1';
const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const SKIP = !HAVE_CHROMIUM && !process.env.CI;
if (SKIP) console.info(`[browser-ws] skipped: ${CHROMIUM} is absent (apt-get install chromium) and CI is unset`);

// ---------------------------------------------------------------------------------------------
// SDP: a WebRTC-shaped offer / answer (ICE credentials, DTLS fingerprint, rtcp-mux, mid) so that
// Chromium's setRemoteDescription accepts it; no candidates, so no media path is ever set up.

const FINGERPRINT = `sha-256 ${Array.from({ length: 32 }, (_, i) => (0x10 + i).toString(16).toUpperCase()).join(':')}`;

function mediaLines(mid: string, pt: number, codec: string, setup: 'actpass' | 'active'): string[] {
  return [
    `m=audio 9 UDP/TLS/RTP/SAVPF ${pt}`,
    'c=IN IP4 0.0.0.0',
    'a=rtcp:9 IN IP4 0.0.0.0',
    `a=ice-ufrag:${randomBytes(4).toString('hex')}`,
    `a=ice-pwd:${randomBytes(12).toString('hex')}`,
    `a=fingerprint:${FINGERPRINT}`,
    `a=setup:${setup}`,
    `a=mid:${mid}`,
    'a=sendrecv',
    'a=rtcp-mux',
    `a=rtpmap:${pt} ${codec}`,
  ];
}

function sdpOffer(): string {
  return ['v=0', `o=- ${Date.now()} 1 IN IP4 ${HOST}`, 's=-', 't=0 0', 'a=group:BUNDLE 0', ...mediaLines('0', 0, 'PCMU/8000', 'actpass'), ''].join('\r\n');
}

/** An answer to a browser's offer: its first audio m-line, PCMU when offered, its mid. */
function sdpAnswer(offer: string): string {
  const lines = offer.split(/\r?\n/);
  const m = lines.find((l) => l.startsWith('m=audio '));
  if (m === undefined) throw new Error(`no audio in offer: ${offer}`);
  const pts = m.split(' ').slice(3).map(Number);
  const mid = lines.find((l) => l.startsWith('a=mid:'))?.slice(6) ?? '0';
  const pt = pts.includes(0) ? 0 : pts[0]!;
  const rtpmap = lines.find((l) => l.startsWith(`a=rtpmap:${pt} `))?.split(' ')[1] ?? 'PCMU/8000';
  return ['v=0', `o=- ${Date.now()} 1 IN IP4 ${HOST}`, 's=-', 't=0 0', `a=group:BUNDLE ${mid}`, ...mediaLines(mid, pt, rtpmap, 'active'), ''].join('\r\n');
}

// ---------------------------------------------------------------------------------------------
// A phone on UDP: registers, answers INVITE (180, 200 with SDP), answers BYE, places a call.

interface Dialog {
  callId: string;
  from: string;
  to: string;
  ruri: string;
  routes: string[];
  cseq: number;
}

class UdpPhone {
  private readonly sock = dgram.createSocket('udp4');
  port = 0;
  readonly requests: SipRequest[] = [];
  private readonly responses: SipResponse[] = [];
  private waiters: Array<() => void> = [];
  private readonly tag = randomBytes(4).toString('hex');

  constructor(
    readonly user: string,
    readonly password: string,
    readonly sipdPort: number,
  ) {}

  async open(): Promise<this> {
    this.sock.on('message', (data, rinfo) => this.onMessage(data, rinfo.address, rinfo.port));
    this.sock.on('error', () => undefined);
    await new Promise<void>((r) => this.sock.bind(0, HOST, () => r()));
    this.port = this.sock.address().port;
    return this;
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }

  get contact(): string {
    return `<sip:${this.user}@${HOST}:${this.port}>`;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait until `pred` holds (re-checked on every message), bounded by `timeoutMs`. */
  async waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000 && !pred(); i++) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.user}: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
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
      this.requests.push(m);
      this.answer(m, address, port);
    }
    this.wake();
  }

  private reply(req: SipRequest, status: number, reason: string, extra: string[] = [], body = ''): string {
    const lines = [`SIP/2.0 ${status} ${reason}`];
    for (const v of req.headerValues('via')) lines.push(`Via: ${v}`);
    lines.push(`From: ${req.header('from')}`);
    const to = req.header('to')!;
    lines.push(`To: ${/;\s*tag=/i.test(to) || status === 100 ? to : `${to};tag=${this.tag}`}`, `Call-ID: ${req.callId()}`, `CSeq: ${req.header('cseq')}`);
    lines.push(...extra);
    if (body !== '') lines.push('Content-Type: application/sdp');
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`, '', body);
    return lines.join('\r\n');
  }

  private answer(req: SipRequest, address: string, port: number): void {
    const out = (text: string): void => {
      this.sock.send(Buffer.from(text, 'latin1'), port, address);
    };
    if (req.method === 'ACK') return;
    if (req.method !== 'INVITE') {
      out(this.reply(req, 200, 'OK'));
      return;
    }
    if (this.requests.filter((r) => r.method === 'INVITE' && r.callId() === req.callId()).length > 1) return; // retransmission
    const rr = req.headerValues('record-route').map((v) => `Record-Route: ${v}`);
    out(this.reply(req, 180, 'Ringing', [...rr, `Contact: ${this.contact}`]));
    out(this.reply(req, 200, 'OK', [...rr, `Contact: ${this.contact}`], sdpAnswer(req.body.toString('latin1'))));
  }

  private build(method: string, ruri: string, d: { callId: string; from: string; to: string; cseq: number; routes?: string[]; extra?: string[]; body?: string; branch?: string }): string {
    const body = d.body ?? '';
    const lines = [
      `${method} ${ruri} SIP/2.0`,
      `Via: SIP/2.0/UDP ${HOST}:${this.port};branch=${d.branch ?? `z9hG4bK${randomBytes(6).toString('hex')}`};rport`,
      'Max-Forwards: 70',
      `From: ${d.from}`,
      `To: ${d.to}`,
      `Call-ID: ${d.callId}`,
      `CSeq: ${d.cseq} ${method}`,
      ...(d.routes ?? []).map((r) => `Route: ${r}`),
      ...(d.extra ?? []),
    ];
    if (body !== '') lines.push('Content-Type: application/sdp');
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`, '', body);
    return lines.join('\r\n');
  }

  private send(text: string): Promise<void> {
    return new Promise((resolve, reject) => this.sock.send(Buffer.from(text, 'latin1'), this.sipdPort, HOST, (e) => (e ? reject(e) : resolve())));
  }

  /** Send a request, resent every 500 ms until a response (any) comes, and wait for its final response. */
  async request(text: string, timeoutMs: number): Promise<SipResponse> {
    const callId = /^Call-ID: (.*)$/m.exec(text)![1]!.trim();
    const cseq = /^CSeq: (.*)$/m.exec(text)![1]!.trim();
    const mine = (r: SipResponse): boolean => r.callId() === callId && r.header('cseq') === cseq;
    const start = this.responses.length;
    await this.send(text);
    const deadline = Date.now() + timeoutMs;
    let resend = Date.now() + 500;
    for (let i = 0; i < 10_000; i++) {
      const got = this.responses.slice(start).filter(mine);
      const final = got.find((r) => r.status >= 200);
      if (final !== undefined) return final;
      if (Date.now() >= deadline) throw new Error(`${this.user}: no final response to ${text.split('\r\n')[0]} within ${timeoutMs} ms`);
      if (got.length === 0 && Date.now() >= resend) {
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

  async register(): Promise<SipResponse> {
    const d = { callId: `reg-${randomBytes(6).toString('hex')}`, from: `<sip:${this.user}@${HOST}>;tag=${this.tag}`, to: `<sip:${this.user}@${HOST}>` };
    const extra = [`Contact: ${this.contact}`, 'Expires: 600'];
    const ch = await this.request(this.build('REGISTER', `sip:${HOST}`, { ...d, cseq: 1, extra }), 10_000);
    if (ch.status !== 401) return ch;
    return this.request(this.build('REGISTER', `sip:${HOST}`, { ...d, cseq: 2, extra: [...extra, UdpUa.credentials(ch, this.user, this.password, 'REGISTER', `sip:${HOST}`)] }), 10_000);
  }

  /** INVITE (407 answered), then the ACK of the 2xx along its route set; returns the dialog for BYE. */
  async call(ruri: string): Promise<{ res: SipResponse; dialog: Dialog }> {
    const callId = `call-${randomBytes(6).toString('hex')}`;
    const from = `<sip:${this.user}@${HOST}>;tag=${this.tag}`;
    const extra = [`Contact: ${this.contact}`];
    const body = sdpOffer();
    const branch = `z9hG4bK${randomBytes(6).toString('hex')}`;
    let res = await this.request(this.build('INVITE', ruri, { callId, from, to: `<${ruri}>`, cseq: 1, extra, body, branch }), 30_000);
    let cseq = 1;
    if (res.status === 407) {
      await this.send(this.build('ACK', ruri, { callId, from, to: res.header('to')!, cseq: 1, branch }));
      cseq = 2;
      const cred = UdpUa.credentials(res, this.user, this.password, 'INVITE', ruri);
      res = await this.request(this.build('INVITE', ruri, { callId, from, to: `<${ruri}>`, cseq, extra: [...extra, cred], body }), 30_000);
    }
    const contact = res.contacts()[0];
    const dialog: Dialog = {
      callId,
      from,
      to: res.header('to')!,
      ruri: contact !== undefined && 'uri' in contact ? /<([^>]*)>/.exec(contact.raw)?.[1] ?? ruri : ruri,
      routes: res.headerValues('record-route').flatMap((v) => v.split(/,(?=\s*<)/).map((s) => s.trim())).reverse(),
      cseq,
    };
    if (res.status >= 200 && res.status < 300) await this.send(this.build('ACK', dialog.ruri, { ...dialog, cseq }));
    return { res, dialog };
  }

  async bye(d: Dialog): Promise<SipResponse> {
    d.cseq++;
    return this.request(this.build('BYE', d.ruri, { ...d }), 10_000);
  }
}

// ---------------------------------------------------------------------------------------------
// The page: JsSIP phones driven from the test through page.evaluate.

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>sipd browser phone</title>
<script src="/jssip.js"></script>
<script>
window.phones = {};
window.makePhone = (name, uri, password, wsUrl) => new Promise((resolve) => {
  const p = { events: [], sessions: [], log: [] };
  window.phones[name] = p;
  const ua = new JsSIP.UA({ sockets: [new JsSIP.WebSocketInterface(wsUrl)], uri, password, register: true,
    register_expires: 600, session_timers: false, user_agent: 'sipd-browser-test ' + name });
  p.ua = ua;
  ua.on('registered', () => { p.events.push('registered'); resolve('registered'); });
  ua.on('registrationFailed', (e) => { p.events.push('registrationFailed'); resolve('registrationFailed: ' + e.cause); });
  ua.on('newRTCSession', ({ session, originator }) => {
    const s = { originator, states: [], session };
    p.sessions.push(s);
    for (const ev of ['progress', 'accepted', 'confirmed', 'ended', 'failed'])
      session.on(ev, (e) => s.states.push(ev + (e && e.cause ? ':' + e.cause : '')));
    if (originator === 'remote') session.answer({ mediaConstraints: { audio: true, video: false } });
  });
  ua.start();
});
window.call = (name, target) => {
  const p = window.phones[name];
  p.ua.call(target, { mediaConstraints: { audio: true, video: false } });
  return p.sessions.length - 1;
};
window.states = (name, i) => (window.phones[name].sessions[i] || { states: [] }).states;
window.sessionCount = (name) => window.phones[name].sessions.length;
window.hangup = (name, i) => window.phones[name].sessions[i].session.terminate();
</script></head><body>sipd</body></html>`;

type Page = import('playwright-core').Page;
type Browser = import('playwright-core').BrowserContext;

describe.skipIf(SKIP)('browser phones (JsSIP in headless Chromium) over WebSocket', { timeout: 90_000 }, () => {
  let dir: string;
  let sipd: SipdProcess | undefined;
  let web: http.Server | undefined;
  let browser: Browser | undefined;
  let alice: Page;
  let bob: Page;
  let carol: UdpPhone | undefined;
  let sipPort = 0;
  let webPortOf: () => number = () => 0;
  let wsPort = 0;
  const users = { alice: `pw-a-${randomBytes(6).toString('hex')}`, bob: `pw-b-${randomBytes(6).toString('hex')}`, carol: `pw-c-${randomBytes(6).toString('hex')}` };
  const consoleLines: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sipd-browser-'));
    // the page and JsSIP (CommonJS in npm: bundled for the browser here)
    const { build } = await import('esbuild');
    const bundle = await build({ entryPoints: [join(ROOT, 'node_modules/jssip/lib/JsSIP.js')], bundle: true, format: 'iife', globalName: 'JsSIP', platform: 'browser', write: false, logLevel: 'silent' });
    const jssip = bundle.outputFiles[0]!.contents;
    web = http.createServer((req, res) => {
      if (req.url === '/jssip.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(jssip);
      else if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => web!.listen(0, HOST, () => r()));
    const webPort = (web.address() as { port: number }).port;
    webPortOf = () => webPort;
    const origin = `http://${HOST}:${webPort}`;

    sipPort = await freePort();
    wsPort = await freePort();
    const env = {
      SIPD_LISTEN: `udp:${HOST}:${sipPort},ws:${HOST}:${wsPort}`,
      SIPD_DB: `sqlite:${join(dir, 'sipd.sqlite')}`,
      SIPD_DOMAINS: HOST,
      SIPD_METRICS: 'off',
      SIPD_STATE_DIR: join(dir, 'state'),
      SIPD_LOG_LEVEL: 'info',
    };
    const config = join(dir, 'sipd.yaml');
    writeFileSync(config, ['ws:', `  origins: ["${origin}"]`, '  path: /sip', ''].join('\n'));
    for (const [u, pw] of Object.entries(users)) {
      const r = await sipctl(env, ['add', `${u}@${HOST}`, pw]);
      expect(r.code, r.stderr).toBe(0);
    }
    sipd = await SipdProcess.start({ env, args: ['--config', config] });

    const { chromium } = await import('playwright-core');
    // a fresh profile directory (playwright wants it as the persistent context's userDataDir)
    browser = await chromium.launchPersistentContext(mkdtempSync(join(dir, 'chromium-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = async (name: string): Promise<Page> => {
      const p = await browser!.newPage();
      p.on('console', (m) => consoleLines.push(`[${name}] ${m.text()}`));
      p.on('pageerror', (e) => consoleLines.push(`[${name}] pageerror ${e.message}`));
      await p.goto(`${origin}/`);
      return p;
    };
    alice = await page('alice');
    bob = await page('bob');
    carol = await new UdpPhone('carol', users.carol, sipPort).open();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await carol?.close();
    await sipd?.kill();
    await new Promise<void>((r) => (web ? web.close(() => r()) : r()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const wsUrl = (): string => `ws://${HOST}:${wsPort}/sip`;
  const states = (p: Page, name: string, i: number): Promise<string[]> => p.evaluate(([n, k]) => (window as unknown as { states: (a: string, b: number) => string[] }).states(n as string, k as number), [name, i] as const);
  /** Wait (bounded) until the session's states include `state`; returns them. */
  const waitState = async (p: Page, name: string, i: number, state: string): Promise<string[]> => {
    try {
      await p.waitForFunction(([n, k, s]) => (window as unknown as { states: (a: string, b: number) => string[] }).states(n as string, k as number).some((x) => x === s || x.startsWith(`${s as string}:`)), [name, i, state] as const, { timeout: 45_000 });
    } catch (e) {
      throw new Error(`${name} session ${i} never reached ${state}: states ${JSON.stringify(await states(p, name, i))}\n${consoleLines.slice(-40).join('\n')}\nsipd: ${sipd?.stdout.slice(-3000)}`, { cause: e });
    }
    return states(p, name, i);
  };
  const evaluate = <T>(p: Page, fn: string): Promise<T> => p.evaluate(fn) as Promise<T>;

  it('two browser phones register over WS with digest auth, and the UDP phone registers', async () => {
    const a = await alice.evaluate(([u, pw, url]) => (window as unknown as { makePhone: (...x: string[]) => Promise<string> }).makePhone('alice', u!, pw!, url!), [`sip:alice@${HOST}`, users.alice, wsUrl()]);
    expect(a, consoleLines.join('\n')).toBe('registered');
    const b = await bob.evaluate(([u, pw, url]) => (window as unknown as { makePhone: (...x: string[]) => Promise<string> }).makePhone('bob', u!, pw!, url!), [`sip:bob@${HOST}`, users.bob, wsUrl()]);
    expect(b).toBe('registered');
    expect((await carol!.register()).status).toBe(200);
  });

  it('digest auth is enforced over WS: a browser phone with a wrong password does not register', async () => {
    const r = await bob.evaluate(([u, url]) => (window as unknown as { makePhone: (...x: string[]) => Promise<string> }).makePhone('mallory', u!, 'not-the-password', url!), [`sip:alice@${HOST}`, wsUrl()]);
    expect(r).toMatch(/^registrationFailed/);
    await bob.evaluate(() => (window as unknown as { phones: Record<string, { ua: { stop(): void } }> }).phones['mallory']!.ua.stop());
  });

  it('the handshake needs the sip sub-protocol and an allowed Origin (a page from another origin is refused)', async () => {
    const tryWs = (p: Page, protocol: string | undefined): Promise<string> =>
      p.evaluate(
        ([url, proto]) =>
          new Promise<string>((resolve) => {
            const ws = proto === undefined ? new WebSocket(url!) : new WebSocket(url!, proto);
            ws.onopen = () => {
              resolve(`open:${ws.protocol}`);
              ws.close();
            };
            ws.onerror = () => resolve('error');
          }),
        [wsUrl(), protocol] as const,
      );
    expect(await tryWs(alice, 'sip')).toBe('open:sip');
    expect(await tryWs(alice, undefined)).toBe('error');
    // same server, other origin (localhost is not 127.0.0.1 to the allow-list)
    const other = await browser!.newPage();
    await other.goto(`http://localhost:${webPortOf()}/`);
    expect(await tryWs(other, 'sip')).toBe('error');
    await other.close();
  });

  it('the browser calls the UDP phone: confirmed, then the browser hangs up: ended, and the UDP phone got ACK and BYE', async () => {
    const i = await evaluate<number>(alice, `window.call('alice', 'sip:carol@${HOST}')`);
    const s = await waitState(alice, 'alice', i, 'confirmed');
    expect(s).toContain('accepted');
    await carol!.waitFor(() => carol!.requests.some((r) => r.method === 'ACK'), 15_000, 'the ACK of the browser');
    const invite = carol!.requests.find((r) => r.method === 'INVITE')!;
    expect(invite.body.toString()).toMatch(/a=fingerprint:/); // the browser's WebRTC offer reached the UDP side
    await evaluate(alice, `window.hangup('alice', ${i})`);
    const end = await waitState(alice, 'alice', i, 'ended');
    expect(end.some((x) => x.startsWith('failed'))).toBe(false);
    await carol!.waitFor(() => carol!.requests.some((r) => r.method === 'BYE' && r.callId() === invite.callId()), 15_000, 'the BYE of the browser');
  });

  it('the UDP phone calls the browser: the browser answers (confirmed on the ACK), the UDP phone hangs up: ended', async () => {
    const before = await evaluate<number>(alice, `window.sessionCount('alice')`);
    const { res, dialog } = await carol!.call(`sip:alice@${HOST}`);
    expect(res.status, res.toBuffer().toString()).toBe(200);
    expect(res.body.toString()).toMatch(/a=fingerprint:/);
    // the browser's Contact now names its connection (ws), so the ACK and BYE reach it
    expect(dialog.ruri).toMatch(/;transport=ws/i);
    const s = await waitState(alice, 'alice', before, 'confirmed');
    expect(s.indexOf('accepted')).toBeGreaterThanOrEqual(0);
    expect(s.indexOf('accepted')).toBeLessThan(s.indexOf('confirmed'));
    const bye = await carol!.bye(dialog);
    expect(bye.status).toBe(200);
    const end = await waitState(alice, 'alice', before, 'ended');
    expect(end.some((x) => x.startsWith('failed'))).toBe(false);
  });

  it('two browser phones call each other: both confirmed, the callee hangs up, both ended', async () => {
    const i = await evaluate<number>(alice, `window.call('alice', 'sip:bob@${HOST}')`);
    await waitState(alice, 'alice', i, 'confirmed');
    const j = (await evaluate<number>(bob, `window.sessionCount('bob')`)) - 1;
    expect(j).toBeGreaterThanOrEqual(0);
    await waitState(bob, 'bob', j, 'confirmed');
    await evaluate(bob, `window.hangup('bob', ${j})`);
    const a = await waitState(alice, 'alice', i, 'ended');
    const b = await waitState(bob, 'bob', j, 'ended');
    expect([...a, ...b].some((x) => x.startsWith('failed'))).toBe(false);
  });
});
