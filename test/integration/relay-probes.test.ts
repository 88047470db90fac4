/**
 * The open-relay probes of issue 8 against a real sipd subprocess (as `npm start` runs it) serving
 * SIPD_DOMAINS=sip.test, so 127.0.0.1 is foreign to it. A UDP (and TCP) socket of the test stands in
 * for a PSTN gateway at 127.0.0.9; the outsider sends from 127.0.0.5, alice and bob are subscribers
 * at 127.0.0.1. Both sides are asserted: nothing from the outsider reaches the gateway by any path,
 * and afterwards the gateway receives exactly the one INVITE alice (authenticated) sends it, and
 * alice and bob still call each other.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initSchema, openStores } from '../../src/store/index.js';
import { freePort, SipdProcess } from '../helpers/sipd-process.js';
import { UdpUa } from '../helpers/sip-ua.js';

const DOMAIN = 'sip.test';
const HOST = '127.0.0.1';

let dir: string;
let sipd: SipdProcess;
let port: number;
let metricsPort: number;
let gw: UdpUa;
let gwTcp: net.Server;
const gwTcpConnections: string[] = [];
let closedTcpPort: number;
let alice: UdpUa;
let bob: UdpUa;
let outsider: UdpUa;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sipd-relay-'));
  const db = { kind: 'sqlite' as const, path: join(dir, 'sipd.sqlite') };
  await initSchema(db);
  const stores = await openStores({ db, location: { db_mode: 'db-only' } });
  await stores.subscribers.add('alice', DOMAIN, 'alice-secret-1');
  await stores.subscribers.add('bob', DOMAIN, 'bob-secret-1');
  await stores.close();
  port = await freePort(HOST);
  metricsPort = await freePort(HOST);
  closedTcpPort = await freePort('127.0.0.9');
  sipd = await SipdProcess.start({
    env: {
      SIPD_LISTEN: `udp:${HOST}:${port},tcp:${HOST}:${port}`,
      SIPD_DOMAINS: DOMAIN,
      SIPD_DB: `sqlite:${db.path}`,
      SIPD_METRICS: `${HOST}:${metricsPort}`,
      SIPD_LOG_LEVEL: 'info',
    },
  });
  const server = { host: HOST, port };
  gw = await UdpUa.open({ address: '127.0.0.9', server, answer: () => 486 });
  // the gateway's TCP side on the same port: any connection attempt is recorded
  gwTcp = net.createServer((c) => {
    gwTcpConnections.push(`${c.remoteAddress}:${c.remotePort}`);
    c.destroy();
  });
  await new Promise<void>((r) => gwTcp.listen(gw.port, '127.0.0.9', () => r()));
  alice = await UdpUa.open({ address: HOST, server });
  bob = await UdpUa.open({ address: HOST, server, answer: true });
  outsider = await UdpUa.open({ address: '127.0.0.5', server, answer: true });
  expect((await alice.register('alice', DOMAIN, 'alice-secret-1')).status).toBe(200);
  expect((await bob.register('bob', DOMAIN, 'bob-secret-1')).status).toBe(200);
});

afterAll(async () => {
  await Promise.all([gw?.close(), alice?.close(), bob?.close(), outsider?.close()]);
  await new Promise<void>((r) => (gwTcp ? gwTcp.close(() => r()) : r()));
  await sipd?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const GW = (): string => `127.0.0.9:${gw.port}`;
const FROM = '<sip:mallory@evil.example>;tag=m1';
let seq = 0;

function probe(o: { method?: string; ruri: string; to?: string; routes?: string[]; toTag?: string; extra?: string[] }): string {
  const method = o.method ?? 'INVITE';
  return outsider.build({
    method,
    ruri: o.ruri,
    from: FROM,
    to: (o.to ?? `<${o.ruri}>`) + (o.toTag !== undefined ? `;tag=${o.toTag}` : ''),
    callId: `probe-${++seq}`,
    cseq: 1,
    extra: [...(o.routes ?? []).map((r) => `Route: ${r}`), `Contact: <sip:mallory@127.0.0.5:${outsider.port}>`, ...(o.extra ?? [])],
  });
}

async function metric(name: string): Promise<string[]> {
  const text = await (await fetch(`http://${HOST}:${metricsPort}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name));
}

describe('open-relay probes against a running sipd (SIPD_DOMAINS=sip.test)', () => {
  for (const method of ['INVITE', 'MESSAGE', 'OPTIONS', 'REGISTER']) {
    it(`${method} sip:bob@sip.test with a preloaded Route to the gateway: 403`, async () => {
      const to = method === 'REGISTER' ? '<sip:mallory@evil.example>' : undefined;
      const res = await outsider.request(probe({ method, ruri: `sip:bob@${DOMAIN}`, to, routes: [`<sip:${GW()};lr>`] }));
      expect(res.status).toBe(403);
    });
  }

  it('INVITE to sipd itself with the number and gateway in a strict-route Route: 403', async () => {
    const res = await outsider.request(probe({ ruri: `sip:${HOST}:${port}`, routes: [`<sip:900@${GW()}>`] }));
    expect(res.status).toBe(403);
  });

  it('INVITE straight to the gateway: 403', async () => {
    expect((await outsider.request(probe({ ruri: `sip:900@${GW()}` }))).status).toBe(403);
  });

  it('no port scan: a preloaded TCP Route to a closed port gives 403 (not 500), to an open one 403 and no connection', async () => {
    expect((await outsider.request(probe({ ruri: `sip:bob@${DOMAIN}`, routes: [`<sip:127.0.0.9:${closedTcpPort};transport=tcp;lr>`] }))).status).toBe(403);
    expect((await outsider.request(probe({ ruri: `sip:bob@${DOMAIN}`, routes: [`<sip:${GW()};transport=tcp;lr>`] }))).status).toBe(403);
  });

  it('fake dialogs: a To-tag with a Route to the gateway, or with a Route naming sipd and a foreign R-URI: 403', async () => {
    expect((await outsider.request(probe({ ruri: `sip:900@${GW()}`, routes: [`<sip:${GW()};lr>`], toTag: 'x1' }))).status).toBe(403);
    expect((await outsider.request(probe({ method: 'BYE', ruri: `sip:900@${GW()}`, routes: [`<sip:${HOST}:${port};lr>`], toTag: 'x2' }))).status).toBe(403);
    // an ACK gets no answer at all; the barrier below shows it went nowhere
    await outsider.send(probe({ method: 'ACK', ruri: `sip:900@${GW()}`, routes: [`<sip:${GW()};lr>`], toTag: 'x3' }));
  });

  it('a real dialog (the outsider calls bob, allowed) does not lend its Route to the gateway', async () => {
    const callId = 'dlg-real-1';
    const inv = outsider.build({ method: 'INVITE', ruri: `sip:bob@${DOMAIN}`, from: FROM, to: `<sip:bob@${DOMAIN}>`, callId, cseq: 1, extra: [`Contact: <sip:mallory@127.0.0.5:${outsider.port}>`] });
    const ok = await outsider.request(inv);
    expect(ok.status).toBe(200);
    const rr = ok.headerValues('record-route');
    expect(rr).toHaveLength(1);
    expect(rr[0]).toMatch(new RegExp(`^<sip:${HOST.replace(/\./g, '\\.')}:${port};lr;sdt=[A-Za-z0-9_-]+>$`));
    const dlg = { from: FROM, to: ok.header('to')!, callId };
    await outsider.send(outsider.build({ method: 'ACK', ruri: `sip:${HOST}:${bob.port}`, ...dlg, cseq: 1, extra: [`Route: ${rr[0]}`] }));
    await bob.waitFor(() => bob.received.some((r) => r.method === 'ACK' && r.callId() === callId), 5000, 'the ACK at bob');
    const hijack = await outsider.request(outsider.build({ method: 'INVITE', ruri: `sip:900@${GW()}`, ...dlg, cseq: 2, extra: [`Route: ${rr[0]}`] }));
    expect(hijack.status).toBe(403);
    const bye = await outsider.request(outsider.build({ method: 'BYE', ruri: `sip:${HOST}:${bob.port}`, ...dlg, cseq: 3, extra: [`Route: ${rr[0]}`] }));
    expect(bye.status).toBe(200);
  });

  it('over TCP too: a preloaded Route and a fake dialog from the outsider get 403 on the connection', async () => {
    const sock = net.connect({ host: HOST, port, localAddress: '127.0.0.5' });
    await new Promise<void>((r, j) => sock.once('connect', () => r()).once('error', j));
    let buf = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (buf += d));
    const lp = sock.localPort!;
    const tcpProbe = (callId: string, extra: string[], toTag = ''): string =>
      [
        `INVITE sip:bob@${DOMAIN} SIP/2.0`,
        `Via: SIP/2.0/TCP 127.0.0.5:${lp};branch=z9hG4bK${callId};rport`,
        'Max-Forwards: 70',
        `From: ${FROM}`,
        `To: <sip:bob@${DOMAIN}>${toTag}`,
        `Call-ID: ${callId}`,
        'CSeq: 1 INVITE',
        `Contact: <sip:mallory@127.0.0.5:${lp};transport=tcp>`,
        ...extra,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    sock.write(tcpProbe('tcp-probe-1', [`Route: <sip:${GW()};lr>`]));
    sock.write(tcpProbe('tcp-probe-2', [`Route: <sip:${GW()};lr>`], ';tag=x9'));
    const deadline = Date.now() + 8000;
    while (!(buf.includes('tcp-probe-1') && buf.includes('tcp-probe-2') && (buf.match(/SIP\/2\.0 403/g) ?? []).length >= 2) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    sock.destroy();
    const finals = buf.split('\r\n').filter((l) => /^SIP\/2\.0 [2-6]\d\d/.test(l));
    expect(finals.sort()).toEqual(['SIP/2.0 403 Forbidden (Route not issued here)', 'SIP/2.0 403 Forbidden (preloaded Route not accepted)']);
  });

  it('barrier: after all probes the gateway has received exactly the one INVITE alice sends it, and no TCP connection', async () => {
    const res = await alice.call('alice', DOMAIN, 'alice-secret-1', `sip:900@${GW()}`, 'alice-to-gw');
    expect(res.status).toBe(486);
    await gw.waitFor(() => gw.received.some((r) => r.method === 'ACK'), 5000, 'the ACK of the 486 at the gateway');
    expect(gw.received.map((r) => `${r.method} ${r.callId()}`)).toEqual(['INVITE alice-to-gw', 'ACK alice-to-gw']);
    expect(gwTcpConnections).toEqual([]);
  });

  it('alice and bob still call each other, and the refusals are counted by reason', async () => {
    const res = await alice.call('alice', DOMAIN, 'alice-secret-1', `sip:bob@${DOMAIN}`, 'alice-to-bob');
    expect(res.status).toBe(200);
    expect(bob.received.filter((r) => r.method === 'INVITE' && r.callId() === 'alice-to-bob')).toHaveLength(1);
    const denied = await metric('sipd_relay_denied_total');
    const count = (reason: string): number => Number(denied.find((l) => l.includes(`reason="${reason}"`))?.split(' ').pop() ?? 0);
    expect(count('preloaded-route')).toBe(7);
    expect(count('foreign-target')).toBe(2);
    expect(count('dialog-foreign-route')).toBe(3);
    expect(count('dialog-no-token')).toBe(1);
    expect(count('dialog-hop')).toBe(1);
  });
});
