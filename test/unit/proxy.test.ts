/**
 * The stateful proxy (src/core/proxy.ts) through the routing pipeline: forwarding (§16.6),
 * forking and the response context (§16.7), CANCEL (§16.10), in-dialog routing (§16.4, §16.12),
 * on the real transaction layer with a manual clock and a fake transport.
 */
import { describe, expect, it } from 'vitest';
import { SipRequest, SipResponse } from '../../src/sip/index.js';
import {
  answer,
  authedRequest,
  createHarness,
  DOMAIN,
  lines,
  OUR_RR,
  OUR_RR_TCP,
  request,
  requests,
  responses,
  tcpSrc,
  udpSrc,
  viaOf,
  wsSrc,
  type Harness,
  type HarnessOptions,
  type Sent,
  tokenOf,
  withoutTokens,
  parseRequest,
} from '../helpers/core-harness.js';

const ALICE = udpSrc('192.0.2.10', 5060);
const B1 = udpSrc('192.0.2.20', 5062);
const B2 = udpSrc('192.0.2.21', 5064);
const B3 = udpSrc('192.0.2.22', 5066);

async function expectNoLeaks(h: Harness): Promise<void> {
  const s = await h.drain();
  expect(s).toEqual({ server: 0, client: 0, lingering: 0, timers: 0 });
  expect(h.proxy.activeContexts).toBe(0);
}

interface Call {
  h: Harness;
  /** the INVITE as alice sent it (with credentials) */
  req: SipRequest;
  /** what the proxy sent for it */
  out: Sent[];
  /** forwarded INVITEs, in order */
  invites: Array<Sent & { msg: SipRequest }>;
}

/** harness with bob's contacts registered (contact URI with params, source), then alice's authenticated INVITE to bob */
async function call(contacts: Array<{ uri: string; src: typeof ALICE; params?: string; extra?: string[] }>, opts: HarnessOptions = {}, extra: string[] = []): Promise<Call> {
  const h = await createHarness(opts);
  for (const c of contacts) await h.register('bob', 'bobpw', `<${c.uri}>${c.params ?? ''}`, c.src, c.extra);
  const { req, out } = await authedRequest(h, { src: ALICE, extra });
  return { h, req, out, invites: requests(out, 'INVITE') };
}

/** our Record-Route values: the plain URIs plus one integrity token, the same on each. */
function expectOurRR(values: string[], plain: string[]): void {
  expect(withoutTokens(values)).toEqual(plain);
  const tokens = values.map(tokenOf);
  expect(tokens[0]).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  for (const t of tokens) expect(t).toBe(tokens[0]);
}

const bob = (src: typeof ALICE, transport = ''): string => `sip:bob@${src.address}:${src.port}${transport}`;

/** the one forwarded INVITE sent to `src` */
function inviteTo(c: Call, src: typeof ALICE): SipRequest {
  const s = c.invites.filter((x) => x.target.address === src.address && x.target.port === src.port);
  expect(s).toHaveLength(1);
  return s[0]!.msg;
}

function upstream(out: Sent[]): Array<Sent & { msg: SipResponse }> {
  return responses(out).filter((s) => s.target.address === ALICE.address && s.target.port === ALICE.port);
}

/** alice's own Via (as received, with received/rport), which every response upstream must carry alone */
function aliceVias(c: Call): string[] {
  return c.req.headerValues('via').map((v) => v.split(';branch=')[1]!.split(';')[0]!);
}
function branchesOf(res: SipResponse): string[] {
  return res.vias().map((v) => v.branch ?? '');
}

// ------------------------------------------------------------------------------------------ forwarding

describe('forwarding (§16.6)', () => {
  it('100 Trying at once, then the INVITE to the contact: R-URI, Max-Forwards, Record-Route, Via, credentials removed', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }], {}, ['X-Unknown-Header: kept ; as is', 'Max-Forwards-Note: x']);
    expect(lines(c.out)).toEqual(['SIP/2.0 100 Trying', `INVITE ${bob(B1)} SIP/2.0`]);
    const trying = c.out[0]!.msg as SipResponse;
    expect(trying.toTag()).toBeUndefined();
    const fwd = c.invites[0]!.msg;
    expect(c.invites[0]!.target).toMatchObject({ transport: 'udp', address: B1.address, port: B1.port });
    expect(fwd.uriText).toBe(bob(B1));
    expect(fwd.maxForwards()).toBe(69);
    expectOurRR(fwd.headerValues('record-route'), [OUR_RR]);
    const vias = fwd.vias();
    expect(vias).toHaveLength(2);
    expect(vias[0]!.host).toBe('127.0.0.1');
    expect(vias[0]!.port).toBe(5060);
    expect(vias[0]!.transport).toBe('UDP');
    expect(vias[0]!.branch).toMatch(/^z9hG4bKsd/);
    expect(vias[1]!.branch).toBe(c.req.topVia()!.branch);
    expect(vias[1]!.received).toBe(ALICE.address);
    expect(fwd.has('proxy-authorization')).toBe(false);
    // the rest is forwarded unchanged
    expect(fwd.header('x-unknown-header')).toBe('kept ; as is');
    expect(fwd.body.equals(c.req.body)).toBe(true);
    expect(fwd.header('from')).toBe(c.req.header('from'));
    expect(fwd.header('to')).toBe(c.req.header('to'));
    expect(fwd.callId()).toBe(c.req.callId());
    expect(fwd.header('cseq')).toBe('2 INVITE');
  });

  it('a complete call: 180 and 200 upstream without our Via, ACK for 2xx relayed statelessly, BYE routed back, no leaks', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const { h } = c;
    const fwd = inviteTo(c, B1);
    // 100 from downstream is not forwarded
    expect(await h.response(answer(fwd, 100), B1)).toEqual([]);
    const ringing = await h.response(answer(fwd, 180, { toTag: 'b1', contact: `<${bob(B1)}>` }), B1);
    expect(lines(ringing)).toEqual(['SIP/2.0 180 Ringing']);
    const r180 = ringing[0]!.msg as SipResponse;
    expect(branchesOf(r180)).toEqual(aliceVias(c));
    expectOurRR(r180.headerValues('record-route'), [OUR_RR]);
    const ok = await h.response(answer(fwd, 200, { toTag: 'b1', contact: `<${bob(B1)}>` }), B1);
    expect(lines(ok)).toEqual(['SIP/2.0 200 OK']);
    expect(upstream(ok)).toHaveLength(1);
    const r200 = ok[0]!.msg as SipResponse;
    expect(branchesOf(r200)).toEqual(aliceVias(c));
    expect(r200.toTag()).toBe('b1');
    expectOurRR(r200.headerValues('record-route'), [OUR_RR]);

    // ACK for the 2xx: new transaction, Route = our RR
    const ack = request({
      method: 'ACK', ruri: bob(B1), from: c.req.header('from')!, to: r200.header('to')!, callId: c.req.callId()!, cseq: 2,
      via: viaOf(ALICE), extra: r200.headerValues('record-route').map((v) => `Route: ${v}`),
    });
    const acked = await h.request(ack, ALICE);
    expect(lines(acked)).toEqual([`ACK ${bob(B1)} SIP/2.0`]);
    const fack = acked[0]!.msg as SipRequest;
    expect(acked[0]!.target).toMatchObject({ address: B1.address, port: B1.port });
    expect(fack.has('route')).toBe(false);
    expect(fack.vias()).toHaveLength(2);
    expect(fack.topVia()!.host).toBe('127.0.0.1');
    expect(fack.maxForwards()).toBe(69);
    // the INVITE's transactions ended at the 2xx (the server one left an accepted entry for Timer L); none for the ACK
    expect(h.tx.stats()).toMatchObject({ server: 0, client: 0 });
    expect(h.tx.lingerSizes()).toMatchObject({ accepted: 1 }); // (and bob's REGISTER's resend entry)

    // BYE from bob (a local user, no credentials): not challenged, follows the Route set
    const bye = request({
      method: 'BYE', ruri: 'sip:alice@192.0.2.10:5060', from: r200.header('to')!, to: c.req.header('from')!, callId: c.req.callId()!, cseq: 1,
      via: viaOf(B1), extra: r200.headerValues('record-route').map((v) => `Route: ${v}`),
    });
    const byeOut = await h.request(bye, B1);
    expect(lines(byeOut)).toEqual(['BYE sip:alice@192.0.2.10:5060 SIP/2.0']);
    const fbye = byeOut[0]!.msg as SipRequest;
    expect(byeOut[0]!.target).toMatchObject({ address: ALICE.address, port: ALICE.port });
    expect(fbye.has('route')).toBe(false);
    expect(fbye.has('record-route')).toBe(false);
    expect(fbye.topVia()!.branch).toMatch(/^z9hG4bKsd/);
    const byeOk = await h.response(answer(fbye, 200, { toTag: undefined }), ALICE);
    expect(lines(byeOk)).toEqual(['SIP/2.0 200 OK']);
    expect(byeOk[0]!.target).toMatchObject({ address: B1.address, port: B1.port });
    await expectNoLeaks(h);
  });

  it('a 2xx retransmission (the INVITE transactions ended at the first 2xx) is forwarded statelessly (stray 2xx), also after Timer L', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const fwd = inviteTo(c, B1);
    const ok = answer(fwd, 200, { toTag: 'b1', contact: `<${bob(B1)}>` });
    let ended = 0;
    c.h.tx.findInviteForCancel(parseRequest(cancelOf(c)), ALICE)!.onTerminated(() => ended++);
    expect(lines(await c.h.response(ok, B1))).toEqual(['SIP/2.0 200 OK']);
    expect(ended).toBe(1); // the proxy observes the end of the server transaction at the 2xx
    expect(c.h.tx.stats()).toMatchObject({ server: 0, client: 0 });
    expect(c.h.tx.lingerSizes()).toMatchObject({ accepted: 1 });
    // at once: no client transaction absorbs it, the stray path forwards it
    const soon = await c.h.response(ok, B1);
    expect(lines(soon)).toEqual(['SIP/2.0 200 OK']);
    expect(soon[0]!.target).toMatchObject({ address: ALICE.address, port: ALICE.port });
    expect(branchesOf(soon[0]!.msg as SipResponse)).toEqual(aliceVias(c));
    await expectNoLeaks(c.h);
    const again = await c.h.response(ok, B1);
    expect(lines(again)).toEqual(['SIP/2.0 200 OK']);
    expect(again[0]!.target).toMatchObject({ address: ALICE.address, port: ALICE.port });
    expect(branchesOf(again[0]!.msg as SipResponse)).toEqual(aliceVias(c));
    // a stray non-2xx is not forwarded
    expect(await c.h.response(answer(fwd, 486, { toTag: 'b1' }), B1)).toEqual([]);
  });

  it('a forged stray 2xx (our Via host and port, a branch we did not make) is not reflected to its second Via', async () => {
    const h = await createHarness();
    const victim = '198.51.100.200';
    const forged = [
      'SIP/2.0 200 OK',
      'Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsd0123456789abcdef.00000001deadbeef',
      `Via: SIP/2.0/UDP ${victim}:5060;branch=z9hG4bKvictim`,
      `From: <sip:a@${DOMAIN}>;tag=1`,
      `To: <sip:b@${DOMAIN}>;tag=2`,
      'Call-ID: forged-2xx',
      'CSeq: 1 INVITE',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    expect(await h.response(forged, udpSrc('203.0.113.5', 5060))).toEqual([]);
  });

  it('a non-INVITE (MESSAGE) is forwarded without Record-Route and its 200 goes upstream', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', `<${bob(B1)}>`, B1);
    const { out } = await authedRequest(h, { src: ALICE, method: 'MESSAGE' });
    const m = requests(out, 'MESSAGE');
    expect(m).toHaveLength(1);
    expect(responses(out)).toEqual([]); // no 100 for a non-INVITE
    expect(m[0]!.msg.has('record-route')).toBe(false);
    const up = await h.response(answer(m[0]!.msg, 200), B1);
    expect(lines(up)).toEqual(['SIP/2.0 200 OK']);
    expect(up[0]!.target).toMatchObject({ address: ALICE.address });
    await expectNoLeaks(h);
  });

  it('a binding with Path: the Path becomes the Route set and the request goes to the first Path hop', async () => {
    const c = await call([{ uri: bob(B1), src: B1, extra: ['Path: <sip:edge.example.net:5080;lr>', 'Supported: path'] }], { hosts: { 'edge.example.net': '198.51.100.80' } });
    expect(c.invites).toHaveLength(1);
    expect(c.invites[0]!.target).toMatchObject({ address: '198.51.100.80', port: 5080 });
    expect(c.invites[0]!.msg.headerValues('route')).toEqual(['<sip:edge.example.net:5080;lr>']);
    expect(c.invites[0]!.msg.uriText).toBe(bob(B1));
  });

  it('a single branch answering 503: upstream gets 500 (§16.7 step 6); the ACK goes downstream', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const out = await c.h.response(answer(inviteTo(c, B1), 503, { toTag: 'b1' }), B1);
    expect(lines(requests(out))).toEqual([`ACK ${bob(B1)} SIP/2.0`]);
    const up = upstream(out);
    expect(up.map((s) => s.msg.status)).toEqual([500]);
    expect(branchesOf(up[0]!.msg)).toEqual(aliceVias(c));
    await expectNoLeaks(c.h);
  });

  it('a branch that never answers: 408 upstream after Timer B (fake time)', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const out = await c.h.advance(64 * 500);
    expect(upstream(out).map((s) => s.msg.status)).toEqual([408]);
    expect(requests(out).every((s) => s.msg.method === 'INVITE')).toBe(true); // retransmissions only
    await expectNoLeaks(c.h);
  });
});

// ------------------------------------------------------------------------------------------ forking

describe('forking (§16.7)', () => {
  it('two contacts with the same q both get the INVITE; the first 200 wins and the ringing branch is CANCELled', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }]);
    const { h } = c;
    expect(c.invites).toHaveLength(2);
    const f1 = inviteTo(c, B1);
    const f2 = inviteTo(c, B2);
    expect(f1.topVia()!.branch).not.toBe(f2.topVia()!.branch);
    expect(f1.uriText).toBe(bob(B1));
    expect(f2.uriText).toBe(bob(B2));
    expect(lines(await h.response(answer(f1, 180, { toTag: 'b1', contact: `<${bob(B1)}>` }), B1))).toEqual(['SIP/2.0 180 Ringing']);
    const won = await h.response(answer(f2, 200, { toTag: 'b2', contact: `<${bob(B2)}>` }), B2);
    const up = upstream(won);
    expect(up.map((s) => s.msg.status)).toEqual([200]);
    expect(up[0]!.msg.toTag()).toBe('b2');
    expect(branchesOf(up[0]!.msg)).toEqual(aliceVias(c));
    const cancels = requests(won, 'CANCEL');
    expect(cancels).toHaveLength(1);
    expect(cancels[0]!.target).toMatchObject({ address: B1.address, port: B1.port });
    expect(cancels[0]!.msg.topVia()!.branch).toBe(f1.topVia()!.branch);
    expect(cancels[0]!.msg.uriText).toBe(f1.uriText);
    // B1: 200 for the CANCEL, 487 for the INVITE → ACK to B1, nothing upstream
    expect(await h.response(answer(cancels[0]!.msg, 200, { toTag: 'b1' }), B1)).toEqual([]);
    const after = await h.response(answer(f1, 487, { toTag: 'b1' }), B1);
    expect(lines(after)).toEqual([`ACK ${bob(B1)} SIP/2.0`]);
    expect(after[0]!.target).toMatchObject({ address: B1.address, port: B1.port });
    await expectNoLeaks(h);
  });

  it('a branch without a provisional is CANCELled as soon as it sends one (after another branch answered 200)', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }]);
    const { h } = c;
    const f1 = inviteTo(c, B1);
    const won = await h.response(answer(inviteTo(c, B2), 200, { toTag: 'b2' }), B2);
    expect(upstream(won).map((s) => s.msg.status)).toEqual([200]);
    expect(requests(won, 'CANCEL')).toEqual([]); // §9.1: not before a provisional
    const ring = await h.response(answer(f1, 180, { toTag: 'b1' }), B1);
    expect(upstream(ring)).toEqual([]); // after the 200, provisionals are not forwarded
    expect(lines(requests(ring, 'CANCEL'))).toEqual([`CANCEL ${bob(B1)} SIP/2.0`]);
    await h.response(answer(requests(ring, 'CANCEL')[0]!.msg, 200, { toTag: 'b1' }), B1);
    expect(upstream(await h.response(answer(f1, 487, { toTag: 'b1' }), B1))).toEqual([]);
    await expectNoLeaks(h);
  });

  it('every 2xx is forwarded upstream', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }]);
    const { h } = c;
    const a = await h.response(answer(inviteTo(c, B1), 200, { toTag: 'b1' }), B1);
    const b = await h.response(answer(inviteTo(c, B2), 200, { toTag: 'b2' }), B2);
    expect(upstream(a).map((s) => s.msg.toTag())).toEqual(['b1']);
    expect(upstream(b).map((s) => s.msg.toTag())).toEqual(['b2']);
    expect(upstream(b)[0]!.msg.status).toBe(200);
    await expectNoLeaks(h);
  });

  it('the lower-q group is tried only after the higher-q group failed', async () => {
    const c = await call([
      { uri: bob(B1), src: B1, params: ';q=0.5' },
      { uri: bob(B2), src: B2, params: ';q=1.0' },
    ]);
    const { h } = c;
    expect(c.invites.map((s) => s.target.address)).toEqual([B2.address]);
    const busy = await h.response(answer(inviteTo(c, B2), 486, { toTag: 'b2' }), B2);
    expect(upstream(busy)).toEqual([]);
    expect(lines(requests(busy))).toEqual([`ACK ${bob(B2)} SIP/2.0`, `INVITE ${bob(B1)} SIP/2.0`]);
    const next = requests(busy, 'INVITE')[0]!;
    expect(next.target).toMatchObject({ address: B1.address, port: B1.port });
    expectOurRR(next.msg.headerValues('record-route'), [OUR_RR]);
    expect(next.msg.maxForwards()).toBe(69);
    const ok = await h.response(answer(next.msg, 200, { toTag: 'b1' }), B1);
    expect(upstream(ok).map((s) => s.msg.status)).toEqual([200]);
    await expectNoLeaks(h);
  });

  it('the best final of all branches: 486 over a later 503; 404 over 486 over 408', async () => {
    const c = await call([
      { uri: bob(B1), src: B1 },
      { uri: bob(B2), src: B2, params: ';q=0.5' },
    ]);
    const { h } = c;
    const first = await h.response(answer(inviteTo(c, B1), 486, { toTag: 'b1' }), B1);
    const f2 = requests(first, 'INVITE')[0]!.msg;
    const out = await h.response(answer(f2, 503, { toTag: 'b2' }), B2);
    const up = upstream(out);
    expect(up.map((s) => s.msg.status)).toEqual([486]);
    expect(up[0]!.msg.toTag()).toBe('b1');
    expect(branchesOf(up[0]!.msg)).toEqual(aliceVias(c));
    await expectNoLeaks(h);

    const d = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }, { uri: bob(B3), src: B3 }]);
    expect(upstream(await d.h.response(answer(inviteTo(d, B1), 486, { toTag: 'b1' }), B1))).toEqual([]);
    expect(upstream(await d.h.response(answer(inviteTo(d, B2), 404, { toTag: 'b2' }), B2))).toEqual([]);
    const t = await d.h.advance(64 * 500); // B3 times out: 408
    expect(upstream(t).map((s) => s.msg.status)).toEqual([404]);
    await expectNoLeaks(d.h);
  });

  it('a 6xx ends the search: pending branches CANCELled, lower-q groups not tried, the 6xx goes upstream', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }, { uri: bob(B3), src: B3, params: ';q=0.1' }]);
    const { h } = c;
    expect(c.invites).toHaveLength(2);
    const f1 = inviteTo(c, B1);
    await h.response(answer(f1, 180, { toTag: 'b1' }), B1);
    const dec = await h.response(answer(inviteTo(c, B2), 603, { toTag: 'b2' }), B2);
    expect(upstream(dec)).toEqual([]); // not before the other branch is done
    expect(lines(requests(dec)).sort()).toEqual([`ACK ${bob(B2)} SIP/2.0`, `CANCEL ${bob(B1)} SIP/2.0`].sort());
    const out = await h.response(answer(f1, 487, { toTag: 'b1' }), B1);
    expect(requests(out, 'INVITE')).toEqual([]);
    expect(upstream(out).map((s) => s.msg.status)).toEqual([603]);
    expect(upstream(out)[0]!.msg.toTag()).toBe('b2');
    await expectNoLeaks(h);
  });

  it('401/407 challenges of several branches are merged into the one response upstream', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }]);
    const { h } = c;
    const pa1 = 'Digest realm="b1.example", nonce="n1", algorithm=MD5';
    const wa2 = 'Digest realm="b2.example", nonce="n2", algorithm=MD5';
    await h.response(answer(inviteTo(c, B1), 407, { toTag: 'b1', headers: [['Proxy-Authenticate', pa1]] }), B1);
    const out = await h.response(answer(inviteTo(c, B2), 401, { toTag: 'b2', headers: [['WWW-Authenticate', wa2]] }), B2);
    const up = upstream(out);
    expect(up).toHaveLength(1);
    const res = up[0]!.msg;
    expect([401, 407]).toContain(res.status);
    expect(res.headerValues('proxy-authenticate')).toEqual([pa1]);
    expect(res.headerValues('www-authenticate')).toEqual([wa2]);
    expect(branchesOf(res)).toEqual(aliceVias(c));
    await expectNoLeaks(h);
  });

  it('two 407s with different realms: both Proxy-Authenticate values upstream, once each', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }]);
    const { h } = c;
    const pa1 = 'Digest realm="b1.example", nonce="n1"';
    const pa2 = 'Digest realm="b2.example", nonce="n2"';
    await h.response(answer(inviteTo(c, B1), 407, { toTag: 'b1', headers: [['Proxy-Authenticate', pa1]] }), B1);
    const up = upstream(await h.response(answer(inviteTo(c, B2), 407, { toTag: 'b2', headers: [['Proxy-Authenticate', pa2]] }), B2));
    expect(up.map((s) => s.msg.status)).toEqual([407]);
    expect(up[0]!.msg.headerValues('proxy-authenticate').sort()).toEqual([pa1, pa2].sort());
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ CANCEL

function cancelOf(c: Call): string {
  return request({
    method: 'CANCEL', ruri: c.req.uriText, from: c.req.header('from')!, to: c.req.header('to')!, callId: c.req.callId()!, cseq: 2,
    via: c.req.headerValues('via')[0]!.replace(/;rport=\d+|;received=[^;]+/g, ''),
  });
}

describe('CANCEL (§16.10)', () => {
  it('200 to the CANCEL, CANCEL to every pending branch, then 487 upstream; the ACK of the 487 is absorbed', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: bob(B2), src: B2 }]);
    const { h } = c;
    const f1 = inviteTo(c, B1);
    const f2 = inviteTo(c, B2);
    await h.response(answer(f1, 180, { toTag: 'b1' }), B1);
    await h.response(answer(f2, 183, { toTag: 'b2' }), B2);
    const out = await h.request(cancelOf(c), ALICE);
    const up = upstream(out);
    expect(up.map((s) => `${s.msg.status} ${s.msg.cseq()!.method}`)).toEqual(['200 CANCEL']);
    const cancels = requests(out, 'CANCEL');
    expect(cancels.map((s) => s.target.address).sort()).toEqual([B1.address, B2.address]);
    expect(cancels.map((s) => s.msg.topVia()!.branch).sort()).toEqual([f1.topVia()!.branch, f2.topVia()!.branch].sort());
    for (const s of cancels) await h.response(answer(s.msg, 200, { toTag: 'x' }), s.target.address === B1.address ? B1 : B2);
    expect(upstream(await h.response(answer(f1, 487, { toTag: 'b1' }), B1))).toEqual([]);
    const fin = await h.response(answer(f2, 487, { toTag: 'b2' }), B2);
    const last = upstream(fin);
    expect(last.map((s) => `${s.msg.status} ${s.msg.cseq()!.method}`)).toEqual(['487 INVITE']);
    expect(branchesOf(last[0]!.msg)).toEqual(aliceVias(c));
    // the ACK of the 487 (same branch as the INVITE) is absorbed by the server transaction
    const ack = request({
      method: 'ACK', ruri: c.req.uriText, from: c.req.header('from')!, to: last[0]!.msg.header('to')!, callId: c.req.callId()!, cseq: 2,
      via: c.req.headerValues('via')[0]!,
    });
    expect(await h.request(ack, ALICE)).toEqual([]);
    await expectNoLeaks(h);
  });

  it('CANCEL before any provisional from downstream: 200 and 487 at once; the CANCEL goes out when the branch rings', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const { h } = c;
    const f1 = inviteTo(c, B1);
    const out = await h.request(cancelOf(c), ALICE);
    expect(upstream(out).map((s) => `${s.msg.status} ${s.msg.cseq()!.method}`).sort()).toEqual(['200 CANCEL', '487 INVITE']);
    expect(requests(out, 'CANCEL')).toEqual([]);
    const ring = await h.response(answer(f1, 180, { toTag: 'b1' }), B1);
    expect(upstream(ring)).toEqual([]);
    expect(lines(requests(ring))).toEqual([`CANCEL ${bob(B1)} SIP/2.0`]);
    await h.response(answer(requests(ring)[0]!.msg, 200, { toTag: 'b1' }), B1);
    const fin = await h.response(answer(f1, 487, { toTag: 'b1' }), B1);
    expect(lines(fin)).toEqual([`ACK ${bob(B1)} SIP/2.0`]);
    await expectNoLeaks(h);
  });

  it('a CANCEL after the final response while the response context lives: 200 (§16.10), nothing sent downstream', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const { h } = c;
    const busy = await h.response(answer(inviteTo(c, B1), 486, { toTag: 'b1' }), B1);
    expect(upstream(busy).map((s) => s.msg.status)).toEqual([486]);
    const out = await h.request(cancelOf(c), ALICE);
    expect(upstream(out).map((s) => `${s.msg.status} ${s.msg.cseq()!.method}`)).toEqual(['200 CANCEL']);
    expect(requests(out)).toEqual([]);
    await expectNoLeaks(h);
    h.take(); // the 486 retransmissions (no ACK was sent)
    // once the INVITE transaction is gone: 481
    const late = await h.request(cancelOf(c), ALICE);
    expect(upstream(late).map((s) => s.msg.status)).toEqual([481]);
  });

  it('a CANCEL after the 2xx, during Timer L: 200 (the INVITE transaction existed, §9.2), nothing sent downstream; after Timer L: 481', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const { h } = c;
    const ok = await h.response(answer(inviteTo(c, B1), 200, { toTag: 'b1', contact: `<${bob(B1)}>` }), B1);
    expect(upstream(ok).map((s) => s.msg.status)).toEqual([200]);
    expect(h.tx.findInviteForCancel(parseRequest(cancelOf(c)), ALICE)).toBeUndefined(); // the INVITE transaction ended
    expect(h.proxy.activeContexts).toBe(0);
    await h.advance(64 * 500 - 1000);
    const out = await h.request(cancelOf(c), ALICE);
    expect(upstream(out).map((s) => `${s.msg.status} ${s.msg.cseq()!.method}`)).toEqual(['200 CANCEL']);
    expect(requests(out)).toEqual([]);
    // after Timer L the accepted entry is gone (and the CANCEL's own resend entry after Timer J): 481
    await h.advance(64 * 500);
    expect(h.tx.stats()).toMatchObject({ server: 0, client: 0, lingering: 0 });
    const late = await h.request(cancelOf(c), ALICE);
    expect(upstream(late).map((s) => `${s.msg.status} ${s.msg.cseq()!.method}`)).toEqual(['481 CANCEL']);
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ in-dialog

describe('in-dialog requests (§16.4)', () => {
  /**
   * A call alice → bob (registered at B1), answered by bob: the dialog and its Record-Route set.
   * With `via`, alice's INVITE reaches us through an upstream proxy at `via` that record-routes itself.
   */
  async function dialogOf(o: { via?: typeof ALICE } = {}): Promise<{ h: Harness; rr: string[]; callId: string; alice: string; bob: string }> {
    const h = await createHarness();
    await h.register('bob', 'bobpw', `<${bob(B1)}>`, B1);
    const src = o.via ?? ALICE;
    const extra = o.via !== undefined ? [`Record-Route: <sip:${o.via.address};lr>`] : [];
    const { req, out } = await authedRequest(h, { src, extra });
    const inv = requests(out, 'INVITE')[0]!.msg;
    const ok = await h.response(answer(inv, 200, { toTag: 'b1', contact: `<${bob(B1)}>` }), B1);
    const r200 = upstream(ok).length > 0 ? upstream(ok)[0]!.msg : (responses(ok)[0]!.msg as SipResponse);
    return { h, rr: r200.headerValues('record-route'), callId: req.callId()!, alice: req.header('from')!, bob: r200.header('to')! };
  }

  const fromBob = (d: { callId: string; alice: string; bob: string }, o: { method: string; ruri: string; routes: string[]; cseq?: number }): string =>
    request({
      method: o.method, ruri: o.ruri, from: d.bob, to: d.alice, callId: d.callId, cseq: o.cseq ?? 5,
      via: viaOf(B1), extra: o.routes.map((r) => `Route: ${r}`),
    });

  it('a BYE with our Route is forwarded without a challenge, our Route removed, other Routes kept (alice behind a proxy)', async () => {
    const P = udpSrc('198.51.100.9', 5060);
    const d = await dialogOf({ via: P });
    expect(withoutTokens(d.rr)).toEqual([OUR_RR, '<sip:198.51.100.9;lr>']);
    const { h } = d;
    const out = await h.request(fromBob(d, { method: 'BYE', ruri: 'sip:alice@192.0.2.10:5060', routes: d.rr }), B1);
    expect(lines(out)).toEqual(['BYE sip:alice@192.0.2.10:5060 SIP/2.0']);
    expect(out[0]!.target).toMatchObject({ address: '198.51.100.9', port: 5060 });
    const fwd = out[0]!.msg as SipRequest;
    expect(fwd.headerValues('route')).toEqual(['<sip:198.51.100.9;lr>']);
    expect(fwd.maxForwards()).toBe(69);
    const up = await h.response(answer(fwd, 200, { toTag: undefined }), P);
    expect(lines(up)).toEqual(['SIP/2.0 200 OK']);
    expect(up[0]!.target).toMatchObject({ address: B1.address, port: B1.port });
    await expectNoLeaks(h);
  });

  for (const method of ['INVITE', 'UPDATE', 'INFO', 'MESSAGE', 'REFER', 'NOTIFY', 'PRACK']) {
    it(`an in-dialog ${method} is not challenged and not looked up; no Record-Route added`, async () => {
      const d = await dialogOf();
      const out = await d.h.request(fromBob(d, { method, ruri: 'sip:alice@192.0.2.10:5060', routes: d.rr }), B1);
      const fwd = requests(out, method);
      expect(fwd).toHaveLength(1);
      expect(fwd[0]!.target).toMatchObject({ address: ALICE.address, port: ALICE.port });
      expect(fwd[0]!.msg.has('route')).toBe(false);
      expect(fwd[0]!.msg.has('record-route')).toBe(false);
      expect(responses(out).filter((s) => s.msg.status >= 400)).toEqual([]);
    });
  }

  it('an ACK with a To-tag and no Route (the ACK of a 407) is absorbed: nothing sent', async () => {
    const h = await createHarness();
    const ack = request({ method: 'ACK', ruri: `sip:bob@${DOMAIN}`, from: `<sip:alice@${DOMAIN}>;tag=a1`, to: `<sip:bob@${DOMAIN}>;tag=b1`, callId: 'dlg-ack', cseq: 5, via: viaOf(ALICE) });
    expect(await h.request(ack, ALICE)).toEqual([]);
    await expectNoLeaks(h);
  });

  it('an in-dialog request (not ACK) without Route: 404', async () => {
    const h = await createHarness();
    const bye = request({ method: 'BYE', ruri: `sip:bob@${DOMAIN}`, from: `<sip:alice@${DOMAIN}>;tag=a1`, to: `<sip:bob@${DOMAIN}>;tag=b1`, callId: 'dlg-bye', cseq: 5, via: viaOf(ALICE) });
    const out = await h.request(bye, ALICE);
    expect(responses(out).map((s) => s.msg.status)).toEqual([404]);
    expect(requests(out)).toEqual([]);
    await expectNoLeaks(h);
  });

  it('strict-route fix-up: R-URI is our Record-Route URI (with its token), the last Route is the real target', async () => {
    const d = await dialogOf();
    const ours = d.rr[0]!.slice(1, -1);
    const out = await d.h.request(fromBob(d, { method: 'BYE', ruri: ours, routes: ['<sip:alice@192.0.2.10:5060>'] }), B1);
    const fwd = requests(out, 'BYE');
    expect(lines(out)).toEqual(['BYE sip:alice@192.0.2.10:5060 SIP/2.0']);
    expect(fwd[0]!.target).toMatchObject({ address: ALICE.address, port: ALICE.port });
    expect(fwd[0]!.msg.has('route')).toBe(false);
    await expectNoLeaks(d.h);
  });

  it('strict-route fix-up with more Routes: the request goes on to the next Route, the last one becomes the R-URI', async () => {
    const d = await dialogOf({ via: udpSrc('198.51.100.9', 5060) });
    const ours = d.rr[0]!.slice(1, -1);
    const out = await d.h.request(fromBob(d, { method: 'BYE', ruri: ours, routes: ['<sip:198.51.100.9;lr>', '<sip:alice@192.0.2.10:5060>'] }), B1);
    const fwd = requests(out, 'BYE');
    expect(fwd).toHaveLength(1);
    expect(fwd[0]!.msg.uriText).toBe('sip:alice@192.0.2.10:5060');
    expect(fwd[0]!.msg.headerValues('route')).toEqual(['<sip:198.51.100.9;lr>']);
    expect(fwd[0]!.target).toMatchObject({ address: '198.51.100.9' });
  });
});

// ------------------------------------------------------------------------------------------ double Record-Route

/** a Record-Route value of ours as one of a double Record-Route pair (RFC 5658: r2=on). */
const r2 = (v: string): string => v.replace(';lr>', ';lr;r2=on>');

describe('double Record-Route (UDP in, TCP out)', () => {
  it('two Record-Routes on the forwarded INVITE, sent over TCP; later both our Routes are removed in both directions', async () => {
    const BT = tcpSrc('192.0.2.30', 5070);
    const c = await call([{ uri: bob(BT, ';transport=tcp'), src: BT }]);
    const { h } = c;
    expect(c.invites).toHaveLength(1);
    const fwd = c.invites[0]!;
    expect(fwd.target).toMatchObject({ transport: 'tcp', address: BT.address, port: BT.port });
    expectOurRR(fwd.msg.headerValues('record-route'), [r2(OUR_RR_TCP), r2(OUR_RR)]);
    expect(fwd.msg.topVia()!.transport).toBe('TCP');
    const ok = await h.response(answer(fwd.msg, 200, { toTag: 'bt', contact: `<${bob(BT, ';transport=tcp')}>` }), BT);
    const up = upstream(ok);
    expect(up.map((s) => s.msg.status)).toEqual([200]);
    expect(up[0]!.target.transport).toBe('udp');
    expectOurRR(up[0]!.msg.headerValues('record-route'), [r2(OUR_RR_TCP), r2(OUR_RR)]);

    // alice → bob: route set = RR reversed
    const ack = request({
      method: 'ACK', ruri: bob(BT, ';transport=tcp'), from: c.req.header('from')!, to: up[0]!.msg.header('to')!, callId: c.req.callId()!, cseq: 2,
      via: viaOf(ALICE), extra: [...up[0]!.msg.headerValues('record-route')].reverse().map((v) => `Route: ${v}`),
    });
    const a = await h.request(ack, ALICE);
    expect(lines(a)).toEqual([`ACK ${bob(BT, ';transport=tcp')} SIP/2.0`]);
    expect(a[0]!.target).toMatchObject({ transport: 'tcp', address: BT.address, port: BT.port });
    expect((a[0]!.msg as SipRequest).has('route')).toBe(false);

    // bob → alice over TCP: route set = RR in order
    const bye = request({
      method: 'BYE', ruri: 'sip:alice@192.0.2.10:5060', from: up[0]!.msg.header('to')!, to: c.req.header('from')!, callId: c.req.callId()!, cseq: 1,
      via: viaOf(BT), extra: fwd.msg.headerValues('record-route').map((v) => `Route: ${v}`),
    });
    const b = await h.request(bye, BT);
    expect(lines(b)).toEqual(['BYE sip:alice@192.0.2.10:5060 SIP/2.0']);
    expect(b[0]!.target).toMatchObject({ transport: 'udp', address: ALICE.address, port: ALICE.port });
    expect((b[0]!.msg as SipRequest).has('route')).toBe(false);
    const byeOk = await h.response(answer(b[0]!.msg as SipRequest, 200, { toTag: undefined }), ALICE);
    expect(byeOk[0]!.target).toMatchObject({ transport: 'tcp', address: BT.address, port: BT.port });
    await expectNoLeaks(h);
  });

  it('the second of our Routes picks the transport: bob answered with a Contact without transport=tcp, alice\'s BYE still leaves over TCP, his over UDP', async () => {
    const BT = tcpSrc('192.0.2.31', 5072);
    const c = await call([{ uri: bob(BT, ';transport=tcp'), src: BT }], { natReceived: false });
    const { h } = c;
    const fwd = c.invites[0]!;
    expect(fwd.target.transport).toBe('tcp');
    const ok = await h.response(answer(fwd.msg, 200, { toTag: 'bt2', contact: `<${bob(BT)}>` }), BT);
    const up = upstream(ok);
    const rr = up[0]!.msg.headerValues('record-route');
    const ack = request({
      method: 'ACK', ruri: bob(BT), from: c.req.header('from')!, to: up[0]!.msg.header('to')!, callId: c.req.callId()!, cseq: 2,
      via: viaOf(ALICE), extra: [...rr].reverse().map((v) => `Route: ${v}`),
    });
    const acked = await h.request(ack, ALICE);
    expect(lines(acked)).toEqual([`ACK ${bob(BT)} SIP/2.0`]);
    expect(acked[0]!.target).toMatchObject({ transport: 'tcp', address: BT.address, port: BT.port });
    const bye = request({
      method: 'BYE', ruri: bob(BT), from: c.req.header('from')!, to: up[0]!.msg.header('to')!, callId: c.req.callId()!, cseq: 3,
      via: viaOf(ALICE), extra: [...rr].reverse().map((v) => `Route: ${v}`),
    });
    const out = await h.request(bye, ALICE);
    expect(lines(out)).toEqual([`BYE ${bob(BT)} SIP/2.0`]);
    expect(out[0]!.target).toMatchObject({ transport: 'tcp', address: BT.address, port: BT.port });
    expect((out[0]!.msg as SipRequest).topVia()!.transport).toBe('TCP');
    const byeOk = await h.response(answer(out[0]!.msg as SipRequest, 200, { toTag: undefined }), BT);
    expect(byeOk[0]!.target).toMatchObject({ transport: 'udp', address: ALICE.address, port: ALICE.port });

    // and the other way: bob's BYE (over TCP) to alice's UDP contact
    const bye2 = request({
      method: 'BYE', ruri: 'sip:alice@192.0.2.10:5060', from: up[0]!.msg.header('to')!, to: c.req.header('from')!, callId: c.req.callId()!, cseq: 1,
      via: viaOf(BT), extra: rr.map((v) => `Route: ${v}`),
    });
    const out2 = await h.request(bye2, BT);
    expect(out2[0]!.target).toMatchObject({ transport: 'udp', address: ALICE.address, port: ALICE.port });
    await h.response(answer(out2[0]!.msg as SipRequest, 200, { toTag: undefined }), ALICE);
    await expectNoLeaks(h);
  });

  it('UDP in, UDP out: a single Record-Route', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    expectOurRR(c.invites[0]!.msg.headerValues('record-route'), [OUR_RR]);
  });
});

// ------------------------------------------------------------------------------------------ timers and retransmissions

describe('timers and retransmissions', () => {
  it('Timer C: a branch that rings forever is CANCELled and the caller gets 408 (fake time)', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const { h } = c;
    const f1 = inviteTo(c, B1);
    await h.response(answer(f1, 180, { toTag: 'b1' }), B1);
    const out = await h.advance(180_000);
    const cancels = requests(out, 'CANCEL');
    expect(cancels).toHaveLength(1);
    expect(cancels[0]!.target).toMatchObject({ address: B1.address, port: B1.port });
    // the callee does not answer the CANCEL nor the INVITE: the caller still gets a final
    const rest = await h.advance(64 * 500 + 1000);
    const finals = upstream([...out, ...rest]).filter((s) => s.msg.status >= 200);
    expect(finals.length).toBeGreaterThanOrEqual(1);
    expect(finals[0]!.msg.status).toBe(408);
    // anything after the first is a Timer G retransmission of the same 408 (the caller sent no ACK)
    for (const f of finals) expect(f.data.equals(finals[0]!.data)).toBe(true);
    await expectNoLeaks(h);
  });

  it('a retransmission of the authenticated INVITE is absorbed (100 again), not re-authenticated or forwarded again', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', `<${bob(B1)}>`, B1);
    const { req } = await authedRequest(h, { src: ALICE });
    const again = await h.request(req, ALICE);
    expect(lines(again)).toEqual(['SIP/2.0 100 Trying']);
    expect(h.tx.counters().absorbed).toBeGreaterThanOrEqual(1);
  });

  it('an INVITE not needing auth (from a foreign domain to a local user) gets 100 Trying from the transaction after 200 ms', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', `<${bob(B1)}>`, B1);
    const src = udpSrc('203.0.113.5', 5060);
    const out = await h.request(
      request({ method: 'INVITE', ruri: `sip:bob@${DOMAIN}`, from: '<sip:carol@other.net>;tag=c', to: `<sip:bob@${DOMAIN}>`, callId: 'ext-1', cseq: 1, via: viaOf(src) }),
      src,
    );
    expect(lines(out)).toEqual([`INVITE ${bob(B1)} SIP/2.0`]);
    const later = await h.advance(200);
    expect(responses(later).map((s) => s.msg.status)).toEqual([100]);
  });

  it('a 2xx arriving after the caller already got a local 487 (CANCEL race) is still forwarded upstream', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const { h } = c;
    const f1 = inviteTo(c, B1);
    const out = await h.request(cancelOf(c), ALICE);
    expect(upstream(out).map((s) => s.msg.status).sort()).toEqual([200, 487]);
    // the callee answered before it saw any CANCEL (none was sent: no provisional)
    const ok = await h.response(answer(f1, 200, { toTag: 'b1', contact: `<${bob(B1)}>` }), B1);
    expect(upstream(ok).map((s) => s.msg.status)).toEqual([200]);
    expect(branchesOf(upstream(ok)[0]!.msg)).toEqual(aliceVias(c));
    // and its retransmission too
    const again = await h.response(answer(f1, 200, { toTag: 'b1', contact: `<${bob(B1)}>` }), B1);
    expect(upstream(again).map((s) => s.msg.status)).toEqual([200]);
    await expectNoLeaks(h);
  });
});

// ------------------------------------------------------------------------------------------ preloaded Route, unreachable branches

describe('initial requests with a preloaded Route; branches without a route', () => {
  it('our own preloaded Route is removed and the request goes on to the next Route, Record-Routed', async () => {
    const h = await createHarness();
    const { out } = await authedRequest(h, { src: ALICE, extra: [`Route: ${OUR_RR}`, 'Route: <sip:198.51.100.9;lr>'] });
    const inv = requests(out, 'INVITE');
    expect(inv).toHaveLength(1);
    expect(inv[0]!.target).toMatchObject({ address: '198.51.100.9', port: 5060 });
    expect(inv[0]!.msg.headerValues('route')).toEqual(['<sip:198.51.100.9;lr>']);
    expect(inv[0]!.msg.uriText).toBe(`sip:bob@${DOMAIN}`);
    expectOurRR(inv[0]!.msg.headerValues('record-route'), [OUR_RR]);
  });

  it('a preloaded Route naming only us: removed, then the location lookup as usual', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', `<${bob(B1)}>`, B1);
    const { out } = await authedRequest(h, { src: ALICE, extra: [`Route: ${OUR_RR}`] });
    const inv = requests(out, 'INVITE');
    expect(inv).toHaveLength(1);
    expect(inv[0]!.msg.uriText).toBe(bob(B1));
    expect(inv[0]!.msg.has('route')).toBe(false);
  });

  // (not a .invalid name: a .invalid Contact is stored with the REGISTER's source as `received`)
  it('a contact that cannot be resolved counts as a 503 branch: the other branch decides; alone it gives 500', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: 'sip:bob@nowhere.example', src: tcpSrc('192.0.2.40', 5090) }], { natReceived: false });
    expect(c.invites.map((s) => s.target.address)).toEqual([B1.address]);
    const out = await c.h.response(answer(inviteTo(c, B1), 486, { toTag: 'b1' }), B1);
    expect(upstream(out).map((s) => s.msg.status)).toEqual([486]);
    await expectNoLeaks(c.h);

    const d = await call([{ uri: 'sip:bob@nowhere.example', src: tcpSrc('192.0.2.40', 5090) }], { natReceived: false });
    expect(d.invites).toEqual([]);
    const finals = upstream(d.out).filter((s) => s.msg.status >= 200);
    expect(finals.map((s) => s.msg.status)).toEqual([500]);
    expect(branchesOf(finals[0]!.msg)).toEqual(aliceVias(d));
    await expectNoLeaks(d.h);
  });

  it('a transport=tls target is never sent over cleartext TCP (there is no TLS transport): no branch for it', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }, { uri: 'sip:bob@192.0.2.41:5061;transport=tls', src: tcpSrc('192.0.2.41', 5061) }], { natReceived: false });
    expect(c.invites.map((s) => [s.target.address, s.target.transport])).toEqual([[B1.address, B1.transport]]);
    const out = await c.h.response(answer(inviteTo(c, B1), 486, { toTag: 'b1' }), B1);
    expect(upstream(out).map((s) => s.msg.status)).toEqual([486]);
    await expectNoLeaks(c.h);

    const d = await call([{ uri: 'sip:bob@192.0.2.41:5061;transport=TLS', src: tcpSrc('192.0.2.41', 5061) }], { natReceived: false });
    expect(d.invites).toEqual([]);
    expect(d.out.filter((s) => s.target.address === '192.0.2.41')).toEqual([]);
    const finals = upstream(d.out).filter((s) => s.msg.status >= 200);
    // cannot be reached securely: 480 (RFC 5630), not the 500 of a branch without a route
    expect(finals.map((s) => s.msg.status)).toEqual([480]);
    await expectNoLeaks(d.h);
  });

  it('a sips: target is never sent over an insecure transport, even when resolution offers one; sctp and ws (not served) get no branch', async () => {
    // the harness resolver ignores sips and answers UDP: the proxy itself refuses the hop
    // a sips: hop no secure transport reaches: 480 (RFC 5630); a transport not served: 500 (no route)
    for (const [uri, status] of [['sips:bob@192.0.2.42:5061', 480], ['sips:bob@192.0.2.42;transport=tcp', 480], ['sip:bob@192.0.2.42;transport=sctp', 500], ['sip:bob@192.0.2.42;transport=ws', 500]] as const) {
      const d = await call([{ uri, src: tcpSrc('192.0.2.42', 5061) }], { natReceived: false });
      expect(d.invites).toEqual([]);
      expect(d.out.filter((s) => s.target.address === '192.0.2.42')).toEqual([]);
      expect(upstream(d.out).filter((s) => s.msg.status >= 200).map((s) => s.msg.status)).toEqual([status]);
      await expectNoLeaks(d.h);
    }
  });
});

describe('WebSocket next hops (RFC 7118)', () => {
  const BROWSER = 'sip:k3k5@df7jal23ls0d.invalid;transport=ws';

  it('a browser registered over WS is called over WS at its connection address, with no INVITE retransmission (reliable)', async () => {
    const W = wsSrc('198.51.100.30', 50123);
    const c = await call([{ uri: BROWSER, src: W }], { ws: true });
    expect(c.invites.map((s) => [s.target.transport, s.target.address, s.target.port])).toEqual([['ws', '198.51.100.30', 50123]]);
    expect((c.invites[0]!.msg as SipRequest).toBuffer().toString().split('\r\n')[0]).toBe(`INVITE ${BROWSER} SIP/2.0`);
    // Timer A does not run over a reliable transport
    expect(requests(await c.h.advance(4000), 'INVITE')).toEqual([]);
  });

  it('without a ws listener a transport=ws target gets no branch (never sent over UDP)', async () => {
    const W = wsSrc('198.51.100.30', 50123);
    const c = await call([{ uri: BROWSER, src: W }]);
    expect(c.invites).toEqual([]);
    expect(c.out.filter((s) => s.target.address === '198.51.100.30')).toEqual([]);
    await expectNoLeaks(c.h);
  });
});

// ------------------------------------------------------------------------------------------ found by the wire fuzzer

describe('found by the wire fuzzer', () => {
  it('serial forking of a non-INVITE over two silent q-groups: the caller gets its 408, the server transaction is not dropped by its guard first', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', `<${bob(B1)}>;q=1.0`, B1);
    await h.register('bob', 'bobpw', `<${bob(B2)}>;q=0.5`, B2);
    const { out } = await authedRequest(h, { src: ALICE, method: 'MESSAGE' });
    expect(requests(out, 'MESSAGE').map((s) => s.target.port)).toEqual([B1.port]);
    // group 1 times out after 64*T1 (Timer F), group 2 as long again: the final is due at 2*64*T1
    const later = [...(await h.advance(64 * 500)), ...(await h.advance(64 * 500)), ...(await h.advance(1000))];
    expect(requests(later, 'MESSAGE').some((s) => s.target.port === B2.port)).toBe(true);
    expect(upstream(later).map((s) => s.msg.status)).toEqual([408]);
    await expectNoLeaks(h);
  });

  it('serial forking of an INVITE whose first group rings until Timer C: the second group still gets its chance and the caller its final', async () => {
    const h = await createHarness();
    await h.register('bob', 'bobpw', `<${bob(B1)}>;q=1.0`, B1);
    await h.register('bob', 'bobpw', `<${bob(B2)}>;q=0.5`, B2);
    const { out } = await authedRequest(h, { src: ALICE });
    const first = requests(out, 'INVITE')[0]!.msg;
    await h.response(answer(first, 180, { toTag: 'b1' }), B1);
    // Timer C: CANCEL to group 1, which never answers it; 64*T1 later group 2 is tried and stays silent (Timer B)
    const t1 = await h.advance(180_000);
    expect(requests(t1, 'CANCEL')).toHaveLength(1);
    const rest = [...(await h.advance(64 * 500 + 100)), ...(await h.advance(64 * 500 + 100)), ...(await h.advance(64 * 500 + 100))];
    expect(requests(rest, 'INVITE').some((s) => s.target.port === B2.port)).toBe(true);
    const finals = upstream(rest).filter((s) => s.msg.status >= 200);
    expect(finals.length).toBeGreaterThanOrEqual(1);
    expect(finals[0]!.msg.status).toBe(408);
    await expectNoLeaks(h);
  });

  it('a downstream response that carries only our Via is not forwarded (nothing to forward it to), a provisional or a final', async () => {
    const c = await call([{ uri: bob(B1), src: B1 }]);
    const { h } = c;
    const fwd = inviteTo(c, B1);
    const onlyOurs = (status: number): SipResponse => {
      const r = answer(fwd, status, { toTag: 'b1', contact: `<${bob(B1)}>` });
      const ours = r.headerValues('via')[0]!;
      r.removeHeader('via');
      r.addHeader('Via', ours.split(',')[0]!);
      return r;
    };
    expect(upstream(await h.response(onlyOurs(180), B1))).toEqual([]);
    // the final cannot be passed on: the branch failed, the caller gets a 502 of ours (with its own Vias)
    const up = upstream(await h.response(onlyOurs(200), B1));
    expect(up.map((s) => s.msg.status)).toEqual([502]);
    expect(branchesOf(up[0]!.msg)).toEqual(aliceVias(c));
  });
});
