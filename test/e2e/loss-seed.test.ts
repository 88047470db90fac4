/**
 * Calls survive 10 % packet loss on both sides (retransmissions, no -nr), and
 * the seed scenario: two registered phones call each other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, registerCallee } from './calls.js';
import { expectSipp } from './expect-sipp.js';
import { SKIP_E2E, startTarget, testUser, type Target } from './harness.js';

const lossCaller = testUser('la', 'pw-loss-a');
const lossCallee = testUser('lb', 'pw-loss-b');
const phoneA = testUser('sa', 'pw-seed-a');
const phoneB = testUser('sb', 'pw-seed-b');

describe.skipIf(SKIP_E2E)('e2e: packet loss and the seed two-phone scenario (SIPp)', { timeout: 120_000 }, () => {
  let target: Target;

  beforeAll(async () => {
    target = await startTarget({ users: [lossCaller, lossCallee, phoneA, phoneB] });
  }, 120_000);

  afterAll(async () => {
    await target?.stop();
  });

  it('20 calls with -lost 10 on caller and callee all complete', async () => {
    const CALLS = 20;
    const callee = await registerCallee(target, lossCallee, 'u1');
    const { uac, uas } = await call(target, {
      name: 'loss', caller: lossCaller, callee: lossCallee.user, uacScenario: 'uac-call-lossy.xml',
      calls: CALLS, rate: 10, durationMs: 1000, lost: 10, timeoutSec: 60,
      // uas-lossy.xml stays 12 s in each dialog after the BYE (covers all of the caller's BYE
      // retransmissions) and ignores a late ACK that arrives after the BYE instead of aborting.
      uas: [{ callee, scenario: 'uas-lossy.xml', calls: CALLS, lost: 10, extraArgs: ['-default_behaviors', 'all,-abortunexp'] }],
    });
    expectSipp('lossy caller', uac, { exitCode: 0, successful: CALLS, failed: 0 });
    expectSipp('lossy callee', uas[0]!, { exitCode: 0, successful: CALLS, failed: 0 });
    // 10 % of what SIPp sends or receives is dropped: the calls completed because something retransmitted.
    expect(uac.retransmissions + uas[0]!.retransmissions, `${uac.report}\n${uas[0]!.report}`).toBeGreaterThan(0);
  });

  it('two registered phones call each other: A calls B, then B calls A', async () => {
    const CALLS = 5;
    const a = await registerCallee(target, phoneA, 'u1');
    const b = await registerCallee(target, phoneB, 'u1');

    const ab = await call(target, {
      name: 'seed-a-to-b', caller: phoneA, callee: phoneB.user, uacScenario: 'uac-call.xml', uacPort: a.port,
      calls: CALLS, uas: [{ callee: b, scenario: 'uas.xml', calls: CALLS }],
    });
    expectSipp('A calls B (caller A)', ab.uac, { exitCode: 0, successful: CALLS, failed: 0 });
    expectSipp('A calls B (callee B)', ab.uas[0]!, { exitCode: 0, successful: CALLS, failed: 0 });

    const ba = await call(target, {
      name: 'seed-b-to-a', caller: phoneB, callee: phoneA.user, uacScenario: 'uac-call.xml', uacPort: b.port,
      calls: CALLS, uas: [{ callee: a, scenario: 'uas.xml', calls: CALLS }],
    });
    expectSipp('B calls A (caller B)', ba.uac, { exitCode: 0, successful: CALLS, failed: 0 });
    expectSipp('B calls A (callee A)', ba.uas[0]!, { exitCode: 0, successful: CALLS, failed: 0 });
  });
});
