/**
 * CANCEL while ringing (200 for the CANCEL + 487 for the INVITE), a call to an
 * unregistered user (404), and parallel forking to two contacts of one AOR
 * (one answers, the other rings and must be CANCELled).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { call, registerCallee } from './calls.js';
import { expectSipp } from './expect-sipp.js';
import { SKIP_E2E, callsCsv, runSipp, startTarget, testUser, type Target } from './harness.js';

const CALLS = 10;
const alice = testUser('fa', 'pw-alice');
const ringer = testUser('fr', 'pw-ringer');
const nobody = testUser('fn', 'pw-nobody'); // exists, never registers
const forked = testUser('ff', 'pw-forked'); // registered from two contacts

describe.skipIf(SKIP_E2E)('e2e: CANCEL, 404 and forking (SIPp)', { timeout: 120_000 }, () => {
  let target: Target;

  beforeAll(async () => {
    target = await startTarget({ users: [alice, ringer, nobody, forked] });
  }, 120_000);

  afterAll(async () => {
    await target?.stop();
  });

  it(`${CALLS} calls cancelled while ringing: 200 (CANCEL) + 487 (INVITE) + ACK`, async () => {
    const callee = await registerCallee(target, ringer, 'u1');
    const { uac, uas } = await call(target, {
      name: 'cancel', caller: alice, callee: ringer.user, uacScenario: 'uac-cancel.xml', calls: CALLS,
      uas: [{ callee, scenario: 'uas-ring.xml', calls: CALLS }],
    });
    expectSipp('cancelling caller', uac, { exitCode: 0, successful: CALLS, failed: 0 });
    expectSipp('ringing callee', uas[0]!, { exitCode: 0, successful: CALLS, failed: 0 });
  });

  it(`${CALLS} calls to an existing but unregistered user get 404`, async () => {
    const r = await runSipp(target, {
      scenario: 'uac-404.xml', name: 'nf404', calls: CALLS, rate: 10,
      inf: callsCsv(Array.from({ length: CALLS }, () => ({ from: alice, to: nobody.user })), target.domain),
    });
    expectSipp('caller to unregistered user', r, { exitCode: 0, successful: CALLS, failed: 0 });
  });

  it('forks in parallel to both contacts of an AOR: one answers, the other is cancelled', async () => {
    const FORK_CALLS = 5;
    const answering = await registerCallee(target, forked, 'u1');
    const ringing = await registerCallee(target, forked, 'u1');
    const { uac, uas } = await call(target, {
      name: 'fork', caller: alice, callee: forked.user, uacScenario: 'uac-call-fork.xml', calls: FORK_CALLS, rate: 5,
      uas: [
        { callee: answering, scenario: 'uas.xml', calls: FORK_CALLS },
        { callee: ringing, scenario: 'uas-ring.xml', calls: FORK_CALLS },
      ],
    });
    expectSipp('caller (forked call)', uac, { exitCode: 0, successful: FORK_CALLS, failed: 0 });
    expectSipp('answering contact', uas[0]!, { exitCode: 0, successful: FORK_CALLS, failed: 0 });
    expectSipp('ringing contact (cancelled)', uas[1]!, { exitCode: 0, successful: FORK_CALLS, failed: 0 });
  });
});
