/**
 * Wire fuzzer: mutated SIP messages against a running sipd over UDP and TCP, inside a private
 * network namespace (only `lo`), so that whatever a mutated message names stays on this machine.
 *
 *   npx tsx test/fuzz/wire-fuzz.ts --messages 1000000 --seed 12345 [--out DIR] [--time-limit-s N] [--json]
 *   npx tsx test/fuzz/wire-fuzz.ts --replay DIR/ARTIFACT.json
 *
 * A campaign writes the messages in flight when sipd crashed, logged an error or closed a TCP
 * connection unexpectedly to DIR (JSON); --replay sends them again one at a time to a fresh sipd at
 * log level debug and prints what each one got and made sipd log.
 *
 * Needs root and `ip netns` (see test/helpers/netns.ts). Prints the seed, progress, the figures and
 * the verdict (checkReport); exits 0 when every check passed, 1 otherwise. The bytes sent are a
 * function of the seed (test/fuzz/mutate.ts); the interleaving of the UDP and TCP streams is not.
 *
 * `--inner` is the half that runs inside the namespace (campaign.ts); the outer half creates the
 * namespace, runs it there and removes the namespace again.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { KNOWN_METHODS } from '../../src/sip/index.js';
import { createNetns } from '../helpers/netns.js';
import { baseEnv, ROOT } from '../helpers/sipd-process.js';
import { runCampaign, runReplay, type Report } from './campaign.js';

const SELF = fileURLToPath(import.meta.url);

export interface FuzzOptions {
  messages: number;
  seed: number;
  outDir: string;
  timeLimitMs: number;
  /** progress lines of the campaign (default: none). */
  progress?: (line: string) => void;
  /** more arguments for the inner half (--log-level, --sipd-log). */
  extraArgs?: readonly string[];
}

/** Run a campaign in a new network namespace. Rejects when the namespace cannot be made. */
export async function fuzzInNetns(o: FuzzOptions): Promise<Report> {
  const made = await createNetns('sipd-fuzz');
  if (!made.ok) throw new Error(`cannot create a network namespace: ${made.reason}`);
  const ns = made.ns;
  try {
    const argv = [...ns.prefix, process.execPath, '--import', 'tsx', SELF, '--inner', '--messages', String(o.messages), '--seed', String(o.seed), '--out', o.outDir, '--time-limit-s', String(Math.ceil(o.timeLimitMs / 1000)), ...(o.extraArgs ?? [])];
    return await new Promise<Report>((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      let partial = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (err.length < 1 << 20) err += d;
        const lines = (partial + d).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) o.progress?.(l);
      });
      // the campaign bounds itself by timeLimitMs; this is the backstop
      const timer = setTimeout(() => child.kill('SIGKILL'), o.timeLimitMs + 120_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        const last = out.trim().split('\n').pop() ?? '';
        try {
          resolve(JSON.parse(last) as Report);
        } catch {
          reject(new Error(`the campaign exited ${code} without a report.\nstderr: ${err.slice(-4000)}\nstdout: ${out.slice(-2000)}`));
        }
      });
    });
  } finally {
    await ns.remove();
  }
}

/**
 * Memory limits.
 * - RSS ceiling, during and after the run.
 * - Growth. V8 keeps raising its heap limits under this allocation rate for about a minute: RSS climbs
 *   by 100-200 MB over that time without anything being kept (README "Wire fuzzing" has the figures),
 *   so in a short run RSS cannot tell growth from warm-up. What sipd keeps is measured on the live JS
 *   heap instead: a heap snapshot (taken after a full GC) once every transaction of the run has ended.
 *   An idle sipd has ~17 MB; after 50,000 or 150,000 fuzzed messages ~22 MB (caches filled to their
 *   bounds, JIT code, the last minute's registrations). The ceiling catches anything kept per message
 *   above ~0.4 kB in the CI run, above ~20 bytes in the 1,000,000-message run. Runs of at least
 *   RSS_GROWTH_MIN_MESSAGES are past the warm-up by their second half: there RSS itself must not grow
 *   by more than RSS_SECOND_HALF_GROWTH_KB over the first half's peak.
 */
export const RSS_CEILING_KB = 768 * 1024;
export const RSS_SECOND_HALF_GROWTH_KB = 64 * 1024;
export const RSS_GROWTH_MIN_MESSAGES = 200_000;
export const LIVE_HEAP_CEILING_KB = 40 * 1024;

/** Peak RSS while the first and the second half of the messages were sent. */
export function rssHalves(r: Report): { firstKb: number; secondKb: number } {
  const total = r.messages.udp + r.messages.tcp;
  let firstKb = 0;
  let secondKb = 0;
  for (const s of r.rss.samples) {
    if (s.sent <= total / 2) firstKb = Math.max(firstKb, s.rssKb);
    else secondKb = Math.max(secondKb, s.rssKb);
  }
  return { firstKb, secondKb };
}

const methodLabels = (r: Report): string[] =>
  Object.keys(r.metrics)
    .map((k) => /^sipd_requests_received_total\{method="(.*)"\}$/.exec(k)?.[1])
    .filter((m): m is string => m !== undefined);

/**
 * The checks of a campaign, each a name and a function returning why it failed (undefined: it held).
 * "An error caused by input" is any sipd log line at level >= 50 (error, fatal): in the namespace sipd
 * gets nothing but the fuzzer's traffic, and its store is a local SQLite file.
 */
export const CHECKS: ReadonlyArray<{ name: string; why: (r: Report, requested: number) => string | undefined; minMessages?: number }> = [
  {
    name: 'every fuzzed message was sent (half over UDP, half over TCP) within the time bound',
    why: (r, n) =>
      r.timedOut ? 'the campaign hit its time limit' : r.messages.udp !== Math.ceil(n / 2) || r.messages.tcp !== n - Math.ceil(n / 2) ? `sent ${JSON.stringify(r.messages)} of ${n}` : undefined,
  },
  {
    name: 'sipd did not crash, and exited 0 on SIGTERM afterwards',
    why: (r) => (r.sipd.crashed ? `sipd exited during the run: ${JSON.stringify(r.sipd.exit)}; last lines: ${r.sipd.tail.slice(-5).join('\n')}` : r.sipd.exit?.code !== 0 ? `exit on SIGTERM: ${JSON.stringify(r.sipd.exit)}` : undefined),
  },
  {
    name: 'no uncaught exception or warning: sipd wrote nothing to stderr',
    why: (r) => (r.sipd.stderr.trim() !== '' ? r.sipd.stderr.slice(0, 4000) : undefined),
  },
  {
    name: 'no log line at level >= 50 (error, fatal), and nothing but JSON log lines on stdout',
    why: (r) => {
      const errors = (r.sipd.levels['50'] ?? 0) + (r.sipd.levels['60'] ?? 0);
      if (errors > 0) return `${errors} line(s) at level >= 50, e.g.\n${r.sipd.errorLines.slice(0, 3).join('\n')}${r.artifacts.length > 0 ? `\nbatches in flight: ${r.artifacts.join(', ')}` : ''}`;
      if (r.sipd.otherLines.length > 0) return `non-log output: ${r.sipd.otherLines.slice(0, 3).join('\n')}`;
      return undefined;
    },
  },
  {
    name: `sipd RSS stayed under ${RSS_CEILING_KB / 1024} MB during and after the run`,
    why: (r) => (r.rss.peakKb > RSS_CEILING_KB || r.rss.afterKb > RSS_CEILING_KB || r.rss.afterKb === 0 ? `peak ${r.rss.peakKb} kB, after ${r.rss.afterKb} kB` : undefined),
  },
  {
    name: `sipd RSS did not keep growing: the second half of the run raised the first half's peak by at most ${RSS_SECOND_HALF_GROWTH_KB / 1024} MB`,
    minMessages: RSS_GROWTH_MIN_MESSAGES,
    why: (r) => {
      const h = rssHalves(r);
      if (h.firstKb === 0 || h.secondKb === 0) return `too few RSS samples (${r.rss.samples.length})`;
      return h.secondKb > h.firstKb + RSS_SECOND_HALF_GROWTH_KB ? `peak ${h.firstKb} kB in the first half, ${h.secondKb} kB in the second` : undefined;
    },
  },
  {
    name: `sipd keeps no state per message: once the run's transactions have ended its live JS heap (heap snapshot, after a full GC) is under ${LIVE_HEAP_CEILING_KB / 1024} MB`,
    why: (r) => (r.liveHeap.endKb === undefined ? 'no heap snapshot' : r.liveHeap.endKb > LIVE_HEAP_CEILING_KB ? `${r.liveHeap.endKb} kB` : undefined),
  },
  {
    name: 'sipd kept up: at least 99% of the fences (OPTIONS after each UDP batch and between TCP messages) were answered',
    why: (r) => {
      const f = r.fences;
      if (f.udpSent === 0 || f.tcpSent === 0) return `fences sent: UDP ${f.udpSent}, TCP ${f.tcpSent}`;
      return f.udpAnswered < f.udpSent * 0.99 || f.tcpAnswered < f.tcpSent * 0.99 ? `answered UDP ${f.udpAnswered}/${f.udpSent}, TCP ${f.tcpAnswered}/${f.tcpSent}` : undefined;
    },
  },
  {
    name: 'sipd closed TCP connections only after a framing error',
    why: (r) => (r.tcp.unexpectedCloses > 0 ? `${r.tcp.unexpectedCloses} connection(s) closed that framed cleanly (${r.artifacts.join(', ')})` : undefined),
  },
  {
    name: 'the request method labels in /metrics stay bounded (known methods and "other")',
    why: (r) => {
      const labels = methodLabels(r);
      const odd = labels.filter((m) => m !== 'other' && !KNOWN_METHODS.has(m));
      return labels.length === 0 ? 'no sipd_requests_received_total in /metrics' : odd.length > 0 ? `${odd.length} other labels, e.g. ${odd.slice(0, 5).join(' ')}` : undefined;
    },
  },
  {
    name: 'afterwards sipd answers OPTIONS with 200',
    why: (r) => (r.final.options !== 200 ? `OPTIONS: ${r.final.options}` : undefined),
  },
  {
    name: 'afterwards a REGISTER with digest auth gets 401, then 200',
    why: (r) => (JSON.stringify(r.final.register) !== '[401,200]' ? `REGISTER: ${JSON.stringify(r.final.register)}` : undefined),
  },
];

/** The checks that apply to a run of `messages`. */
export function checksFor(messages: number): typeof CHECKS {
  return CHECKS.filter((c) => c.minMessages === undefined || messages >= c.minMessages);
}

/** The checks that failed, with why; an empty list means the campaign passed. */
export function checkReport(r: Report, requested: number): string[] {
  return checksFor(requested).flatMap((c) => {
    const why = c.why(r, requested);
    return why === undefined ? [] : [`${c.name}: ${why}`];
  });
}

/** The figures of a report in a few lines. */
export function summary(r: Report): string {
  const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;
  const h = rssHalves(r);
  const levels = Object.entries(r.sipd.levels).map(([l, n]) => `${l}:${n}`).join(' ');
  return [
    `seed ${r.seed}: ${r.messages.udp} UDP + ${r.messages.tcp} TCP fuzzed messages in ${(r.fuzzMs / 1000).toFixed(1)} s (campaign ${(r.durationMs / 1000).toFixed(1)} s)`,
    `responses received: UDP ${JSON.stringify(r.responses.udp)}, TCP ${JSON.stringify(r.responses.tcp)}; forwarded to the fuzzer ${r.forwarded.requests} (answered ${r.forwarded.answers})`,
    `fences answered: UDP ${r.fences.udpAnswered}/${r.fences.udpSent}, TCP ${r.fences.tcpAnswered}/${r.fences.tcpSent}; TCP connections ${r.tcp.connections} (closed by sipd after a framing error ${r.tcp.closedAfterFramingError}, unexpectedly ${r.tcp.unexpectedCloses}, connect failures ${r.tcp.connectFailures}); send errors ${r.sendErrors}; kernel UDP receive-buffer drops ${r.kernelUdpRcvbufErrors}`,
    `sipd RSS before ${mb(r.rss.beforeKb)}, peak ${mb(r.rss.peakKb)} (first half ${mb(h.firstKb)}, second half ${mb(h.secondKb)}), after ${mb(r.rss.afterKb)}, ${mb(r.rss.idleKb)} once idle, VmHWM ${mb(r.rss.hwmKb)}; live JS heap once idle ${mb(r.liveHeap.endKb ?? 0)} (client transactions left ${r.metrics.idle_transactions})`,
    `warnings (level 40) by message: ${JSON.stringify(r.sipd.warnings)}`,
    `sipd: crashed ${r.sipd.crashed}, exit ${JSON.stringify(r.sipd.exit)}, stderr ${r.sipd.stderr.length} chars, log lines by level ${levels}`,
    `after the run: OPTIONS ${r.final.options}, REGISTER ${JSON.stringify(r.final.register)}`,
    ...(r.artifacts.length > 0 ? [`artifacts: ${r.artifacts.join(', ')}`] : []),
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '50000' },
      seed: { type: 'string' },
      out: { type: 'string' },
      'time-limit-s': { type: 'string' },
      inner: { type: 'boolean', default: false },
      replay: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'sipd-log': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const messages = Number(values.messages);
  if (!Number.isInteger(messages) || messages < 2) throw new Error(`--messages: expected an integer >= 2, got ${values.messages}`);
  const seed = values.seed !== undefined ? Number(values.seed) : randomInt(1, 2 ** 32 - 1);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new Error(`--seed: expected an integer in [0, 2^32), got ${values.seed}`);
  // default bound: 2 ms per message plus start-up, at least 5 minutes
  const timeLimitMs = values['time-limit-s'] !== undefined ? Number(values['time-limit-s']) * 1000 : Math.max(300_000, messages * 2 + 60_000);
  const outDir = values.out ?? mkdtempSync(join(tmpdir(), 'sipd-fuzz-out-'));

  if (values.replay !== undefined) {
    if (values.inner) {
      await runReplay(values.replay, (l) => process.stdout.write(`${l}\n`));
      return;
    }
    const made = await createNetns('sipd-fuzz');
    if (!made.ok) throw new Error(`cannot create a network namespace: ${made.reason}`);
    try {
      const argv = [...made.ns.prefix, process.execPath, '--import', 'tsx', SELF, '--inner', '--replay', resolve(values.replay)];
      await new Promise<void>((done) => spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: baseEnv(), stdio: 'inherit' }).on('close', () => done()));
    } finally {
      await made.ns.remove();
    }
    return;
  }
  if (values.inner) {
    const logLevel = values['log-level'] === 'debug' ? 'debug' : 'info';
    const report = await runCampaign({ messages, seed, timeLimitMs, outDir, logLevel, sipdLog: values['sipd-log'], progress: (l) => process.stderr.write(`${l}\n`) });
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return;
  }
  process.stderr.write(`wire-fuzz: seed ${seed}, ${messages} messages, artifacts in ${outDir}\n`);
  const extra = [...(values['log-level'] !== 'info' ? ['--log-level', values['log-level']!] : []), ...(values['sipd-log'] !== undefined ? ['--sipd-log', resolve(values['sipd-log'])] : [])];
  const report = await fuzzInNetns({ messages, seed, outDir, timeLimitMs, extraArgs: extra, progress: (l) => process.stderr.write(`  ${l}\n`) });
  const failures = checkReport(report, messages);
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 1)}\n`);
  process.stdout.write(`${summary(report)}\n`);
  if (failures.length === 0) process.stdout.write('PASS: every check held\n');
  else process.stdout.write(`FAIL:\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
  process.exitCode = failures.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && SELF === resolve(process.argv[1])) {
  main().catch((e: unknown) => {
    process.stderr.write(`wire-fuzz: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 2;
  });
}
