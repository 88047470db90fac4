/**
 * The response side of the routing pipeline (src/core/response-steps.ts) with real UDP UAs on
 * 127.0.0.x against the real core on real sockets (test/helpers/core-net.ts): a reply step that
 * edits responses on their way upstream, one that drops a provisional, and a failure step doing
 * serial failover to a second target after a 503 from the first.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { FailureEvent, ReplyEvent, ResponseSteps } from '../../src/core/response-steps.js';
import { NET_DOMAIN, startNetCore, type NetCore } from '../helpers/core-net.js';
import { UdpUa } from '../helpers/sip-ua.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function setup(steps: ResponseSteps | undefined, answers: Record<string, (req: import('../../src/sip/index.js').SipRequest) => number>) {
  const core: NetCore = await startNetCore(steps);
  cleanup.push(() => core.close());
  const server = { host: '127.0.0.1', port: core.udpPort };
  const alice = await UdpUa.open({ address: '127.0.0.2', server });
  cleanup.push(() => alice.close());
  const uas: Record<string, UdpUa> = {};
  for (const [addr, answer] of Object.entries(answers)) {
    const ua = await UdpUa.open({ address: addr, server, answer });
    cleanup.push(() => ua.close());
    uas[addr] = ua;
  }
  return { core, alice, uas };
}

describe('reply steps (onreply_route)', () => {
  it('a reply step that adds a header: the caller sees it on the 180 and the 200; the step saw every response of the branch, our Via on top', async () => {
    const seen: Array<{ status: number; vias: number; sentTo: number; index: number }> = [];
    const steps: ResponseSteps = {
      reply: [
        {
          name: 'stamp',
          onReply: (e: ReplyEvent) => {
            seen.push({ status: e.response.status, vias: e.response.vias().length, sentTo: e.branch.sentTo.port, index: e.branch.index });
            e.response.addHeader('X-Seen-By', `stamp;status=${e.response.status}`);
          },
        },
      ],
    };
    const { alice, uas } = await setup(steps, { '127.0.0.3': () => 200 });
    const bob = uas['127.0.0.3']!;
    expect((await bob.register('bob', NET_DOMAIN, 'x')).status).toBe(200);
    const callId = 'steps-stamp-1';
    const res = await alice.call('alice', NET_DOMAIN, 'x', `sip:bob@${NET_DOMAIN}`, callId);
    expect(res.status).toBe(200);
    expect(res.headerValues('x-seen-by')).toEqual(['stamp;status=200']);
    await alice.waitFor(() => alice.responsesFor(callId).some((r) => r.status === 180), 5000, '180 at alice');
    const ringing = alice.responsesFor(callId).filter((r) => r.status === 180);
    expect(ringing[0]!.headerValues('x-seen-by')).toEqual(['stamp;status=180']);
    // the step ran on the responses as received on the branch (bob's Via below ours), not on what went upstream
    expect(seen.filter((s) => s.status >= 180)).toEqual([
      { status: 180, vias: 2, sentTo: bob.port, index: 0 },
      { status: 200, vias: 2, sentTo: bob.port, index: 0 },
    ]);
    // nothing of ours leaks to alice: her own Via alone
    expect(res.vias()).toHaveLength(1);
  });

  it('a reply step may drop a provisional (the 180 never reaches the caller) but not a final', async () => {
    const steps: ResponseSteps = { reply: [{ name: 'quiet', onReply: () => 'drop' }] };
    const { alice, uas } = await setup(steps, { '127.0.0.3': () => 200 });
    expect((await uas['127.0.0.3']!.register('bob', NET_DOMAIN, 'x')).status).toBe(200);
    const callId = 'steps-drop-1';
    const res = await alice.call('alice', NET_DOMAIN, 'x', `sip:bob@${NET_DOMAIN}`, callId);
    expect(res.status).toBe(200);
    expect(alice.responsesFor(callId).map((r) => r.status).filter((s) => s > 100)).toEqual([200]);
  });

  it('a reply step that throws does not stop the response', async () => {
    const steps: ResponseSteps = {
      reply: [
        {
          name: 'broken',
          onReply: () => {
            throw new Error('boom');
          },
        },
      ],
    };
    const { alice, uas, core } = await setup(steps, { '127.0.0.3': () => 486 });
    expect((await uas['127.0.0.3']!.register('bob', NET_DOMAIN, 'x')).status).toBe(200);
    expect((await alice.call('alice', NET_DOMAIN, 'x', `sip:bob@${NET_DOMAIN}`, 'steps-throw-1')).status).toBe(486);
    expect(core.errors).toEqual([]);
  });
});

describe('failure steps (failure_route)', () => {
  it('serial failover: the first target answers 503, the failure step sends the INVITE to a second target, whose 200 reaches the caller', async () => {
    const events: Array<Pick<FailureEvent, 'local' | 'round'> & { status: number; finals: number[] }> = [];
    let backup = '';
    const steps: ResponseSteps = {
      failure: [
        {
          name: 'failover',
          onFailure: (e) => {
            events.push({ status: e.response.status, local: e.local, round: e.round, finals: e.finals.map((r) => r.status) });
            if (e.response.status === 503 && e.round === 0) return { action: 'retry', targets: [{ uri: backup, q: null }] };
            return { action: 'forward' };
          },
        },
      ],
    };
    const { alice, uas } = await setup(steps, { '127.0.0.3': () => 503, '127.0.0.4': () => 200 });
    const first = uas['127.0.0.3']!;
    const second = uas['127.0.0.4']!;
    backup = `sip:bob@127.0.0.4:${second.port}`;
    expect((await first.register('bob', NET_DOMAIN, 'x')).status).toBe(200);
    const callId = 'steps-failover-1';
    const res = await alice.call('alice', NET_DOMAIN, 'x', `sip:bob@${NET_DOMAIN}`, callId);
    expect(res.status).toBe(200);
    expect(res.header('contact')).toBe(`<sip:127.0.0.4:${second.port}>`);
    // the step was asked once, with the 503 as received (not yet turned into 500)
    expect(events).toEqual([{ status: 503, local: false, round: 0, finals: [503] }]);
    // the first target got the INVITE and the hop-by-hop ACK of its 503; the second the INVITE with its own Request-URI
    expect(first.received.filter((r) => r.callId() === callId).map((r) => r.method)).toEqual(['INVITE', 'ACK']);
    const inv2 = second.received.filter((r) => r.callId() === callId && r.method === 'INVITE');
    expect(inv2).toHaveLength(1);
    expect(inv2[0]!.uriText).toBe(backup);
    expect(inv2[0]!.has('record-route')).toBe(true);
    // alice never saw the 503 (nor a 500)
    expect(alice.responsesFor(callId).filter((r) => r.status >= 300)).toEqual([]);
  });

  it('a failure step that lets the response go: the caller gets it as without steps (503 → 500, §16.7 step 6); a second round is asked when the failover target fails too', async () => {
    const rounds: number[] = [];
    let backup = '';
    const steps: ResponseSteps = {
      failure: [
        {
          name: 'failover-once',
          onFailure: async (e) => {
            rounds.push(e.round);
            await Promise.resolve();
            return e.round === 0 ? { action: 'retry', targets: [{ uri: backup, q: null }] } : { action: 'forward' };
          },
        },
      ],
    };
    const { alice, uas } = await setup(steps, { '127.0.0.3': () => 503, '127.0.0.4': () => 503 });
    backup = `sip:bob@127.0.0.4:${uas['127.0.0.4']!.port}`;
    expect((await uas['127.0.0.3']!.register('bob', NET_DOMAIN, 'x')).status).toBe(200);
    const res = await alice.call('alice', NET_DOMAIN, 'x', `sip:bob@${NET_DOMAIN}`, 'steps-failover-2');
    expect(res.status).toBe(500);
    expect(rounds).toEqual([0, 1]);
    expect(uas['127.0.0.4']!.received.map((r) => r.method)).toEqual(['INVITE', 'ACK']);
  });
});
