/**
 * Not an open relay (issue 8), at the level of the routing pipeline: every path by which an
 * unauthenticated, untrusted sender could make sipd deliver a request to a host of its choosing
 * (foreign Request-URI, preloaded Route, strict-route fix-up, maddr, our own address, fake dialogs,
 * a real dialog's token used towards a third host), and on the other side what authenticated and
 * trusted users must still be able to do. Harness: our domain is example.com, sipd is
 * 127.0.0.1:5060 (not one of our domains), the "PSTN gateway" is GW.
 */
import { describe, expect, it } from 'vitest';
import { SipRequest, SipResponse } from '../../src/sip/index.js';
import {
  answer,
  authedRequest,
  createHarness,
  DOMAIN,
  FOREIGN,
  lines,
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
const OUTSIDER = udpSrc('203.0.113.5', 5060);
const THIRD = udpSrc('203.0.113.77', 5060);
const GW = { address: '198.51.100.50', port: 5060 };
const GW_URI = `sip:${GW.address}:${GW.port}`;

/** nothing at all was sent towards the gateway */
function nothingTo(out: readonly Sent[], where: { address: string }): void {
  expect(out.filter((s) => s.target.address === where.address).map((s) => s.msg.toString().split('\r\n')[0])).toEqual([]);
}

function finalStatuses(out: readonly Sent[]): number[] {
  return responses(out)
    .filter((s) => s.msg.status >= 200)
    .map((s) => s.msg.status);
}

async function withBob(opts: Parameters<typeof createHarness>[0] = {}): Promise<Harness> {
  const h = await createHarness(opts);
  await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', BOB);
  return h;
}

function outsider(o: { method?: string; ruri: string; to?: string; routes?: string[]; callId: string; extra?: string[]; toTag?: string; from?: string }): string {
  const method = o.method ?? 'INVITE';
  return request({
    method,
    ruri: o.ruri,
    from: o.from ?? `<sip:mallory@${FOREIGN}>;tag=m1`,
    to: (o.to ?? `<${o.ruri}>`) + (o.toTag !== undefined ? `;tag=${o.toTag}` : ''),
    callId: o.callId,
    cseq: 1,
    via: viaOf(OUTSIDER),
    extra: [...(o.routes ?? []).map((r) => `Route: ${r}`), `Contact: <sip:mallory@${OUTSIDER.address}:${OUTSIDER.port}>`, ...(o.extra ?? [])],
  });
}

describe('initial requests from an unauthenticated, untrusted source', () => {
  for (const method of ['INVITE', 'MESSAGE', 'OPTIONS', 'REGISTER']) {
    it(`${method} to a local user with a preloaded Route to the gateway: 403, nothing reaches the gateway or the user`, async () => {
      const h = await withBob();
      const to = method === 'REGISTER' ? `<sip:mallory@${FOREIGN}>` : undefined;
      const out = await h.request(outsider({ method, ruri: `sip:bob@${DOMAIN}`, to, routes: [`<${GW_URI};lr>`], callId: `pre-${method}` }), OUTSIDER);
      expect(lines(out)).toEqual(['SIP/2.0 403 Forbidden (preloaded Route not accepted)']);
      expect(requests(out)).toEqual([]);
      expect(h.denials).toEqual(['preloaded-route']);
    });
  }

  it('our own Route first, then the gateway: still 403 (only our entries are taken off)', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: `sip:bob@${DOMAIN}`, routes: [OUR_RR, `<${GW_URI};lr>`], callId: 'pre-2' }), OUTSIDER);
    expect(finalStatuses(out)).toEqual([403]);
    nothingTo(out, GW);
  });

  it('strict-route trick: R-URI is sipd itself, the last Route names the gateway and the number → 403', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: 'sip:127.0.0.1:5060', routes: [`<sip:900@${GW.address}:${GW.port}>`], callId: 'strict-1' }), OUTSIDER);
    expect(finalStatuses(out)).toEqual([403]);
    nothingTo(out, GW);
    expect(h.denials).toEqual(['foreign-target']);
  });

  it('strict-route trick with our Route in front: the fix-up does not widen what may be reached → 403', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: 'sip:127.0.0.1:5060;lr', routes: [OUR_RR, `<sip:900@${GW.address}:${GW.port}>`], callId: 'strict-2' }), OUTSIDER);
    expect(finalStatuses(out)).toEqual([403]);
    nothingTo(out, GW);
  });

  it('a foreign Request-URI (the gateway and a number): 403', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: `sip:900@${GW.address}:${GW.port}`, callId: 'ruri-1' }), OUTSIDER);
    expect(lines(out)).toEqual(['SIP/2.0 403 Forbidden (not relaying)']);
    expect(h.denials).toEqual(['foreign-target']);
  });

  // targets named by host name take the next-hop path that waits for resolve(); IP literals (the
  // tests above) are answered at once (resolveNow): both must refuse alike
  it('by host name: a preloaded Route and a foreign Request-URI naming a name of the gateway: 403, nothing reaches it', async () => {
    const h = await withBob({ hosts: { 'gw.example': GW.address } });
    const pre = await h.request(outsider({ ruri: `sip:bob@${DOMAIN}`, routes: ['<sip:gw.example;lr>'], callId: 'name-pre' }), OUTSIDER);
    expect(lines(pre)).toEqual(['SIP/2.0 403 Forbidden (preloaded Route not accepted)']);
    const ruri = await h.request(outsider({ ruri: 'sip:900@gw.example', callId: 'name-ruri' }), OUTSIDER);
    expect(lines(ruri)).toEqual(['SIP/2.0 403 Forbidden (not relaying)']);
    nothingTo([...pre, ...ruri], GW);
    expect(h.denials).toEqual(['preloaded-route', 'foreign-target']);
  });

  it('a Request-URI naming sipd itself (not one of our domains): 403, nothing sent', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: 'sip:bob@127.0.0.1:5060', callId: 'self-1' }), OUTSIDER);
    expect(finalStatuses(out)).toEqual([403]);
    expect(requests(out)).toEqual([]);
  });

  it('maddr in the Request-URI is never obeyed: an unregistered user gives 404, a registered one its binding', async () => {
    const h = await createHarness();
    const out = await h.request(outsider({ ruri: `sip:bob@${DOMAIN};maddr=${GW.address}`, callId: 'maddr-1' }), OUTSIDER);
    expect(finalStatuses(out)).toEqual([404]);
    nothingTo(out, GW);
    await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', BOB);
    const out2 = await h.request(outsider({ ruri: `sip:bob@${DOMAIN};maddr=${GW.address}`, callId: 'maddr-2' }), OUTSIDER);
    expect(requests(out2, 'INVITE').map((s) => s.target)).toMatchObject([{ address: BOB.address, port: BOB.port }]);
    nothingTo(out2, GW);
  });

  it('maddr on a Route naming sipd: the entry is ours and is taken off, its maddr ignored', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: `sip:bob@${DOMAIN}`, routes: [`<sip:127.0.0.1:5060;lr;maddr=${GW.address}>`], callId: 'maddr-3' }), OUTSIDER);
    expect(requests(out, 'INVITE').map((s) => s.target)).toMatchObject([{ address: BOB.address, port: BOB.port }]);
    nothingTo(out, GW);
  });

  it('no port scanning through a preloaded Route: 403 and no connection attempt', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: `sip:bob@${DOMAIN}`, routes: ['<sip:10.0.0.1:22;transport=tcp;lr>'], callId: 'scan-1' }), OUTSIDER);
    expect(finalStatuses(out)).toEqual([403]);
    expect(requests(out)).toEqual([]);
  });

  it('the legitimate case: an outsider calls a registered local user (no challenge), with our Record-Route token', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: `sip:bob@${DOMAIN}`, callId: 'in-1' }), OUTSIDER);
    const inv = requests(out, 'INVITE');
    expect(inv.map((s) => s.target)).toMatchObject([{ address: BOB.address, port: BOB.port }]);
    expect(withoutTokens(inv[0]!.msg.headerValues('record-route'))).toEqual([OUR_RR]);
    expect(h.denials).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------ dialogs

interface Dialog {
  h: Harness;
  rr: string[];
  callId: string;
  /** From of the dialog-forming request (the caller) */
  caller: string;
  /** To of the 2xx (the callee, with its tag) */
  callee: string;
}

/** an outsider (unauthenticated) calls bob, bob answers: the dialog as both parties see it */
async function outsiderCallsBob(contact = `<sip:mallory@${OUTSIDER.address}:${OUTSIDER.port}>`): Promise<Dialog> {
  const h = await withBob();
  const text = request({
    method: 'INVITE',
    ruri: `sip:bob@${DOMAIN}`,
    from: `<sip:mallory@${FOREIGN}>;tag=m1`,
    to: `<sip:bob@${DOMAIN}>`,
    callId: 'dlg-out-1',
    cseq: 1,
    via: viaOf(OUTSIDER),
    extra: [`Contact: ${contact}`],
  });
  const out = await h.request(text, OUTSIDER);
  const inv = requests(out, 'INVITE')[0]!.msg;
  const ok = await h.response(answer(inv, 200, { toTag: 'b1', contact: '<sip:bob@192.0.2.20:5062>' }), BOB);
  const r200 = responses(ok, 200)[0]!.msg;
  return { h, rr: r200.headerValues('record-route'), callId: 'dlg-out-1', caller: `<sip:mallory@${FOREIGN}>;tag=m1`, callee: r200.header('to')! };
}

function inDialog(d: Dialog, o: { method: string; ruri: string; from: string; to: string; src: typeof ALICE; routes?: string[]; cseq?: number }): string {
  return request({
    method: o.method,
    ruri: o.ruri,
    from: o.from,
    to: o.to,
    callId: d.callId,
    cseq: o.cseq ?? 2,
    via: viaOf(o.src),
    extra: (o.routes ?? d.rr).map((r) => `Route: ${r}`),
  });
}

describe('fake dialogs: a To-tag and a Route do not open the relay', () => {
  for (const method of ['INVITE', 'ACK', 'BYE']) {
    it(`${method} with a made-up To-tag and a Route to the gateway: refused (403, an ACK dropped)`, async () => {
      const h = await withBob();
      const out = await h.request(outsider({ method, ruri: `sip:900@${GW.address}`, routes: [`<${GW_URI};lr>`], toTag: 'x', callId: `fake-${method}` }), OUTSIDER);
      nothingTo(out, GW);
      expect(finalStatuses(out)).toEqual(method === 'ACK' ? [] : [403]);
      expect(h.denials).toEqual(['dialog-foreign-route']);
    });
  }

  it('a Route naming sipd without a token and a foreign Request-URI: 403', async () => {
    const h = await withBob();
    const out = await h.request(outsider({ ruri: `sip:900@${GW.address}`, routes: [OUR_RR], toTag: 'x', callId: 'fake-2' }), OUTSIDER);
    expect(lines(out)).toEqual(['SIP/2.0 403 Forbidden (Route not issued here)']);
    expect(h.denials).toEqual(['dialog-no-token']);
  });

  it('a Route naming sipd with a forged token, or the token of another dialog: 403', async () => {
    const d = await outsiderCallsBob();
    const { h } = d;
    const forged = d.rr[0]!.replace(/sdt=([A-Za-z0-9_-]+)/, (_m, t: string) => `sdt=${t.slice(0, -2)}${t.endsWith('AA') ? 'AB' : 'AA'}`);
    const o1 = await h.request(outsider({ ruri: 'sip:bob@192.0.2.20:5062', routes: [forged], toTag: 'b1', callId: d.callId }), OUTSIDER);
    expect(finalStatuses(o1)).toEqual([403]);
    // the valid token, but in a request of another Call-ID
    const o2 = await h.request(outsider({ ruri: 'sip:bob@192.0.2.20:5062', routes: d.rr, toTag: 'b1', callId: 'another-call' }), OUTSIDER);
    expect(finalStatuses(o2)).toEqual([403]);
    expect(requests([...o1, ...o2])).toEqual([]);
    expect(h.denials).toEqual(['dialog-bad-token', 'dialog-bad-token']);
  });

  it('a participant of a real dialog cannot use its token towards a third host, in either direction', async () => {
    const d = await outsiderCallsBob();
    const { h } = d;
    // as the caller
    const asCaller = await h.request(inDialog(d, { method: 'INVITE', ruri: `sip:900@${GW.address}:${GW.port}`, from: d.caller, to: d.callee, src: OUTSIDER }), OUTSIDER);
    // pretending to be bob (tags swapped)
    const asCallee = await h.request(inDialog(d, { method: 'BYE', ruri: `sip:900@${GW.address}:${GW.port}`, from: d.callee, to: d.caller, src: OUTSIDER }), OUTSIDER);
    const ack = await h.request(inDialog(d, { method: 'ACK', ruri: `sip:900@${GW.address}:${GW.port}`, from: d.caller, to: d.callee, src: OUTSIDER, cseq: 1 }), OUTSIDER);
    nothingTo([...asCaller, ...asCallee, ...ack], GW);
    expect(finalStatuses(asCaller)).toEqual([403]);
    expect(finalStatuses(asCallee)).toEqual([403]);
    expect(ack).toEqual([]);
    expect(h.denials).toEqual(['dialog-hop', 'dialog-hop', 'dialog-hop']);
  });

  it('a third party holding a valid token is refused even towards a dialog party', async () => {
    const d = await outsiderCallsBob();
    const out = await d.h.request(inDialog(d, { method: 'BYE', ruri: 'sip:bob@192.0.2.20:5062', from: d.caller, to: d.callee, src: THIRD }), THIRD);
    expect(finalStatuses(out)).toEqual([403]);
    expect(requests(out)).toEqual([]);
  });

  it('the dialog itself works both ways: the caller ACKs and re-INVITEs bob, bob hangs up towards the caller', async () => {
    const d = await outsiderCallsBob();
    const { h } = d;
    const ack = await h.request(inDialog(d, { method: 'ACK', ruri: 'sip:bob@192.0.2.20:5062', from: d.caller, to: d.callee, src: OUTSIDER, cseq: 1 }), OUTSIDER);
    expect(ack.map((s) => [s.msg.toString().split('\r\n')[0], s.target.address, s.target.port])).toEqual([['ACK sip:bob@192.0.2.20:5062 SIP/2.0', BOB.address, BOB.port]]);
    const reinvite = await h.request(inDialog(d, { method: 'INVITE', ruri: 'sip:bob@192.0.2.20:5062', from: d.caller, to: d.callee, src: OUTSIDER }), OUTSIDER);
    expect(requests(reinvite, 'INVITE').map((s) => s.target)).toMatchObject([{ address: BOB.address, port: BOB.port }]);
    const bye = await h.request(inDialog(d, { method: 'BYE', ruri: `sip:mallory@${OUTSIDER.address}:${OUTSIDER.port}`, from: d.callee, to: d.caller, src: BOB, routes: [...d.rr].reverse() }), BOB);
    expect(requests(bye, 'BYE').map((s) => s.target)).toMatchObject([{ address: OUTSIDER.address, port: OUTSIDER.port }]);
    expect(h.denials).toEqual([]);
  });

  it("an unauthenticated caller's Contact naming the gateway does not make the gateway a dialog party", async () => {
    const d = await outsiderCallsBob(`<sip:900@${GW.address}:${GW.port}>`);
    // bob's phone hangs up towards the Contact it was given: sipd refuses to carry that to the gateway
    const bye = await d.h.request(inDialog(d, { method: 'BYE', ruri: `sip:900@${GW.address}:${GW.port}`, from: d.callee, to: d.caller, src: BOB, routes: [...d.rr].reverse() }), BOB);
    nothingTo(bye, GW);
    expect(finalStatuses(bye)).toEqual([403]);
  });
});

describe('authenticated and trusted users keep their reach', () => {
  it('an authenticated user calls out to the gateway; the gateway can hang up towards her, but not re-target elsewhere', async () => {
    const h = await createHarness();
    const { req, out } = await authedRequest(h, { src: ALICE, ruri: `sip:900@${GW.address}:${GW.port}` });
    const inv = requests(out, 'INVITE');
    expect(inv.map((s) => s.target)).toMatchObject([GW]);
    const gw = udpSrc(GW.address, GW.port);
    const ok = await h.response(answer(inv[0]!.msg, 200, { toTag: 'g1', contact: `<${GW_URI}>` }), gw);
    const r200 = responses(ok, 200)[0]!.msg;
    const d: Dialog = { h, rr: r200.headerValues('record-route'), callId: req.callId()!, caller: req.header('from')!, callee: r200.header('to')! };
    const bye = await h.request(inDialog(d, { method: 'BYE', ruri: 'sip:alice@192.0.2.10:5060', from: d.callee, to: d.caller, src: gw, routes: [...d.rr].reverse() }), gw);
    expect(requests(bye, 'BYE').map((s) => s.target)).toMatchObject([{ address: ALICE.address, port: ALICE.port }]);
    const elsewhere = await h.request(inDialog(d, { method: 'INVITE', ruri: 'sip:901@198.51.100.77', from: d.callee, to: d.caller, src: gw, routes: [...d.rr].reverse(), cseq: 3 }), gw);
    expect(finalStatuses(elsewhere)).toEqual([403]);
    expect(requests(elsewhere)).toEqual([]);
  });

  it("the authenticated caller's own in-dialog requests may go where her callee's Contact points", async () => {
    const h = await createHarness();
    const { req, out } = await authedRequest(h, { src: ALICE, ruri: `sip:dave@${GW.address}` });
    const inv = requests(out, 'INVITE')[0]!.msg;
    // the 2xx comes from a phone behind a proxy that did not record-route
    const ok = await h.response(answer(inv, 200, { toTag: 'd1', contact: '<sip:dave@198.51.100.60:5070>' }), udpSrc(GW.address, GW.port));
    const r200 = responses(ok, 200)[0]!.msg;
    const d: Dialog = { h, rr: r200.headerValues('record-route'), callId: req.callId()!, caller: req.header('from')!, callee: r200.header('to')! };
    const ack = await h.request(inDialog(d, { method: 'ACK', ruri: 'sip:dave@198.51.100.60:5070', from: d.caller, to: d.callee, src: ALICE, cseq: 2 }), ALICE);
    expect(ack.map((s) => s.target)).toMatchObject([{ address: '198.51.100.60', port: 5070 }]);
  });

  it('a trusted source may relay anywhere, in dialogs too, but still only on a Route we issued', async () => {
    const TRUNK = udpSrc('203.0.113.9', 5060);
    const h = await createHarness({ trusted: ['203.0.113.9'] });
    const out = await h.request(outsider({ ruri: `sip:900@${GW.address}`, callId: 'tr-1', from: `<sip:carrier@${FOREIGN}>;tag=t` }).replace(viaOf(OUTSIDER).split(';branch=')[0]!, viaOf(TRUNK).split(';branch=')[0]!), TRUNK);
    expect(requests(out, 'INVITE').map((s) => s.target.address)).toEqual([GW.address]);
    const fake = await h.request(
      request({ method: 'BYE', ruri: `sip:900@${GW.address}`, from: '<sip:c@x>;tag=1', to: '<sip:d@y>;tag=2', callId: 'tr-2', cseq: 1, via: viaOf(TRUNK), extra: [OUR_RR].map((r) => `Route: ${r}`) }),
      TRUNK,
    );
    expect(finalStatuses(fake)).toEqual([403]);
    // its own route set that does not name us is followed, as its preloaded Routes are
    const own = await h.request(
      request({ method: 'BYE', ruri: `sip:900@${GW.address}`, from: '<sip:c@x>;tag=1', to: '<sip:d@y>;tag=2', callId: 'tr-3', cseq: 1, via: viaOf(TRUNK), extra: [`Route: <${GW_URI};lr>`] }),
      TRUNK,
    );
    expect(requests(own, 'BYE').map((s) => s.target)).toMatchObject([GW]);
  });
});

describe('never to ourselves', () => {
  it('an authenticated request for a user at sipd\'s own address (not one of our domains): 404, nothing sent', async () => {
    const h = await createHarness();
    const { out } = await authedRequest(h, { src: ALICE, ruri: 'sip:carol@127.0.0.1:5060' });
    expect(finalStatuses(out)).toEqual([404]);
    expect(requests(out)).toEqual([]);
  });

  it('a binding that points at sipd itself is not forwarded to (the branch fails, the caller gets a final)', async () => {
    const h = await createHarness({ natReceived: false });
    await h.register('bob', 'bobpw', '<sip:bob@127.0.0.1:5060>', BOB);
    const { out } = await authedRequest(h, { src: ALICE });
    expect(requests(out)).toEqual([]);
    expect(finalStatuses(out)).toHaveLength(1);
    expect(finalStatuses(out)[0]).toBeGreaterThanOrEqual(400);
  });

  it('a privileged preloaded Route to sipd on a wildcard-free address is taken off as ours, not followed', async () => {
    const h = await withBob();
    const { out } = await authedRequest(h, { src: ALICE, extra: ['Route: <sip:127.0.0.1:5060;lr>'] });
    expect(requests(out, 'INVITE').map((s) => s.target)).toMatchObject([{ address: BOB.address, port: BOB.port }]);
  });
});

export type { SipRequest, SipResponse };
