/**
 * The relay of test/helpers/relay.ts (real transport + transaction layers, T1 = 50 ms) over TCP on
 * 127.0.0.1: the UAC and UAS are plain `net` sockets framing with StreamFramer. Over a reliable
 * transport the relay retransmits no request (no Timer A/E, §17.1.1.2 / §17.1.2.2); responses go
 * back on the connection the request came in on (§18.2.2).
 *
 * The relay's 100 Trying is delayed to 4*T1 here and the UAS stays silent until it reached the UAC:
 * by then Timer A would have fired twice (T1, 3*T1) had it been running on TCP.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildResponse, SipRequest, SipResponse } from '../../src/sip/index.js';
import type { TimerSettings } from '../../src/transaction/index.js';
import {
  isInvite,
  sendUntilFinal,
  startRelay,
  TcpUac,
  TcpUas,
  TIMERS,
  uacRequest,
  uasBehaviour,
  UdpPeer,
  until,
  type Wire,
} from '../helpers/relay.js';

const SLOW_TRYING: TimerSettings = { ...TIMERS, trying: 4 * TIMERS.t1 };

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const status = (w: Pick<Wire, 'msg'>, method: string, code: number): boolean => w.msg instanceof SipResponse && w.msg.status === code && w.msg.cseq()?.method === method;
const request = (w: Pick<Wire, 'msg'>, method: string): boolean => w.msg instanceof SipRequest && w.msg.method === method;

async function tcpCallee() {
  const uas = await TcpUas.listen();
  cleanup.push(() => uas.close());
  const relay = await startRelay(() => ({ transport: 'tcp', address: '127.0.0.1', port: uas.port }), SLOW_TRYING);
  cleanup.push(() => relay.close());
  return { uas, relay, ua: uasBehaviour(uas) };
}

describe('stateful relay (real transport + transaction layers) over TCP on 127.0.0.1', () => {
  it('TCP caller and callee, the first 180 lost on its way out: no request is retransmitted, responses use the caller connection, the call completes', async () => {
    const { uas, relay, ua } = await tcpCallee();
    const uac = await TcpUac.connect(relay.tcpPort);
    cleanup.push(() => uac.close());
    const callId = `relay-tcp-${relay.tcpPort}`;
    let dropped = 0;
    relay.setDrop((w) => w.dir === 'out' && w.peer.transport === 'tcp' && w.peer.port === uac.port && status(w, 'INVITE', 180) && dropped++ === 0);

    uac.send(uacRequest('INVITE', uac, { callId, cseq: 1 }));
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const inv = uas.requests('INVITE')[0]!;
    expect(inv.vias()).toHaveLength(2);
    expect(inv.topVia()!.transport).toBe('TCP');
    expect(inv.topVia()!.port).toBe(relay.tcpPort);
    expect(inv.maxForwards()).toBe(69);

    // the UAS stays silent until the relay's own (late) 100 Trying reached the UAC
    await until(() => uac.responses('INVITE', 100).length > 0, '100 Trying at the UAC');
    ua.ring(inv);
    await until(() => relay.out(uac.port).some((w) => status(w, 'INVITE', 180)), 'the 180 to leave the relay');
    ua.answer(inv);
    await until(() => uac.responses('INVITE', 200).length > 0, '200 at the UAC');
    // the 180 was dropped and nobody resends a provisional: the stream delivered the 200 after where it would have been
    expect(relay.out(uac.port).filter((w) => status(w, 'INVITE', 180)).map((w) => w.dropped)).toEqual([true]);
    expect(uac.responses('INVITE', 180)).toHaveLength(0);
    expect(relay.transport.stats().drops.hook).toBe(1);
    const ok = uac.responses('INVITE', 200)[0]!;
    expect(ok.vias()).toHaveLength(1);
    expect(ok.toTag()).toBe('b1');

    uac.send(uacRequest('ACK', uac, { callId, cseq: 1, toTag: 'b1' }));
    await until(() => uas.requests('ACK').length > 0, 'ACK at the UAS');
    expect(uas.requests('ACK')[0]!.topVia()!.transport).toBe('TCP');

    uac.send(uacRequest('BYE', uac, { callId, cseq: 2, toTag: 'b1' })); // once: TCP is reliable
    await until(() => uac.responses('BYE', 200).length > 0, '200 to BYE at the UAC');

    // over TCP the relay sent each request exactly once (no Timer A / Timer E)
    expect(relay.out(uas.port).filter((w) => isInvite(w.msg))).toHaveLength(1);
    expect(relay.out(uas.port).filter((w) => request(w, 'BYE'))).toHaveLength(1);
    expect(uas.requests('INVITE')).toHaveLength(1);
    expect(uas.requests('BYE')).toHaveLength(1);
    expect(relay.seen).toEqual(['INVITE', 'ACK', 'BYE']);

    // the UAC has no listener: every response came back on its one connection; the relay reused one
    // outbound connection to the UAS for INVITE, ACK and BYE
    expect(uas.connections).toHaveLength(1);
    const conns = relay.transport.connections();
    expect(conns.filter((c) => c.direction === 'in').map((c) => c.remotePort)).toEqual([uac.port]);
    expect(conns.filter((c) => c.direction === 'out').map((c) => c.remotePort)).toEqual([uas.port]);
    expect(relay.transport.stats().sendErrors).toEqual(Object.fromEntries(Object.keys(relay.transport.stats().sendErrors).map((k) => [k, 0])));

    // Timers L and M end the INVITE transactions; BYE ends at once on TCP (J = K = 0)
    await until(() => {
      const s = relay.layer.stats();
      return s.server === 0 && s.client === 0 && s.timers === 0;
    }, 'the relay transaction table to empty');
  });

  it('TCP caller and callee, a 486: the relay ACKs the UAS on its connection, absorbs the UAC ACK, and both INVITE transactions end at once (D = I = 0)', async () => {
    const { uas, relay } = await tcpCallee();
    const uac = await TcpUac.connect(relay.tcpPort);
    cleanup.push(() => uac.close());
    const callId = `relay-tcp-busy-${relay.tcpPort}`;
    uac.send(uacRequest('INVITE', uac, { callId, cseq: 1, branch: 'z9hG4bKtcpbusy' }));
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const inv = uas.requests('INVITE')[0]!;
    uas.reply(inv, buildResponse(inv, 486, { toTag: 'b2' }).toBuffer());
    await until(() => uas.requests('ACK').length > 0, 'hop-by-hop ACK at the UAS');
    const ack = uas.requests('ACK')[0]!;
    expect(ack.topVia()!.branch).toBe(inv.topVia()!.branch);
    expect(ack.topVia()!.transport).toBe('TCP');
    expect(ack.toTag()).toBe('b2');
    expect(uas.connections).toHaveLength(1);
    await until(() => uac.responses('INVITE', 486).length > 0, '486 at the UAC');
    expect(uac.responses('INVITE', 486)[0]!.vias()).toHaveLength(1);

    uac.send(uacRequest('ACK', uac, { callId, cseq: 1, toTag: 'b2', branch: 'z9hG4bKtcpbusy' }));
    await until(() => relay.layer.counters().absorbed > 0, 'ACK absorbed');
    expect(relay.seen).toEqual(['INVITE']);
    expect(relay.out(uas.port).filter((w) => isInvite(w.msg))).toHaveLength(1);
    // the client transaction ended on the 486 (Timer D = 0) and the server one on the ACK (Timer I = 0):
    // nothing is left by the time the ACK was absorbed
    expect(relay.layer.stats()).toEqual({ server: 0, client: 0, lingering: 0, timers: 0 });
  });

  it('UDP caller, TCP callee, the first 2xx to the caller lost: the UAS 2xx retransmission over TCP is forwarded over UDP, the call completes', async () => {
    const { uas, relay, ua } = await tcpCallee();
    const uac = await UdpPeer.create();
    cleanup.push(() => uac.close());
    uac.relayPort = relay.udpPort;
    const callId = `relay-udp-tcp-${relay.udpPort}`;
    let dropped = 0;
    relay.setDrop((w) => w.dir === 'out' && w.peer.transport === 'udp' && w.peer.port === uac.port && status(w, 'INVITE', 200) && dropped++ === 0);

    uac.send(uacRequest('INVITE', uac, { callId, cseq: 1 }));
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const inv = uas.requests('INVITE')[0]!;
    expect(inv.vias()).toHaveLength(2);
    expect(inv.topVia()!.transport).toBe('TCP');
    expect(inv.topVia()!.port).toBe(relay.tcpPort);
    expect(inv.vias()[1]!.transport).toBe('UDP');

    await until(() => uac.responses('INVITE', 100).length > 0, '100 Trying at the UAC');
    ua.ring(inv);
    await until(() => uac.responses('INVITE', 180).length > 0, '180 at the UAC');
    ua.answer(inv);
    await until(() => uac.responses('INVITE', 200).length > 0, '200 at the UAC');
    const oks = relay.out(uac.port).filter((w) => status(w, 'INVITE', 200));
    expect(oks.length).toBeGreaterThanOrEqual(2);
    expect(oks[0]!.dropped).toBe(true);
    expect(oks[0]!.peer.transport).toBe('udp');
    expect(uac.responses('INVITE', 200)[0]!.vias()).toHaveLength(1);

    uac.send(uacRequest('ACK', uac, { callId, cseq: 1, toTag: 'b1' }));
    await until(() => uas.requests('ACK').length > 0, 'ACK at the UAS');
    sendUntilFinal(uac, uacRequest('BYE', uac, { callId, cseq: 2, toTag: 'b1' }), 'BYE');
    await until(() => uac.responses('BYE', 200).length > 0, '200 to BYE at the UAC');

    // the TCP leg carried each request once, on one connection
    expect(relay.out(uas.port).filter((w) => isInvite(w.msg))).toHaveLength(1);
    expect(relay.out(uas.port).filter((w) => request(w, 'BYE'))).toHaveLength(1);
    expect(relay.out(uas.port).every((w) => w.peer.transport === 'tcp')).toBe(true);
    expect(uas.requests('INVITE')).toHaveLength(1);
    expect(uas.connections).toHaveLength(1);
    expect(relay.seen.filter((m) => m === 'INVITE')).toEqual(['INVITE']);
    expect(relay.seen.filter((m) => m === 'BYE')).toEqual(['BYE']);
  });
});
