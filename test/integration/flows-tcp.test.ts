/**
 * Flows (RFC 5626 outbound, issue 10 §3) against a real sipd subprocess over real TCP connections on
 * 127.0.0.1. A phone behind NAT or in a browser registers a Contact nobody can reach
 * (`sip:carol@….invalid;transport=tcp`): sipd binds the registration to the connection the REGISTER
 * came in on and routes requests for the AOR over that connection; when the connection closes the
 * binding goes (plain registration) or stays with its flow failed, answered 430 (outbound reg-id).
 * alice calls from UDP; carol and dave are TCP UAs without a listener of their own.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SipResponse } from '../../src/sip/index.js';
import { initSchema, openStores } from '../../src/store/index.js';
import { freePort, SipdProcess } from '../helpers/sipd-process.js';
import { UdpUa } from '../helpers/sip-ua.js';
import { TcpUa } from '../helpers/tcp-ua.js';

const DOMAIN = 'sip.test';
const HOST = '127.0.0.1';
const PW = { alice: 'alice-secret-1', carol: 'carol-secret-1', dave: 'dave-secret-1', erin: 'erin-secret-1' };

let dir: string;
let sipd: SipdProcess;
let port: number;
let metricsPort: number;
let alice: UdpUa;
const tcpUas: TcpUa[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sipd-flows-'));
  const db = { kind: 'sqlite' as const, path: join(dir, 'sipd.sqlite') };
  await initSchema(db);
  const stores = await openStores({ db, location: { db_mode: 'db-only' } });
  for (const [u, p] of Object.entries(PW)) await stores.subscribers.add(u, DOMAIN, p);
  await stores.close();
  port = await freePort(HOST);
  metricsPort = await freePort(HOST);
  sipd = await SipdProcess.start({
    env: {
      SIPD_LISTEN: `udp:${HOST}:${port},tcp:${HOST}:${port}`,
      SIPD_DOMAINS: DOMAIN,
      SIPD_DB: `sqlite:${db.path}`,
      SIPD_METRICS: `${HOST}:${metricsPort}`,
      SIPD_LOG_LEVEL: 'info',
      SIPD_STATE_DIR: join(dir, 'state'),
    },
  });
  alice = await UdpUa.open({ address: HOST, server: { host: HOST, port } });
}, 60_000);

afterAll(async () => {
  await Promise.all([alice?.close(), ...tcpUas.map((u) => u.close())]);
  await sipd?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function tcpUa(address: string, contact: string): Promise<TcpUa> {
  const ua = await TcpUa.connect({ address, server: { host: HOST, port }, contact });
  tcpUas.push(ua);
  return ua;
}

/** The Contacts the registrar holds for `user` (a REGISTER without Contact from alice's UDP socket, 401 dance). */
async function bindings(user: keyof typeof PW): Promise<string[]> {
  const callId = `query-${randomBytes(6).toString('hex')}`;
  const base = { method: 'REGISTER', ruri: `sip:${DOMAIN}`, from: `<sip:${user}@${DOMAIN}>;tag=q1`, to: `<sip:${user}@${DOMAIN}>`, callId };
  const ch = await alice.request(alice.build({ ...base, cseq: 1 }));
  expect(ch.status).toBe(401);
  const ok = await alice.request(alice.build({ ...base, cseq: 2, extra: [UdpUa.credentials(ch, user, PW[user], 'REGISTER', `sip:${DOMAIN}`)] }));
  expect(ok.status).toBe(200);
  return ok.headerValues('contact');
}

/** Open inbound TCP connections as sipd's /metrics reports them. */
async function inboundTcp(): Promise<number> {
  const text = await (await fetch(`http://${HOST}:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('sipd_tcp_connections{direction="inbound"}'));
  return Number(line?.split(' ')[1] ?? NaN);
}

/** Poll (every 100 ms, at most `ms`) until `pred` resolves true. */
async function eventually(pred: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 1000; i++) {
    if (await pred()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** ACK and BYE of a 2xx along its route set (RFC 3261 §12.2), from alice. Returns the BYE's final response. */
async function ackAndBye(ok: SipResponse, callId: string): Promise<SipResponse> {
  const routes = ok.headerValues('record-route').reverse().map((r) => `Route: ${r}`);
  const target = ok.contacts()[0]!;
  const ruri = 'uri' in target ? target.uri.raw : '';
  const dlg = { ruri, from: ok.header('from')!, to: ok.header('to')!, callId };
  await alice.send(alice.build({ method: 'ACK', ...dlg, cseq: 2, extra: routes }));
  return alice.request(alice.build({ method: 'BYE', ...dlg, cseq: 3, extra: routes }));
}

describe('flows of callers', () => {
  it('erin calls from TCP with a .invalid Contact (not registered): bob answers over UDP and his BYE reaches erin on her connection', async () => {
    const bob = await UdpUa.open({ address: '127.0.0.6', server: { host: HOST, port }, answer: true });
    try {
      expect((await bob.register('erin', DOMAIN, PW.erin)).status).toBe(200); // bob's phone is erin's other device
      const contact = `sip:erin@${randomBytes(4).toString('hex')}.invalid;transport=tcp`;
      const erin = await tcpUa('127.0.0.7', `<${contact}>`);
      // erin's softphone calls her other device (the only subscriber bob's UA is registered as)
      const callId = `caller-${randomBytes(4).toString('hex')}`;
      const base = { ruri: `sip:erin@${DOMAIN}`, from: `<sip:erin@${DOMAIN}>;tag=e1`, to: `<sip:erin@${DOMAIN}>`, callId };
      const ch = await erin.request(erin.build({ method: 'INVITE', ...base, cseq: 1, extra: [`Contact: <${contact}>`] }));
      expect(ch.status).toBe(407);
      erin.send(erin.build({ method: 'ACK', ...base, to: ch.header('to')!, cseq: 1 }));
      const ok = await erin.request(
        erin.build({ method: 'INVITE', ...base, cseq: 2, extra: [`Contact: <${contact}>`, UdpUa.credentials(ch, 'erin', PW.erin, 'INVITE', base.ruri)] }),
      );
      expect(ok.status).toBe(200);
      const inv = bob.received.find((r) => r.method === 'INVITE' && r.callId() === callId)!;
      // bob hangs up: BYE to erin's Contact along the route set as he received it
      const bye = await bob.request(
        bob.build({ method: 'BYE', ruri: contact, from: ok.header('to')!, to: ok.header('from')!, callId, cseq: 1, extra: inv.headerValues('record-route').map((r) => `Route: ${r}`) }),
      );
      expect(bye.status).toBe(200);
      expect(erin.received.map((r) => `${r.method} ${r.callId()}`)).toEqual([`BYE ${callId}`]);
    } finally {
      await bob.close();
    }
  });
});

describe('flows: registrations bound to the TCP connection they came in on', () => {
  it('a .invalid Contact over TCP: an INVITE from UDP reaches the UA on its connection, ACK and BYE too; after the connection closes the binding is gone and an INVITE gets 404', async () => {
    const contact = `<sip:carol@${randomBytes(4).toString('hex')}.invalid;transport=tcp>`;
    const carol = await tcpUa('127.0.0.3', contact);
    const reg = await carol.register('carol', DOMAIN, PW.carol);
    expect(reg.status).toBe(200);
    expect(reg.headerValues('contact')).toHaveLength(1);
    // a plain registration: no outbound asked, none answered
    expect(reg.headerValues('require')).toEqual([]);

    const callId = `flow-call-${randomBytes(4).toString('hex')}`;
    const ok = await alice.call('alice', DOMAIN, PW.alice, `sip:carol@${DOMAIN}`, callId);
    expect(ok.status).toBe(200);
    const inv = carol.received.filter((r) => r.method === 'INVITE' && r.callId() === callId);
    expect(inv).toHaveLength(1);
    expect(inv[0]!.uriText).toBe(contact.slice(1, -1));

    // in-dialog requests to the unreachable Contact follow the flow as well
    const bye = await ackAndBye(ok, callId);
    expect(bye.status).toBe(200);
    expect(carol.received.filter((r) => r.callId() === callId).map((r) => r.method)).toEqual(['INVITE', 'ACK', 'BYE']);

    await carol.close();
    await eventually(async () => (await bindings('carol')).length === 0, 10_000, "carol's binding to go with her connection");
    const after = await alice.call('alice', DOMAIN, PW.alice, `sip:carol@${DOMAIN}`);
    expect(after.status).toBe(404);
  });

  it('outbound: Supported: outbound with +sip.instance and reg-id → 200 with Require: outbound; two flows (reg-id 1 and 2) both kept; a closed flow is skipped; all closed → 430 Flow Failed and the bindings stay', async () => {
    const instance = `"<urn:uuid:${randomBytes(8).toString('hex')}-0000-4000-8000-000000000001>"`;
    // one Contact URI per flow: the location store keys a binding by AOR + Contact, so two flows
    // under the very same URI would be one binding (a known limit, see the registrar)
    const host = `${randomBytes(4).toString('hex')}.invalid`;
    const host2 = `${randomBytes(4).toString('hex')}.invalid`;
    const d1 = await tcpUa('127.0.0.4', `<sip:dave@${host};transport=tcp;ob>;reg-id=1;+sip.instance=${instance}`);
    const d2 = await tcpUa('127.0.0.4', `<sip:dave@${host2};transport=tcp;ob>;reg-id=2;+sip.instance=${instance}`);
    const r1 = await d1.register('dave', DOMAIN, PW.dave, ['Supported: path, outbound']);
    expect(r1.status).toBe(200);
    expect(r1.headerValues('require').join(',').toLowerCase()).toContain('outbound');
    const r2 = await d2.register('dave', DOMAIN, PW.dave, ['Supported: outbound']);
    expect(r2.status).toBe(200);
    expect(r2.headerValues('require').join(',').toLowerCase()).toContain('outbound');
    // two flows of one instance: two bindings
    expect(r2.headerValues('contact')).toHaveLength(2);

    const c1 = `both-${randomBytes(4).toString('hex')}`;
    expect((await alice.call('alice', DOMAIN, PW.alice, `sip:dave@${DOMAIN}`, c1)).status).toBe(200);
    // forked over both flows (each UA answers; the first 2xx wins)
    await d1.waitFor(() => d1.received.some((r) => r.method === 'INVITE' && r.callId() === c1), 5000, 'the INVITE on flow 1');
    await d2.waitFor(() => d2.received.some((r) => r.method === 'INVITE' && r.callId() === c1), 5000, 'the INVITE on flow 2');

    const before = await inboundTcp();
    await d1.close();
    await eventually(async () => (await inboundTcp()) === before - 1, 10_000, 'sipd to see flow 1 closed');
    const c2 = `one-${randomBytes(4).toString('hex')}`;
    expect((await alice.call('alice', DOMAIN, PW.alice, `sip:dave@${DOMAIN}`, c2)).status).toBe(200);
    expect(d2.received.filter((r) => r.method === 'INVITE' && r.callId() === c2)).toHaveLength(1);

    await d2.close();
    await eventually(async () => (await inboundTcp()) === before - 2, 10_000, 'sipd to see flow 2 closed');
    const c3 = `none-${randomBytes(4).toString('hex')}`;
    const failed = await alice.call('alice', DOMAIN, PW.alice, `sip:dave@${DOMAIN}`, c3);
    expect(failed.status).toBe(430);
    // RFC 5626: the UA re-registers over a new flow; until then (or expiry) the bindings stay
    expect(await bindings('dave')).toHaveLength(2);

    // a new flow of the same instance and reg-id takes the binding over
    const d3 = await tcpUa('127.0.0.4', `<sip:dave@${host};transport=tcp;ob>;reg-id=1;+sip.instance=${instance}`);
    expect((await d3.register('dave', DOMAIN, PW.dave, ['Supported: outbound'])).status).toBe(200);
    const c4 = `again-${randomBytes(4).toString('hex')}`;
    expect((await alice.call('alice', DOMAIN, PW.alice, `sip:dave@${DOMAIN}`, c4)).status).toBe(200);
    expect(d3.received.filter((r) => r.method === 'INVITE' && r.callId() === c4)).toHaveLength(1);
  });
});
