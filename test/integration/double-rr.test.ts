/**
 * Record-Route both ways when a call crosses transports (RFC 5658 double Record-Route) with real
 * UAs on 127.0.0.x against the real core on real sockets (test/helpers/core-net.ts): alice on UDP
 * calls bob, registered over TCP; the INVITE reaches bob over TCP with two Record-Routes of ours
 * (TCP side on top, UDP side below, both r2=on and with the dialog's token), and the BYE from either
 * side is loose-routed over the other side's transport.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TRANSPORT_INFO } from '../../src/transport/transport.js';
import { NET_DOMAIN, startNetCore, TcpUa } from '../helpers/core-net.js';
import { UdpUa } from '../helpers/sip-ua.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const tokenOf = (v: string): string | undefined => /;sdt=([A-Za-z0-9_-]+)/.exec(v)?.[1];

describe('double Record-Route, UDP caller and TCP callee', () => {
  it('two Record-Routes on the INVITE; the ACK and BYE from alice reach bob over TCP, the BYE from bob reaches alice over UDP', async () => {
    const core = await startNetCore();
    cleanup.push(() => core.close());
    const alice = await UdpUa.open({ address: '127.0.0.2', server: { host: '127.0.0.1', port: core.udpPort }, answer: true });
    cleanup.push(() => alice.close());
    const bob = await TcpUa.open('127.0.0.3', { port: core.tcpPort });
    cleanup.push(() => bob.close());
    expect((await bob.register('bob', NET_DOMAIN)).status).toBe(200);

    const callId = 'double-rr-1';
    const ok = await alice.call('alice', NET_DOMAIN, 'x', `sip:bob@${NET_DOMAIN}`, callId);
    expect(ok.status).toBe(200);
    const inv = bob.received.find((r) => r.method === 'INVITE' && r.callId() === callId)!;
    expect(inv.topVia()!.transport).toBe(TRANSPORT_INFO.tcp.viaToken);
    const rr = inv.headerValues('record-route');
    expect(rr.map((v) => v.replace(/;sdt=[A-Za-z0-9_-]+/, ''))).toEqual([
      `<sip:127.0.0.1:${core.tcpPort};transport=tcp;lr;r2=on>`,
      `<sip:127.0.0.1:${core.udpPort};lr;r2=on>`,
    ]);
    expect(tokenOf(rr[0]!)).toBeDefined();
    expect(tokenOf(rr[1]!)).toBe(tokenOf(rr[0]!));
    expect(ok.headerValues('record-route')).toEqual(rr);

    // alice → bob: Route = Record-Route reversed, Request-URI = bob's Contact
    const from = ok.header('from')!;
    const to = ok.header('to')!;
    const routeToBob = [...rr].reverse().map((v) => `Route: ${v}`);
    await alice.send(alice.build({ method: 'ACK', ruri: bob.contact, from, to, callId, cseq: 2, extra: routeToBob }));
    await bob.waitFor(() => bob.received.some((r) => r.method === 'ACK' && r.callId() === callId), 'ACK at bob');
    const bye = await alice.request(alice.build({ method: 'BYE', ruri: bob.contact, from, to, callId, cseq: 3, extra: routeToBob }));
    expect(bye.status).toBe(200);
    const byeAtBob = bob.received.find((r) => r.method === 'BYE' && r.callId() === callId)!;
    expect(byeAtBob.topVia()!.transport).toBe('TCP');
    expect(byeAtBob.has('route')).toBe(false);

    // bob → alice, on the connection sipd opened to him: Route = Record-Route in order
    const aliceContact = `sip:alice@127.0.0.2:${alice.port}`;
    bob.sendOn(
      inv,
      [
        `BYE ${aliceContact} SIP/2.0`,
        `Via: SIP/2.0/TCP 127.0.0.3:${bob.port};branch=z9hG4bKbobbye1`,
        'Max-Forwards: 70',
        `From: ${to}`,
        `To: ${from}`,
        `Call-ID: ${callId}`,
        'CSeq: 1 BYE',
        ...rr.map((v) => `Route: ${v}`),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    await bob.waitFor(() => bob.responses.some((r) => r.callId() === callId && r.cseq()?.method === 'BYE' && r.status === 200), '200 to bob\'s BYE');
    const byeAtAlice = alice.received.find((r) => r.method === 'BYE' && r.callId() === callId)!;
    expect(byeAtAlice.topVia()!.transport).toBe('UDP');
    expect(byeAtAlice.topVia()!.port).toBe(core.udpPort);
    expect(byeAtAlice.has('route')).toBe(false);
    expect(core.errors).toEqual([]);
  });

  it('an in-dialog request with our Route but a forged token is refused (403), whichever side it names first', async () => {
    const core = await startNetCore();
    cleanup.push(() => core.close());
    const alice = await UdpUa.open({ address: '127.0.0.2', server: { host: '127.0.0.1', port: core.udpPort } });
    cleanup.push(() => alice.close());
    const bob = await TcpUa.open('127.0.0.3', { port: core.tcpPort });
    cleanup.push(() => bob.close());
    expect((await bob.register('bob', NET_DOMAIN)).status).toBe(200);
    const callId = 'double-rr-2';
    const ok = await alice.call('alice', NET_DOMAIN, 'x', `sip:bob@${NET_DOMAIN}`, callId);
    const rr = ok.headerValues('record-route');
    const forged = [...rr].reverse().map((v) => `Route: ${v.replace(/;sdt=[A-Za-z0-9_-]+/, ';sdt=AQAAAAAAAAAAAAAAAAAAAAAA')}`);
    const res = await alice.request(alice.build({ method: 'BYE', ruri: bob.contact, from: ok.header('from')!, to: ok.header('to')!, callId, cseq: 3, extra: forged }));
    expect(res.status).toBe(403);
    expect(bob.received.filter((r) => r.method === 'BYE')).toEqual([]);
  });
});
