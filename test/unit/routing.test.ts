/**
 * The routing pipeline (src/core/routing.ts) over the real transaction layer, auth and registrar,
 * with a fake transport: what is answered, statefully or not, and what is forwarded.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAuthHeader, SipRequest, SipResponse } from '../../src/sip/index.js';
import {
  authedRequest,
  createHarness,
  credentials,
  DOMAIN,
  FOREIGN,
  lines,
  only,
  parseRequest,
  OUR_RR,
  request,
  requests,
  responses,
  udpSrc,
  viaOf,
  withoutTokens,
  type Harness,
  type Sent,
} from '../helpers/core-harness.js';

const ALICE = udpSrc('192.0.2.10', 5060);
const BOB = udpSrc('192.0.2.20', 5062);
const STRANGER = udpSrc('203.0.113.5', 5060);

function corpus(name: string): string {
  return readFileSync(new URL(`../fixtures/conformance/rfc4475/${name}.sip`, import.meta.url), 'latin1');
}

async function expectNoLeaks(h: Harness): Promise<void> {
  const s = await h.drain();
  expect(s).toEqual({ server: 0, client: 0, lingering: 0, timers: 0 });
  expect(h.proxy.activeContexts).toBe(0);
}

function options(o: { ruri?: string; extra?: string[]; maxForwards?: number | null; callId?: string; src?: typeof ALICE } = {}): string {
  return request({
    method: 'OPTIONS',
    ruri: o.ruri ?? `sip:bob@${DOMAIN}`,
    from: `<sip:carol@${FOREIGN}>;tag=o1`,
    to: `<${o.ruri ?? `sip:bob@${DOMAIN}`}>`,
    callId: o.callId ?? 'opt-1',
    cseq: 1,
    via: viaOf(o.src ?? STRANGER),
    maxForwards: o.maxForwards,
    extra: o.extra,
  });
}

/** the one response sent, sent statelessly to the source. */
function reply(out: Sent[], _h: Harness): SipResponse {
  const res = only(out, SipResponse);
  return res;
}

// ------------------------------------------------------------------------------------------ sanity

describe('sanity (RFC 3261 §16.3, Kamailio sanity_check)', () => {
  it('400 for a request without mandatory headers (no From)', async () => {
    const h = await createHarness();
    const text = ['OPTIONS sip:bob@example.com SIP/2.0', `Via: ${viaOf(STRANGER)}`, 'Max-Forwards: 70', 'To: <sip:bob@example.com>', 'Call-ID: nofrom', 'CSeq: 1 OPTIONS', 'Content-Length: 0', '', ''].join('\r\n');
    const out = await h.request(text, STRANGER);
    const res = reply(out, h);
    expect(res.status).toBe(400);
    expect(out[0]!.target).toMatchObject({ transport: 'udp', address: STRANGER.address, port: STRANGER.port });
    await expectNoLeaks(h);
  });

  it('400 for a CSeq whose method differs from the request method... is 400 or 501 (mismatch01 / mismatch02)', async () => {
    const h = await createHarness();
    // mismatch02: unknown method NEWMETHOD with CSeq INVITE → 501
    const res = reply(await h.request(corpus('mismatch02'), STRANGER), h);
    expect(res.status).toBe(501);
    // a known method with another CSeq method → 400
    const text = options({ callId: 'mm1' }).replace('CSeq: 1 OPTIONS', 'CSeq: 1 INVITE');
    expect(reply(await h.request(text, STRANGER), h).status).toBe(400);
    await expectNoLeaks(h);
  });

  it('400 for a non-numeric CSeq', async () => {
    const h = await createHarness();
    const text = options({ callId: 'badcseq' }).replace('CSeq: 1 OPTIONS', 'CSeq: abc OPTIONS');
    const out = await h.request(text, STRANGER);
    expect(reply(out, h).status).toBe(400);
  });

  it('416 for an unknown Request-URI scheme (RFC 4475 unkscm)', async () => {
    const h = await createHarness();
    const res = reply(await h.request(corpus('unkscm'), STRANGER), h);
    expect(res.status).toBe(416);
    expect(res.callId()).toBe('unkscm.nasdfasser0q239nwsdfasdkl34');
  });

  it('420 with Unsupported listing the unknown Proxy-Require tags (RFC 4475 bext01)', async () => {
    const h = await createHarness();
    const res = reply(await h.request(corpus('bext01'), STRANGER), h);
    expect(res.status).toBe(420);
    const unsupported = res.headerValues('unsupported').flatMap((v) => v.split(',')).map((s) => s.trim());
    expect(unsupported.sort()).toEqual(['noProxiesSupportThis', 'norDoAnyProxiesSupportThis'].sort());
    // Require is for the UAS, not for us
    expect(unsupported).not.toContain('nothingSupportsThis');
  });

  it('483 for Max-Forwards 0 (RFC 4475 zeromf), also for OPTIONS to ourselves', async () => {
    const h = await createHarness();
    expect(reply(await h.request(corpus('zeromf'), STRANGER), h).status).toBe(483);
    expect(reply(await h.request(options({ ruri: 'sip:127.0.0.1:5060', maxForwards: 0, callId: 'mf0' }), STRANGER), h).status).toBe(483);
    await expectNoLeaks(h);
  });

  it('505 for another SIP version (RFC 4475 badvers)', async () => {
    const h = await createHarness();
    const res = reply(await h.request(corpus('badvers'), STRANGER), h);
    expect(res.status).toBe(505);
  });

  it('an ACK is never answered, even when malformed or with Max-Forwards 0', async () => {
    const h = await createHarness();
    const ack = (extra: Partial<Parameters<typeof request>[0]>): string =>
      request({ method: 'ACK', ruri: `sip:bob@${DOMAIN}`, from: `<sip:alice@${DOMAIN}>;tag=x`, to: `<sip:bob@${DOMAIN}>`, callId: 'ack-1', cseq: 1, via: viaOf(ALICE), ...extra });
    expect(await h.request(ack({ maxForwards: 0 }), ALICE)).toEqual([]);
    expect(await h.request(ack({}).replace('CSeq: 1 ACK', 'CSeq: 1 INVITE'), ALICE)).toEqual([]);
    expect(await h.request(ack({ ruri: 'tel:+15551234' }), ALICE)).toEqual([]);
    // an initial ACK that matches nothing is dropped as well
    expect(await h.request(ack({}), ALICE)).toEqual([]);
    expect(h.handled.map((x) => x.result)).toEqual(['dropped', 'dropped', 'dropped', 'dropped']);
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ keepalive

describe('OPTIONS to the server itself', () => {
  for (const ruri of ['sip:127.0.0.1:5060', 'sip:127.0.0.1', `sip:${DOMAIN}`]) {
    it(`${ruri} → 200 with Allow, Accept and Supported, statelessly`, async () => {
      const h = await createHarness();
      const out = await h.request(options({ ruri }), STRANGER);
      const res = reply(out, h);
      expect(res.status).toBe(200);
      expect(res.header('allow')).toContain('INVITE');
      expect(res.header('allow')).toContain('OPTIONS');
      expect(res.header('accept')).toBe('application/sdp');
      expect(res.has('supported')).toBe(true);
      expect(res.toTag()).toBeDefined();
      expect(h.tx.stats().server).toBe(0);
      await expectNoLeaks(h);
    });
  }

  it('OPTIONS to a user is not answered by us (it is routed: 404 when not registered)', async () => {
    const h = await createHarness();
    const res = reply(await h.request(options(), STRANGER), h);
    expect(res.status).toBe(404);
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ REGISTER

function register(o: { user?: string; domain?: string; ruri?: string; contact?: string; cseq?: number; callId?: string; extra?: string[]; src?: typeof ALICE } = {}): string {
  const user = o.user ?? 'alice';
  const domain = o.domain ?? DOMAIN;
  return request({
    method: 'REGISTER',
    ruri: o.ruri ?? `sip:${domain}`,
    from: `<sip:${user}@${domain}>;tag=reg`,
    to: `<sip:${user}@${domain}>`,
    callId: o.callId ?? `reg-${user}`,
    cseq: o.cseq ?? 1,
    via: viaOf(o.src ?? ALICE),
    extra: [`Contact: ${o.contact ?? '<sip:alice@192.0.2.10:5060>'}`, ...(o.extra ?? [])],
  });
}

describe('REGISTER', () => {
  it('without credentials: 401 with WWW-Authenticate realm=domain, sent statelessly', async () => {
    const h = await createHarness();
    const out = await h.request(register(), ALICE);
    const res = reply(out, h);
    expect(res.status).toBe(401);
    const ch = parseAuthHeader(res.header('www-authenticate')!);
    expect(ch.scheme).toBe('Digest');
    expect(ch.params.get('realm')).toBe(DOMAIN);
    // a stateless nonce: base64url of timestamp, sequence, random and HMAC (never empty or reused)
    expect(ch.params.get('nonce')).toMatch(/^[A-Za-z0-9_-]{32,}$/);
    expect(res.toTag()).toBeDefined();
    expect(out[0]!.target).toMatchObject({ address: ALICE.address, port: ALICE.port });
    expect(h.tx.stats().server).toBe(0);
    expect(await h.locations.lookup(`alice@${DOMAIN}`)).toEqual([]);
    await expectNoLeaks(h);
  });

  it('with correct credentials: 200 listing the binding, and the binding is stored', async () => {
    const h = await createHarness();
    const ch = reply(await h.request(register(), ALICE), h);
    const out = await h.request(register({ cseq: 2, extra: [credentials(ch, 'www', 'alice', 'alicepw', 'REGISTER', `sip:${DOMAIN}`)] }), ALICE);
    const res = reply(out, h);
    expect(res.status).toBe(200);
    expect(res.header('contact')).toMatch(/^<sip:alice@192\.0\.2\.10:5060>;expires=\d+/);
    const bs = await h.locations.lookup(`alice@${DOMAIN}`);
    expect(bs.map((b) => b.contact)).toEqual(['sip:alice@192.0.2.10:5060']);
    // answered through a server transaction, which ended with the 200 and left a linger entry (a
    // retransmission gets the same 200 without a new check)
    expect(h.tx.stats()).toMatchObject({ server: 0, lingering: 1 });
    await expectNoLeaks(h);
  });

  it('a retransmission of the authenticated REGISTER is answered from the transaction, not rejected as a replay', async () => {
    const h = await createHarness();
    const ch = reply(await h.request(register(), ALICE), h);
    const text = register({ cseq: 2, extra: [credentials(ch, 'www', 'alice', 'alicepw', 'REGISTER', `sip:${DOMAIN}`)] });
    const first = reply(await h.request(text, ALICE), h);
    expect(first.status).toBe(200);
    // our 200 was lost: the same REGISTER (same branch) again, answered by the linger entry of the
    // ended transaction with the very same 200, never a 401 stale (verify() would take it for a replay)
    for (let i = 0; i < 3; i++) {
      await h.advance(10_000);
      const again = reply(await h.request(text, ALICE), h);
      expect(again.status).toBe(200);
      expect(again.has('www-authenticate')).toBe(false);
      expect(again.toBuffer().equals(first.toBuffer())).toBe(true);
    }
    expect(h.tx.stats()).toMatchObject({ server: 0, lingering: 1 });
    // what the entry protects against: once Timer J is over, the copy reaches verify() as a replay
    await h.advance(64 * 500);
    expect(h.tx.stats().lingering).toBe(0);
    const late = reply(await h.request(text, ALICE), h);
    expect(late.status).toBe(401);
    expect(late.header('www-authenticate')).toMatch(/stale=true/i);
    await expectNoLeaks(h);
  });

  it('wrong password: 401 again, nothing stored', async () => {
    const h = await createHarness();
    const ch = reply(await h.request(register(), ALICE), h);
    const res = reply(await h.request(register({ cseq: 2, extra: [credentials(ch, 'www', 'alice', 'wrong', 'REGISTER', `sip:${DOMAIN}`)] }), ALICE), h);
    expect(res.status).toBe(401);
    expect(res.has('www-authenticate')).toBe(true);
    expect(await h.locations.lookup(`alice@${DOMAIN}`)).toEqual([]);
    expect(h.tx.stats().server).toBe(0);
    await expectNoLeaks(h);
  });

  it('credentials of another user than the To user: 403', async () => {
    const h = await createHarness();
    const ch = reply(await h.request(register(), ALICE), h);
    const res = reply(await h.request(register({ cseq: 2, extra: [credentials(ch, 'www', 'bob', 'bobpw', 'REGISTER', `sip:${DOMAIN}`)] }), ALICE), h);
    expect(res.status).toBe(403);
    expect(await h.locations.lookup(`alice@${DOMAIN}`)).toEqual([]);
  });

  it('REGISTER for a foreign domain from an untrusted source is not relayed (403), nothing stored', async () => {
    const h = await createHarness();
    const out = await h.request(register({ user: 'carol', domain: FOREIGN, ruri: 'sip:192.0.2.99', contact: '<sip:carol@203.0.113.5>', src: STRANGER }), STRANGER);
    expect(requests(out)).toEqual([]);
    expect(reply(out, h).status).toBe(403);
    await expectNoLeaks(h);
  });

  it('REGISTER with a local From but a foreign To and Request-URI is not relayed either (403)', async () => {
    const h = await createHarness();
    const text = register({ user: 'carol', domain: FOREIGN, ruri: 'sip:192.0.2.99', contact: '<sip:carol@192.0.2.10>' }).replace(
      `From: <sip:carol@${FOREIGN}>;tag=reg`,
      `From: <sip:alice@${DOMAIN}>;tag=reg`,
    );
    const out = await h.request(text, ALICE);
    expect(requests(out)).toEqual([]);
    expect(reply(out, h).status).toBe(403);
    await expectNoLeaks(h);
  });

  it('REGISTER for a foreign domain from a trusted source is relayed to the Request-URI', async () => {
    const h = await createHarness({ trusted: ['203.0.113.0/24'] });
    const out = await h.request(register({ user: 'carol', domain: FOREIGN, ruri: 'sip:192.0.2.99', contact: '<sip:carol@203.0.113.5>', src: STRANGER }), STRANGER);
    const fwd = requests(out, 'REGISTER');
    expect(fwd).toHaveLength(1);
    expect(fwd[0]!.target).toMatchObject({ address: '192.0.2.99', port: 5060 });
    expect(fwd[0]!.msg.has('record-route')).toBe(false);
  });

  it('REGISTER sent to us for a foreign AOR: 403 from the registrar after no challenge', async () => {
    const h = await createHarness();
    const out = await h.request(register({ user: 'carol', domain: FOREIGN, ruri: `sip:${DOMAIN}`, contact: '<sip:carol@203.0.113.5>', src: STRANGER }), STRANGER);
    const res = reply(out, h);
    expect(res.status).toBe(403);
    expect((await h.locations.list()).length).toBe(0);
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ INVITE policy

describe('INVITE: authentication and target set', () => {
  it('from a local user without credentials: 407 with Proxy-Authenticate realm=domain, statelessly', async () => {
    const h = await createHarness();
    const out = await h.request(
      request({ method: 'INVITE', ruri: `sip:bob@${DOMAIN}`, from: `<sip:alice@${DOMAIN}>;tag=a`, to: `<sip:bob@${DOMAIN}>`, callId: 'inv-407', cseq: 1, via: viaOf(ALICE), extra: ['Contact: <sip:alice@192.0.2.10>'] }),
      ALICE,
    );
    const res = reply(out, h);
    expect(res.status).toBe(407);
    expect(parseAuthHeader(res.header('proxy-authenticate')!).params.get('realm')).toBe(DOMAIN);
    expect(h.tx.stats().server).toBe(0);
    await expectNoLeaks(h);
  });

  it('the ACK of the 407 is absorbed: nothing sent', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', BOB);
    // authedRequest sends the ACK of the 407 and throws if anything was sent for it
    const { out } = await authedRequest(h, { src: ALICE });
    expect(requests(out, 'INVITE')).toHaveLength(1);
    expect(h.handled.some((x) => x.method === 'ACK' && x.result === 'absorbed')).toBe(true);
  });

  it('with credentials: 100 Trying first, then forwarded to the contact; our credentials removed', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', BOB);
    const { out } = await authedRequest(h, { src: ALICE, extra: ['Proxy-Authorization: Digest username="alice", realm="elsewhere.org", nonce="n", uri="sip:x", response="00"'] });
    expect(lines(out)).toEqual(['SIP/2.0 100 Trying', 'INVITE sip:bob@192.0.2.20:5062 SIP/2.0']);
    expect(out[0]!.target).toMatchObject({ address: ALICE.address, port: ALICE.port });
    const fwd = out[1]!.msg as SipRequest;
    const pa = fwd.headerValues('proxy-authorization');
    expect(pa).toHaveLength(1);
    expect(pa[0]).toContain('realm="elsewhere.org"');
    expect(fwd.recordRoutes().map((r) => r.raw ?? '')).toBeDefined();
    expect(withoutTokens(fwd.headerValues('record-route'))).toEqual([OUR_RR]);
    expect(out[1]!.target).toMatchObject({ transport: 'udp', address: '192.0.2.20', port: 5062 });
  });

  it('to an unregistered user of our domain: 100 then 404', async () => {
    const h = await createHarness();
    const { out } = await authedRequest(h, { src: ALICE, ruri: `sip:nobody@${DOMAIN}` });
    expect(lines(out)).toEqual(['SIP/2.0 100 Trying', 'SIP/2.0 404 Not Found']);
    // the ACK of the 404 is absorbed by the server transaction
    const res = out[1]!.msg as SipResponse;
    const req = parseAckFor(res, `sip:nobody@${DOMAIN}`);
    expect(await h.request(req, ALICE)).toEqual([]);
    await expectNoLeaks(h);
  });

  it('a non-INVITE request to an unregistered user: 404 (stateful, no 100)', async () => {
    const h = await createHarness();
    const { out } = await authedRequest(h, { src: ALICE, ruri: `sip:nobody@${DOMAIN}`, method: 'MESSAGE' });
    expect(lines(out)).toEqual(['SIP/2.0 404 Not Found']);
    await expectNoLeaks(h);
  });

  it('to our domain without a user part: 484', async () => {
    const h = await createHarness();
    const { out } = await authedRequest(h, { src: ALICE, ruri: `sip:${DOMAIN}` });
    expect(lines(out)).toEqual(['SIP/2.0 100 Trying', 'SIP/2.0 484 Address Incomplete']);
    await expectNoLeaks(h);
  });

  it('from a foreign domain to a foreign domain: 403 (not an open relay)', async () => {
    const h = await createHarness();
    const out = await h.request(
      request({ method: 'INVITE', ruri: 'sip:dave@192.0.2.99', from: `<sip:carol@${FOREIGN}>;tag=c`, to: '<sip:dave@192.0.2.99>', callId: 'relay-1', cseq: 1, via: viaOf(STRANGER) }),
      STRANGER,
    );
    expect(reply(out, h).status).toBe(403);
    await expectNoLeaks(h);
  });

  it('from a foreign domain to a local user: no challenge, forwarded', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', BOB);
    const out = await h.request(
      request({ method: 'INVITE', ruri: `sip:bob@${DOMAIN}`, from: `<sip:carol@${FOREIGN}>;tag=c`, to: `<sip:bob@${DOMAIN}>`, callId: 'in-1', cseq: 1, via: viaOf(STRANGER) }),
      STRANGER,
    );
    expect(requests(out, 'INVITE')).toHaveLength(1);
    expect(requests(out, 'INVITE')[0]!.target).toMatchObject({ address: '192.0.2.20', port: 5062 });
  });

  it('authenticated local user to a foreign domain: forwarded to the Request-URI', async () => {
    const h = await createHarness();
    const { out } = await authedRequest(h, { src: ALICE, ruri: 'sip:dave@192.0.2.99:5070' });
    const inv = requests(out, 'INVITE');
    expect(inv).toHaveLength(1);
    expect(inv[0]!.msg.uriText).toBe('sip:dave@192.0.2.99:5070');
    expect(inv[0]!.target).toMatchObject({ transport: 'udp', address: '192.0.2.99', port: 5070 });
  });

  it('from a trusted IP: no challenge, foreign to foreign is relayed', async () => {
    const h = await createHarness({ trusted: ['203.0.113.0/24'] });
    const out = await h.request(
      request({ method: 'INVITE', ruri: 'sip:dave@192.0.2.99', from: `<sip:alice@${DOMAIN}>;tag=c`, to: '<sip:dave@192.0.2.99>', callId: 'tr-1', cseq: 1, via: viaOf(STRANGER) }),
      STRANGER,
    );
    expect(responses(out, 407)).toEqual([]);
    expect(requests(out, 'INVITE')).toHaveLength(1);
  });

  it('a foreign target that does not resolve: 100, then a final error upstream (no route)', async () => {
    const h = await createHarness();
    const { out } = await authedRequest(h, { src: ALICE, ruri: 'sip:dave@unresolvable.invalid' });
    expect(lines(out)[0]).toBe('SIP/2.0 100 Trying');
    const finals = responses(out).filter((s) => s.msg.status >= 300);
    expect(finals).toHaveLength(1);
    expect(finals[0]!.msg.status).toBeGreaterThanOrEqual(400);
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ loops

describe('loop detection (§16.3 step 4)', () => {
  it('482 when a request we forwarded comes back unchanged; a spiral (new R-URI) is forwarded', async () => {
    // the next hop is trusted, so that the spiral is not challenged again (our credentials were consumed)
    const h = await createHarness({ trusted: ['192.0.2.99'] });
    const { out } = await authedRequest(h, { src: ALICE, ruri: 'sip:dave@192.0.2.99' });
    const fwd = requests(out, 'INVITE')[0]!.msg;
    expect(fwd.topVia()!.branch).toMatch(/^z9hG4bKsd/);
    // the next hop sends it straight back to us
    const back = udpSrc('192.0.2.99', 5060);
    const looped = await h.request(fwd.clone(), back);
    expect(lines(looped)).toEqual(['SIP/2.0 482 Loop Detected']);
    expect(looped[0]!.target).toMatchObject({ address: '192.0.2.99' });
    // the same request retargeted (a spiral) is not a loop
    const spiral = fwd.clone();
    spiral.setUri('sip:dave@192.0.2.98');
    const sp = await h.request(spiral, back);
    expect(requests(sp, 'INVITE')).toHaveLength(1);
    expect(requests(sp, 'INVITE')[0]!.msg.vias()).toHaveLength(3);
  });
});

// ------------------------------------------------------------------------------------------ CANCEL

describe('CANCEL routing', () => {
  it('a CANCEL matching no INVITE: 481', async () => {
    const h = await createHarness();
    const out = await h.request(
      request({ method: 'CANCEL', ruri: `sip:bob@${DOMAIN}`, from: `<sip:alice@${DOMAIN}>;tag=a`, to: `<sip:bob@${DOMAIN}>`, callId: 'nothing', cseq: 1, via: viaOf(ALICE) }),
      ALICE,
    );
    expect(reply(out, h).status).toBe(481);
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ scanners

describe('scanner drop (User-Agent list)', () => {
  const SCANNERS = ['friendly-scanner', 'sipvicious', 'sipcli'];

  it('a request from a scanner User-Agent is dropped: no answer, no transaction, no request log, counted', async () => {
    const h = await createHarness({ scanners: SCANNERS, users: [['alice', 'pw-alice']] });
    const reg = request({
      method: 'REGISTER',
      ruri: `sip:${DOMAIN}`,
      from: `<sip:alice@${DOMAIN}>;tag=s1`,
      to: `<sip:alice@${DOMAIN}>`,
      callId: 'scan-reg',
      cseq: 1,
      via: viaOf(STRANGER),
      extra: ['User-Agent: friendly-scanner', `Contact: <sip:alice@${STRANGER.address}>`],
    });
    expect(await h.request(reg, STRANGER)).toEqual([]);
    const inv = request({
      method: 'INVITE',
      ruri: `sip:100@${DOMAIN}`,
      from: `<sip:100@${FOREIGN}>;tag=s2`,
      to: `<sip:100@${DOMAIN}>`,
      callId: 'scan-inv',
      cseq: 1,
      via: viaOf(STRANGER),
      extra: ['User-Agent: SIPVicious 0.3'],
    });
    expect(await h.request(inv, STRANGER)).toEqual([]);
    expect(await h.request(options({ callId: 'scan-opt', extra: ['User-Agent: sipcli/v1.8'] }), STRANGER)).toEqual([]);
    expect(h.drops).toEqual(['scanner', 'scanner', 'scanner']);
    expect(h.handled).toEqual([]);
    expect(h.tx.stats()).toMatchObject({ server: 0, client: 0 });
    await expectNoLeaks(h);
  });

  it('other User-Agents are served; without a list nothing is dropped', async () => {
    const h = await createHarness({ scanners: SCANNERS });
    expect(reply(await h.request(options({ ruri: 'sip:127.0.0.1', callId: 'ua1', extra: ['User-Agent: Linphone/5.2'] }), STRANGER), h).status).toBe(200);
    expect(reply(await h.request(options({ ruri: 'sip:127.0.0.1', callId: 'ua2' }), STRANGER), h).status).toBe(200);
    const off = await createHarness();
    expect(reply(await off.request(options({ ruri: 'sip:127.0.0.1', callId: 'ua3', extra: ['User-Agent: friendly-scanner'] }), STRANGER), off).status).toBe(200);
    expect([...h.drops, ...off.drops]).toEqual([]);
  });
});

/** the ACK a UAC sends for a non-2xx final (same branch as the INVITE it answers) */
function parseAckFor(res: SipResponse, ruri: string): string {
  const via = res.topVia()!;
  return request({
    method: 'ACK',
    ruri,
    from: res.header('from')!,
    to: res.header('to')!,
    callId: res.callId()!,
    cseq: res.cseq()!.seq,
    via: `SIP/2.0/UDP ${via.host}:${via.port ?? 5060};branch=${via.branch};rport`,
  });
}

// ------------------------------------------------------------------------------------------ store unavailable

describe('location store unavailable (db-only with the database down)', () => {
  // a db-only store has only lookup() (it rejects); a store answering from memory has lookupNow() (it throws)
  for (const answer of ['lookup', 'lookupNow'] as const) {
    it(`an INVITE for a local user gets 503 with Retry-After, not 500 (the store's ${answer} fails)`, async () => {
      const { StoreError } = await import('../../src/store/index.js');
      const h = await createHarness();
      await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', BOB);
      const down = new StoreError('UNREACHABLE', 'cannot reach MySQL');
      const failing = answer === 'lookup' ? { lookupNow: undefined, lookup: () => Promise.reject(down) } : { lookupNow: () => { throw down; } };
      const real = { lookup: h.locations.lookup, lookupNow: h.locations.lookupNow };
      Object.assign(h.locations, failing);
      const out = await h.request(
        request({ method: 'INVITE', ruri: `sip:bob@${DOMAIN}`, from: `<sip:carol@${FOREIGN}>;tag=c`, to: `<sip:bob@${DOMAIN}>`, callId: `down-${answer}`, cseq: 1, via: viaOf(STRANGER) }),
        STRANGER,
      );
      const finals = responses(out).filter((s) => s.msg.status >= 200);
      expect(finals.map((s) => s.msg.status)).toEqual([503]);
      expect(finals[0]!.msg.header('retry-after')).toBe('5');
      expect(requests(out)).toEqual([]);
      Object.assign(h.locations, real);
      await expectNoLeaks(h);
    });
  }
});

describe('a retransmission while its request is still being handled', () => {
  it('is dropped (retransmission-in-flight) while the request waits on the credential store; one 200, and handled again once done', async () => {
    const h = await createHarness();
    const base = { method: 'REGISTER', ruri: `sip:${DOMAIN}`, from: `<sip:alice@${DOMAIN}>;tag=ra`, to: `<sip:alice@${DOMAIN}>`, callId: 'inflight-1', via: viaOf(ALICE) };
    const ch = only(await h.request(request({ ...base, cseq: 1, extra: ['Contact: <sip:alice@192.0.2.10:5060>'] }), ALICE), SipResponse);
    expect(ch.status).toBe(401);
    // the credentials are not cached: verify waits on the subscriber store
    const second = request({ ...base, cseq: 2, via: viaOf(ALICE, 'z9hG4bK-inflight'), extra: ['Contact: <sip:alice@192.0.2.10:5060>', credentials(ch, 'www', 'alice', 'alicepw', 'REGISTER', `sip:${DOMAIN}`)] });
    const arrive = (): void => {
      const m = parseRequest(second);
      m.setViaReceived(undefined, 5060);
      h.tx.receiveRequest(m, ALICE);
    };
    arrive();
    expect(h.router.busy).toBe(1);
    arrive();
    expect(h.drops).toEqual(['retransmission-in-flight']);
    await h.settle();
    expect(h.router.busy).toBe(0);
    expect(responses(h.take()).map((s) => s.msg.status)).toEqual([200]);
    // done: a retransmission now is the server transaction's (the stored 200 again), not dropped
    arrive();
    await h.settle();
    expect(h.drops).toEqual(['retransmission-in-flight']);
    expect(responses(h.take()).map((s) => s.msg.status)).toEqual([200]);
  });
});
