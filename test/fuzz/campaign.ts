/**
 * One wire-fuzzing campaign against a running sipd. Runs INSIDE a private network namespace (see
 * wire-fuzz.ts, which creates it and starts this code there): sipd is started as a child process
 * (so in the same namespace), then fuzzed over UDP and TCP, observed (exit, stderr, log levels, RSS)
 * and finally checked for liveness (OPTIONS 200, REGISTER 401 then 200 with digest).
 *
 * Traffic, all to sipd at 127.0.0.1:5060 in the namespace:
 * - UDP: fuzzed messages from two sockets, 127.0.0.1 (not trusted: digest auth applies) and 127.0.0.2
 *   (auth.trusted_ips: requests go on to the registrar, the location lookup and the proxy). Paced in
 *   batches (at most BATCH messages or BATCH_BYTES octets), each followed by a fence: an OPTIONS to
 *   sipd whose 200 shows that sipd has read the batch (UDP on loopback keeps order), waited for at most
 *   FENCE_TIMEOUT_MS.
 * - TCP: LANES connections at a time; on each, groups of 1-4 fuzzed messages are pipelined and written
 *   in random chunks. The fuzzer frames its own output with src/sip's StreamFramer (the framer sipd
 *   uses) to know what sipd will see: after a framing error sipd closes the connection (waited for);
 *   when the stream is between messages a fence OPTIONS is sent on the connection and its 200 waited
 *   for; when it is inside a message (a Content-Length longer than what followed) the connection is
 *   ended instead.
 * - Requests sipd forwards to the fuzzer (bob and dave are registered at the trusted UDP socket, carol
 *   at a TCP listener of the fuzzer) are answered with a response, mutated 30% of the time (not on the
 *   fuzzing TCP connections): the proxy's response path is fuzzed too.
 *
 * The fuzzed messages are a function of the seed (each transport and lane has its own PRNG stream);
 * the answers to forwarded requests and the interleaving of UDP and TCP depend on timing.
 * Every loop is bounded in count and time; `timeLimitMs` bounds the whole campaign.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, type WriteStream } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamFramer } from '../../src/sip/index.js';
import { answerChallenge, SipClient } from '../helpers/sip-client.js';
import { baseEnv, ROOT, SIPD, sipctl } from '../helpers/sipd-process.js';
import { chunks, mutate, Rng } from './mutate.js';
import { answer, cleanRegister, corpusSeeds, fence, templateSeed, type SeedContext } from './seeds.js';

export const SIPD_HOST = '127.0.0.1';
export const SIPD_PORT = 5060;
const METRICS_PORT = 9090;
const UNTRUSTED = '127.0.0.1';
const TRUSTED = '127.0.0.2';
const DOMAIN = '127.0.0.1';
/** sipd's limits.max_message_size (the default; the fuzzer frames with it too). */
const MAX_MESSAGE = 65_536;
/** largest UDP payload the fuzzer sends (a datagram holds at most 65507). */
const MAX_DATAGRAM = 65_000;
const BATCH = 32;
const BATCH_BYTES = 64 * 1024;
const FENCE_TIMEOUT_MS = 2000;
/** this many fences in a row unanswered: sipd is not answering; the campaign stops. */
const MAX_FENCE_MISSES_IN_A_ROW = 10;
const LANES = 4;
/** UDP and TCP progress together: neither gets more than this many messages ahead of the other. */
const SLACK = 2000;
const TCP_WAIT_MS = 3000;
const RSS_SAMPLE_MS = 250;
const HEAP_SAMPLE_MS = 5000;
/** wait after the run before the live heap is measured: Timer D (32 s) plus a margin. */
const LINGER_MS = 34_000;
/** keep at most this many log lines of each kind, and this much stderr. */
const KEEP_LINES = 20;
const KEEP_STDERR = 64 * 1024;

/** subscribers; `checker` is used by the final REGISTER only (the fuzzed messages name alice ... dave, nobody). */
export const SUBSCRIBERS: Record<string, string> = { alice: 'alice-secret-1', bob: 'bob-secret-2', carol: 'carol-secret-3', checker: 'checker-secret-4' };

/**
 * The configuration of the sipd under test (YAML). Explicit where a default could change under us
 * (flood protection is being reworked: it is off here, the fuzzer sends thousands of requests per
 * second from two addresses) or would hide growth within a short run: the RFC 3261 timers are a
 * tenth of the defaults (T1 50 ms: completed transactions linger 64*T1 = 3.2 s instead of 32 s;
 * Timer C 5 s instead of 3 min) and registrations expire within a minute, so that sipd's state
 * reaches its steady size early in the run and growth after that shows (see README "Wire fuzzing").
 */
export const SIPD_CONFIG = [
  `domains: [${DOMAIN}, localhost, example.com]`,
  `metrics: ${SIPD_HOST}:${METRICS_PORT}`,
  'log_level: info',
  'auth:',
  `  trusted_ips: [${TRUSTED}/32]`,
  'flood:',
  '  enabled: false',
  'timers:',
  '  t1_ms: 50',
  '  t2_ms: 400',
  '  t4_ms: 500',
  '  timer_c_ms: 5000',
  'registrar:',
  '  min_expires: 10',
  '  default_expires: 60',
  '  max_expires: 60',
  'location:',
  '  expire_interval_s: 5',
  'shutdown_grace_ms: 1000',
  '',
].join('\n');

export interface CampaignOptions {
  /** fuzzed messages in total: half over UDP, half over TCP. */
  messages: number;
  seed: number;
  /** bound on the whole campaign. */
  timeLimitMs: number;
  /** where to write the batches in flight when sipd crashed or logged an error (JSON). */
  outDir?: string;
  /** progress lines (stderr of the CLI). */
  progress?: (line: string) => void;
  /** sipd's log level (default info) and a file to copy its stdout to (diagnosis). */
  logLevel?: 'info' | 'debug';
  sipdLog?: string;
}

export interface RssSample {
  /** ms since the fuzzing started. */
  t: number;
  /** fuzzed messages sent so far (UDP + TCP). */
  sent: number;
  rssKb: number;
}

export interface Report {
  seed: number;
  messages: { udp: number; tcp: number };
  durationMs: number;
  /** wall time of the fuzzing itself (without start-up and the final checks). */
  fuzzMs: number;
  timedOut: boolean;
  responses: { udp: Record<string, number>; tcp: Record<string, number> };
  /** requests sipd forwarded to the fuzzer's contacts, and the answers sent back. */
  forwarded: { requests: number; answers: number };
  fences: { udpSent: number; udpAnswered: number; tcpSent: number; tcpAnswered: number };
  tcp: {
    connections: number;
    /** connections sipd closed after a framing error the fuzzer predicted. */
    closedAfterFramingError: number;
    /** connections sipd closed although the stream framed cleanly so far (not expected). */
    unexpectedCloses: number;
    connectFailures: number;
  };
  sendErrors: number;
  /** UDP datagrams the kernel dropped for a full receive buffer in the namespace (both directions). */
  kernelUdpRcvbufErrors: number;
  /** kB; afterKb right after the final checks, idleKb LINGER_MS later (transactions of the run ended). */
  rss: { beforeKb: number; peakKb: number; afterKb: number; idleKb: number; hwmKb: number; samples: RssSample[] };
  /**
   * Live JS heap of sipd LINGER_MS after the final checks, when every transaction of the run has ended
   * (heap snapshot total, taken after a full GC), kB: state kept per message shows here without the
   * GC's slack, whatever the length of the run. It includes the caches, filled up to their bounds, and
   * the registrations of the last minute. Taken last: generating a snapshot leaves native memory
   * behind, which would distort every RSS figure after it.
   */
  liveHeap: { endKb: number | undefined };
  /** sipd's V8 heap (from its /metrics) every HEAP_SAMPLE_MS, MB. */
  heap: Array<{ t: number; sent: number; usedMb: number; totalMb: number; externalMb: number }>;
  sipd: {
    pid: number;
    /** exited before the campaign stopped it. */
    crashed: boolean;
    exit: { code: number | null; signal: string | null } | undefined;
    stderr: string;
    /** log lines by pino level (10 trace ... 60 fatal). */
    levels: Record<string, number>;
    /** lines at level >= 50 (first KEEP_LINES). */
    errorLines: string[];
    warnLines: string[];
    /** warn-level lines by message. */
    warnings: Record<string, number>;
    /** stdout lines that are not JSON log lines. */
    otherLines: string[];
    /** the last log lines before a crash. */
    tail: string[];
  };
  final: { options: number | string; register: Array<number | string> };
  metrics: Record<string, number>;
  /** files written to outDir (batches in flight at an error or crash). */
  artifacts: string[];
}

// ------------------------------------------------------------------------------------------ sipd

export class Sipd {
  readonly child: ChildProcess;
  exit: { code: number | null; signal: string | null } | undefined;
  readonly exited: Promise<void>;
  stderr = '';
  levels: Record<string, number> = {};
  errorLines: string[] = [];
  warnLines: string[] = [];
  otherLines: string[] = [];
  tail: string[] = [];
  /** warn-level lines by their `msg`. */
  warnings: Record<string, number> = {};
  errors = 0;
  started = false;
  /** called with every stdout line (replay). */
  onLineHook: ((line: string) => void) | undefined;
  /** a copy of stdout (diagnosis). */
  copy: WriteStream | undefined;
  private partial = '';

  /** `snapshotDir`: where sipd writes a heap snapshot on SIGUSR2 (node --heapsnapshot-signal). */
  constructor(
    configFile: string,
    env: Record<string, string>,
    readonly snapshotDir: string,
  ) {
    const node = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshotDir}`, '--import', 'tsx'];
    this.child = spawn(process.execPath, [...node, SIPD, '--config', configFile], { cwd: ROOT, env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => this.onStdout(d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (this.stderr.length < KEEP_STDERR) this.stderr += d.slice(0, KEEP_STDERR - this.stderr.length);
    });
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  private onStdout(d: string): void {
    this.copy?.write(d);
    const lines = (this.partial + d).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.onLine(line);
  }

  private onLine(line: string): void {
    if (line === '') return;
    this.onLineHook?.(line);
    this.tail.push(line.slice(0, 2000));
    if (this.tail.length > 50) this.tail.shift();
    const m = /^\{"level":(\d+)/.exec(line);
    if (m === null) {
      if (this.otherLines.length < KEEP_LINES) this.otherLines.push(line.slice(0, 4000));
      return;
    }
    const level = Number(m[1]);
    this.levels[level] = (this.levels[level] ?? 0) + 1;
    if (level >= 50) {
      this.errors++;
      if (this.errorLines.length < KEEP_LINES) this.errorLines.push(line.slice(0, 8000));
    } else if (level >= 40) {
      const msg = /"msg":"((?:[^"\\]|\\.){0,200})"/.exec(line)?.[1] ?? '?';
      this.warnings[msg] = (this.warnings[msg] ?? 0) + 1;
      if (this.warnLines.length < KEEP_LINES) this.warnLines.push(line.slice(0, 4000));
    }
    if (!this.started && line.includes('"msg":"sipd started"')) this.started = true;
  }

  /**
   * Live JS heap: the total size of a heap snapshot (taken after a full GC), in kB. sipd stops for
   * the time it takes; the file is removed afterwards. Undefined when no snapshot appeared in time.
   */
  async liveHeapKb(timeoutMs = 60_000): Promise<number | undefined> {
    const before = new Set(readdirSync(this.snapshotDir));
    this.child.kill('SIGUSR2');
    const deadline = Date.now() + timeoutMs;
    let lastSize = -1;
    for (let i = 0; i < 10_000 && Date.now() < deadline && this.exit === undefined; i++) {
      await sleep(200);
      const file = readdirSync(this.snapshotDir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
      if (file === undefined) continue;
      const path = join(this.snapshotDir, file);
      const size = statSync(path).size;
      if (size === 0 || size !== lastSize) {
        lastSize = size;
        continue;
      }
      try {
        const snap = JSON.parse(readFileSync(path, 'utf8')) as { snapshot: { meta: { node_fields: string[] } }; nodes: number[] };
        const fields = snap.snapshot.meta.node_fields;
        const self = fields.indexOf('self_size');
        let total = 0;
        for (let k = self; k < snap.nodes.length; k += fields.length) total += snap.nodes[k]!;
        rmSync(path, { force: true });
        return Math.round(total / 1024);
      } catch {
        /* still being written */
      }
    }
    return undefined;
  }

  async waitStarted(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000 && !this.started; i++) {
      if (this.exit !== undefined) throw new Error(`sipd exited at start-up: ${JSON.stringify(this.exit)} ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`sipd did not start within ${timeoutMs} ms: ${this.stderr}`);
      await sleep(50);
    }
  }

  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.exit !== undefined) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}

function readRssKb(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(s);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(s);
    return rss && hwm ? { rss: Number(rss[1]), hwm: Number(hwm[1]) } : undefined;
  } catch {
    return undefined;
  }
}

/** Udp RcvbufErrors of this network namespace (/proc/net/snmp). */
function udpRcvbufErrors(): number {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    return Number(values[names.indexOf('RcvbufErrors')] ?? 0);
  } catch {
    return 0;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------ helpers

const BRANCH_RE = /^(?:via|v)[ \t]*:[^\r\n]*?;[ \t]*branch[ \t]*=[ \t]*([^;,\s]+)/im;
/** messages remembered by branch (for saving the one a warning names). */
const RECENT = 50_000;
const CALL_ID_RE = /^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)/im;

function statusClass(text: string): string | undefined {
  const m = /^SIP\/2\.0 (\d)\d\d /.exec(text);
  return m ? `${m[1]}xx` : undefined;
}

function bump(rec: Record<string, number>, k: string): void {
  rec[k] = (rec[k] ?? 0) + 1;
}

/** A response to a request sipd sent us: a status chosen at random, mutated `mutateP` of the time. */
function answerFor(r: Rng, request: string, mutateP = 0.3): Buffer | undefined {
  if (/^ACK /.test(request)) return undefined;
  const [code, reason] = r.pick([[100, 'Trying'], [180, 'Ringing'], [200, 'OK'], [200, 'OK'], [404, 'Not Found'], [486, 'Busy Here'], [487, 'Request Terminated'], [503, 'Service Unavailable'], [603, 'Decline']] as const);
  const text = answer(r, request, code, reason);
  if (text === undefined) return undefined;
  return Buffer.from(r.chance(mutateP) ? mutate(r, text, { maxSize: MAX_DATAGRAM }).text : text, 'latin1');
}

/** Waiters for fence replies, by Call-ID. */
class Fences {
  private readonly waiting = new Map<string, () => void>();
  wait(id: string, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        resolve(false);
      }, timeoutMs);
      this.waiting.set(id, () => {
        clearTimeout(t);
        this.waiting.delete(id);
        resolve(true);
      });
    });
  }
  /** a response arrived: true when it answered a fence. */
  seen(text: string): boolean {
    if (!text.startsWith('SIP/2.0 200 ')) return false;
    const id = CALL_ID_RE.exec(text)?.[1]?.trim();
    const w = id === undefined ? undefined : this.waiting.get(id);
    if (w === undefined) return false;
    w();
    return true;
  }
}

/** Splits a TCP byte stream the fuzzer receives into messages (sipd always sends Content-Length). */
function receiver(onMessage: (text: string) => void): (d: Buffer) => void {
  const framer = new StreamFramer({ maxMessageSize: 1 << 20 });
  return (d) => {
    for (const ev of framer.push(d)) if (ev.type === 'message') onMessage(ev.data.toString('latin1'));
  };
}

interface Shared {
  rng: { answers: Rng };
  report: Report;
  fences: Fences;
  sipd: Sipd;
  corpus: string[];
  /** the port of the fuzzer's TCP listener (carol's contact). */
  carolPort: number;
  sent: () => number;
  /** transports still sending (the other one waits when it is SLACK messages ahead). */
  running: { udp: boolean; tcpLanes: number };
  stopped: () => boolean;
  progress: (line: string) => void;
  /** remember a sent message by its top branch, so that a later sipd warning naming it can be saved. */
  remember: (data: Buffer, transport: 'udp' | 'tcp', from: string) => void;
  /** save the messages in flight (replayable with wire-fuzz.ts --replay FILE). */
  saveArtifact: (name: string, a: Omit<Artifact, 'seed' | 'note'>, note: string) => void;
}

/** Wait (bounded) while `mine` is more than SLACK messages ahead of the other transport that still runs. */
async function keepPace(sh: Shared, mine: 'udp' | 'tcp'): Promise<void> {
  for (let i = 0; i < 100_000; i++) {
    const m = sh.report.messages;
    const ahead = mine === 'udp' ? m.udp - m.tcp : m.tcp - m.udp;
    const otherRuns = mine === 'udp' ? sh.running.tcpLanes > 0 : sh.running.udp;
    if (ahead <= SLACK || !otherRuns || sh.stopped()) return;
    await sleep(2);
  }
}

/** The next fuzzed message for a context: a template (80%) or a corpus message (20%), mutated 90% of the time. */
function nextMessage(r: Rng, c: SeedContext, corpus: readonly string[], maxSize: number): Buffer {
  const seed = r.chance(0.8) ? templateSeed(r, c) : r.pick(corpus);
  const text = r.chance(0.9) ? mutate(r, seed, { maxSize, donors: corpus }).text : seed;
  return Buffer.from(text, 'latin1');
}

// ------------------------------------------------------------------------------------------ artifacts

/** Messages in flight when something went wrong, replayable one by one (wire-fuzz.ts --replay FILE). */
export interface Artifact {
  seed: number;
  note: string;
  transport: 'udp' | 'tcp';
  /** per message: the address it was sent from (UDP), or the connection's local address (TCP), HOST:PORT. */
  from: string[];
  /** the messages, base64. */
  messages: string[];
}

function udpArtifact(batch: readonly Buffer[], from: readonly string[]): Omit<Artifact, 'seed' | 'note'> {
  return { transport: 'udp', from: [...from], messages: batch.map((b) => b.toString('base64')) };
}

function tcpArtifact(written: readonly Buffer[], c: SeedContext): Omit<Artifact, 'seed' | 'note'> {
  return { transport: 'tcp', from: written.map(() => `${c.self.host}:${c.self.port}`), messages: written.map((b) => b.toString('base64')) };
}

// ------------------------------------------------------------------------------------------ UDP

async function udpSocket(host: string, onMessage: (text: string, from: dgram.RemoteInfo, sock: dgram.Socket) => void): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  s.on('error', () => undefined);
  s.on('message', (m, rinfo) => onMessage(m.toString('latin1'), rinfo, s));
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, host, () => resolve());
  });
  return s;
}

function sendUdp(s: dgram.Socket, b: Buffer, sh: Shared): Promise<void> {
  return new Promise((resolve) =>
    s.send(b, SIPD_PORT, SIPD_HOST, (err) => {
      if (err) sh.report.sendErrors++;
      resolve();
    }),
  );
}

async function fuzzUdp(sh: Shared, quota: number, seed: number): Promise<void> {
  const r = Rng.derive(seed, 'udp');
  const onMessage = (text: string, from: dgram.RemoteInfo, sock: dgram.Socket): void => {
    const cls = statusClass(text);
    if (cls !== undefined) {
      if (!sh.fences.seen(text)) bump(sh.report.responses.udp, cls);
      return;
    }
    // a request sipd forwarded to one of our contacts
    sh.report.forwarded.requests++;
    if (!sh.rng.answers.chance(0.8)) return;
    const a = answerFor(sh.rng.answers, text);
    if (a === undefined) return;
    sh.report.forwarded.answers++;
    sock.send(a, from.port, from.address, () => undefined);
  };
  const untrusted = await udpSocket(UNTRUSTED, onMessage);
  const trusted = await udpSocket(TRUSTED, onMessage);
  const ctx = (s: dgram.Socket, host: string): SeedContext => ({ transport: 'UDP', self: { host, port: s.address().port }, sipd: { host: SIPD_HOST, port: SIPD_PORT }, domain: DOMAIN });
  const cu = ctx(untrusted, UNTRUSTED);
  const ct = ctx(trusted, TRUSTED);
  const register = async (): Promise<void> => {
    for (const u of ['bob', 'dave']) await sendUdp(trusted, Buffer.from(cleanRegister(r, ct, u), 'latin1'), sh);
    const carol = cleanRegister(r, { ...ct, self: { host: TRUSTED, port: sh.carolPort } }, 'carol', ';transport=tcp');
    await sendUdp(trusted, Buffer.from(carol, 'latin1'), sh);
  };
  await register();
  let sent = 0;
  let batchNo = 0;
  let misses = 0;
  try {
    for (let guard = 0; sent < quota && guard < quota + 1; guard++) {
      if (sh.stopped()) break;
      await keepPace(sh, 'udp');
      // one batch
      const batch: Buffer[] = [];
      const from: string[] = [];
      let bytes = 0;
      const errorsBefore = sh.sipd.errors;
      while (batch.length < BATCH && bytes < BATCH_BYTES && sent < quota) {
        const useTrusted = r.chance(0.5);
        const b = nextMessage(r, useTrusted ? ct : cu, sh.corpus, MAX_DATAGRAM);
        batch.push(b);
        from.push(`${useTrusted ? TRUSTED : UNTRUSTED}:${(useTrusted ? trusted : untrusted).address().port}`);
        sh.remember(b, 'udp', from[from.length - 1]!);
        bytes += b.length;
        sent++;
        sh.report.messages.udp++;
        await sendUdp(useTrusted ? trusted : untrusted, b, sh);
      }
      batchNo++;
      if (batchNo % 60 === 0) await register(); // keep bob, carol and dave bound (they expire, and mutated REGISTERs may remove them)
      const id = `fence-u-${batchNo}-${r.hex(4)}`;
      sh.report.fences.udpSent++;
      const answered = sh.fences.wait(id, FENCE_TIMEOUT_MS);
      await sendUdp(untrusted, Buffer.from(fence(cu, id), 'latin1'), sh);
      if (await answered) {
        sh.report.fences.udpAnswered++;
        misses = 0;
      } else if (++misses >= MAX_FENCE_MISSES_IN_A_ROW) {
        sh.progress(`udp: ${misses} fences in a row unanswered; stopping`);
        sh.saveArtifact(`udp-unanswered-${batchNo}`, udpArtifact(batch, from), `${misses} fences unanswered in a row`);
        break;
      }
      if (sh.sipd.exit !== undefined) {
        sh.saveArtifact(`udp-crash-batch-${batchNo}`, udpArtifact(batch, from), 'sipd exited during or right after this batch');
        break;
      }
      if (sh.sipd.errors > errorsBefore) sh.saveArtifact(`udp-error-batch-${batchNo}`, udpArtifact(batch, from), `sipd logged ${sh.sipd.errors - errorsBefore} error line(s) during this batch`);
    }
  } finally {
    await sleep(200); // late replies
    await Promise.all([untrusted, trusted].map((s) => new Promise<void>((res) => s.close(() => res()))));
  }
}

// ------------------------------------------------------------------------------------------ TCP

/** A connection to sipd from `local` (and `localPort`, for a replay), or undefined after TCP_WAIT_MS. */
function connect(local: string, localPort?: number): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host: SIPD_HOST, port: SIPD_PORT, localAddress: local, localPort, noDelay: true });
    const t = setTimeout(() => {
      s.destroy();
      resolve(undefined);
    }, TCP_WAIT_MS);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(undefined);
    });
  });
}

function write(s: net.Socket, b: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed || !s.writable) {
      resolve(false);
      return;
    }
    s.write(b, (err) => resolve(!err));
  });
}

/** One TCP lane: connections one after another until its quota of fuzzed messages is written. */
async function tcpLane(sh: Shared, lane: number, quota: number, seed: number): Promise<void> {
  const r = Rng.derive(seed, `tcp-${lane}`);
  const local = lane % 2 === 0 ? UNTRUSTED : TRUSTED;
  let sent = 0;
  let connNo = 0;
  for (let guard = 0; sent < quota && guard < quota + 100; guard++) {
    if (sh.stopped()) return;
    const sock = await connect(local);
    if (sock === undefined) {
      sh.report.tcp.connectFailures++;
      if (sh.sipd.exit !== undefined) return;
      await sleep(50);
      continue;
    }
    connNo++;
    sh.report.tcp.connections++;
    let closed = false;
    const closedP = new Promise<void>((resolve) =>
      sock.once('close', () => {
        closed = true;
        resolve();
      }),
    );
    sock.on('error', () => undefined);
    sock.on(
      'data',
      receiver((text) => {
        const cls = statusClass(text);
        if (cls !== undefined) {
          if (!sh.fences.seen(text)) bump(sh.report.responses.tcp, cls);
          return;
        }
        // answered between groups (written now, it could land inside a message being written in chunks),
        // and not mutated: when they arrive is up to sipd, so they must not change how the stream frames
        sh.report.forwarded.requests++;
        const a = answerFor(sh.rng.answers, text, 0);
        if (a !== undefined) answers.push(a);
      }),
    );
    const answers: Buffer[] = [];
    const c: SeedContext = { transport: 'TCP', self: { host: local, port: sock.localPort ?? 0 }, sipd: { host: SIPD_HOST, port: SIPD_PORT }, domain: DOMAIN };
    const predictor = new StreamFramer({ maxMessageSize: MAX_MESSAGE });
    let framingFailed = false;
    const groups = r.range(1, 12);
    const written: Buffer[] = [];
    const errorsBefore = sh.sipd.errors;
    for (let g = 0; g < groups && sent < quota && !closed; g++) {
      await keepPace(sh, 'tcp');
      const n = Math.min(r.range(1, 4), quota - sent);
      const msgs: Buffer[] = [];
      for (let k = 0; k < n; k++) msgs.push(nextMessage(r, c, sh.corpus, MAX_MESSAGE));
      for (const m of msgs) sh.remember(m, 'tcp', `${c.self.host}:${c.self.port}`);
      const data = Buffer.concat(msgs);
      sent += n;
      sh.report.messages.tcp += n;
      written.push(...msgs);
      if (predictor.push(data).some((e) => e.type === 'error')) framingFailed = true;
      for (const piece of chunks(r, data, 8)) {
        if (!(await write(sock, piece))) break;
      }
      if (framingFailed) break;
      // answers to requests sipd sent on this connection: between messages only, framed like the rest
      if (predictor.buffered === 0 && answers.length > 0) {
        const list = answers.splice(0);
        sh.report.forwarded.answers += list.length;
        const data = Buffer.concat(list);
        if (predictor.push(data).some((e) => e.type === 'error')) framingFailed = true;
        await write(sock, data);
        if (framingFailed) break;
      }
      // between messages: fence on this connection (half of the time, and always after the last group)
      if (predictor.buffered === 0 && (r.chance(0.5) || g === groups - 1)) {
        const id = `fence-t${lane}-${connNo}-${g}-${r.hex(4)}`;
        sh.report.fences.tcpSent++;
        const answered = sh.fences.wait(id, TCP_WAIT_MS);
        await write(sock, Buffer.from(fence(c, id), 'latin1'));
        const ok = await Promise.race([answered, closedP.then(() => false)]);
        if (ok) sh.report.fences.tcpAnswered++;
      }
    }
    if (framingFailed) {
      // sipd closes the connection after a framing error
      await Promise.race([closedP, sleep(TCP_WAIT_MS)]);
      if (closed) sh.report.tcp.closedAfterFramingError++;
    } else if (closed) {
      sh.report.tcp.unexpectedCloses++;
      sh.saveArtifact(`tcp-unexpected-close-${lane}-${connNo}`, tcpArtifact(written, c), 'sipd closed this connection although it framed cleanly');
    }
    if (!closed) {
      const how = r.int(3);
      if (how === 0) sock.end();
      else if (how === 1) sock.destroy();
      else sock.resetAndDestroy();
      await Promise.race([closedP, sleep(TCP_WAIT_MS)]);
      if (!closed) sock.destroy();
    }
    if (sh.sipd.exit !== undefined) {
      sh.saveArtifact(`tcp-crash-${lane}-${connNo}`, tcpArtifact(written, c), 'sipd exited during or right after this connection');
      return;
    }
    if (sh.sipd.errors > errorsBefore) sh.saveArtifact(`tcp-error-${lane}-${connNo}`, tcpArtifact(written, c), `sipd logged ${sh.sipd.errors - errorsBefore} error line(s) during this connection`);
  }
}

/** A TCP listener of the fuzzer (carol's contact): answers the requests sipd forwards over it. */
async function contactListener(shared: () => Shared | undefined): Promise<net.Server> {
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined);
    sock.on(
      'data',
      receiver((text) => {
        const sh = shared();
        if (sh === undefined || statusClass(text) !== undefined) return;
        sh.report.forwarded.requests++;
        const a = answerFor(sh.rng.answers, text);
        if (a !== undefined && !sock.destroyed) {
          sh.report.forwarded.answers++;
          sock.write(a);
        }
      }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, TRUSTED, () => resolve());
  });
  return server;
}

// ------------------------------------------------------------------------------------------ metrics

async function scrapeMetrics(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const res = await fetch(`http://${SIPD_HOST}:${METRICS_PORT}/metrics`, { signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    const wanted = [
      'sipd_requests_received_total', 'sipd_responses_sent_total', 'sipd_parse_errors_total', 'sipd_dropped_total', 'sipd_transactions_active', 'sipd_registered_',
      'sipd_auth_challenges_total', 'sipd_transport_', 'sipd_tcp_connections', 'nodejs_heap_size_', 'nodejs_external_memory_bytes', 'process_resident_memory_bytes',
    ];
    for (const line of text.split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (!m || !wanted.some((w) => m[1]!.startsWith(w))) continue;
      out[`${m[1]}${m[2] ?? ''}`] = Number(m[3]);
    }
  } catch {
    /* metrics unavailable: reported as empty */
  }
  return out;
}

// ------------------------------------------------------------------------------------------ final checks

async function finalChecks(report: Report): Promise<void> {
  const client = await new SipClient(UNTRUSTED).open();
  try {
    const opt = [
      `OPTIONS sip:${SIPD_HOST}:${SIPD_PORT} SIP/2.0`,
      `Via: SIP/2.0/UDP ${UNTRUSTED}:${client.port};branch=z9hG4bKfinal${Date.now()};rport`,
      'Max-Forwards: 70',
      `From: <sip:check@${UNTRUSTED}>;tag=final1`,
      `To: <sip:${SIPD_HOST}:${SIPD_PORT}>`,
      `Call-ID: final-options-${Date.now()}`,
      'CSeq: 1 OPTIONS',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    try {
      report.final.options = (await client.request(opt, SIPD_PORT, 10_000)).status;
    } catch (e) {
      report.final.options = (e as Error).message;
    }
    const callId = `final-register-${Date.now()}`;
    const reg = (cseq: number, authorization?: string): string =>
      [
        `REGISTER sip:${DOMAIN} SIP/2.0`,
        `Via: SIP/2.0/UDP ${UNTRUSTED}:${client.port};branch=z9hG4bKfinalreg${cseq}${Date.now()};rport`,
        'Max-Forwards: 70',
        `From: <sip:checker@${DOMAIN}>;tag=finalreg`,
        `To: <sip:checker@${DOMAIN}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} REGISTER`,
        `Contact: <sip:checker@${UNTRUSTED}:${client.port}>`,
        'Expires: 60',
        ...(authorization !== undefined ? [`Authorization: ${authorization}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    try {
      const r1 = await client.request(reg(1), SIPD_PORT, 10_000);
      report.final.register.push(r1.status);
      if (r1.status === 401) {
        const a = answerChallenge(r1, 'checker', SUBSCRIBERS.checker!, `sip:${DOMAIN}`);
        const r2 = await client.request(reg(2, a.header), SIPD_PORT, 10_000);
        report.final.register.push(r2.status);
      }
    } catch (e) {
      report.final.register.push((e as Error).message);
    }
  } finally {
    await client.close();
  }
}

// ------------------------------------------------------------------------------------------ campaign

/** sipd with SIPD_CONFIG, its subscribers and a SQLite store in `dir`, started (listening). */
export async function startSipd(dir: string, logLevel: 'info' | 'debug'): Promise<Sipd> {
  const dbEnv = { SIPD_DB: `sqlite:${join(dir, 'sipd.sqlite')}` };
  const add = async ([u, pw]: [string, string]): Promise<void> => {
    const r = await sipctl(dbEnv, ['add', `${u}@${DOMAIN}`, pw]);
    if (r.code !== 0) throw new Error(`sipctl add ${u}: ${r.stderr}`);
  };
  // the first creates the schema; the others at once
  const [first, ...rest] = Object.entries(SUBSCRIBERS);
  await add(first!);
  await Promise.all(rest.map(add));
  const configFile = join(dir, 'sipd.yaml');
  writeFileSync(configFile, SIPD_CONFIG);
  const snapshots = join(dir, 'snapshots');
  mkdirSync(snapshots);
  const sipd = new Sipd(configFile, { ...dbEnv, SIPD_LISTEN: `udp:${SIPD_HOST}:${SIPD_PORT},tcp:${SIPD_HOST}:${SIPD_PORT}`, SIPD_LOG_LEVEL: logLevel }, snapshots);
  try {
    await sipd.waitStarted(30_000);
  } catch (e) {
    await sipd.stop();
    throw e;
  }
  return sipd;
}

export async function runCampaign(opts: CampaignOptions): Promise<Report> {
  const t0 = Date.now();
  const progress = opts.progress ?? (() => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'sipd-wire-fuzz-'));
  const report: Report = {
    seed: opts.seed,
    messages: { udp: 0, tcp: 0 },
    durationMs: 0,
    fuzzMs: 0,
    timedOut: false,
    responses: { udp: {}, tcp: {} },
    forwarded: { requests: 0, answers: 0 },
    fences: { udpSent: 0, udpAnswered: 0, tcpSent: 0, tcpAnswered: 0 },
    tcp: { connections: 0, closedAfterFramingError: 0, unexpectedCloses: 0, connectFailures: 0 },
    sendErrors: 0,
    kernelUdpRcvbufErrors: 0,
    rss: { beforeKb: 0, peakKb: 0, afterKb: 0, idleKb: 0, hwmKb: 0, samples: [] },
    heap: [],
    liveHeap: { endKb: undefined },
    sipd: { pid: 0, crashed: false, exit: undefined, stderr: '', levels: {}, errorLines: [], warnLines: [], warnings: {}, otherLines: [], tail: [] },
    final: { options: 'not run', register: [] },
    metrics: {},
    artifacts: [],
  };
  let sipd: Sipd | undefined;
  let sampler: NodeJS.Timeout | undefined;
  let contact: net.Server | undefined;
  try {
    sipd = await startSipd(dir, opts.logLevel ?? 'info');
    if (opts.sipdLog !== undefined) sipd.copy = createWriteStream(opts.sipdLog);
    report.sipd.pid = sipd.pid;
    const s = sipd;

    const stopAt = t0 + opts.timeLimitMs;
    const answers = Rng.derive(opts.seed, 'answers');
    // carol's contact: a TCP listener of the fuzzer, registered (with transport=tcp) by the UDP loop
    let shared: Shared | undefined;
    contact = await contactListener(() => shared);
    let stoppedFlag = false;
    const recent = new Map<string, { data: Buffer; transport: 'udp' | 'tcp'; from: string }>();
    const savedPerWarning = new Map<string, number>();
    s.onLineHook = (line) => {
      // a warning naming a transaction of a message sent recently: save that message (a few per kind)
      if (!/^\{"level":[45]\d/.test(line)) return;
      const branch = /"tx":"([^|"]+)\|/.exec(line)?.[1];
      const msg = /"msg":"([^"]{0,80})"/.exec(line)?.[1] ?? 'warning';
      const m = branch === undefined ? undefined : recent.get(branch);
      const n = savedPerWarning.get(msg) ?? 0;
      if (m === undefined || n >= 3) return;
      savedPerWarning.set(msg, n + 1);
      const kind = msg.replace(/[^a-zA-Z]+/g, '-').slice(0, 40);
      shared?.saveArtifact(`warn-${kind}-${n}`, { transport: m.transport, from: [m.from], messages: [m.data.toString('base64')] }, `sipd logged: ${line.slice(0, 600)}`);
    };
    const sh: Shared = {
      rng: { answers },
      carolPort: (contact.address() as net.AddressInfo).port,
      report,
      fences: new Fences(),
      sipd: s,
      corpus: corpusSeeds(ROOT).map((c) => c.text),
      sent: () => report.messages.udp + report.messages.tcp,
      running: { udp: true, tcpLanes: LANES },
      remember: (data, transport, from) => {
        const b = BRANCH_RE.exec(data.toString('latin1', 0, Math.min(data.length, 4096)))?.[1];
        if (b === undefined) return;
        recent.delete(b);
        recent.set(b, { data, transport, from });
        if (recent.size > RECENT) recent.delete(recent.keys().next().value!);
      },
      stopped: () => {
        if (!stoppedFlag && Date.now() > stopAt) {
          stoppedFlag = true;
          report.timedOut = true;
          progress('time limit reached; stopping');
        }
        return stoppedFlag || s.exit !== undefined;
      },
      progress,
      saveArtifact: (name, a, note) => {
        if (opts.outDir === undefined || report.artifacts.length >= 50) return;
        mkdirSync(opts.outDir, { recursive: true });
        const file = join(opts.outDir, `${name}.json`);
        const artifact: Artifact = { seed: opts.seed, note, ...a };
        writeFileSync(file, JSON.stringify(artifact, null, 1));
        report.artifacts.push(file);
      },
    };
    shared = sh;

    await sleep(500);
    const before = readRssKb(s.pid);
    report.rss.beforeKb = before?.rss ?? 0;
    const rcvbuf0 = udpRcvbufErrors();
    const f0 = Date.now();
    let lastProgress = f0;
    sampler = setInterval(() => {
      const v = readRssKb(s.pid);
      if (v === undefined) return;
      report.rss.samples.push({ t: Date.now() - f0, sent: sh.sent(), rssKb: v.rss });
      report.rss.peakKb = Math.max(report.rss.peakKb, v.rss);
      report.rss.hwmKb = v.hwm;
      if (Date.now() - lastProgress >= 10_000) {
        lastProgress = Date.now();
        progress(`${sh.sent()} messages (udp ${report.messages.udp}, tcp ${report.messages.tcp}) in ${Math.round((Date.now() - f0) / 1000)} s, sipd RSS ${Math.round(v.rss / 1024)} MB, error lines ${s.errors}`);
      }
    }, RSS_SAMPLE_MS);

    const heapSample = async (): Promise<void> => {
      const m = await scrapeMetrics();
      const mb = (k: string): number => Math.round(((m[k] ?? 0) / 2 ** 20) * 10) / 10;
      report.heap.push({ t: Date.now() - f0, sent: sh.sent(), usedMb: mb('nodejs_heap_size_used_bytes'), totalMb: mb('nodejs_heap_size_total_bytes'), externalMb: mb('nodejs_external_memory_bytes') });
    };
    const heapSampler = setInterval(() => void heapSample(), HEAP_SAMPLE_MS);
    const udpQuota = Math.ceil(opts.messages / 2);
    const tcpQuota = opts.messages - udpQuota;
    const laneQuota = (l: number): number => Math.floor(tcpQuota / LANES) + (l < tcpQuota % LANES ? 1 : 0);
    await Promise.all([
      fuzzUdp(sh, udpQuota, opts.seed).finally(() => (sh.running.udp = false)),
      ...Array.from({ length: LANES }, (_, l) => tcpLane(sh, l, laneQuota(l), opts.seed).finally(() => sh.running.tcpLanes--)),
    ]);
    report.fuzzMs = Date.now() - f0;
    clearInterval(heapSampler);
    clearInterval(sampler);
    report.kernelUdpRcvbufErrors = udpRcvbufErrors() - rcvbuf0;

    if (s.exit === undefined) {
      await finalChecks(report);
      report.metrics = await scrapeMetrics();
      await sleep(1000);
      report.rss.afterKb = readRssKb(s.pid)?.rss ?? 0;
      // what is left once the transactions of the run have ended: Timer D (32 s, not configurable) is
      // the longest any of them lingers; registrations expire within a minute
      await sleep(LINGER_MS);
      report.rss.idleKb = readRssKb(s.pid)?.rss ?? 0;
      report.metrics.idle_transactions = (await scrapeMetrics())['sipd_transactions_active{kind="client"}'] ?? -1;
      report.liveHeap.endKb = await s.liveHeapKb();
    }
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    if (contact !== undefined) contact.close();
    if (sipd !== undefined) {
      report.sipd.crashed = sipd.exit !== undefined;
      if (report.sipd.crashed) report.sipd.tail = sipd.tail.slice(-30);
      await sipd.stop();
      report.sipd.exit = sipd.exit;
      report.sipd.stderr = sipd.stderr;
      report.sipd.levels = sipd.levels;
      report.sipd.errorLines = sipd.errorLines;
      report.sipd.warnLines = sipd.warnLines;
      report.sipd.warnings = sipd.warnings;
      report.sipd.otherLines = sipd.otherLines;
      sipd.copy?.end();
    }
    rmSync(dir, { recursive: true, force: true });
    report.durationMs = Date.now() - t0;
  }
  return report;
}

// ------------------------------------------------------------------------------------------ replay

/** sipd log lines worth showing next to a replayed message. */
function interesting(line: string): boolean {
  return /^\{"level":[4-6]\d/.test(line) || /"msg":"(request|parse error|tcp connection closed|tcp framing error|message without Via dropped)"/.test(line);
}

/**
 * Replay an artifact (messages in flight when sipd crashed, logged an error or closed a connection
 * unexpectedly) one message at a time against a fresh sipd at log level debug, printing for each
 * message what sipd answered and logged, to find the one that did it. Runs inside the namespace.
 */
export async function runReplay(file: string, out: (line: string) => void): Promise<void> {
  const a = JSON.parse(readFileSync(file, 'utf8')) as Artifact;
  out(`replay of ${file}: ${a.messages.length} ${a.transport.toUpperCase()} message(s), seed ${a.seed}: ${a.note}`);
  const dir = mkdtempSync(join(tmpdir(), 'sipd-wire-replay-'));
  const sipd = await startSipd(dir, 'debug');
  let lines: string[] = [];
  sipd.onLineHook = (l) => {
    if (interesting(l)) lines.push(l.slice(0, 1500));
  };
  const fences = new Fences();
  let replies: string[] = [];
  const onReply = (text: string): void => {
    if (!fences.seen(text)) replies.push(text.split('\r\n')[0]!);
  };
  const show = (i: number, b: Buffer, extra: string): void => {
    out(`#${i} ${JSON.stringify(b.subarray(0, 100).toString('latin1'))}${b.length > 100 ? ` ... (${b.length} octets)` : ''}`);
    out(`   replies: ${replies.length === 0 ? '-' : replies.join(' | ')}${extra}`);
    for (const l of lines) out(`   sipd: ${l}`);
    lines = [];
    replies = [];
  };
  try {
    const msgs = a.messages.map((m) => Buffer.from(m, 'base64'));
    if (a.transport === 'udp') {
      const socks = new Map<string, dgram.Socket>();
      for (const f of new Set(a.from)) {
        const [host, port] = [f.slice(0, f.lastIndexOf(':')), Number(f.slice(f.lastIndexOf(':') + 1))];
        const sock = dgram.createSocket('udp4');
        sock.on('message', (m) => onReply(m.toString('latin1')));
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind(port, host, () => resolve());
        });
        socks.set(f, sock);
      }
      for (let i = 0; i < msgs.length; i++) {
        const sock = socks.get(a.from[i]!)!;
        const addr = sock.address();
        sock.send(msgs[i]!, SIPD_PORT, SIPD_HOST);
        const id = `fence-replay-${i}`;
        const answered = fences.wait(id, FENCE_TIMEOUT_MS);
        sock.send(Buffer.from(fence({ transport: 'UDP', self: { host: addr.address, port: addr.port }, sipd: { host: SIPD_HOST, port: SIPD_PORT }, domain: DOMAIN }, id), 'latin1'), SIPD_PORT, SIPD_HOST);
        const ok = await answered;
        await sleep(100);
        show(i, msgs[i]!, ok ? '' : ' (fence unanswered)');
        if (sipd.exit !== undefined) break;
      }
      for (const sock of socks.values()) sock.close();
    } else {
      const f = a.from[0]!;
      const [host, port] = [f.slice(0, f.lastIndexOf(':')), Number(f.slice(f.lastIndexOf(':') + 1))];
      const sock = await connect(host, port);
      if (sock === undefined) throw new Error(`cannot connect to sipd from ${f}`);
      let closed = false;
      const closedP = new Promise<void>((resolve) => sock.once('close', () => ((closed = true), resolve())));
      sock.on('error', () => undefined);
      sock.on('data', receiver(onReply));
      const predictor = new StreamFramer({ maxMessageSize: MAX_MESSAGE });
      for (let i = 0; i < msgs.length && !closed; i++) {
        await write(sock, msgs[i]!);
        const failed = predictor.push(msgs[i]!).some((e) => e.type === 'error');
        let extra = '';
        if (failed) {
          await Promise.race([closedP, sleep(TCP_WAIT_MS)]);
          extra = ' (framing error expected)';
        } else if (predictor.buffered === 0) {
          const id = `fence-replay-${i}`;
          const answered = fences.wait(id, TCP_WAIT_MS);
          await write(sock, Buffer.from(fence({ transport: 'TCP', self: { host, port }, sipd: { host: SIPD_HOST, port: SIPD_PORT }, domain: DOMAIN }, id), 'latin1'));
          const ok = await Promise.race([answered, closedP.then(() => false)]);
          extra = ok ? '' : ' (fence unanswered)';
        } else extra = ` (inside a message: ${predictor.buffered} octets buffered)`;
        await sleep(100);
        show(i, msgs[i]!, `${extra}${closed ? ' — CONNECTION CLOSED' : ''}`);
      }
      sock.destroy();
    }
  } finally {
    const crashed = sipd.exit !== undefined;
    await sipd.stop();
    out(`sipd: ${crashed ? 'CRASHED' : 'alive'}, exit ${JSON.stringify(sipd.exit)}, stderr: ${sipd.stderr.slice(0, 4000) || '(empty)'}`);
    rmSync(dir, { recursive: true, force: true });
  }
}
