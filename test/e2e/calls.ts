/** Call flows shared by the call test files: a registered callee (reg.xml then a UAS scenario on the same port) and a caller. */
import { callsCsv, freePort, register, runSipp, type Credential, type SippOptions, type SippResult, type Target } from './harness.js';
import { expectSipp } from './expect-sipp.js';

export interface Callee {
  user: Credential;
  port: number;
  transport: 'u1' | 't1';
}

/** Register the callee's contact (expects exactly one successful REGISTER). */
export async function registerCallee(target: Target, user: Credential, transport: 'u1' | 't1' = 'u1'): Promise<Callee> {
  const port = await freePort();
  const r = await register(target, user, port, transport);
  expectSipp(`REGISTER ${user.user} (${transport})`, r, { exitCode: 0, successful: 1, failed: 0 });
  return { user, port, transport };
}

export interface CallRun {
  uac: SippResult;
  uas: SippResult[];
}

/**
 * Start the callee side(s) (each a SIPp UAS on its registered port), then the
 * caller; wait for all of them.
 */
export async function call(
  target: Target,
  o: {
    name: string;
    caller: Credential;
    callee: string;
    uacScenario: string;
    uacTransport?: 'u1' | 't1';
    uacPort?: number;
    calls: number;
    rate?: number;
    durationMs?: number;
    lost?: number;
    uas: { callee: Callee; scenario: string; calls: number; lost?: number; extraArgs?: string[] }[];
    timeoutSec?: number;
  },
): Promise<CallRun> {
  const uasRuns = o.uas.map((u, i) =>
    runSipp(target, {
      scenario: u.scenario,
      name: `${o.name}-uas${i}`,
      localPort: u.callee.port,
      transport: u.callee.transport,
      calls: u.calls,
      lost: u.lost,
      extraArgs: u.extraArgs,
      timeoutSec: o.timeoutSec,
    }),
  );
  // SIPp needs a moment to bind its port before the first INVITE is routed there
  await new Promise((r) => setTimeout(r, 300));
  const uacOpts: SippOptions = {
    scenario: o.uacScenario,
    name: `${o.name}-uac`,
    localPort: o.uacPort,
    transport: o.uacTransport ?? 'u1',
    calls: o.calls,
    rate: o.rate ?? 10,
    durationMs: o.durationMs ?? 200,
    lost: o.lost,
    timeoutSec: o.timeoutSec,
    inf: callsCsv(Array.from({ length: o.calls }, () => ({ from: o.caller, to: o.callee })), target.domain),
  };
  const uac = await runSipp(target, uacOpts);
  const uas = await Promise.all(uasRuns);
  return { uac, uas };
}
