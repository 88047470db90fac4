/**
 * Wire fuzzing in CI: 50,000 mutated SIP messages (25,000 over UDP, 25,000 over TCP, with split
 * and pipelined TCP frames) against a running sipd in a private network namespace, then the checks
 * of test/fuzz/wire-fuzz.ts (CHECKS): no crash, nothing on stderr, no log line at level >= 50, RSS
 * under a ceiling, no state kept per message (live heap), sipd keeping up, bounded metric labels, and
 * OPTIONS 200 / REGISTER 401 then 200 afterwards.
 *
 * The seed is random unless FUZZ_SEED is set; it is printed first. A failure is reproduced with
 *   FUZZ_SEED=N npx vitest run test/fuzz/wire-fuzz.test.ts
 * or `npx tsx test/fuzz/wire-fuzz.ts --messages 50000 --seed N` (same bytes; see test/fuzz/README.md).
 *
 * Without root or `ip netns` the file is skipped with a printed reason, unless CI is set: then it fails.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsAvailable } from '../helpers/netns.js';
import type { Report } from './campaign.js';
import { checksFor, fuzzInNetns, summary } from './wire-fuzz.js';

const MESSAGES = 50_000;
const CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const avail = netnsAvailable();
if (!avail.ok) {
  if (CI) console.error(`wire-fuzz: network namespaces are required under CI: ${avail.reason}`);
  else console.warn(`wire-fuzz: SKIPPED (not counted as passed): ${avail.reason}`);
}

const SEED = process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== '' ? Number(process.env.FUZZ_SEED) : randomInt(1, 2 ** 32 - 1);

describe.runIf(avail.ok || CI)(`wire fuzzing: ${MESSAGES} mutated messages over UDP and TCP (seed ${SEED})`, () => {
  let report: Report | undefined;
  let outDir = '';

  beforeAll(async () => {
    expect(Number.isInteger(SEED) && SEED >= 0 && SEED < 2 ** 32, `FUZZ_SEED=${process.env.FUZZ_SEED}`).toBe(true);
    outDir = mkdtempSync(join(tmpdir(), 'sipd-wire-fuzz-test-'));
    console.log(`wire-fuzz: seed ${SEED}; reproduce with FUZZ_SEED=${SEED} npx vitest run test/fuzz/wire-fuzz.test.ts`);
    report = await fuzzInNetns({ messages: MESSAGES, seed: SEED, outDir, timeLimitMs: 240_000 });
    console.log(summary(report));
  }, 400_000);

  afterAll(() => {
    // batches in flight at an error or a crash are kept for replay; an empty directory is removed
    if (outDir !== '' && readdirSync(outDir).length === 0) rmSync(outDir, { recursive: true, force: true });
    else if (outDir !== '') console.log(`wire-fuzz: artifacts kept in ${outDir}`);
  });

  // every check of wire-fuzz.ts that applies to a run of this length (RSS growth needs a longer run: see RSS_GROWTH_MIN_MESSAGES)
  for (const check of checksFor(MESSAGES)) {
    it(check.name, () => {
      expect(report, 'the campaign produced no report').toBeDefined();
      const why = check.why(report!, MESSAGES);
      expect(why, `seed ${SEED}: ${why}`).toBeUndefined();
    });
  }

  it('the fuzzing reached sipd: requests of every kind handled, all response classes seen, requests forwarded to the fuzzer', () => {
    const r = report!;
    // sipd answered: 1xx..6xx among the responses it sent (the fuzzer's answers to forwarded requests come back as 4xx-6xx too)
    const classes = new Set([...Object.keys(r.responses.udp), ...Object.keys(r.responses.tcp)]);
    for (const c of ['1xx', '2xx', '4xx', '5xx']) expect(classes, `response classes seen: ${[...classes].join(' ')}`).toContain(c);
    const methods = ['REGISTER', 'INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'MESSAGE'];
    for (const m of methods) expect(r.metrics[`sipd_requests_received_total{method="${m}"}`] ?? 0, m).toBeGreaterThan(100);
    expect(Object.keys(r.metrics).filter((k) => k.startsWith('sipd_parse_errors_total{')).length).toBeGreaterThan(5);
    expect(r.forwarded.requests).toBeGreaterThan(100);
    expect(r.tcp.closedAfterFramingError).toBeGreaterThan(100);
  });
});
