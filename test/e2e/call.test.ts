/**
 * Authenticated calls through the proxy (407 challenge, 100 Trying,
 * Record-Route, in-dialog ACK/BYE by Route): UDP, TCP, UDP-in/TCP-out.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { call, registerCallee } from './calls.js';
import { expectSipp } from './expect-sipp.js';
import { SKIP_E2E, startTarget, testUser, type Target } from './harness.js';

const CALLS = 10;
const alice = testUser('ca', 'pw-alice');
const bobUdp = testUser('cbu', 'pw-bob-udp');
const bobTcp = testUser('cbt', 'pw-bob-tcp');
const bobMix = testUser('cbm', 'pw-bob-mix');
const carolUdp = testUser('cdu', 'pw-carol-udp');
const carolTcp = testUser('cdt', 'pw-carol-tcp');
const carolMix = testUser('cdm', 'pw-carol-mix');

describe.skipIf(SKIP_E2E)('e2e: authenticated calls (SIPp)', { timeout: 120_000 }, () => {
  let target: Target;

  beforeAll(async () => {
    target = await startTarget({ users: [alice, bobUdp, bobTcp, bobMix, carolUdp, carolTcp, carolMix] });
  }, 120_000);

  afterAll(async () => {
    await target?.stop();
  });

  it(`${CALLS} calls over UDP: INVITE/407/ACK/INVITE/100/180/200/ACK/BYE/200`, async () => {
    const callee = await registerCallee(target, bobUdp, 'u1');
    const { uac, uas } = await call(target, {
      name: 'udp', caller: alice, callee: bobUdp.user, uacScenario: 'uac-call.xml', calls: CALLS,
      uas: [{ callee, scenario: 'uas.xml', calls: CALLS }],
    });
    expectSipp('UDP caller', uac, { exitCode: 0, successful: CALLS, failed: 0 });
    expectSipp('UDP callee', uas[0]!, { exitCode: 0, successful: CALLS, failed: 0 });
  });

  it(`${CALLS} calls over TCP (caller and callee on TCP)`, async () => {
    const callee = await registerCallee(target, bobTcp, 't1');
    const { uac, uas } = await call(target, {
      name: 'tcp', caller: alice, callee: bobTcp.user, uacScenario: 'uac-call.xml', uacTransport: 't1', calls: CALLS,
      uas: [{ callee, scenario: 'uas.xml', calls: CALLS }],
    });
    expectSipp('TCP caller', uac, { exitCode: 0, successful: CALLS, failed: 0 });
    expectSipp('TCP callee', uas[0]!, { exitCode: 0, successful: CALLS, failed: 0 });
  });

  it(`${CALLS} calls UDP in, TCP out (double Record-Route, ACK/BYE carry both Routes)`, async () => {
    const callee = await registerCallee(target, bobMix, 't1');
    const { uac, uas } = await call(target, {
      name: 'udp-tcp', caller: alice, callee: bobMix.user, uacScenario: 'uac-call.xml', uacTransport: 'u1', calls: CALLS,
      uas: [{ callee, scenario: 'uas.xml', calls: CALLS }],
    });
    expectSipp('UDP caller', uac, { exitCode: 0, successful: CALLS, failed: 0 });
    expectSipp('TCP callee', uas[0]!, { exitCode: 0, successful: CALLS, failed: 0 });
  });

  // the dialog in both directions: re-INVITE and UPDATE from the caller, BYE from the callee
  for (const [label, callee, uacTransport, calleeTransport] of [
    ['UDP', carolUdp, 'u1', 'u1'],
    ['TCP', carolTcp, 't1', 't1'],
    ['UDP in, TCP out', carolMix, 'u1', 't1'],
  ] as const) {
    it(`5 dialogs ${label}: ACK, re-INVITE, UPDATE from the caller, BYE from the callee, all along our Record-Route`, async () => {
      const c = await registerCallee(target, callee, calleeTransport);
      const { uac, uas } = await call(target, {
        name: `dialog-${calleeTransport}-${uacTransport}`, caller: alice, callee: callee.user, uacScenario: 'uac-call-dialog.xml', uacTransport, calls: 5,
        uas: [{ callee: c, scenario: 'uas-dialog.xml', calls: 5 }],
      });
      expectSipp(`${label} caller`, uac, { exitCode: 0, successful: 5, failed: 0 });
      expectSipp(`${label} callee`, uas[0]!, { exitCode: 0, successful: 5, failed: 0 });
    });
  }
});
