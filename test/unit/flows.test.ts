/**
 * Flows (RFC 5626; issue 10 §3): the flow table itself (src/core/flows.ts), and the registrar and
 * routing with it through the core harness (fake transport, real transaction layer, registrar and
 * router): what is bound, where requests go, what a closed connection does.
 */
import { describe, expect, it } from 'vitest';
import { FlowTable, type Flow, type FlowEntry } from '../../src/core/flows.js';
import { onCloseOf } from '../../src/core/registrar.js';
import { SipResponse } from '../../src/sip/index.js';
import type { Source } from '../../src/transport/types.js';
import {
  authedRequest,
  createHarness,
  credentials,
  DOMAIN,
  only,
  request,
  requests,
  responses,
  T0,
  TCP_EP,
  tcpSrc,
  udpSrc,
  viaOf,
  type Harness,
  type HarnessOptions,
} from '../helpers/core-harness.js';

// ------------------------------------------------------------------------------------ the table

const flow = (connectionId: number, port = 40000 + connectionId): Flow => ({ connectionId, transport: 'tcp', address: '192.0.2.50', port, local: TCP_EP });
const entry = (ruid: string, connectionId: number, o: Partial<FlowEntry> = {}): FlowEntry => ({
  ruid,
  aor: 'bob@example.com',
  contact: `sip:bob@${ruid}.invalid;transport=tcp`,
  flow: flow(connectionId),
  onClose: 'remove',
  ...o,
});

describe('FlowTable', () => {
  it('bind, then look up by binding (same aor and contact only) and by Contact URI', () => {
    const t = new FlowTable();
    t.bind(entry('r1', 7));
    expect(t.size).toBe(1);
    expect(t.forBinding({ ruid: 'r1', aor: 'bob@example.com', contact: 'sip:bob@r1.invalid;transport=tcp' })).toEqual(flow(7));
    // the ruid moved to another contact or AOR (a stale entry): no flow
    expect(t.forBinding({ ruid: 'r1', aor: 'bob@example.com', contact: 'sip:bob@other.invalid' })).toBeUndefined();
    expect(t.forBinding({ ruid: 'r1', aor: 'carol@example.com', contact: 'sip:bob@r1.invalid;transport=tcp' })).toBeUndefined();
    expect(t.forBinding({ ruid: 'r2', aor: 'bob@example.com', contact: 'sip:bob@r1.invalid;transport=tcp' })).toBeUndefined();
    expect(t.forContact('sip:bob@r1.invalid;transport=tcp')).toEqual(flow(7));
    expect(t.forContact('sip:bob@r2.invalid;transport=tcp')).toBeUndefined();
  });

  it('a re-bind over another connection moves the entry: closing the old connection returns nothing', () => {
    const t = new FlowTable();
    t.bind(entry('r1', 1));
    t.bind(entry('r1', 2));
    expect(t.size).toBe(1);
    expect(t.connectionClosed(1)).toEqual([]);
    expect(t.forContact('sip:bob@r1.invalid;transport=tcp')).toEqual(flow(2));
    expect(t.connectionClosed(2).map((e) => e.ruid)).toEqual(['r1']);
    expect(t.size).toBe(0);
    expect(t.forContact('sip:bob@r1.invalid;transport=tcp')).toBeUndefined();
  });

  it('connectionClosed returns and removes exactly that connection’s entries', () => {
    const t = new FlowTable();
    t.bind(entry('a', 1));
    t.bind(entry('b', 1, { onClose: 'keep' }));
    t.bind(entry('c', 2));
    const closed = t.connectionClosed(1);
    expect(closed.map((e) => [e.ruid, e.onClose])).toEqual([
      ['a', 'remove'],
      ['b', 'keep'],
    ]);
    expect(t.size).toBe(1);
    expect(t.connectionClosed(1)).toEqual([]);
    expect(t.forContact('sip:bob@c.invalid;transport=tcp')).toEqual(flow(2));
  });

  it('drop forgets one entry, and a Contact re-bound by another binding keeps the newer one', () => {
    const t = new FlowTable();
    t.bind(entry('a', 1, { contact: 'sip:x@same.invalid' }));
    t.bind(entry('b', 2, { contact: 'sip:x@same.invalid' }));
    expect(t.forContact('sip:x@same.invalid')).toEqual(flow(2));
    t.drop('a');
    expect(t.forContact('sip:x@same.invalid')).toEqual(flow(2));
    t.drop('b');
    expect(t.forContact('sip:x@same.invalid')).toBeUndefined();
    t.drop('nope');
    expect(t.size).toBe(0);
  });

  it('is bounded: beyond maxEntries the oldest entry is evicted', () => {
    const t = new FlowTable(3);
    for (let i = 1; i <= 5; i++) t.bind(entry(`r${i}`, i));
    expect(t.size).toBe(3);
    expect(t.forContact('sip:bob@r1.invalid;transport=tcp')).toBeUndefined();
    expect(t.forContact('sip:bob@r2.invalid;transport=tcp')).toBeUndefined();
    expect(t.forContact('sip:bob@r5.invalid;transport=tcp')).toEqual(flow(5));
    expect(t.connectionClosed(1)).toEqual([]);
  });

  it('a bind for a connection that already closed is refused (the REGISTER outlived its connection)', () => {
    const t = new FlowTable();
    t.bind(entry('a', 1));
    t.connectionClosed(1);
    expect(t.bind(entry('a', 1))).toBe(false);
    expect(t.size).toBe(0);
    expect(t.bind(entry('a', 2))).toBe(true);
    // a connection that closed without any entry is remembered too
    t.connectionClosed(3);
    expect(t.bind(entry('b', 3))).toBe(false);
  });

  it('onCloseOf: flow bindings stay, unreachable ones go, reachable ones stay', () => {
    expect(onCloseOf({ contact: 'sip:a@x.invalid;transport=ws', instance: '<urn:uuid:1>', regId: 1 })).toBe('keep');
    expect(onCloseOf({ contact: 'sip:a@x.invalid;transport=ws' })).toBe('remove');
    expect(onCloseOf({ contact: 'sip:a@192.0.2.1:5060;transport=tcp', received: 'sip:198.51.100.1:4000;transport=tcp' })).toBe('remove');
    expect(onCloseOf({ contact: 'sip:a@192.0.2.1:5060;transport=tcp' })).toBe('keep');
    // +sip.instance without reg-id is no flow binding
    expect(onCloseOf({ contact: 'sip:a@x.invalid', instance: '<urn:uuid:1>' })).toBe('remove');
  });
});

// ------------------------------------------------------------------------------------ the core

const ALICE = udpSrc('192.0.2.10', 5060);
const INSTANCE = '"<urn:uuid:00000000-0000-4000-8000-00000000000b>"';
let regSeq = 0;

/** REGISTER bob with `contact` from `src` (401 dance), a fresh Call-ID each time; returns the final response. */
async function reg(h: Harness, contact: string, src: Source, extra: string[] = [], vias?: string[]): Promise<SipResponse> {
  const callId = `flow-reg-${++regSeq}`;
  const base = { method: 'REGISTER', ruri: `sip:${DOMAIN}`, from: `<sip:bob@${DOMAIN}>;tag=rb`, to: `<sip:bob@${DOMAIN}>`, callId };
  const via = (): string[] => [viaOf(src), ...(vias ?? [])];
  const ch = only(await h.request(request({ ...base, cseq: 1, via: via(), extra: [`Contact: ${contact}`, ...extra] }), src), SipResponse);
  expect(ch.status).toBe(401);
  return only(
    await h.request(request({ ...base, cseq: 2, via: via(), extra: [`Contact: ${contact}`, ...extra, credentials(ch, 'www', 'bob', 'bobpw', 'REGISTER', `sip:${DOMAIN}`)] }), src),
    SipResponse,
  );
}

async function harness(opts: HarnessOptions = {}): Promise<Harness> {
  return createHarness({ flows: true, ...opts });
}

/** alice's authenticated INVITE to bob: what the proxy sent. */
async function inviteBob(h: Harness) {
  const { out } = await authedRequest(h, { src: ALICE });
  return { invites: requests(out, 'INVITE'), finals: responses(out).filter((s) => s.msg.status >= 200) };
}

const INVALID = '<sip:bob@a1b2.invalid;transport=tcp>';

describe('registrar + routing with flows', () => {
  it('a .invalid Contact over TCP: received is the source, and the INVITE goes on the REGISTER’s connection', async () => {
    const h = await harness({ natReceived: false });
    const src = tcpSrc('192.0.2.50', 40001);
    expect((await reg(h, INVALID, src)).status).toBe(200);
    const [b] = await h.locations.lookup(`bob@${DOMAIN}`);
    // stored even with nat_received off: nothing else reaches this Contact
    expect(b!.received).toBe('sip:192.0.2.50:40001;transport=tcp');
    expect(b!.socket).toBe('tcp:127.0.0.1:5060');
    const { invites } = await inviteBob(h);
    expect(invites).toHaveLength(1);
    expect(invites[0]!.target).toMatchObject({ transport: 'tcp', address: '192.0.2.50', port: 40001, connectionId: src.connectionId });
    expect(invites[0]!.msg.uriText).toBe('sip:bob@a1b2.invalid;transport=tcp');
  });

  it('the connection closes: the .invalid binding is removed, an INVITE gets 404', async () => {
    const h = await harness();
    const src = tcpSrc('192.0.2.50', 40002);
    await reg(h, INVALID, src);
    expect(await h.registrar.connectionClosed(src.connectionId!)).toBe(1);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toEqual([]);
    expect(h.flows!.size).toBe(0);
    const { invites, finals } = await inviteBob(h);
    expect(invites).toEqual([]);
    expect(finals.map((s) => s.msg.status)).toEqual([404]);
  });

  it('the connection closed while its REGISTER was processed: the .invalid binding is not kept', async () => {
    const h = await harness();
    const src = tcpSrc('192.0.2.50', 40020);
    // (the close is delivered first here: the table remembers closed connections either way)
    await h.registrar.connectionClosed(src.connectionId!);
    expect((await reg(h, INVALID, src)).status).toBe(200);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toEqual([]);
    expect(h.flows!.size).toBe(0);
  });

  it('re-registered over a new connection: closing the old one leaves the binding, requests use the new one', async () => {
    const h = await harness();
    const old = tcpSrc('192.0.2.50', 40003);
    const cur = tcpSrc('192.0.2.50', 40004);
    await reg(h, INVALID, old);
    await reg(h, INVALID, cur);
    expect(await h.registrar.connectionClosed(old.connectionId!)).toBe(0);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toHaveLength(1);
    const { invites } = await inviteBob(h);
    expect(invites.map((s) => s.target.connectionId)).toEqual([cur.connectionId]);
  });

  it('a Contact reachable as registered (TCP, Contact = source): kept when the connection closes, then routed to the Contact', async () => {
    const h = await harness();
    const src = tcpSrc('192.0.2.51', 5070);
    await reg(h, '<sip:bob@192.0.2.51:5070;transport=tcp>', src);
    const first = await inviteBob(h);
    expect(first.invites[0]!.target).toMatchObject({ address: '192.0.2.51', port: 5070, connectionId: src.connectionId });
    expect(await h.registrar.connectionClosed(src.connectionId!)).toBe(0);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toHaveLength(1);
    const again = await inviteBob(h);
    expect(again.invites).toHaveLength(1);
    expect(again.invites[0]!.target).toMatchObject({ transport: 'tcp', address: '192.0.2.51', port: 5070 });
    expect(again.invites[0]!.target.connectionId).toBeUndefined();
  });

  it('outbound: Supported: outbound + instance + reg-id → Require: outbound; the flow closes → binding kept, INVITE 430', async () => {
    const h = await harness();
    const src = tcpSrc('192.0.2.52', 40005);
    const ok = await reg(h, `<sip:bob@ob1.invalid;transport=tcp;ob>;reg-id=1;+sip.instance=${INSTANCE}`, src, ['Supported: outbound']);
    expect(ok.status).toBe(200);
    expect(ok.headerValues('require')).toEqual(['outbound']);
    expect((await inviteBob(h)).invites.map((s) => s.target.connectionId)).toEqual([src.connectionId]);
    expect(await h.registrar.connectionClosed(src.connectionId!)).toBe(0);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toHaveLength(1);
    const { invites, finals } = await inviteBob(h);
    expect(invites).toEqual([]);
    expect(finals.map((s) => [s.msg.status, s.msg.reason])).toEqual([[430, 'Flow Failed']]);
  });

  it('a failed flow is skipped when another binding remains (no 430)', async () => {
    const h = await harness();
    const src = tcpSrc('192.0.2.52', 40006);
    await reg(h, `<sip:bob@ob2.invalid;transport=tcp;ob>;reg-id=1;+sip.instance=${INSTANCE}`, src, ['Supported: outbound']);
    const udp = udpSrc('192.0.2.53', 5080);
    await reg(h, '<sip:bob@192.0.2.53:5080>', udp);
    await h.registrar.connectionClosed(src.connectionId!);
    const { invites } = await inviteBob(h);
    expect(invites.map((s) => [s.target.transport, s.target.address, s.target.port])).toEqual([['udp', '192.0.2.53', 5080]]);
  });

  it('two flows of one instance (reg-id 1 and 2) are two bindings, each on its own connection', async () => {
    const h = await harness();
    const c1 = tcpSrc('192.0.2.54', 40007);
    const c2 = tcpSrc('192.0.2.54', 40008);
    await reg(h, `<sip:bob@f1.invalid;transport=tcp;ob>;reg-id=1;+sip.instance=${INSTANCE}`, c1, ['Supported: outbound']);
    const ok = await reg(h, `<sip:bob@f2.invalid;transport=tcp;ob>;reg-id=2;+sip.instance=${INSTANCE}`, c2, ['Supported: outbound']);
    expect(ok.headerValues('contact')).toHaveLength(2);
    const { invites } = await inviteBob(h);
    expect(invites.map((s) => s.target.connectionId).sort()).toEqual([c1.connectionId, c2.connectionId].sort());
    // the same instance and reg-id over a new connection takes its binding over
    const c3 = tcpSrc('192.0.2.54', 40009);
    await reg(h, `<sip:bob@f1.invalid;transport=tcp;ob>;reg-id=1;+sip.instance=${INSTANCE}`, c3, ['Supported: outbound']);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toHaveLength(2);
    expect((await inviteBob(h)).invites.map((s) => s.target.connectionId).sort()).toEqual([c2.connectionId, c3.connectionId].sort());
  });

  it('no Require: outbound without Supported: outbound, nor without reg-id', async () => {
    const h = await harness();
    const a = await reg(h, `<sip:bob@n1.invalid;transport=tcp>;reg-id=1;+sip.instance=${INSTANCE}`, tcpSrc('192.0.2.55', 40010));
    expect(a.headerValues('require')).toEqual([]);
    const b = await reg(h, `<sip:bob@n2.invalid;transport=tcp>;+sip.instance=${INSTANCE}`, tcpSrc('192.0.2.55', 40011), ['Supported: outbound']);
    expect(b.headerValues('require')).toEqual([]);
  });

  it('outbound through a proxy that added no Path (two Vias): 439 First Hop Lacks Outbound Support', async () => {
    const h = await harness();
    const res = await reg(h, `<sip:bob@p1.invalid;transport=tcp>;reg-id=1;+sip.instance=${INSTANCE}`, tcpSrc('192.0.2.56', 40012), ['Supported: outbound'], [
      'SIP/2.0/TCP 192.0.2.99:5060;branch=z9hG4bK-ua1',
    ]);
    expect([res.status, res.reason]).toEqual([439, 'First Hop Lacks Outbound Support']);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toEqual([]);
  });

  it('a REGISTER with Path is not bound to its connection (the edge proxy’s): the INVITE follows the Path, closing it removes nothing', async () => {
    const h = await harness();
    const edge = tcpSrc('192.0.2.57', 40013);
    await reg(h, INVALID, edge, ['Path: <sip:192.0.2.57:5060;transport=tcp;lr>']);
    expect(h.flows!.size).toBe(0);
    const { invites } = await inviteBob(h);
    expect(invites).toHaveLength(1);
    expect(invites[0]!.msg.headerValues('route')).toEqual(['<sip:192.0.2.57:5060;transport=tcp;lr>']);
    expect(invites[0]!.target.connectionId).toBeUndefined();
    expect(await h.registrar.connectionClosed(edge.connectionId!)).toBe(0);
    expect(await h.locations.lookup(`bob@${DOMAIN}`)).toHaveLength(1);
  });

  it('a refresh over UDP drops the flow of the earlier TCP registration', async () => {
    const h = await harness();
    const tcp = tcpSrc('192.0.2.58', 40014);
    await reg(h, '<sip:bob@192.0.2.58:5090>', tcp);
    expect(h.flows!.size).toBe(1);
    await reg(h, '<sip:bob@192.0.2.58:5090>', udpSrc('192.0.2.58', 5090));
    expect(h.flows!.size).toBe(0);
    const { invites } = await inviteBob(h);
    expect(invites[0]!.target).toMatchObject({ transport: 'udp', address: '192.0.2.58', port: 5090 });
  });

  it('removing the binding (Expires: 0) drops its flow', async () => {
    const h = await harness();
    await reg(h, INVALID, tcpSrc('192.0.2.59', 40015));
    expect(h.flows!.size).toBe(1);
    await reg(h, INVALID, tcpSrc('192.0.2.59', 40015), ['Expires: 0']);
    expect(h.flows!.size).toBe(0);
  });

  it('after a restart (bindings in the store, no flows): an outbound TCP binding is a failed flow (430), a plain .invalid one unreachable (480)', async () => {
    const h = await harness();
    const base = { aor: `bob@${DOMAIN}`, username: 'bob', domain: DOMAIN, expires: T0 + 3_600_000, q: null, callId: 'old', cseq: 1, lastModified: T0, flags: 0, cflags: 0, socket: 'tcp:127.0.0.1:5060' };
    await h.locations.save({ ...base, contact: 'sip:bob@r1.invalid;transport=tcp', ruid: 'old-1', instance: '<urn:uuid:1>', regId: 1, received: 'sip:192.0.2.60:40016;transport=tcp' });
    expect((await inviteBob(h)).finals.map((s) => s.msg.status)).toEqual([430]);
    await h.locations.removeAll(`bob@${DOMAIN}`);
    await h.locations.save({ ...base, contact: 'sip:bob@r2.invalid;transport=ws', ruid: 'old-2' });
    expect((await inviteBob(h)).finals.map((s) => s.msg.status)).toEqual([480]);
  });

  it('an in-dialog request to a Contact registered over a flow goes on that connection', async () => {
    const h = await harness();
    const src = tcpSrc('192.0.2.61', 40017);
    await reg(h, INVALID, src);
    const { invites } = await inviteBob(h);
    const inv = invites[0]!.msg;
    // bob answers 200 on his connection; alice then sends BYE along the Record-Route to bob's Contact
    const rr = inv.headerValues('record-route');
    const ok = await h.response(
      [
        'SIP/2.0 200 OK',
        ...inv.headerValues('via').map((v) => `Via: ${v}`),
        ...rr.map((r) => `Record-Route: ${r}`),
        `From: ${inv.header('from')}`,
        `To: ${inv.header('to')};tag=bob1`,
        `Call-ID: ${inv.callId()}`,
        `CSeq: ${inv.header('cseq')}`,
        `Contact: ${INVALID}`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
      src,
    );
    const up = responses(ok, 200)[0]!.msg;
    const routes = up.headerValues('record-route').reverse();
    const bye = request({
      method: 'BYE',
      ruri: 'sip:bob@a1b2.invalid;transport=tcp',
      from: up.header('from')!,
      to: up.header('to')!,
      callId: up.callId()!,
      cseq: 3,
      via: viaOf(ALICE),
      extra: routes.map((r) => `Route: ${r}`),
    });
    const out = await h.request(bye, ALICE);
    const fwd = requests(out, 'BYE');
    expect(fwd).toHaveLength(1);
    expect(fwd[0]!.target).toMatchObject({ transport: 'tcp', address: '192.0.2.61', port: 40017, connectionId: src.connectionId });

    // bob's connection closes: the next in-dialog request to his .invalid Contact gets 430
    await h.registrar.connectionClosed(src.connectionId!);
    const again = await h.request(bye.replace('CSeq: 3 BYE', 'CSeq: 4 BYE').replace(/branch=[^;\r]+/, 'branch=z9hG4bK-bye4'), ALICE);
    expect(requests(again, 'BYE')).toEqual([]);
    expect(responses(again).map((s) => [s.msg.status, s.msg.reason])).toEqual([[430, 'Flow Failed']]);
  });
});

describe('flows of callers', () => {
  it('a caller over TCP with a .invalid Contact (not registered): the callee’s BYE to that Contact goes on the caller’s connection', async () => {
    const caller = tcpSrc('192.0.2.70', 40030);
    const h = await harness({ trusted: [caller.address] });
    const bobSrc = udpSrc('192.0.2.71', 5060);
    await reg(h, '<sip:bob@192.0.2.71:5060>', bobSrc);
    const contact = 'sip:alice@c4ll3r.invalid;transport=tcp';
    const inv = request({
      method: 'INVITE',
      ruri: `sip:bob@${DOMAIN}`,
      from: `<sip:alice@${DOMAIN}>;tag=al1`,
      to: `<sip:bob@${DOMAIN}>`,
      callId: 'caller-flow-1',
      cseq: 1,
      via: viaOf(caller),
      extra: [`Contact: <${contact}>`],
    });
    const fwd = requests(await h.request(inv, caller), 'INVITE');
    expect(fwd).toHaveLength(1);
    const rr = fwd[0]!.msg.headerValues('record-route');
    // bob (the callee) ends the call: BYE to alice's Contact along the route set as he received it
    const bye = request({
      method: 'BYE',
      ruri: contact,
      from: `<sip:bob@${DOMAIN}>;tag=bob9`,
      to: `<sip:alice@${DOMAIN}>;tag=al1`,
      callId: 'caller-flow-1',
      cseq: 1,
      via: viaOf(bobSrc),
      extra: rr.map((r) => `Route: ${r}`),
    });
    const out = requests(await h.request(bye, bobSrc), 'BYE');
    expect(out).toHaveLength(1);
    expect(out[0]!.target).toMatchObject({ transport: 'tcp', address: caller.address, port: caller.port, connectionId: caller.connectionId });

    // the caller's connection closes: its dialog flow goes with it
    await h.registrar.connectionClosed(caller.connectionId!);
    expect(h.flows!.forContact(contact)).toBeUndefined();
  });

  it('a caller claiming a Contact that is already bound to another connection does not take it over (no hijack of in-dialog requests)', async () => {
    const mallory = tcpSrc('192.0.2.99', 40099);
    const h = await harness({ trusted: [mallory.address] });
    const bobSrc = tcpSrc('192.0.2.72', 40072);
    await reg(h, INVALID, bobSrc);
    // mallory calls bob with bob's registered .invalid Contact as hers, over her own connection
    const inv = request({
      method: 'INVITE',
      ruri: `sip:bob@${DOMAIN}`,
      from: `<sip:mallory@${DOMAIN}>;tag=m1`,
      to: `<sip:bob@${DOMAIN}>`,
      callId: 'hijack-1',
      cseq: 1,
      via: viaOf(mallory),
      extra: ['Contact: <sip:bob@a1b2.invalid;transport=tcp>'],
    });
    expect(requests(await h.request(inv, mallory), 'INVITE')).toHaveLength(1);
    // requests to bob's Contact still go on bob's connection
    expect(h.flows!.forContact('sip:bob@a1b2.invalid;transport=tcp')?.connectionId).toBe(bobSrc.connectionId);
  });
});
