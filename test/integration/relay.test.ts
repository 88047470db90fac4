/**
 * A UAC and a UAS (plain dgram sockets speaking hand-written SIP) call each other through a minimal
 * stateful relay built from the transaction layer, over real UDP on 127.0.0.1.
 *
 * The relay uses a tiny dgram TransportLayer written here (src/transport's createTransportLayer was
 * not available when this test was written); it has a test hook that drops chosen outgoing datagrams.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { buildResponse, parseMessage, SipRequest, SipResponse } from '../../src/sip/index.js';
import { createTransactionLayer, realClock, type ServerTransaction, type TimerSettings } from '../../src/transaction/index.js';
import type { LocalEndpoint, Source, Target, TransportLayer } from '../../src/transport/types.js';

const TIMERS: TimerSettings = { t1: 50, t2: 400, t4: 500, timerC: 20_000, trying: 50, timerD: 500 };
const HANG_GUARD = 8000;

type Msg = SipRequest | SipResponse;

function bind(): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve(s));
  });
}

/** wait until `pred` holds (checked on every datagram and every 10 ms); rejects after a hang guard. */
function until(pred: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pred()) return resolve();
    const t0 = Date.now();
    const iv = setInterval(() => {
      if (pred()) {
        clearInterval(iv);
        resolve();
      } else if (Date.now() - t0 > HANG_GUARD) {
        clearInterval(iv);
        reject(new Error(`timed out waiting for ${what}`));
      }
    }, 5);
  });
}

/** a SIP endpoint in the test: records every message it receives. */
class Peer {
  readonly inbox: Msg[] = [];
  private handlers: Array<(m: Msg) => void> = [];
  private constructor(readonly sock: dgram.Socket) {
    sock.on('message', (data) => {
      const m = parseMessage(data);
      this.inbox.push(m);
      for (const h of this.handlers) h(m);
    });
  }
  static async create(): Promise<Peer> {
    return new Peer(await bind());
  }
  get port(): number {
    return this.sock.address().port;
  }
  on(h: (m: Msg) => void): void {
    this.handlers.push(h);
  }
  send(text: string | Buffer, port: number): void {
    this.sock.send(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, port, '127.0.0.1');
  }
  requests(method: string): SipRequest[] {
    return this.inbox.filter((m): m is SipRequest => m instanceof SipRequest && m.method === method);
  }
  responses(method: string, status?: number): SipResponse[] {
    return this.inbox.filter(
      (m): m is SipResponse => m instanceof SipResponse && m.cseq()?.method === method && (status === undefined || m.status === status),
    );
  }
  close(): void {
    this.sock.close();
  }
}

/** A minimal UDP TransportLayer for the relay, with a drop hook on outgoing messages. */
async function tinyTransport(onMessage: (m: Msg, src: Source) => void) {
  const sock = await bind();
  const local: LocalEndpoint = { transport: 'udp', address: '127.0.0.1', port: sock.address().port, advertise: '127.0.0.1' };
  const out: Array<{ msg: Msg; port: number; dropped: boolean }> = [];
  let drop: (m: Msg, port: number) => boolean = () => false;
  sock.on('message', (data, rinfo) => {
    let m: Msg;
    try {
      m = parseMessage(data);
    } catch {
      return;
    }
    onMessage(m, { transport: 'udp', address: rinfo.address, port: rinfo.port, local });
  });
  const tp: Pick<TransportLayer, 'send' | 'endpoints' | 'endpointFor'> = {
    send(data: Buffer, target: Target): Promise<void> {
      const msg = parseMessage(data);
      const dropped = drop(msg, target.port);
      out.push({ msg, port: target.port, dropped });
      if (dropped) return Promise.resolve();
      return new Promise((resolve) => sock.send(data, target.port, target.address, () => resolve()));
    },
    endpoints: () => [local],
    endpointFor: () => local,
  };
  return {
    tp,
    local,
    out,
    setDrop(fn: (m: Msg, port: number) => boolean): void {
      drop = fn;
    },
    close: () => sock.close(),
  };
}

/** §18.2.2 for the test: the top Via's rport/received, else its sent-by. */
function responseTarget(res: SipResponse): Target {
  const v = res.topVia()!;
  const port = typeof v.rport === 'number' ? v.rport : (v.port ?? 5060);
  return { transport: 'udp', address: v.received ?? v.host, port };
}

/** The relay: a stateful proxy between the UAC and the UAS, built on the transaction layer. */
async function startRelay(uacPort: () => number, uasPort: () => number) {
  const seen: string[] = [];
  const servers: ServerTransaction[] = [];
  let layer: ReturnType<typeof createTransactionLayer>;
  const t = await tinyTransport((m, src) => (m instanceof SipRequest ? layer.receiveRequest(m, src) : layer.receiveResponse(m, src)));
  const peer = (src: Source): Target => ({ transport: 'udp', address: '127.0.0.1', port: src.port === uacPort() ? uasPort() : uacPort() });
  const forwardCopy = (req: SipRequest): SipRequest => {
    const f = req.clone();
    f.setHeader('Max-Forwards', String((req.maxForwards() ?? 70) - 1));
    return f;
  };
  const upstream = (res: SipResponse): SipResponse => {
    const r = res.clone();
    r.removeFirstValue('via');
    return r;
  };
  layer = createTransactionLayer({
    transport: t.tp,
    clock: realClock(),
    timers: TIMERS,
    responseTarget,
    user: {
      request(req, src) {
        seen.push(req.method);
        const target = peer(src);
        if (req.method === 'ACK') {
          // ACK for a 2xx: forwarded as its own request (RFC 6026)
          const f = forwardCopy(req);
          f.addHeader('Via', layer.viaFor(target, layer.newBranch()), 'top');
          layer.sendStateless(f, target);
          return;
        }
        const st = layer.createServer(req, src);
        servers.push(st);
        if (req.method === 'CANCEL') {
          st.respond(buildResponse(req, 200));
          return;
        }
        layer.createClient(forwardCopy(req), target, {
          provisional: (res) => {
            if (res.status > 100) st.respond(upstream(res));
          },
          final: (res) => st.respond(upstream(res)),
          timeout: () => st.respond(buildResponse(req, 408)),
          transportError: () => st.respond(buildResponse(req, 503)),
        });
      },
      strayResponse(res, src) {
        layer.respondStateless(upstream(res), src);
      },
    },
  });
  return {
    layer,
    seen,
    port: t.local.port,
    out: t.out,
    setDrop: t.setDrop,
    close(): void {
      layer.close();
      t.close();
    },
  };
}

// ------------------------------------------------------------------------------------------ the call

let n = 0;
function uacRequest(method: string, uac: Peer, relayPort: number, o: { cseq: number; toTag?: string; branch?: string }): string {
  const branch = o.branch ?? `z9hG4bKuac${++n}`;
  return [
    `${method} sip:bob@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${uac.port};branch=${branch}`,
    'Max-Forwards: 70',
    `From: "Alice" <sip:alice@127.0.0.1>;tag=a1`,
    `To: <sip:bob@127.0.0.1>${o.toTag !== undefined ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: relay-call-${relayPort}`,
    `CSeq: ${o.cseq} ${method}`,
    `Contact: <sip:alice@127.0.0.1:${uac.port}>`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/** UAS behaviour: answers BYE with 200, retransmits its 2xx to INVITE every T1 until the ACK (§13.3.1.4). */
function uasAnswer(uas: Peer, relayPort: number) {
  uas.on((m) => {
    if (m instanceof SipRequest && m.method === 'BYE') uas.send(buildResponse(m, 200).toBuffer(), relayPort);
  });
  return {
    ring(inv: SipRequest): void {
      uas.send(buildResponse(inv, 180, { toTag: 'b1' }).toBuffer(), relayPort);
    },
    answer(inv: SipRequest): void {
      const ok = buildResponse(inv, 200, { toTag: 'b1', headers: [['Contact', `<sip:bob@127.0.0.1:${uas.port}>`]] }).toBuffer();
      let tries = 0;
      const resend = (): void => {
        if (uas.requests('ACK').length > 0 || tries++ > 30) return;
        uas.send(ok, relayPort);
        setTimeout(resend, TIMERS.t1).unref();
      };
      resend();
    },
  };
}

/** UAC non-INVITE behaviour: retransmit every T1 until a final response arrives (Timer E, simplified). */
function sendUntilFinal(uac: Peer, text: string, relayPort: number, method: string): void {
  let tries = 0;
  const go = (): void => {
    if (uac.responses(method).some((r) => r.status >= 200) || tries++ > 30) return;
    uac.send(text, relayPort);
    setTimeout(go, TIMERS.t1).unref();
  };
  go();
}

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

async function setupCall() {
  const uac = await Peer.create();
  const uas = await Peer.create();
  const relay = await startRelay(
    () => uac.port,
    () => uas.port,
  );
  cleanup.push(
    () => uac.close(),
    () => uas.close(),
    () => relay.close(),
  );
  return { uac, uas, relay, ua: uasAnswer(uas, relay.port) };
}

const isInvite = (m: Msg): boolean => m instanceof SipRequest && m.method === 'INVITE';

describe('stateful relay over UDP on 127.0.0.1', () => {
  it('the first INVITE towards the UAS is lost: Timer A resends it, the relay answers 100, the call completes', async () => {
    const { uac, uas, relay, ua } = await setupCall();
    let dropped = 0;
    relay.setDrop((m, port) => port === uas.port && isInvite(m) && dropped++ === 0);

    uac.send(uacRequest('INVITE', uac, relay.port, { cseq: 1 }), relay.port);
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const invitesOut = relay.out.filter((o) => o.port === uas.port && isInvite(o.msg));
    expect(invitesOut.length).toBeGreaterThanOrEqual(2);
    expect(invitesOut[0]!.dropped).toBe(true);
    // a retransmission: byte-identical, same branch
    expect(invitesOut[1]!.msg.toString()).toBe(invitesOut[0]!.msg.toString());
    const inv = uas.requests('INVITE')[0]!;
    expect(inv.vias()).toHaveLength(2);
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

    uac.send(uacRequest('ACK', uac, relay.port, { cseq: 1, toTag: 'b1' }), relay.port);
    await until(() => uas.requests('ACK').length > 0, 'ACK at the UAS');
    expect(relay.seen).toContain('ACK'); // the 2xx ACK reached the relay core as a new request

    sendUntilFinal(uac, uacRequest('BYE', uac, relay.port, { cseq: 2, toTag: 'b1' }), relay.port, 'BYE');
    await until(() => uac.responses('BYE', 200).length > 0, '200 to BYE at the UAC');
    expect(uas.requests('BYE').length).toBeGreaterThanOrEqual(1);
    // only one INVITE and one BYE reached the relay core: everything else was transaction business
    expect(relay.seen.filter((m) => m === 'INVITE')).toEqual(['INVITE']);
    expect(relay.seen.filter((m) => m === 'BYE')).toEqual(['BYE']);
  });

  it('the first 2xx to INVITE and the first 200 to BYE are lost: 2xx retransmissions pass through, the BYE retransmission is answered from the transaction', async () => {
    const { uac, uas, relay, ua } = await setupCall();
    const lost = { inviteOk: 0, byeOk: 0 };
    relay.setDrop((m, port) => {
      if (port !== uac.port || !(m instanceof SipResponse) || m.status !== 200) return false;
      if (m.cseq()?.method === 'INVITE') return lost.inviteOk++ === 0;
      if (m.cseq()?.method === 'BYE') return lost.byeOk++ === 0;
      return false;
    });

    uac.send(uacRequest('INVITE', uac, relay.port, { cseq: 1 }), relay.port);
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const inv = uas.requests('INVITE')[0]!;
    ua.ring(inv);
    ua.answer(inv);
    await until(() => uac.responses('INVITE', 200).length > 0, '200 at the UAC');
    // the UAS retransmitted its 2xx and the relay forwarded it: at least two 2xx left the relay
    const oks = relay.out.filter((o) => o.port === uac.port && o.msg instanceof SipResponse && o.msg.status === 200);
    expect(oks.length).toBeGreaterThanOrEqual(2);
    expect(oks[0]!.dropped).toBe(true);
    expect(uas.inbox.length).toBeGreaterThan(0);

    uac.send(uacRequest('ACK', uac, relay.port, { cseq: 1, toTag: 'b1' }), relay.port);
    await until(() => uas.requests('ACK').length > 0, 'ACK at the UAS');

    sendUntilFinal(uac, uacRequest('BYE', uac, relay.port, { cseq: 2, toTag: 'b1', branch: 'z9hG4bKbye1' }), relay.port, 'BYE');
    await until(() => uac.responses('BYE', 200).length > 0, '200 to BYE at the UAC');
    const byeOks = relay.out.filter((o) => o.port === uac.port && o.msg instanceof SipResponse && o.msg.cseq()?.method === 'BYE');
    expect(byeOks.length).toBeGreaterThanOrEqual(2);
    expect(byeOks[0]!.dropped).toBe(true);
    // the UAC's BYE retransmissions were absorbed by the relay's server transaction
    expect(relay.seen.filter((m) => m === 'BYE')).toEqual(['BYE']);
    expect(relay.seen.filter((m) => m === 'INVITE')).toEqual(['INVITE']);

    // every transaction of the call ends by itself (Timers J, K, L, M, D on real time)
    await until(() => {
      const s = relay.layer.stats();
      return s.server === 0 && s.client === 0 && s.timers === 0;
    }, 'the relay transaction table to empty');
  });

  it('a non-2xx final: the relay ACKs the UAS hop by hop and absorbs the UAC ACK', async () => {
    const { uac, uas, relay } = await setupCall();
    uac.send(uacRequest('INVITE', uac, relay.port, { cseq: 1, branch: 'z9hG4bKbusy' }), relay.port);
    await until(() => uas.requests('INVITE').length > 0, 'INVITE at the UAS');
    const inv = uas.requests('INVITE')[0]!;
    const busy = buildResponse(inv, 486, { toTag: 'b2' }).toBuffer();
    uas.send(busy, relay.port);
    await until(() => uas.requests('ACK').length > 0, 'hop-by-hop ACK at the UAS');
    const ack = uas.requests('ACK')[0]!;
    expect(ack.topVia()!.branch).toBe(inv.topVia()!.branch);
    expect(ack.toTag()).toBe('b2');
    await until(() => uac.responses('INVITE', 486).length > 0, '486 at the UAC');
    // UAS retransmits the 486 (its ACK "was lost"): the relay answers it with the ACK again
    uas.send(busy, relay.port);
    await until(() => uas.requests('ACK').length > 1, 'second ACK at the UAS');
    // the UAC ACKs the 486 on the INVITE branch: absorbed by the relay's server transaction
    uac.send(uacRequest('ACK', uac, relay.port, { cseq: 1, toTag: 'b2', branch: 'z9hG4bKbusy' }), relay.port);
    await until(() => relay.layer.counters().absorbed > 0, 'ACK absorbed');
    expect(relay.seen).toEqual(['INVITE']); // neither the UAC's ACK nor the 486 retransmission reached the core
  });
});
