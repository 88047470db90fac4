import { expect } from 'vitest';
import { summary, type SippResult } from './harness.js';

/** Assert SIPp's exit code and its exact call counters; the message carries SIPp's screen and errors. */
export function expectSipp(label: string, r: SippResult, want: { exitCode: number; successful: number; failed: number }): void {
  console.info(`[e2e] ${summary(label, r)}`);
  expect(
    { exitCode: r.exitCode, successful: r.successful, failed: r.failed },
    `${label}\n${r.report}`,
  ).toEqual(want);
}
