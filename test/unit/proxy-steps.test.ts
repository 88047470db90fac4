/**
 * Reply and failure steps of the proxy (src/core/response-steps.ts) in the core harness (fake
 * transport, real transaction layer, manual clock): the paths that need fake time or a race
 * (Timer B, CANCEL while a failure step is still deciding, the bound on failure rounds).
 */
import { describe, expect, it } from 'vitest';
import { MAX_FAILURE_ROUNDS, type FailureEvent, type FailureVerdict, type ResponseSteps } from '../../src/core/response-steps.js';
import {
  answer,
  authedRequest,
  createHarness,
  request,
  requests,
  responses,
  udpSrc,
  type Harness,
  type Sent,
} from '../helpers/core-harness.js';
import type { SipRequest } from '../../src/sip/index.js';

const ALICE = udpSrc('192.0.2.10', 5060);
const B1 = udpSrc('192.0.2.20', 5062);
const B2 = udpSrc('192.0.2.21', 5064);

function finals(out: Sent[]): number[] {
  return responses(out)
    .filter((s) => s.target.address === ALICE.address && s.msg.status >= 200)
    .map((s) => s.msg.status);
}

async function noLeaks(h: Harness): Promise<void> {
  expect(await h.drain()).toEqual({ server: 0, client: 0, lingering: 0, timers: 0 });
  expect(h.proxy.activeContexts).toBe(0);
  expect(h.proxy.pending).toBe(0);
}

async function callWith(steps: ResponseSteps) {
  const h = await createHarness({ steps, natReceived: false });
  await h.register('bob', 'bobpw', `<sip:bob@${B1.address}:${B1.port}>`, B1);
  const a = await authedRequest(h, { src: ALICE });
  return { h, ...a, invites: requests(a.out, 'INVITE') };
}

const toB2: FailureVerdict = { action: 'retry', targets: [{ uri: `sip:bob@${B2.address}:${B2.port}`, q: null }] };

describe('failure steps', () => {
  it('a branch that never answers (Timer B): the step sees the local 408 and fails over; the second target\'s 200 goes upstream', async () => {
    const seen: Array<{ status: number; local: boolean }> = [];
    const { h, invites } = await callWith({
      failure: [{ name: 'f', onFailure: (e: FailureEvent) => (seen.push({ status: e.response.status, local: e.local }), e.round === 0 ? toB2 : { action: 'forward' }) }],
    });
    expect(invites.map((s) => s.target.address)).toEqual([B1.address]);
    await h.response(answer(invites[0]!.msg, 180, { toTag: 'b1' }), B1);
    const out = await h.advance(180_000); // Timer C: CANCEL, and after Timer B-ish silence the local 408
    const more = [...out, ...(await h.advance(64 * 500))];
    const second = requests(more, 'INVITE').filter((s) => s.target.address === B2.address);
    expect(second).toHaveLength(1);
    expect(finals(more)).toEqual([]);
    expect(seen).toEqual([{ status: 408, local: true }]);
    const ok = await h.response(answer(second[0]!.msg, 200, { toTag: 'b2', contact: `<sip:bob@${B2.address}:${B2.port}>` }), B2);
    expect(finals(ok)).toEqual([200]);
    await noLeaks(h);
  });

  it('a CANCEL while the failure step is still deciding: the caller gets 487 and the retry targets are never tried', async () => {
    let decide: (v: FailureVerdict) => void = () => undefined;
    const { h, req, invites } = await callWith({ failure: [{ name: 'slow', onFailure: () => new Promise<FailureVerdict>((r) => (decide = r)) }] });
    const busy = await h.response(answer(invites[0]!.msg, 486, { toTag: 'b1' }), B1);
    expect(finals(busy)).toEqual([]);
    const cancel = request({
      method: 'CANCEL', ruri: req.uriText, from: req.header('from')!, to: req.header('to')!, callId: req.callId()!, cseq: 2,
      via: req.headerValues('via')[0]!,
    });
    const c = await h.request(cancel, ALICE);
    expect(responses(c).map((s) => `${s.msg.status} ${s.msg.cseq()!.method}`)).toEqual(['200 CANCEL']);
    decide(toB2);
    const after = await h.advance(0);
    expect(requests(after, 'INVITE')).toEqual([]);
    expect(finals(after)).toEqual([487]);
    await noLeaks(h);
  });

  it(`failure rounds are bounded (${MAX_FAILURE_ROUNDS}): a step that always retries an unreachable target still lets the caller have a final`, async () => {
    const rounds: number[] = [];
    const { h, out } = await callWith({
      failure: [{ name: 'stubborn', onFailure: (e) => (rounds.push(e.round), { action: 'retry', targets: [{ uri: 'sip:bob@nowhere.invalid', q: null }] }) }],
    });
    const inv = requests(out, 'INVITE')[0]!.msg as SipRequest;
    const res = await h.response(answer(inv, 404, { toTag: 'b1' }), B1);
    expect(rounds).toEqual([...Array(MAX_FAILURE_ROUNDS).keys()]);
    // the 404 received stays the best of all branches (the unreachable ones are 503s of our own)
    expect(finals(res)).toEqual([404]);
    await noLeaks(h);
  });

  it('a failure step that throws (or rejects) lets the response go', async () => {
    const { h, invites } = await callWith({
      failure: [
        { name: 'throws', onFailure: () => { throw new Error('boom'); } },
        { name: 'rejects', onFailure: () => Promise.reject(new Error('boom')) },
      ],
    });
    const res = await h.response(answer(invites[0]!.msg, 486, { toTag: 'b1' }), B1);
    expect(finals(res)).toEqual([486]);
    await noLeaks(h);
  });
});

describe('reply steps', () => {
  it('a header added to a non-2xx final is on the best response the caller gets', async () => {
    const { h, invites } = await callWith({ reply: [{ name: 'tag', onReply: (e) => void e.response.addHeader('X-Branch', String(e.branch.index)) }] });
    const res = await h.response(answer(invites[0]!.msg, 486, { toTag: 'b1' }), B1);
    const up = responses(res).filter((s) => s.target.address === ALICE.address);
    expect(up.map((s) => [s.msg.status, s.msg.header('x-branch')])).toEqual([[486, '0']]);
    await noLeaks(h);
  });
});
