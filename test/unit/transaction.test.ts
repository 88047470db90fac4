import { describe, expect, it } from 'vitest';
import { buildResponse, parseMessage, SipRequest, SipResponse } from '../../src/sip/index.js';
import {
  createTransactionLayer,
  manualClock,
  type ClientCallbacks,
  type ClientTransaction,
  type ManualClock,
  type TimerSettings,
} from '../../src/transaction/index.js';
import { TransportError, type LocalEndpoint, type Source, type Target, type TransportName } from '../../src/transport/types.js';

// ------------------------------------------------------------------------------------------ fixtures

const T: TimerSettings = { t1: 500, t2: 4000, t4: 5000, timerC: 180_000, trying: 200 };

const LOCAL: Record<'udp' | 'tcp', LocalEndpoint> = {
  udp: { transport: 'udp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' },
  tcp: { transport: 'tcp', address: '10.0.0.1', port: 5060, advertise: '10.0.0.1' },
};

interface Sent {
  at: number;
  msg: SipRequest | SipResponse;
  target: Target;
}

function fakeTransport(clock: ManualClock) {
  const sent: Sent[] = [];
  let failures = 0;
  return {
    sent,
    /** make the next n sends reject with a TransportError */
    failNext(n = 1): void {
      failures = n;
    },
    send(data: Buffer, target: Target): Promise<void> {
      sent.push({ at: clock.now(), msg: parseMessage(data), target });
      if (failures > 0) {
        failures--;
        return Promise.reject(new TransportError('unreachable', 'ICMP port unreachable'));
      }
      return Promise.resolve();
    },
    endpoints: () => [LOCAL.udp, LOCAL.tcp],
    endpointFor: (t: TransportName) => (t === 'udp' || t === 'tcp' ? LOCAL[t] : undefined),
  };
}

function setup(opts: { timers?: Partial<TimerSettings>; max?: number; maxLingering?: number; maxLingerBytes?: number } = {}) {
  const clock = manualClock(1_000_000);
  const tp = fakeTransport(clock);
  const requests: Array<{ req: SipRequest; src: Source }> = [];
  const strays: SipResponse[] = [];
  let n = 0;
  const layer = createTransactionLayer({
    transport: tp,
    clock,
    timers: { ...T, ...opts.timers },
    user: {
      request: (req, src) => requests.push({ req, src }),
      strayResponse: (res) => strays.push(res),
    },
    responseTarget: (_res, src) => ({ transport: src.transport, address: src.address, port: src.port }),
    newBranch: () => `z9hG4bKtest${++n}`,
    ...(opts.max !== undefined ? { maxTransactions: opts.max } : {}),
    ...(opts.maxLingering !== undefined ? { maxLingering: opts.maxLingering } : {}),
    ...(opts.maxLingerBytes !== undefined ? { maxLingerBytes: opts.maxLingerBytes } : {}),
  });
  return { clock, tp, layer, requests, strays };
}

const src = (transport: 'udp' | 'tcp' = 'udp'): Source => ({ transport, address: '192.0.2.7', port: 5062, local: LOCAL[transport] });
const UAS: Target = { transport: 'udp', address: '192.0.2.9', port: 5070 };
const UAS_TCP: Target = { transport: 'tcp', address: '192.0.2.9', port: 5070 };

interface ReqOpts {
  branch?: string;
  sentBy?: string;
  transport?: string;
  cseq?: number;
  cseqMethod?: string;
  fromTag?: string;
  toTag?: string;
  callId?: string;
  uri?: string;
  route?: string;
}

function req(method: string, o: ReqOpts = {}): SipRequest {
  const lines = [
    `${method} ${o.uri ?? 'sip:bob@example.com'} SIP/2.0`,
    `Via: SIP/2.0/${o.transport ?? 'UDP'} ${o.sentBy ?? '192.0.2.7:5062'}${o.branch === '' ? '' : `;branch=${o.branch ?? 'z9hG4bKabc'}`}`,
    'Max-Forwards: 70',
    ...(o.route !== undefined ? [`Route: ${o.route}`] : []),
    `From: <sip:alice@example.com>;tag=${o.fromTag ?? 'ft1'}`,
    `To: <sip:bob@example.com>${o.toTag !== undefined ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId ?? 'call-1@example.com'}`,
    `CSeq: ${o.cseq ?? 1} ${o.cseqMethod ?? method}`,
    'Content-Length: 0',
    '',
    '',
  ];
  const m = parseMessage(Buffer.from(lines.join('\r\n'), 'latin1'));
  if (!(m instanceof SipRequest)) throw new Error('not a request');
  return m;
}

/** a response to a request as the next hop would send it back (Via copied). */
function res(r: SipRequest, status: number, toTag = status > 100 ? 'tt1' : undefined): SipResponse {
  return parseMessage(buildResponse(r, status, toTag !== undefined ? { toTag } : {}).toBuffer()) as SipResponse;
}

function isReq(s: Sent | undefined, method?: string): s is Sent & { msg: SipRequest } {
  return s !== undefined && s.msg instanceof SipRequest && (method === undefined || s.msg.method === method);
}
const status = (s: Sent | undefined): number | undefined => (s?.msg instanceof SipResponse ? s.msg.status : undefined);
const gaps = (xs: Sent[]): number[] => xs.slice(1).map((s, i) => s.at - xs[i]!.at);
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function recorder() {
  const ev: string[] = [];
  const finals: SipResponse[] = [];
  const cb: ClientCallbacks = {
    provisional: (r) => ev.push(`prov ${r.status}`),
    final: (r) => {
      ev.push(`final ${r.status}`);
      finals.push(r);
    },
    timeout: () => ev.push('timeout'),
    transportError: (e) => ev.push(`error ${e.kind}`),
  };
  return { ev, finals, cb };
}

const zero = { server: 0, client: 0, lingering: 0, timers: 0 };

// ------------------------------------------------------------------------------------------ server non-INVITE

describe('server non-INVITE transaction (§17.2.2)', () => {
  it('Trying absorbs retransmissions, Proceeding resends the provisional; the final ends it and a resend entry answers retransmissions until Timer J', () => {
    const { clock, tp, layer, requests } = setup();
    const r = req('OPTIONS');
    layer.receiveRequest(r, src());
    expect(requests).toHaveLength(1);
    const st = layer.createServer(r, src());
    expect(st.state).toBe('trying');
    let ended = 0;
    st.onTerminated(() => ended++);
    layer.receiveRequest(req('OPTIONS'), src());
    expect(tp.sent).toHaveLength(0); // absorbed silently in Trying
    expect(requests).toHaveLength(1);

    st.respond(res(r, 100));
    expect(st.state).toBe('proceeding');
    layer.receiveRequest(req('OPTIONS'), src());
    expect(tp.sent.map(status)).toEqual([100, 100]);

    st.respond(res(r, 200));
    // Completed is not kept as a transaction: it ended, a linger entry absorbs retransmissions
    expect(st.state).toBe('terminated');
    expect(ended).toBe(1);
    expect(layer.stats()).toEqual({ server: 0, client: 0, lingering: 1, timers: 1 });
    expect(layer.lingerSizes()).toMatchObject({ total: 1, resend: 1 });
    st.respond(res(r, 500)); // later final ignored
    layer.receiveRequest(req('OPTIONS'), src());
    expect(tp.sent.map(status)).toEqual([100, 100, 200, 200]);
    expect(tp.sent[3]!.msg.toBuffer().equals(tp.sent[2]!.msg.toBuffer())).toBe(true); // the same bytes
    expect(requests).toHaveLength(1);
    expect(tp.sent[3]!.target).toEqual({ transport: 'udp', address: '192.0.2.7', port: 5062 });
    expect(layer.counters().absorbed).toBe(3);

    clock.advance(64 * 500 - 1);
    layer.receiveRequest(req('OPTIONS'), src());
    expect(tp.sent.map(status)).toEqual([100, 100, 200, 200, 200]);
    clock.advance(1);
    expect(ended).toBe(1);
    expect(layer.stats()).toEqual(zero);
    // a retransmission now is a new request for the TU
    layer.receiveRequest(req('OPTIONS'), src());
    expect(requests).toHaveLength(2);
  });

  it('TCP: Timer J is 0, the transaction ends with the final response', () => {
    const { layer, tp } = setup();
    const r = req('REGISTER', { transport: 'TCP' });
    const st = layer.createServer(r, src('tcp'));
    st.respond(res(r, 200));
    expect(st.state).toBe('terminated');
    expect(tp.sent.map(status)).toEqual([200]);
    expect(layer.stats()).toEqual(zero); // no linger entry on TCP
  });

  it('a transaction the TU never answers is dropped after 128*T1', () => {
    const { clock, layer } = setup();
    const st = layer.createServer(req('MESSAGE'), src());
    clock.advance(128 * 500 - 1);
    expect(st.state).toBe('trying');
    clock.advance(1);
    expect(st.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('a transport error terminates it', async () => {
    const { layer, tp } = setup();
    const r = req('OPTIONS');
    const st = layer.createServer(r, src());
    tp.failNext();
    st.respond(res(r, 200));
    await flush();
    expect(st.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('createServer for a request already in the table returns the same transaction', () => {
    const { layer } = setup();
    const a = layer.createServer(req('OPTIONS'), src());
    const b = layer.createServer(req('OPTIONS'), src());
    expect(b).toBe(a);
    expect(layer.stats().server).toBe(1);
  });
});

// ------------------------------------------------------------------------------------------ server INVITE

describe('server INVITE transaction (§17.2.1, RFC 6026)', () => {
  it('sends 100 Trying when the TU has not answered within 200 ms', () => {
    const { clock, tp, layer } = setup();
    const r = req('INVITE', { cseq: 1 });
    r.addHeader('Timestamp', '54');
    const st = layer.createServer(r, src());
    expect(st.state).toBe('proceeding');
    clock.advance(199);
    expect(tp.sent).toHaveLength(0);
    clock.advance(1);
    expect(tp.sent.map(status)).toEqual([100]);
    const trying = tp.sent[0]!.msg as SipResponse;
    expect(trying.toTag()).toBeUndefined();
    expect(trying.header('timestamp')).toBe('54');
  });

  it('no 100 Trying when the TU answers in time', () => {
    const { clock, tp, layer } = setup();
    const r = req('INVITE');
    const st = layer.createServer(r, src());
    clock.advance(150);
    st.respond(res(r, 180));
    clock.advance(10_000);
    expect(tp.sent.map(status)).toEqual([180]);
  });

  it('an INVITE retransmission gets 100 at once before any provisional, then the last provisional', () => {
    const { tp, layer, requests } = setup();
    const r = req('INVITE');
    layer.receiveRequest(r, src());
    const st = layer.createServer(r, src());
    layer.receiveRequest(req('INVITE'), src());
    expect(tp.sent.map(status)).toEqual([100]);
    st.respond(res(r, 180));
    st.respond(res(r, 183));
    layer.receiveRequest(req('INVITE'), src());
    expect(tp.sent.map(status)).toEqual([100, 180, 183, 183]);
    expect(requests).toHaveLength(1);
  });

  it('non-2xx: Timer G doubles from T1 up to T2, Timer H ends it without ACK', () => {
    const { clock, tp, layer } = setup();
    const r = req('INVITE');
    const st = layer.createServer(r, src());
    st.respond(res(r, 486));
    expect(st.state).toBe('completed');
    clock.advance(64 * 500 - 1);
    expect(st.state).toBe('completed');
    const finals = tp.sent.filter((s) => status(s) === 486);
    expect(gaps(finals)).toEqual([500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000]);
    clock.advance(1);
    expect(st.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('non-2xx: INVITE retransmission resends the final; ACK → Confirmed ends it (G stops), an absorb entry takes the ACKs for Timer I = T4', () => {
    const { clock, tp, layer, requests } = setup();
    const r = req('INVITE');
    layer.receiveRequest(r, src());
    const st = layer.createServer(r, src());
    let ended = 0;
    st.onTerminated(() => ended++);
    st.respond(res(r, 404));
    layer.receiveRequest(req('INVITE'), src());
    expect(tp.sent.map(status)).toEqual([404, 404]);
    expect(ended).toBe(0); // Completed (waiting for the ACK) is still a transaction
    layer.receiveRequest(req('ACK', { toTag: 'tt1' }), src());
    expect(st.state).toBe('terminated');
    expect(ended).toBe(1);
    expect(layer.stats()).toEqual({ server: 0, client: 0, lingering: 1, timers: 1 });
    expect(layer.lingerSizes()).toMatchObject({ absorb: 1 });
    layer.receiveRequest(req('ACK', { toTag: 'tt1' }), src());
    layer.receiveRequest(req('INVITE'), src()); // a late INVITE retransmission: absorbed, not answered
    expect(requests).toHaveLength(1); // ACKs and the INVITE absorbed
    clock.advance(4999);
    expect(tp.sent).toHaveLength(2); // no G retransmission in Confirmed
    expect(layer.stats().lingering).toBe(1);
    clock.advance(1);
    expect(layer.stats()).toEqual(zero);
    layer.receiveRequest(req('ACK', { toTag: 'tt1' }), src());
    expect(requests.map((x) => x.req.method)).toEqual(['INVITE', 'ACK']); // after Timer I: the TU's
  });

  it('TCP: no Timer G; ACK ends the transaction at once (Timer I = 0)', () => {
    const { clock, tp, layer } = setup();
    const r = req('INVITE', { transport: 'TCP' });
    const st = layer.createServer(r, src('tcp'));
    st.respond(res(r, 603));
    clock.advance(20_000);
    expect(tp.sent.map(status)).toEqual([603]);
    layer.receiveRequest(req('ACK', { transport: 'TCP', toTag: 'tt1' }), src('tcp'));
    expect(st.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('TCP: Timer H still ends a transaction that never sees the ACK', () => {
    const { clock, layer } = setup();
    const r = req('INVITE', { transport: 'TCP' });
    const st = layer.createServer(r, src('tcp'));
    st.respond(res(r, 603));
    clock.advance(64 * 500);
    expect(st.state).toBe('terminated');
  });

  it('2xx → the transaction ends; for Timer L an accepted entry absorbs INVITE retransmissions, the ACK goes to the TU, later 2xx go out statelessly', () => {
    const { clock, tp, layer, requests } = setup();
    const r = req('INVITE');
    layer.receiveRequest(r, src());
    const st = layer.createServer(r, src());
    let ended = 0;
    st.onTerminated(() => ended++);
    st.respond(res(r, 200));
    expect(st.state).toBe('terminated');
    expect(ended).toBe(1);
    expect(layer.stats()).toEqual({ server: 0, client: 0, lingering: 1, timers: 1 });
    expect(layer.lingerSizes()).toMatchObject({ accepted: 1 });
    st.respond(res(r, 200)); // UAS retransmission forwarded by the proxy: statelessly
    st.respond(res(r, 486)); // non-2xx after 2xx: ignored
    st.respond(res(r, 180)); // ignored
    layer.receiveRequest(req('INVITE'), src());
    expect(tp.sent.map(status)).toEqual([200, 200]);
    expect(tp.sent[1]!.target).toMatchObject({ address: '192.0.2.7', port: 5062 });
    clock.advance(10_000);
    expect(tp.sent).toHaveLength(2); // nothing retransmits a 2xx by itself
    // ACK for the 2xx: its own branch (RFC 3261) or the INVITE's (sloppy UAs): both reach the TU
    layer.receiveRequest(req('ACK', { branch: 'z9hG4bKack1', toTag: 'tt1' }), src());
    layer.receiveRequest(req('ACK', { toTag: 'tt1' }), src());
    expect(requests.map((x) => x.req.method)).toEqual(['INVITE', 'ACK', 'ACK']);
    clock.advance(64 * 500 - 10_000 - 1);
    layer.receiveRequest(req('INVITE'), src());
    expect(requests).toHaveLength(3); // still absorbed just before L
    clock.advance(1);
    expect(layer.stats()).toEqual(zero);
    layer.receiveRequest(req('INVITE'), src());
    expect(requests).toHaveLength(4); // after L: a new request
    // a 2xx from the TU is still forwarded, statelessly
    st.respond(res(r, 200));
    expect(tp.sent.map(status)).toEqual([200, 200, 200]);
    expect(ended).toBe(1);
  });

  it('TCP: Timer L does not depend on the transport: an accepted entry, but no absorb entry after the ACK of a non-2xx', () => {
    const { clock, layer, requests } = setup();
    const r = req('INVITE', { transport: 'TCP' });
    layer.createServer(r, src('tcp')).respond(res(r, 200));
    expect(layer.lingerSizes()).toMatchObject({ total: 1, accepted: 1 });
    layer.receiveRequest(req('INVITE', { transport: 'TCP' }), src('tcp'));
    expect(requests).toHaveLength(0);
    clock.advance(64 * 500);
    expect(layer.stats()).toEqual(zero);
  });

  it('an ACK while Proceeding does not match (goes to the TU)', () => {
    const { layer, requests } = setup();
    const r = req('INVITE');
    layer.createServer(r, src());
    layer.receiveRequest(req('ACK'), src());
    expect(requests.map((x) => x.req.method)).toEqual(['ACK']);
  });

  it('a transport error terminates it', async () => {
    const { tp, layer } = setup();
    const r = req('INVITE');
    const st = layer.createServer(r, src());
    tp.failNext();
    st.respond(res(r, 480));
    await flush();
    expect(st.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('the TU-never-answers guard: timerC + 128*T1 after the last provisional', () => {
    const { clock, layer } = setup({ timers: { timerC: 10_000 } });
    const r = req('INVITE');
    const st = layer.createServer(r, src());
    clock.advance(5000);
    st.respond(res(r, 180)); // re-arms
    clock.advance(10_000 + 64_000 - 1);
    expect(st.state).toBe('proceeding');
    clock.advance(1);
    expect(st.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });
});

// ------------------------------------------------------------------------------------------ matching

describe('server matching (§17.2.3)', () => {
  it('branch + sent-by + method; ACK matches INVITE; CANCEL has its own transaction', () => {
    const { layer, requests } = setup();
    const inv = req('INVITE');
    const st = layer.createServer(inv, src());
    // same branch, other sent-by: another transaction
    layer.receiveRequest(req('INVITE', { sentBy: '192.0.2.8:5062' }), src());
    // same branch, other sent-by port (default 5060 vs explicit 5062)
    layer.receiveRequest(req('INVITE', { sentBy: '192.0.2.7' }), src());
    expect(requests).toHaveLength(2);
    // sent-by without port equals :5060
    const st2 = layer.createServer(req('INVITE', { sentBy: '192.0.2.7' }), src());
    layer.receiveRequest(req('INVITE', { sentBy: '192.0.2.7:5060' }), src());
    expect(requests).toHaveLength(2);
    expect(st2).not.toBe(st);

    const cancel = req('CANCEL', { cseqMethod: 'CANCEL' });
    layer.receiveRequest(cancel, src());
    expect(requests.at(-1)!.req.method).toBe('CANCEL');
    expect(layer.findInviteForCancel(cancel, src())).toBe(st);
    const ct = layer.createServer(cancel, src());
    expect(ct).not.toBe(st);
    ct.respond(res(cancel, 200));
    layer.receiveRequest(req('CANCEL', { cseqMethod: 'CANCEL' }), src()); // retransmission: absorbed
    expect(requests.filter((x) => x.req.method === 'CANCEL')).toHaveLength(1);
    // a CANCEL with another branch matches nothing
    expect(layer.findInviteForCancel(req('CANCEL', { branch: 'z9hG4bKother' }), src())).toBeUndefined();
  });

  it('RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq, top Via and To tag', () => {
    const { layer, requests, tp } = setup();
    const inv = req('INVITE', { branch: 'oldstyle1' });
    const st = layer.createServer(inv, src());
    layer.receiveRequest(req('INVITE', { branch: 'oldstyle1' }), src()); // retransmission
    expect(requests).toHaveLength(0);
    expect(tp.sent.map(status)).toEqual([100]);
    for (const o of [
      { fromTag: 'other' },
      { callId: 'other@x' },
      { cseq: 2 },
      { uri: 'sip:carol@example.com' },
      { sentBy: '192.0.2.8:5062' },
      { toTag: 'sometag' },
    ]) layer.receiveRequest(req('INVITE', { branch: 'oldstyle1', ...o }), src());
    expect(requests).toHaveLength(6);
    // CANCEL: same fields (To tag of the INVITE), method CANCEL
    const cancel = req('CANCEL', { branch: 'oldstyle1', cseqMethod: 'CANCEL' });
    expect(layer.findInviteForCancel(cancel, src())).toBe(st);
    expect(layer.findInviteForCancel(req('CANCEL', { branch: 'oldstyle1', fromTag: 'x' }), src())).toBeUndefined();
    // ACK: To tag must equal the one of the response sent
    st.respond(res(inv, 486, 'resp-tag'));
    layer.receiveRequest(req('ACK', { branch: 'oldstyle1', toTag: 'wrong' }), src());
    expect(requests.at(-1)!.req.method).toBe('ACK');
    expect(st.state).toBe('completed');
    layer.receiveRequest(req('ACK', { branch: 'oldstyle1', toTag: 'resp-tag' }), src());
    expect(st.state).toBe('terminated'); // Confirmed: an absorb entry, To tags still compared
    const n = requests.length;
    layer.receiveRequest(req('ACK', { branch: 'oldstyle1', toTag: 'resp-tag' }), src());
    expect(requests).toHaveLength(n);
    layer.receiveRequest(req('ACK', { branch: 'oldstyle1', toTag: 'wrong' }), src());
    expect(requests).toHaveLength(n + 1);
    // a CANCEL of the ended INVITE: not a live transaction, but it was answered
    expect(layer.findInviteForCancel(cancel, src())).toBeUndefined();
    expect(layer.inviteAnswered(cancel, src())).toBe(true);
    expect(layer.inviteAnswered(req('CANCEL', { branch: 'oldstyle1', cseqMethod: 'CANCEL', fromTag: 'x' }), src())).toBe(false);
  });

  it('RFC 2543 fallback for a Via without branch and for the bare magic cookie (RFC 4475 badbranch)', () => {
    const { layer, requests } = setup();
    layer.createServer(req('OPTIONS', { branch: '' }), src());
    layer.receiveRequest(req('OPTIONS', { branch: '' }), src());
    layer.createServer(req('OPTIONS', { branch: 'z9hG4bK', callId: 'bad@x' }), src());
    layer.receiveRequest(req('OPTIONS', { branch: 'z9hG4bK', callId: 'bad@x' }), src());
    expect(requests).toHaveLength(0);
    // a different request with the same bare cookie is not mistaken for a retransmission
    layer.receiveRequest(req('OPTIONS', { branch: 'z9hG4bK', callId: 'bad2@x' }), src());
    expect(requests).toHaveLength(1);
  });

  it('a request with an unparseable Via is dropped, not thrown', () => {
    const { layer, requests } = setup();
    const bad = parseMessage(
      Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nVia: garbage\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n\r\n'),
    ) as SipRequest;
    expect(() => layer.receiveRequest(bad, src())).not.toThrow();
    expect(requests).toHaveLength(0);
    expect(layer.counters().dropped).toBe(1);
  });
});

// ------------------------------------------------------------------------------------------ client non-INVITE

describe('client non-INVITE transaction (§17.1.2)', () => {
  it('`request` is the request as sent, read from the bytes sent (no parsed copy is kept), for INVITE and non-INVITE', () => {
    const { tp, layer } = setup();
    const { cb } = recorder();
    for (const method of ['OPTIONS', 'INVITE']) {
      const orig = req(method);
      const ct = layer.createClient(orig, UAS, cb);
      const sent = tp.sent.at(-1)!.msg as SipRequest;
      expect(ct.request.toString()).toBe(sent.toString());
      expect(ct.request.method).toBe(method);
      expect(ct.request.topVia()!.branch).toBe(ct.branch);
      // what the caller of createClient changes afterwards is not what was sent
      orig.setHeader('Subject', 'later');
      expect(ct.request.header('subject')).toBeUndefined();
    }
  });

  it('`owned`: the request handed over gets the Via pushed onto it (no copy), and is what is sent', () => {
    const { tp, layer } = setup();
    const { cb } = recorder();
    for (const method of ['OPTIONS', 'INVITE']) {
      const orig = req(method);
      const ct = layer.createClient(orig, UAS, cb, { owned: true, viaParams: ';rport' });
      const sent = tp.sent.at(-1)!.msg as SipRequest;
      expect(orig.topVia()!.branch).toBe(ct.branch);
      expect(orig.vias()).toHaveLength(2);
      expect(sent.toString()).toBe(orig.toString());
      expect(ct.request.toString()).toBe(sent.toString());
      expect(sent.topVia()!.raw).toBe(`SIP/2.0/UDP 10.0.0.1:5060;branch=${ct.branch};rport`);
    }
  });

  it('pushes its Via, retransmits with Timer E doubling up to T2, Timer F times out', () => {
    const { clock, tp, layer } = setup();
    const { ev, cb } = recorder();
    const orig = req('OPTIONS');
    const ct = layer.createClient(orig, UAS, cb);
    expect(ct.branch).toBe('z9hG4bKtest1');
    expect(ct.state).toBe('trying');
    expect(ct.request.topVia()!.raw).toBe('SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKtest1');
    expect(ct.request.vias()).toHaveLength(2);
    expect(orig.vias()).toHaveLength(1); // the caller's request is not modified
    expect(tp.sent[0]!.target).toBe(UAS);
    clock.advance(64 * 500 - 1);
    expect(gaps(tp.sent)).toEqual([500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000]);
    expect(ev).toEqual([]);
    clock.advance(1);
    expect(ev).toEqual(['timeout']);
    expect(ct.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('1xx → Proceeding (E at T2), the final ends it; an absorb entry takes late responses until Timer K = T4', () => {
    const { clock, tp, layer, strays } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('REGISTER'), UAS, cb);
    clock.advance(500); // one retransmission
    layer.receiveResponse(res(ct.request, 100), src());
    expect(ct.state).toBe('proceeding');
    expect(ct.gotProvisional).toBe(true);
    const before = tp.sent.length;
    clock.advance(12_000);
    // the E armed before the 1xx fires 2*T1 after the last send, then every T2
    expect(gaps(tp.sent.slice(before - 1))).toEqual([1000, 4000, 4000]);
    layer.receiveResponse(res(ct.request, 200), src());
    expect(ct.state).toBe('terminated');
    expect(layer.stats()).toEqual({ server: 0, client: 0, lingering: 1, timers: 1 });
    expect(layer.lingerSizes()).toMatchObject({ absorb: 1 });
    const n = tp.sent.length;
    layer.receiveResponse(res(ct.request, 200), src()); // retransmitted final: absorbed
    layer.receiveResponse(res(ct.request, 180), src());
    expect(ev).toEqual(['prov 100', 'final 200']);
    expect(strays).toHaveLength(0);
    clock.advance(4999);
    expect(tp.sent).toHaveLength(n); // no retransmission in Completed
    layer.receiveResponse(res(ct.request, 200), src());
    expect(strays).toHaveLength(0);
    clock.advance(1);
    expect(layer.stats()).toEqual(zero);
    layer.receiveResponse(res(ct.request, 200), src());
    expect(strays).toHaveLength(1);
  });

  it('TCP: no retransmissions, Timer F still applies, Timer K = 0', () => {
    const { clock, tp, layer } = setup();
    const a = recorder();
    const ct = layer.createClient(req('OPTIONS'), UAS_TCP, a.cb);
    expect(ct.request.topVia()!.transport).toBe('TCP');
    clock.advance(64 * 500);
    expect(tp.sent).toHaveLength(1);
    expect(a.ev).toEqual(['timeout']);
    const b = recorder();
    const ct2 = layer.createClient(req('OPTIONS'), UAS_TCP, b.cb);
    layer.receiveResponse(res(ct2.request, 200), src('tcp'));
    expect(ct2.state).toBe('terminated');
    expect(b.ev).toEqual(['final 200']);
    expect(layer.stats()).toEqual(zero);
  });

  it('TLS, WS and WSS are reliable like TCP (isReliable): no retransmissions, Timer F still applies', () => {
    for (const transport of ['tls', 'ws', 'wss'] as const) {
      const { clock, tp, layer } = setup();
      const a = recorder();
      layer.createClient(req('OPTIONS'), { transport, address: '192.0.2.9', port: 5071 }, a.cb);
      clock.advance(64 * 500 - 1);
      expect(tp.sent).toHaveLength(1);
      expect(a.ev).toEqual([]);
      clock.advance(1);
      expect(a.ev).toEqual(['timeout']);
    }
  });

  it('a transport error is reported and terminates', async () => {
    const { tp, layer } = setup();
    const { ev, cb } = recorder();
    tp.failNext();
    const ct = layer.createClient(req('OPTIONS'), UAS, cb);
    await flush();
    expect(ev).toEqual(['error unreachable']);
    expect(ct.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('matches responses by branch and CSeq method only', () => {
    const { layer, strays } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('OPTIONS'), UAS, cb);
    const wrongMethod = res(ct.request, 200);
    wrongMethod.setHeader('CSeq', '1 INFO');
    layer.receiveResponse(wrongMethod, src());
    expect(strays).toHaveLength(1);
    expect(ev).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------ client INVITE

describe('client INVITE transaction (§17.1.1, RFC 6026, §16.8)', () => {
  it('Timer A doubles without cap, Timer B times out', () => {
    const { clock, tp, layer } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS, cb);
    expect(ct.state).toBe('calling');
    clock.advance(64 * 500 - 1);
    expect(gaps(tp.sent)).toEqual([500, 1000, 2000, 4000, 8000, 16000]);
    clock.advance(1);
    expect(ev).toEqual(['timeout']);
    expect(ct.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('non-2xx: ACK generated hop by hop; the transaction ends and a reack entry re-ACKs a retransmitted final until Timer D', () => {
    const { clock, tp, layer, strays } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE', { route: '<sip:p2.example.com;lr>' }), UAS, cb);
    layer.receiveResponse(res(ct.request, 180), src());
    expect(ct.state).toBe('proceeding');
    clock.advance(10_000);
    expect(tp.sent).toHaveLength(1); // no retransmissions in Proceeding
    layer.receiveResponse(res(ct.request, 486, 'busy'), src());
    expect(ct.state).toBe('terminated');
    expect(layer.stats()).toEqual({ server: 0, client: 0, lingering: 1, timers: 1 });
    expect(layer.lingerSizes()).toMatchObject({ reack: 1 });
    const ack = tp.sent[1]!;
    expect(isReq(ack, 'ACK')).toBe(true);
    const a = ack.msg as SipRequest;
    expect(a.uriText).toBe('sip:bob@example.com');
    expect(a.vias()).toHaveLength(1);
    expect(a.topVia()!.branch).toBe(ct.branch);
    expect(a.header('route')).toBe('<sip:p2.example.com;lr>');
    expect(a.toTag()).toBe('busy');
    expect(a.fromTag()).toBe('ft1');
    expect(a.callId()).toBe('call-1@example.com');
    expect(a.cseq()).toEqual({ seq: 1, method: 'ACK' });
    expect(a.maxForwards()).toBe(70);
    expect(ack.target).toBe(UAS);
    layer.receiveResponse(res(ct.request, 486, 'busy'), src());
    layer.receiveResponse(res(ct.request, 180), src()); // absorbed, no ACK
    expect(tp.sent.map((s) => (isReq(s) ? s.msg.method : '?'))).toEqual(['INVITE', 'ACK', 'ACK']);
    expect(tp.sent[2]!.msg.toBuffer().equals(a.toBuffer())).toBe(true); // the same ACK bytes
    expect(tp.sent[2]!.target).toEqual(UAS);
    expect(ev).toEqual(['prov 180', 'final 486']);
    expect(strays).toHaveLength(0);
    clock.advance(32_000 - 1);
    expect(layer.stats().lingering).toBe(1);
    clock.advance(1);
    expect(layer.stats()).toEqual(zero);
    layer.receiveResponse(res(ct.request, 486, 'busy'), src());
    expect(strays).toHaveLength(1);
    expect(tp.sent).toHaveLength(3);
  });

  it('TCP: no Timer A, Timer D = 0', () => {
    const { clock, tp, layer } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS_TCP, cb);
    clock.advance(20_000);
    expect(tp.sent).toHaveLength(1);
    layer.receiveResponse(res(ct.request, 404), src('tcp'));
    expect(ct.state).toBe('terminated');
    expect(isReq(tp.sent[1], 'ACK')).toBe(true);
    expect(ev).toEqual(['final 404']);
    expect(layer.stats()).toEqual(zero);
  });

  it('2xx → final, and the transaction ends at once: later 2xx (retransmission, another fork) are stray responses; no ACK from the transaction', () => {
    const { tp, layer, strays } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS, cb);
    layer.receiveResponse(res(ct.request, 200), src());
    expect(ct.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero); // no entry: nothing to absorb, the proxy forwards 2xx retransmissions
    layer.receiveResponse(res(ct.request, 200), src());
    layer.receiveResponse(res(ct.request, 200, 'fork2'), src());
    expect(ev).toEqual(['final 200']);
    expect(strays.map((r) => r.status)).toEqual([200, 200]);
    expect(strays[1]!.toTag()).toBe('fork2');
    expect(tp.sent).toHaveLength(1);
    ct.cancel(); // after the final: nothing
    expect(tp.sent).toHaveLength(1);
  });

  it('CANCEL before a provisional is deferred, then sent as its own transaction with the same branch', () => {
    const { clock, tp, layer } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE', { route: '<sip:p2.example.com;lr>' }), UAS, cb);
    ct.cancel('SIP;cause=200;text="Call completed elsewhere"');
    ct.cancel();
    clock.advance(500); // Timer A retransmission still goes out
    expect(tp.sent.map((s) => (s.msg as SipRequest).method)).toEqual(['INVITE', 'INVITE']);
    layer.receiveResponse(res(ct.request, 180), src());
    expect(ev).toEqual(['prov 180']);
    const c = tp.sent[2]!;
    expect(isReq(c, 'CANCEL')).toBe(true);
    const cm = c.msg as SipRequest;
    expect(cm.vias()).toHaveLength(1);
    expect(cm.topVia()!.branch).toBe(ct.branch);
    expect(cm.cseq()).toEqual({ seq: 1, method: 'CANCEL' });
    expect(cm.header('route')).toBe('<sip:p2.example.com;lr>');
    expect(cm.header('reason')).toContain('cause=200');
    expect(cm.toTag()).toBeUndefined();
    expect(layer.stats().client).toBe(2);
    // the CANCEL transaction retransmits (Timer E) until answered
    clock.advance(500);
    expect(tp.sent.filter((s) => isReq(s, 'CANCEL'))).toHaveLength(2);
    layer.receiveResponse(res(cm, 200), src());
    layer.receiveResponse(res(ct.request, 487), src());
    expect(ev).toEqual(['prov 180', 'final 487']);
    expect(isReq(tp.sent.at(-1), 'ACK')).toBe(true);
    ct.cancel(); // no-op after the final
    expect(tp.sent.filter((s) => isReq(s, 'CANCEL'))).toHaveLength(2);
    clock.runAll();
    expect(layer.stats()).toEqual(zero);
  });

  it('CANCEL requested but no provisional ever: nothing sent, Timer B times out', () => {
    const { clock, tp, layer } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS, cb);
    ct.cancel();
    clock.runAll();
    expect(tp.sent.every((s) => isReq(s, 'INVITE'))).toBe(true);
    expect(ev).toEqual(['timeout']);
    expect(layer.stats()).toEqual(zero);
  });

  it('no final within 64*T1 after the CANCEL: timeout', () => {
    const { clock, layer } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS, cb);
    layer.receiveResponse(res(ct.request, 183), src());
    ct.cancel();
    clock.advance(64 * 500 - 1);
    expect(ct.state).toBe('proceeding');
    clock.advance(1);
    expect(ev).toEqual(['prov 183', 'timeout']);
    expect(ct.state).toBe('terminated');
    clock.runAll();
    expect(layer.stats()).toEqual(zero);
  });

  it('Timer C after a provisional: CANCEL; reset by each provisional', () => {
    const { clock, tp, layer } = setup({ timers: { timerC: 100_000 } });
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS, cb);
    clock.advance(1000);
    layer.receiveResponse(res(ct.request, 180), src());
    clock.advance(60_000);
    layer.receiveResponse(res(ct.request, 180), src()); // resets C
    clock.advance(100_000 - 1);
    expect(tp.sent.some((s) => isReq(s, 'CANCEL'))).toBe(false);
    clock.advance(1);
    expect(tp.sent.filter((s) => isReq(s, 'CANCEL'))).toHaveLength(1);
    layer.receiveResponse(res(ct.request, 487), src());
    expect(ev).toEqual(['prov 180', 'prov 180', 'final 487']);
  });

  it('Timer C without a provisional: timeout (408 to the core)', () => {
    const { clock, tp, layer } = setup({ timers: { timerC: 10_000 } });
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS, cb);
    clock.advance(10_000);
    expect(ev).toEqual(['timeout']);
    expect(ct.state).toBe('terminated');
    expect(tp.sent.some((s) => isReq(s, 'CANCEL'))).toBe(false);
    expect(layer.stats()).toEqual(zero);
  });

  it('a transport error is reported and terminates (also on a retransmission)', async () => {
    const { clock, tp, layer } = setup();
    const { ev, cb } = recorder();
    const ct = layer.createClient(req('INVITE'), UAS, cb);
    tp.failNext();
    clock.advance(500);
    await flush();
    expect(ev).toEqual(['error unreachable']);
    expect(ct.state).toBe('terminated');
    expect(layer.stats()).toEqual(zero);
  });

  it('a callback that throws does not break the state machine', () => {
    const { layer, tp } = setup();
    const cb: ClientCallbacks = {
      final: () => {
        throw new Error('core bug');
      },
      timeout: () => undefined,
      transportError: () => undefined,
    };
    const ct: ClientTransaction = layer.createClient(req('INVITE'), UAS, cb);
    expect(() => layer.receiveResponse(res(ct.request, 500), src())).not.toThrow();
    expect(ct.state).toBe('terminated');
    expect(layer.lingerSizes().reack).toBe(1);
    expect(isReq(tp.sent.at(-1), 'ACK')).toBe(true);
  });

  it('uses an explicit branch and extra Via parameters when given', () => {
    const { layer } = setup();
    const ct = layer.createClient(req('INVITE'), UAS, recorder().cb, { branch: 'z9hG4bKmine', viaParams: ';rport' });
    expect(ct.request.topVia()!.raw).toBe('SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKmine;rport');
    expect(layer.viaFor(UAS_TCP, 'z9hG4bKx')).toBe('SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKx');
  });
});

// ------------------------------------------------------------------------------------------ layer

describe('transaction layer', () => {
  it('stateless send of responses and requests', () => {
    const { tp, layer } = setup();
    const r = req('REGISTER');
    layer.respondStateless(res(r, 401), src());
    layer.sendStateless(req('ACK', { branch: 'z9hG4bKs' }), UAS);
    expect(status(tp.sent[0])).toBe(401);
    expect(tp.sent[0]!.target).toEqual({ transport: 'udp', address: '192.0.2.7', port: 5062 });
    expect(isReq(tp.sent[1], 'ACK')).toBe(true);
    expect(layer.stats()).toEqual(zero);
  });

  it('maxTransactions: new requests beyond the limit get a stateless 503 and never reach the TU', () => {
    const { tp, layer, requests } = setup({ max: 2 });
    layer.createServer(req('OPTIONS', { branch: 'z9hG4bK1' }), src());
    layer.createClient(req('OPTIONS'), UAS, recorder().cb);
    layer.receiveRequest(req('OPTIONS', { branch: 'z9hG4bK2' }), src());
    expect(requests).toHaveLength(0);
    expect(status(tp.sent.at(-1))).toBe(503);
    expect((tp.sent.at(-1)!.msg as SipResponse).header('retry-after')).toBe('5');
    // retransmissions of existing transactions are still absorbed, ACKs still pass
    layer.receiveRequest(req('OPTIONS', { branch: 'z9hG4bK1' }), src());
    layer.receiveRequest(req('ACK', { branch: 'z9hG4bK3' }), src());
    expect(requests.map((x) => x.req.method)).toEqual(['ACK']);
    expect(layer.counters().overload).toBe(1);
  });

  it('close() terminates everything and clears every timer', () => {
    const { layer, clock } = setup();
    const st = layer.createServer(req('INVITE'), src());
    let ended = false;
    st.onTerminated(() => (ended = true));
    layer.createClient(req('INVITE'), UAS, recorder().cb);
    layer.createClient(req('OPTIONS'), UAS, recorder().cb);
    expect(layer.stats().timers).toBeGreaterThan(0);
    layer.close();
    expect(ended).toBe(true);
    expect(layer.stats()).toEqual(zero);
    expect(clock.pending()).toBe(0);
  });

  it('a TU whose request handler throws does not break the layer', () => {
    const clock = manualClock();
    const layer = createTransactionLayer({
      transport: fakeTransport(clock),
      clock,
      timers: T,
      user: {
        request: () => {
          throw new Error('bug');
        },
        strayResponse: () => {
          throw new Error('bug');
        },
      },
      responseTarget: (_r, s) => s,
    });
    expect(() => layer.receiveRequest(req('OPTIONS'), src())).not.toThrow();
    expect(() => layer.receiveResponse(res(req('OPTIONS'), 200), src())).not.toThrow();
  });

  it('default branches carry the magic cookie and are unique', () => {
    const clock = manualClock();
    const layer = createTransactionLayer({
      transport: fakeTransport(clock),
      clock,
      timers: T,
      user: { request: () => undefined, strayResponse: () => undefined },
      responseTarget: (_r, s) => s,
    });
    const a = layer.newBranch();
    const b = layer.newBranch();
    expect(a.startsWith('z9hG4bK')).toBe(true);
    expect(a.length).toBeGreaterThan(12);
    expect(a).not.toBe(b);
  });
});

// ------------------------------------------------------------------------------------------ linger table

describe('linger entries (what ended transactions leave for J / L / I / K / D)', () => {
  /** a REGISTER with branch n answered 200 by the TU */
  function answered(layer: ReturnType<typeof setup>['layer'], n: number, transport: 'udp' | 'tcp' = 'udp'): SipRequest {
    const r = req('REGISTER', { branch: `z9hG4bKreg${n}`, callId: `reg${n}`, transport: transport === 'tcp' ? 'TCP' : 'UDP' });
    layer.createServer(r, src(transport)).respond(res(r, 200, `t${n}`));
    return r;
  }
  const again = (n: number): SipRequest => req('REGISTER', { branch: `z9hG4bKreg${n}`, callId: `reg${n}` });

  it('one clock timer for the whole table, however many entries', () => {
    const { clock, layer } = setup();
    for (let i = 0; i < 100; i++) answered(layer, i);
    const ct = layer.createClient(req('OPTIONS'), UAS, recorder().cb);
    layer.receiveResponse(res(ct.request, 200), src());
    expect(layer.stats()).toEqual({ server: 0, client: 0, lingering: 101, timers: 1 });
    expect(clock.pending()).toBe(1);
    expect(layer.lingerSizes()).toEqual({ total: 101, resend: 100, accepted: 0, absorb: 1, reack: 0, evicted: 0 });
    clock.runAll();
    expect(layer.stats()).toEqual(zero);
    expect(clock.pending()).toBe(0);
  });

  it('entries expire in order per duration; a shorter duration added later re-arms the timer earlier', () => {
    const { clock, layer, requests, strays } = setup();
    answered(layer, 1); // J = 32 s, from t0
    clock.advance(1000);
    const ct = layer.createClient(req('OPTIONS'), UAS, recorder().cb);
    layer.receiveResponse(res(ct.request, 200), src()); // K = 5 s, from t0 + 1 s
    clock.advance(1000);
    answered(layer, 2); // J, from t0 + 2 s
    const inv = layer.createClient(req('INVITE'), UAS, recorder().cb);
    layer.receiveResponse(res(inv.request, 486), src()); // D = 32 s, from t0 + 2 s
    expect(layer.lingerSizes()).toMatchObject({ total: 4, resend: 2, absorb: 1, reack: 1 });
    clock.advance(4000 - 1); // t0 + 6 s - 1
    expect(layer.lingerSizes().absorb).toBe(1);
    clock.advance(1);
    expect(layer.lingerSizes()).toMatchObject({ total: 3, absorb: 0 });
    layer.receiveResponse(res(ct.request, 200), src());
    expect(strays).toHaveLength(1); // K over: a stray response now
    clock.advance(32_000 - 6000 - 1); // t0 + 32 s - 1
    expect(layer.lingerSizes().resend).toBe(2);
    clock.advance(1);
    expect(layer.lingerSizes()).toMatchObject({ total: 2, resend: 1, reack: 1 });
    layer.receiveRequest(again(1), src());
    layer.receiveRequest(again(2), src());
    expect(requests.map((x) => x.req.callId())).toEqual(['reg1']); // #1 is a new request, #2 still absorbed
    clock.advance(2000);
    expect(layer.stats()).toEqual(zero);
    expect(clock.pending()).toBe(0);
  });

  it('bounded by maxLingering: when full the oldest entry is evicted (counted); live transactions are not affected', () => {
    const { tp, layer, requests } = setup({ maxLingering: 3 });
    const live = layer.createServer(req('OPTIONS', { branch: 'z9hG4bKlive' }), src());
    for (let i = 1; i <= 4; i++) answered(layer, i);
    expect(layer.stats()).toMatchObject({ server: 1, lingering: 3 });
    expect(layer.counters().evicted).toBe(1);
    expect(layer.lingerSizes().evicted).toBe(1);
    const n = tp.sent.length;
    for (let i = 1; i <= 4; i++) layer.receiveRequest(again(i), src());
    expect(requests.map((x) => x.req.callId())).toEqual(['reg1']); // the oldest was evicted
    expect(tp.sent.slice(n).map((s) => (s.msg as SipResponse).toTag())).toEqual(['t2', 't3', 't4']);
    expect(live.state).toBe('trying');
  });

  it('bounded by maxLingerBytes: when the bytes kept would pass it the oldest entries are evicted (counted)', () => {
    const { tp, layer, requests } = setup({ maxLingerBytes: 1500 });
    for (let i = 1; i <= 10; i++) answered(layer, i);
    const { evicted, total } = layer.lingerSizes();
    expect(evicted).toBeGreaterThan(0);
    expect(total + evicted).toBe(10);
    const n = tp.sent.length;
    for (let i = 1; i <= 10; i++) layer.receiveRequest(again(i), src());
    // the evicted ones are the oldest: new requests now; the rest get their own 200 again
    expect(requests.map((x) => x.req.callId())).toEqual(Array.from({ length: evicted }, (_, i) => `reg${i + 1}`));
    expect(tp.sent.slice(n).map((s) => (s.msg as SipResponse).toTag())).toEqual(Array.from({ length: total }, (_, i) => `t${evicted + i + 1}`));
  });

  it('maxLingering 0 keeps no entries', () => {
    const { layer } = setup({ maxLingering: 0 });
    answered(layer, 1);
    expect(layer.stats()).toEqual(zero);
  });

  it('maxTransactions counts live transactions only, not linger entries', () => {
    const { tp, layer, requests } = setup({ max: 1 });
    answered(layer, 1);
    answered(layer, 2);
    expect(layer.stats()).toMatchObject({ server: 0, lingering: 2 });
    layer.receiveRequest(req('OPTIONS', { branch: 'z9hG4bKnew' }), src());
    expect(requests).toHaveLength(1); // not 503
    expect(tp.sent.map(status)).toEqual([200, 200]);
    expect(layer.counters().overload).toBe(0);
  });

  it('a transport error on a re-send drops the entry (resend and reack)', async () => {
    const { tp, layer, requests } = setup();
    answered(layer, 1);
    tp.failNext();
    layer.receiveRequest(again(1), src());
    expect(tp.sent.map(status)).toEqual([200, 200]);
    await flush();
    expect(layer.stats()).toEqual(zero);
    layer.receiveRequest(again(1), src());
    expect(requests).toHaveLength(1); // no entry any more: a new request

    const ct = layer.createClient(req('INVITE'), UAS, recorder().cb);
    layer.receiveResponse(res(ct.request, 503), src());
    await flush();
    expect(layer.lingerSizes().reack).toBe(1);
    tp.failNext();
    layer.receiveResponse(res(ct.request, 503), src()); // re-ACK fails
    await flush();
    expect(layer.lingerSizes().reack).toBe(0);
  });

  it('a transport error on the final response itself drops the entry it left', async () => {
    const { tp, layer, requests } = setup();
    tp.failNext();
    answered(layer, 1);
    expect(layer.stats().lingering).toBe(1);
    await flush();
    expect(layer.stats()).toEqual(zero);
    layer.receiveRequest(again(1), src());
    expect(requests).toHaveLength(1);
  });

  it('TCP: no entries for J, I, K, D', () => {
    const { tp, layer } = setup();
    answered(layer, 1, 'tcp');
    const inv = req('INVITE', { transport: 'TCP' });
    layer.createServer(inv, src('tcp')).respond(res(inv, 486));
    layer.receiveRequest(req('ACK', { transport: 'TCP', toTag: 'tt1' }), src('tcp'));
    const cn = layer.createClient(req('OPTIONS'), UAS_TCP, recorder().cb);
    layer.receiveResponse(res(cn.request, 200), src('tcp'));
    const ci = layer.createClient(req('INVITE', { callId: 'c2' }), UAS_TCP, recorder().cb);
    layer.receiveResponse(res(ci.request, 486), src('tcp'));
    expect(isReq(tp.sent.at(-1), 'ACK')).toBe(true);
    expect(layer.stats()).toEqual(zero);
  });

  it('CANCEL during Timer L: findInviteForCancel no longer matches, inviteAnswered says the INVITE existed; after L neither', () => {
    const { clock, layer } = setup();
    const inv = req('INVITE');
    const cancel = req('CANCEL', { cseqMethod: 'CANCEL' });
    const st = layer.createServer(inv, src());
    expect(layer.findInviteForCancel(cancel, src())).toBe(st);
    expect(layer.inviteAnswered(cancel, src())).toBe(false); // live: findInviteForCancel is the answer
    st.respond(res(inv, 200));
    expect(layer.findInviteForCancel(cancel, src())).toBeUndefined();
    expect(layer.inviteAnswered(cancel, src())).toBe(true);
    expect(layer.inviteAnswered(req('CANCEL', { cseqMethod: 'CANCEL', branch: 'z9hG4bKother' }), src())).toBe(false);
    // a REGISTER's resend entry with the same branch is not an INVITE
    answered(layer, 9);
    expect(layer.inviteAnswered(req('CANCEL', { cseqMethod: 'CANCEL', branch: 'z9hG4bKreg9' }), src())).toBe(false);
    clock.advance(64 * 500);
    expect(layer.inviteAnswered(cancel, src())).toBe(false);
  });

  it('close() clears the entries and their timer', () => {
    const { clock, layer } = setup();
    answered(layer, 1);
    layer.close();
    expect(layer.stats()).toEqual(zero);
    expect(clock.pending()).toBe(0);
  });
});

// ------------------------------------------------------------------------------------------ leak

describe('memory: every transaction ends', () => {
  it('5,000 mixed transactions, with and without responses, leave nothing behind', async () => {
    const { clock, tp, layer } = setup();
    const methods = ['INVITE', 'OPTIONS', 'REGISTER', 'BYE'] as const;
    for (let i = 0; i < 5000; i++) {
      const method = methods[i % 4]!;
      const tcp = i % 7 === 0;
      const s = tcp ? src('tcp') : src();
      const mode = i % 5; // 0: no answer, 1: provisional only, 2: 2xx, 3: non-2xx (+ACK for INVITE half the time), 4: transport error
      if (i % 2 === 0) {
        const r = req(method, { branch: `z9hG4bKs${i}`, callId: `c${i}`, transport: tcp ? 'TCP' : 'UDP' });
        layer.receiveRequest(r, s);
        const st = layer.createServer(r, s);
        if (mode === 4) tp.failNext();
        if (mode >= 1) st.respond(res(r, 180));
        if (mode === 2) st.respond(res(r, 200));
        if (mode === 3) {
          st.respond(res(r, 486));
          if (method === 'INVITE' && i % 4 === 0) layer.receiveRequest(req('ACK', { branch: `z9hG4bKs${i}`, callId: `c${i}`, toTag: 'tt1' }), s);
        }
        layer.receiveRequest(req(method, { branch: `z9hG4bKs${i}`, callId: `c${i}`, transport: tcp ? 'TCP' : 'UDP' }), s);
      } else {
        if (mode === 4) tp.failNext();
        const ct = layer.createClient(req(method, { callId: `c${i}` }), tcp ? UAS_TCP : UAS, recorder().cb);
        if (mode >= 1 && mode < 4) layer.receiveResponse(res(ct.request, 180), src());
        if (mode === 1 && method === 'INVITE') ct.cancel();
        if (mode === 2) layer.receiveResponse(res(ct.request, 200), src());
        if (mode === 3) layer.receiveResponse(res(ct.request, 503), src());
      }
      if (i % 500 === 0) clock.advance(1000);
    }
    await flush();
    const s = layer.stats();
    expect(s.server).toBeGreaterThan(500);
    expect(s.client).toBeGreaterThan(500);
    expect(s.lingering).toBeGreaterThan(500);
    clock.advance(T.timerC + 200_000);
    expect(layer.stats()).toEqual(zero);
    expect(clock.pending()).toBe(0);
  });
});
