/**
 * `sips:` and TLS next hops (RFC 3261 §26.2.2, RFC 5630): a request is never forwarded over a
 * non-TLS hop when its Request-URI is sips: or its next hop asks for TLS. With no secure transport
 * served at all a sips: Request-URI is answered 416 (the scheme is not supported here); when a
 * secure transport exists but the target cannot be reached over it, 480.
 * Core harness (fake transport, real transaction layer, manual clock).
 */
import { describe, expect, it } from 'vitest';
import type { SipResponse } from '../../src/sip/index.js';
import type { LocalEndpoint, Source } from '../../src/transport/types.js';
import {
  answer,
  authedRequest,
  createHarness,
  requests,
  responses,
  TCP_EP,
  tcpSrc,
  UDP_EP,
  udpSrc,
  request,
  viaOf,
  withoutTokens,
  type Harness,
  type HarnessOptions,
  type Sent,
} from '../helpers/core-harness.js';

const ALICE = udpSrc('192.0.2.10', 5060);
const B1 = udpSrc('192.0.2.20', 5062);
const TLS_EP: LocalEndpoint = { transport: 'tls', address: '127.0.0.1', port: 5061, advertise: '127.0.0.1' };

function finalsTo(out: Sent[], src: Source): number[] {
  return responses(out)
    .filter((s) => s.target.address === src.address && s.target.port === src.port && s.msg.status >= 200)
    .map((s) => s.msg.status);
}

async function drain(h: Harness): Promise<void> {
  const s = await h.drain();
  expect(s).toEqual({ server: 0, client: 0, lingering: 0, timers: 0 });
  expect(h.proxy.activeContexts).toBe(0);
}

async function callBob(contact: string, ruri: string, opts: HarnessOptions = {}, from: Source = B1) {
  const h = await createHarness({ natReceived: false, ...opts });
  await h.register('bob', 'bobpw', `<${contact}>`, from);
  const { out } = await authedRequest(h, { src: ALICE, ruri });
  return { h, out, downstream: out.filter((s) => !(s.target.address === ALICE.address && s.target.port === ALICE.port)) };
}

describe('no secure transport served (UDP and TCP only)', () => {
  for (const method of ['INVITE', 'MESSAGE', 'OPTIONS']) {
    it(`a ${method} to sips:bob@example.com gets 416 Unsupported URI Scheme before anything else (auth, lookup); nothing goes to bob`, async () => {
      const h = await createHarness({ natReceived: false });
      await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', B1);
      const text = request({ method, ruri: 'sips:bob@example.com', from: '<sip:alice@example.com>;tag=a1', to: '<sips:bob@example.com>', callId: `sips-${method}`, cseq: 1, via: viaOf(ALICE) });
      const out = await h.request(text, ALICE);
      expect(requests(out)).toEqual([]);
      expect(finalsTo(out, ALICE)).toEqual([416]);
      await drain(h);
    });
  }

  it('an ACK to a sips: Request-URI is dropped (nothing answered, nothing sent)', async () => {
    const h = await createHarness({ natReceived: false });
    const text = request({ method: 'ACK', ruri: 'sips:bob@example.com', from: '<sip:alice@example.com>;tag=a1', to: '<sips:bob@example.com>;tag=x', callId: 'sips-ack', cseq: 1, via: viaOf(ALICE) });
    expect(await h.request(text, ALICE)).toEqual([]);
    expect(h.handled.map((x) => x.result)).toContain('dropped');
  });

  it('a binding with transport=tls alone: no branch (never cleartext TCP), the caller gets 480, not a 500', async () => {
    const { h, out, downstream } = await callBob('sip:bob@192.0.2.41:5061;transport=tls', 'sip:bob@example.com', {}, tcpSrc('192.0.2.41', 5061));
    expect(downstream).toEqual([]);
    expect(finalsTo(out, ALICE)).toEqual([480]);
    await drain(h);
  });

  it('a sips: binding (Request-URI sip:) alone: no branch, 480', async () => {
    const { h, out, downstream } = await callBob('sips:bob@192.0.2.41:5061', 'sip:bob@example.com', {}, tcpSrc('192.0.2.41', 5061));
    expect(downstream).toEqual([]);
    expect(finalsTo(out, ALICE)).toEqual([480]);
    await drain(h);
  });
});

describe('a secure transport served (a TLS endpoint)', () => {
  const withTls: HarnessOptions = { endpoints: [UDP_EP, TCP_EP, TLS_EP] };

  it('sips: Request-URI, bob registered with a plain sip: contact: the INVITE goes to him over TLS, never UDP', async () => {
    const { h, downstream } = await callBob('sip:bob@192.0.2.20:5062', 'sips:bob@example.com', withTls);
    const inv = requests(downstream, 'INVITE');
    expect(inv.map((s) => [s.target.transport, s.target.address, s.target.port])).toEqual([['tls', '192.0.2.20', 5062]]);
    expect(downstream.filter((s) => s.target.transport !== 'tls')).toEqual([]);
    expect(inv[0]!.msg.topVia()!.transport).toBe('TLS');
    // UDP in, TLS out: a Record-Route for each side, named with its transport (RFC 5658)
    expect(withoutTokens(inv[0]!.msg.headerValues('record-route'))).toEqual(['<sip:127.0.0.1:5061;transport=tls;lr;r2=on>', '<sip:127.0.0.1:5060;lr;r2=on>']);
    await h.advance(64 * 500);
    await drain(h);
  });

  it('in-dialog, UDP caller and TLS callee: alice\'s BYE to bob\'s plain sip: Contact leaves over TLS (the second Route names the TLS side)', async () => {
    const h = await createHarness({ natReceived: false, ...withTls });
    await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062>', B1);
    const { req, out } = await authedRequest(h, { src: ALICE, ruri: 'sips:bob@example.com' });
    const inv = requests(out, 'INVITE')[0]!;
    const BT: Source = { transport: 'tls', address: '192.0.2.20', port: 5062, connectionId: 991, local: TLS_EP };
    const ok = await h.response(answer(inv.msg, 200, { toTag: 'bt', contact: '<sip:bob@192.0.2.20:5062>' }), BT);
    const up = responses(ok).filter((s) => s.target.address === ALICE.address);
    const rr = up[0]!.msg.headerValues('record-route');
    const bye = request({
      method: 'BYE', ruri: 'sip:bob@192.0.2.20:5062', from: req.header('from')!, to: up[0]!.msg.header('to')!, callId: req.callId()!, cseq: 3,
      via: viaOf(ALICE), extra: [...rr].reverse().map((v) => `Route: ${v}`),
    });
    const b = await h.request(bye, ALICE);
    expect(requests(b, 'BYE').map((s) => [s.target.transport, s.target.address, s.target.port])).toEqual([['tls', '192.0.2.20', 5062]]);
    await h.advance(64 * 500);
    await drain(h);
  });

  it('sips: Request-URI, the only binding asks for transport=udp: nothing is sent, the caller gets 480', async () => {
    const { h, out, downstream } = await callBob('sip:bob@192.0.2.20:5062;transport=udp', 'sips:bob@example.com', withTls);
    expect(downstream).toEqual([]);
    expect(finalsTo(out, ALICE)).toEqual([480]);
    await drain(h);
  });

  it('sips: Request-URI, two bindings: the TLS one is tried, the UDP one is not; its 486 reaches the caller', async () => {
    const h = await createHarness({ natReceived: false, ...withTls });
    await h.register('bob', 'bobpw', '<sip:bob@192.0.2.20:5062;transport=udp>', B1);
    await h.register('bob', 'bobpw', '<sip:bob@192.0.2.21:5061;transport=tls>', tcpSrc('192.0.2.21', 5061));
    const { out } = await authedRequest(h, { src: ALICE, ruri: 'sips:bob@example.com' });
    const inv = requests(out, 'INVITE');
    expect(inv.map((s) => [s.target.transport, s.target.address])).toEqual([['tls', '192.0.2.21']]);
    const r = await h.response(answer(inv[0]!.msg, 486, { toTag: 'b2' }), tcpSrc('192.0.2.21', 5061));
    expect(finalsTo(r, ALICE)).toEqual([486]);
    await drain(h);
  });

  it('no 416 when TLS is served, and a transport=tls binding with a sip: Request-URI goes over TLS', async () => {
    const { h, downstream } = await callBob('sip:bob@192.0.2.41:5061;transport=tls', 'sip:bob@example.com', withTls, tcpSrc('192.0.2.41', 5061));
    expect(requests(downstream, 'INVITE').map((s) => s.target.transport)).toEqual(['tls']);
    await h.advance(64 * 500);
    await drain(h);
  });
});

export type { SipResponse };
