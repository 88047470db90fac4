/**
 * A UAC and a UAS (plain dgram sockets speaking hand-written SIP) call each other through a minimal
 * stateful relay built from the real transport layer (createTransportLayer, UDP + TCP on
 * 127.0.0.1, ephemeral ports) and the real transaction layer (T1 = 50 ms), over real UDP.
 * Messages are dropped on purpose with the transport's dropHook (test/helpers/relay.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildResponse, SipResponse } from '../../src/sip/index.js';
import { isInvite, sendUntilFinal, startRelay, uacRequest, uasBehaviour, UdpPeer, until } from '../helpers/relay.js';

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function setupCall() {
  const uac = await UdpPeer.create();
  const uas = await UdpPeer.create();
  cleanup.push(
    () => uac.close(),
    () => uas.close(),
  );
  const relay = await startRelay(() => ({ transport: 'udp', address: '127.0.0.1', port: uas.port }));
  cleanup.push(() => relay.close());
  uac.relayPort = relay.udpPort;
  uas.relayPort = relay.udpPort;
  return { uac, uas, relay, ua: uasBehaviour(uas), callId: `relay-call-${relay.udpPort}` };
}

const is200 = (m: unknown, method: string): boolean => m instanceof SipResponse && m.status === 200 && m.cseq()?.method === method;

describe('stateful relay (real transport + transaction layers) over UDP on 127.0.0.1', () => {
  it('the first INVITE towards the UAS is lost: Timer A resends it, the relay answers 100, the call completes', async () => {
    const { uac, uas, relay, ua, callId } = await setupCall();
    let dropped = 0;
    relay.setDrop((w) => w.dir === 'out' && w.peer.port === uas.port && isInvite(w.msg) && dropped++ === 0);

    uac.send(uacRequest('INVITE', uac, { callId, cseq: 1 }));
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const invitesOut = relay.out(uas.port).filter((w) => isInvite(w.msg));
    expect(invitesOut.length).toBeGreaterThanOrEqual(2);
    expect(invitesOut[0]!.dropped).toBe(true);
    expect(invitesOut[1]!.dropped).toBe(false);
    // a retransmission: byte-identical, same branch
    expect(invitesOut[1]!.data.equals(invitesOut[0]!.data)).toBe(true);
    expect(relay.transport.stats().drops.hook).toBe(1);
    const inv = uas.requests('INVITE')[0]!;
    expect(inv.vias()).toHaveLength(2);
    expect(inv.topVia()!.transport).toBe('UDP');
    expect(inv.topVia()!.port).toBe(relay.udpPort);
    expect(inv.maxForwards()).toBe(69);

    // the UAS stays silent until the relay's own 100 Trying reached the UAC
    await until(() => uac.responses('INVITE', 100).length > 0, '100 Trying at the UAC');
    ua.ring(inv);
    await until(() => uac.responses('INVITE', 180).length > 0, '180 at the UAC');
    ua.answer(inv);
    await until(() => uac.responses('INVITE', 200).length > 0, '200 at the UAC');
    const ok = uac.responses('INVITE', 200)[0]!;
    expect(ok.vias()).toHaveLength(1);
    expect(ok.toTag()).toBe('b1');

    uac.send(uacRequest('ACK', uac, { callId, cseq: 1, toTag: 'b1' }));
    await until(() => uas.requests('ACK').length > 0, 'ACK at the UAS');
    expect(relay.seen).toContain('ACK'); // the 2xx ACK reached the relay core as a new request

    sendUntilFinal(uac, uacRequest('BYE', uac, { callId, cseq: 2, toTag: 'b1' }), 'BYE');
    await until(() => uac.responses('BYE', 200).length > 0, '200 to BYE at the UAC');
    expect(uas.requests('BYE').length).toBeGreaterThanOrEqual(1);
    // only one INVITE and one BYE reached the relay core: everything else was transaction business
    expect(relay.seen.filter((m) => m === 'INVITE')).toEqual(['INVITE']);
    expect(relay.seen.filter((m) => m === 'BYE')).toEqual(['BYE']);
  });

  it('the first 2xx to INVITE and the first 200 to BYE are lost: 2xx retransmissions pass through, the BYE retransmission is answered from the transaction', async () => {
    const { uac, uas, relay, ua, callId } = await setupCall();
    const lost = { inviteOk: 0, byeOk: 0 };
    relay.setDrop((w) => {
      if (w.dir !== 'out' || w.peer.port !== uac.port) return false;
      if (is200(w.msg, 'INVITE')) return lost.inviteOk++ === 0;
      if (is200(w.msg, 'BYE')) return lost.byeOk++ === 0;
      return false;
    });

    uac.send(uacRequest('INVITE', uac, { callId, cseq: 1 }));
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const inv = uas.requests('INVITE')[0]!;
    ua.ring(inv);
    ua.answer(inv);
    await until(() => uac.responses('INVITE', 200).length > 0, '200 at the UAC');
    // the UAS retransmitted its 2xx and the relay forwarded it: at least two 2xx left the relay
    const oks = relay.out(uac.port).filter((w) => is200(w.msg, 'INVITE'));
    expect(oks.length).toBeGreaterThanOrEqual(2);
    expect(oks[0]!.dropped).toBe(true);
    expect(oks[1]!.dropped).toBe(false);
    expect(uas.inbox.length).toBeGreaterThan(0);

    uac.send(uacRequest('ACK', uac, { callId, cseq: 1, toTag: 'b1' }));
    await until(() => uas.requests('ACK').length > 0, 'ACK at the UAS');

    sendUntilFinal(uac, uacRequest('BYE', uac, { callId, cseq: 2, toTag: 'b1', branch: 'z9hG4bKbye1' }), 'BYE');
    await until(() => uac.responses('BYE', 200).length > 0, '200 to BYE at the UAC');
    const byeOks = relay.out(uac.port).filter((w) => w.msg instanceof SipResponse && w.msg.cseq()?.method === 'BYE');
    expect(byeOks.length).toBeGreaterThanOrEqual(2);
    expect(byeOks[0]!.dropped).toBe(true);
    // the UAC's BYE retransmissions were absorbed by the relay's server transaction
    expect(relay.seen.filter((m) => m === 'BYE')).toEqual(['BYE']);
    expect(relay.seen.filter((m) => m === 'INVITE')).toEqual(['INVITE']);
    expect(relay.layer.counters().absorbed).toBeGreaterThan(0);

    // every transaction of the call ends by itself (Timers J, K, L, M, D on real time)
    await until(() => {
      const s = relay.layer.stats();
      return s.server === 0 && s.client === 0 && s.timers === 0;
    }, 'the relay transaction table to empty');
  });

  it('a non-2xx final: the relay ACKs the UAS hop by hop, re-ACKs a retransmitted 486 and absorbs the UAC ACK', async () => {
    const { uac, uas, relay, callId } = await setupCall();
    uac.send(uacRequest('INVITE', uac, { callId, cseq: 1, branch: 'z9hG4bKbusy' }));
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const inv = uas.requests('INVITE')[0]!;
    const busy = buildResponse(inv, 486, { toTag: 'b2' }).toBuffer();
    uas.reply(inv, busy);
    await until(() => uas.requests('ACK').length > 0, 'hop-by-hop ACK at the UAS');
    const ack = uas.requests('ACK')[0]!;
    expect(ack.topVia()!.branch).toBe(inv.topVia()!.branch);
    expect(ack.toTag()).toBe('b2');
    await until(() => uac.responses('INVITE', 486).length > 0, '486 at the UAC');
    // UAS retransmits the 486 (its ACK "was lost"): the relay answers it with the ACK again
    uas.reply(inv, busy);
    await until(() => uas.requests('ACK').length > 1, 'second ACK at the UAS');
    expect(uas.requests('ACK')[1]!.toString()).toBe(ack.toString());
    // the UAC ACKs the 486 on the INVITE branch: absorbed by the relay's server transaction
    uac.send(uacRequest('ACK', uac, { callId, cseq: 1, toTag: 'b2', branch: 'z9hG4bKbusy' }));
    await until(() => relay.layer.counters().absorbed > 0, 'ACK absorbed');
    expect(relay.seen).toEqual(['INVITE']); // neither the UAC's ACK nor the 486 retransmission reached the core
  });
});
