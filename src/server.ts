/**
 * Composition root, in named parts: `buildCore` (transactions → proxy, auth, registrar → router;
 * also what the test harness builds), `transportLayer` + `transportEvents` (the transports, from
 * the registry in src/transport/registry.ts), `startAdminHttp` (metrics, health, admin verbs),
 * `startHousekeeping` (binding expiry, gauges), `warmupBuild` (the start-up warm-up's throwaway core,
 * src/warmup.ts). `startServer` runs them in that order, the warm-up before the admin HTTP, with the
 * transports started last, once every handler exists.
 * Nothing else in src/ reads the environment or files (config.ts does, for this module).
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { networkInterfaces } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { Writable } from 'node:stream';
import { runInNewContext } from 'node:vm';
import { ConfigError, loadTlsFiles, readProcNetSnmp, watchTlsFiles, type Config, type Secrets } from './config.js';
import { Acl } from './core/acl.js';
import { DigestAuthenticator, stripCredentials, type AuthResult } from './core/auth.js';
import { FloodGuard } from './core/flood.js';
import { ScannerFilter } from './core/scanner.js';
import { Proxy } from './core/proxy.js';
import { RandomPool } from './core/random.js';
import { RouteTokens } from './core/route-token.js';
import { Registrar } from './core/registrar.js';
import { FlowTable } from './core/flows.js';
import type { ResponseSteps } from './core/response-steps.js';
import { Router, type AuthOutcome, type Authenticator, type RoutingEvents } from './core/routing.js';
import { deterministicToTag } from './core/tags.js';
import { adminPolicy, createHttpHandler } from './http.js';
import { IdleCollector } from './idle-gc.js';
import { createLogger, type Logger } from './log.js';
import { Metrics, parseUdpSnmp } from './metrics.js';
import { buildResponse, isSipParseError, MAGIC_COOKIE, parseMessage, parseVia, SipRequest, splitList, type PartialMessage, type SipParseError, type SipResponse } from './sip/index.js';
import { openStores, type Stores, type WriteBackEvents } from './store/index.js';
import type { LocationStore, SubscriberStore } from './store/types.js';
import { createTransactionLayer, realClock, type TransactionLayerImpl, type TransactionLayerOptions } from './transaction/index.js';
import type { Clock } from './transaction/types.js';
import { createTransportLayer, isConnectionOriented, normaliseAddress, responseTarget, TlsContexts, TlsMaterialError, type SipTransportLayer } from './transport/index.js';
import type { TransportLimits } from './transport/transport.js';
import type { Source, Target, TransportEvents, TransportLayer } from './transport/types.js';
import { warmUp, warmupEnabled, type WarmUp, type WarmupDeps } from './warmup.js';

export interface RunningServer {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** actual bound endpoints (ports resolved when 0 was configured). */
  endpoints(): ReadonlyArray<{ transport: string; address: string; port: number }>;
  /** the HTTP metrics address, when enabled. */
  metricsAddress(): { host: string; port: number } | undefined;
  /**
   * Re-read the TLS certificate and key (what SIGHUP and a change of the files do): new handshakes
   * use them, established connections keep theirs; a bad new certificate is logged (one error
   * line) and the old one kept. False when there is no TLS listener or the reload failed.
   */
  reloadTls(): boolean;
  /**
   * graceful stop: stop accepting, let transactions end (at most shutdown_grace_ms), write the pending
   * location changes (at most location.final_flush_ms), close the stores and endpoints. Bounded
   * whatever the database does; never rejects.
   */
  stop(): Promise<void>;
}

export class StartupError extends Error {
  override readonly name = 'StartupError';
}

export interface StartOptions {
  log?: Logger;
  /**
   * Secrets resolved by the caller (the sipd CLI: `resolveSecrets(config)` of src/config.ts, which
   * loads or creates the files in state_dir). Without it (tests), `auth.secret` is used or a random
   * secret generated per start, and admin verbs exist only when `admin.token` is set.
   */
  secrets?: Secrets;
  /** the start-up warm-up (default src/warmup.ts `warmUp`; tests inject a failing one). */
  warmUp?: WarmUp;
}

/** The secrets when no caller resolved them: no files, nothing persistent. */
function ephemeralSecrets(config: Config): Secrets {
  return {
    authSecret: config.auth.secret ?? randomBytes(32).toString('hex'),
    admin: config.admin.token !== null ? { value: config.admin.token, explicit: true } : null,
  };
}

// ================================================================================ core wiring

/** The settings the core is built from (the YAML sections, as validated by src/config.ts). */
export type CoreSettings = Pick<Config, 'domains' | 'auth' | 'registrar' | 'timers' | 'limits' | 'scanners'>;

/** Everything the core takes from outside: no sockets, files or clocks of its own. */
export interface CoreDeps {
  readonly settings: CoreSettings;
  /** the transport layer (or a fake): only sent through; it starts after the core exists. */
  readonly transport: Pick<TransportLayer, 'send' | 'endpoints' | 'endpointFor' | 'resolve'>;
  readonly subscribers: SubscriberStore;
  readonly locations: LocationStore;
  /** the auth secret (digest nonces, Record-Route tokens, branch MACs). */
  readonly secret: Buffer;
  readonly clock: Clock;
  readonly now: () => number;
  /** randomness: the proxy's branch suffixes, the authenticator's nonces, registrar ruids. */
  /** `txBranch`: the transaction layer's own Via branches (default: its randomBytes-based one). */
  readonly random: { readonly branch: () => string; readonly bytes: (n: number) => Buffer; readonly ruid: () => string; readonly txBranch?: () => string };
  /** §18.2.2 response routing (src/transport's `responseTarget`; the harness passes its own). */
  readonly responseTarget: (res: SipResponse, src?: Source) => Target;
  /** routing's events (log lines, metrics); `drop` also gets the proxy's stray-response drops. */
  readonly events: RoutingEvents;
  /** to-tags of stateless responses (default `deterministicToTag`). */
  readonly toTag?: (req: SipRequest) => string;
  /** the host's own addresses, for "is this next hop sipd itself?" behind wildcard listeners. */
  readonly localAddresses?: () => ReadonlySet<string>;
  readonly txLog?: TransactionLayerOptions['log'];
  /** true once a stop has begun: new requests are answered 503 (ACKs dropped). */
  readonly stopping?: () => boolean;
  /** RFC 5626 flows (src/core/flows.ts): registrations bound to their connection (the server keeps one). */
  readonly flows?: FlowTable;
  /** the proxy's response steps (src/core/response-steps.ts; default none). */
  readonly steps?: ResponseSteps;
}

export interface Core {
  readonly tx: TransactionLayerImpl;
  readonly proxy: Proxy;
  readonly router: Router;
  readonly registrar: Registrar;
  readonly authenticator: DigestAuthenticator;
  /** requests still being decided or forwarded (not lingering transactions). */
  busy(): boolean;
}

/**
 * The core: transactions → proxy, authenticator, registrar → router. The one wiring of it, used by
 * `startServer` and by the test harness (test/helpers/core-harness.ts). Feed it with
 * `core.tx.receiveRequest` / `receiveResponse` (see `transportEvents`).
 */
export function buildCore(d: CoreDeps): Core {
  const s = d.settings;
  const events = d.events;
  const domains = new Set(s.domains.map((x) => x.toLowerCase()));
  const isOurDomain = (host: string): boolean => domains.has(host.toLowerCase());

  /**
   * A stray 2xx the proxy passes on statelessly (§16.7 step 10 for 2xx without a transaction). Its
   * next Via comes from the peer unchecked: a malformed or unsupported one is a counted drop at
   * debug, not an exception (that would be a warn line with a stack trace per datagram).
   */
  const sendStray = (r: SipResponse): void => {
    let target: Target;
    try {
      target = d.responseTarget(r);
    } catch (e) {
      events.drop('stray-unroutable');
      events.debug?.({ err: e instanceof Error ? e.message : String(e) }, 'stray response dropped: no route');
      return;
    }
    d.transport.send(r.toBuffer(), target).catch((e: unknown) => events.debug?.({ err: String(e) }, 'stray response not sent'));
  };

  const stopping = d.stopping;
  const toTag = d.toTag ?? deterministicToTag;
  const tx = createTransactionLayer({
    transport: d.transport,
    user: {
      request: (req, src) => {
        if (stopping?.() === true) {
          if (req.method !== 'ACK') tx.respondStateless(buildResponse(req, 503, { reason: 'Shutting Down', toTag: deterministicToTag(req) }), src);
          return;
        }
        router.onRequest(req, src);
      },
      strayResponse: (res) => proxy.strayResponse(res, sendStray, (reason) => events.drop(reason)),
    },
    timers: {
      t1: s.timers.t1_ms,
      t2: s.timers.t2_ms,
      t4: s.timers.t4_ms,
      timerC: s.timers.timer_c_ms,
      trying: s.timers.trying_ms,
    },
    clock: d.clock,
    responseTarget: d.responseTarget,
    ...(d.random.txBranch !== undefined ? { newBranch: d.random.txBranch } : {}),
    maxTransactions: s.limits.max_transactions,
    ...(d.txLog !== undefined ? { log: d.txLog } : {}),
  });

  const proxy = new Proxy({
    tx,
    transport: d.transport,
    random: d.random.branch,
    routeTokens: new RouteTokens(d.secret),
    ...(d.localAddresses !== undefined ? { localAddresses: d.localAddresses } : {}),
    ...(events.debug !== undefined ? { debug: (obj: Record<string, unknown>, msg: string) => events.debug?.(obj, msg) } : {}),
    onResponse: (status) => events.response(status),
    ...(d.steps !== undefined ? { steps: d.steps } : {}),
  });
  const authenticator = new DigestAuthenticator({
    subscribers: d.subscribers,
    secret: d.secret,
    nonceLifetimeS: s.auth.nonce_lifetime_s,
    algorithms: s.auth.algorithms,
    qop: s.auth.qop,
    checkUri: s.auth.check_uri,
    ncWindow: s.auth.nc_window,
    now: d.now,
    random: d.random.bytes,
  });
  const auth: Authenticator = {
    verify: (req, realm, kind) => {
      // synchronous when the credentials are cached (no Promise on the hot path)
      const r = authenticator.verify(req, realm, kind);
      return r instanceof Promise ? r.then(authOutcome) : authOutcome(r);
    },
    stripCredentials: (req, realm) => stripCredentials(req, realm),
  };
  const registrar = new Registrar({
    ...(d.flows !== undefined ? { flows: d.flows } : {}),
    locations: d.locations,
    domains: isOurDomain,
    minExpires: s.registrar.min_expires,
    defaultExpires: s.registrar.default_expires,
    maxExpires: s.registrar.max_expires,
    maxContacts: s.registrar.max_contacts,
    natReceived: s.registrar.nat_received,
    now: d.now,
    newRuid: d.random.ruid,
  });
  const router: Router = new Router({
    tx,
    proxy,
    auth: s.auth.enabled ? auth : undefined,
    registrar,
    ...(d.flows !== undefined ? { flows: d.flows } : {}),
    locations: d.locations,
    scanners: s.scanners.enabled ? new ScannerFilter(s.scanners.user_agents) : undefined,
    trusted: new Acl(s.auth.trusted_ips),
    isOurDomain,
    toTag,
    events,
  });
  return { tx, proxy, router, registrar, authenticator, busy: () => router.busy > 0 || proxy.pending > 0 };
}

/** routing's events in the server: one info line per request, metrics. */
function routingEvents(log: Logger, metrics: Metrics, debugOn: boolean): RoutingEvents {
  return {
    handled: (req, src, result, why, ms) => {
      metrics.requestHandled(req.method, ms / 1000);
      if (!log.isLevelEnabled('info')) return;
      let from: string | undefined;
      let to: string | undefined;
      try {
        from = req.from()?.uri.raw;
        to = req.to()?.uri.raw;
      } catch {
        /* malformed From/To: logged without them */
      }
      log.info({ method: req.method, callId: req.callId(), from, to, src: `${src.transport}:${src.address}:${src.port}`, result, why, ms: Math.round(ms * 1000) / 1000 }, 'request');
    },
    challenge: (kind) => metrics.authChallenge(kind),
    authFailure: (reason) => metrics.authFailed(reason),
    drop: (reason) => metrics.dropped(reason),
    denied: (reason) => metrics.relayRefused(reason),
    response: (status) => metrics.responseSent(status),
    ...(debugOn ? { debug: (obj: Record<string, unknown>, msg: string) => log.debug(obj, msg) } : {}),
    error: (obj, msg) => log.error(obj, msg),
  };
}

// ================================================================================ transports

/** The flood limiter the transport asks about every datagram, TCP message and connection (undefined: off). */
function floodGuard(config: Config, log: Logger, metrics: Metrics, now: () => number): FloodGuard | undefined {
  const fl = config.flood;
  if (!fl.enabled || fl.max_requests <= 0) return undefined;
  return new FloodGuard({
    windowMs: fl.window_ms,
    maxRequests: fl.max_requests,
    banMs: fl.ban_s * 1000,
    exempt: new Acl([...config.auth.trusted_ips, ...fl.exempt]),
    maxSources: fl.max_sources,
    now,
    // the one line per ban fail2ban reads ("ban":"<HOST>")
    onBan: (b) => {
      metrics.floodBans.inc();
      log.warn({ ban: b.ip, requests: b.requests, seconds: b.seconds }, 'flood: source banned');
    },
  });
}

/** The transport layer's limits (parse limits included) from `limits`. */
export function transportLimits(config: Config): TransportLimits {
  return {
    maxMessageSize: config.limits.max_message_size,
    maxHeaders: config.limits.max_headers,
    maxHeaderLine: config.limits.max_header_line,
    maxVias: config.limits.max_vias,
    tcpMaxConnections: config.limits.tcp_max_connections,
    tcpMaxPerIp: config.limits.tcp_max_per_ip,
    tcpIdleTimeoutMs: config.limits.tcp_idle_timeout_ms,
    tcpMsgTimeoutMs: config.limits.tcp_msg_timeout_ms,
    tcpMaxBuffer: config.limits.tcp_max_buffer,
  };
}

/**
 * The parts of the core that the server's core and the warm-up's throwaway core are built with
 * alike (src/warmup.ts): the same functions, so that what the warm-up optimises is what the
 * server then runs (a closure of another source line would be another call target to V8).
 */
function serverParts(log: Logger, metrics: Metrics, debugOn: boolean, localAddresses: ReadonlySet<string>, state: { readonly stopping: boolean }): Pick<CoreDeps, 'random' | 'responseTarget' | 'events' | 'localAddresses' | 'txLog' | 'stopping' | 'flows'> {
  const pool = new RandomPool((b) => randomFillSync(b));
  return {
    // one randomFillSync per 4 KiB serves tags, branches, nonces and ruids (not a randomBytes call each)
    random: { branch: () => pool.hex(8), bytes: (n) => pool.bytes(n), ruid: () => pool.hex(12), txBranch: () => MAGIC_COOKIE + pool.base64url(12) },
    responseTarget,
    events: routingEvents(log, metrics, debugOn),
    localAddresses: () => localAddresses,
    txLog: { debug: (obj, msg) => log.debug(obj, msg), warn: (obj, msg) => log.warn(obj, msg) },
    stopping: () => state.stopping,
    flows: new FlowTable(),
  };
}

/**
 * How the warm-up builds its throwaway core: `buildCore` with the server's parts, but a logger at
 * the server's level that writes nowhere and metrics of a registry of their own (so that the
 * per-request log line and counters run as in the server, and nothing is logged or counted); an
 * error event of the core is reported to the warm-up (it fails).
 */
export function warmupBuild(config: Config, level: string, localAddresses: ReadonlySet<string> = new Set()): WarmupDeps['build'] {
  return (w) => {
    const { log, metrics } = warmupSinks(level);
    const parts = serverParts(log, metrics, log.isLevelEnabled('debug'), localAddresses, { stopping: false });
    return buildCore({
      ...parts,
      settings: config,
      transport: w.transport,
      subscribers: w.subscribers,
      locations: w.locations,
      secret: w.secret,
      clock: w.clock,
      now: w.now,
      events: { ...parts.events, error: (obj, msg) => w.onError(msg) },
    });
  };
}

/** A logger at `level` that writes nowhere and metrics of a registry of their own (the warm-up's). */
function warmupSinks(level: string): { log: Logger; metrics: Metrics } {
  const nowhere = new Writable({ write: (_chunk, _enc, cb) => cb() });
  return { log: createLogger(level, nowhere), metrics: new Metrics(false) };
}

/** The transport events of a warm-up core: the server's own `transportEvents`, into the warm-up's sinks. */
export function warmupEvents(level: string): NonNullable<WarmupDeps['events']> {
  return (core, layer) => {
    const { log, metrics } = warmupSinks(level);
    return transportEvents(core, layer, log, metrics, log.isLevelEnabled('debug'));
  };
}

/**
 * The start-up warm-up (src/warmup.ts) on a throwaway core of the same settings: one info line
 * with what it did, a warn line when it failed; never throws (the start goes on either way).
 */
async function runWarmup(config: Config, log: Logger, run: WarmUp, localAddresses: ReadonlySet<string>): Promise<void> {
  if (!warmupEnabled(config.warmup)) return;
  const t0 = performance.now();
  try {
    const r = await run({ settings: config, warmup: config.warmup, limits: transportLimits(config), build: warmupBuild(config, log.level, localAddresses), events: warmupEvents(log.level) });
    log.info({ registers: r.registers, calls: r.calls, ms: Math.round(r.ms), budgetSpent: r.budgetSpent }, `warm-up: ${r.registers} registers, ${r.calls} calls in ${Math.round(r.ms)} ms`);
  } catch (e) {
    log.warn({ err: errText(e), ms: Math.round(performance.now() - t0) }, 'warm-up failed; starting without it');
  }
}

/** The transport layer for `listen` (no socket yet: `start(events)` creates the transports and binds). */
function transportLayer(config: Config, log: Logger, metrics: Metrics, flood: FloodGuard | undefined, tls: TlsContexts | undefined): SipTransportLayer {
  return createTransportLayer({
    listen: config.listen,
    advertise: config.advertise ?? undefined,
    limits: transportLimits(config),
    udpBuffers: { recvBytes: config.udp.recv_buffer_bytes, sendBytes: config.udp.send_buffer_bytes },
    transportOptions: {
      // the TLS material of the tls transport (src/transport/registry.ts); without it a tls listener fails at start
      ...(tls !== undefined ? { tls } : {}),
      // every ws: and wss: listener
      ws: {
        maxConnections: config.ws.max_connections,
        maxPerIp: config.ws.max_per_ip,
        handshakeTimeoutMs: config.ws.handshake_timeout_ms,
        pingIntervalMs: config.ws.ping_interval_ms,
        origins: config.ws.origins,
        path: config.ws.path ?? undefined,
        maxBuffer: config.limits.tcp_max_buffer,
      },
      // wss: listeners use the TLS certificate (reloads included: the context is asked per connection)
      ...(tls !== undefined ? { wss: { secureContext: () => tls.server() } } : {}),
    },
    log: (level, obj, msg) => log[level](obj, msg),
    admit:
      flood === undefined
        ? undefined
        : (peer, kind) => {
            if (flood.admit(peer.address)) return true;
            metrics.floodDrop(kind);
            return false;
          },
  });
}

/** The TLS contexts from the configured files; StartupError (one line) when they cannot be used. */
function openTls(config: Config): TlsContexts {
  const t = config.tls;
  try {
    return new TlsContexts(loadTlsFiles(t), {
      verifyClient: t.verify_client,
      verifyServer: t.verify_server,
      minVersion: t.min_version,
      ...(t.ciphers !== null ? { ciphers: t.ciphers } : {}),
      handshakeTimeoutMs: t.handshake_timeout_ms,
    });
  } catch (e) {
    if (e instanceof ConfigError) throw new StartupError(e.message);
    if (e instanceof TlsMaterialError) throw new StartupError(`config: tls: ${t.cert ?? ''}, ${t.key ?? ''}: ${e.message}`);
    throw e;
  }
}

/**
 * TLS certificate reload (SIGHUP, a change of the files, `RunningServer.reloadTls`): new handshakes
 * use the new material, established connections keep theirs; a bad new certificate is one error
 * line and the old one is kept.
 */
function startTlsReload(config: Config, log: Logger, contexts: TlsContexts): { reload(why: string): boolean; stop(): void } {
  const reload = (why: string): boolean => {
    let error: string;
    try {
      const r = contexts.reload(loadTlsFiles(config.tls));
      if (r.ok) {
        log.info({ why, generation: contexts.generation }, 'tls certificate reloaded');
        return true;
      }
      error = r.error;
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    log.error({ why, err: error }, 'tls certificate reload failed; keeping the current certificate');
    return false;
  };
  const onSighup = (): void => {
    reload('SIGHUP');
  };
  process.on('SIGHUP', onSighup);
  const unwatch = watchTlsFiles(config.tls, () => reload('file change'));
  return {
    reload,
    stop: () => {
      process.removeListener('SIGHUP', onSighup);
      unwatch();
    },
  };
}

/** What the transport layer hands up goes to the transactions; unparseable requests get their 400. */
function transportEvents(core: Core, transport: TransportLayer, log: Logger, metrics: Metrics, debugOn: boolean): TransportEvents {
  const tx = core.tx;
  return {
    request: (req, src) => {
      metrics.requestReceived(req.method);
      tx.receiveRequest(req, src);
    },
    response: (res, src) => tx.receiveResponse(res, src),
    // a connection's flows end with it (RFC 5626; the registrar's close policy)
    connectionClosed: (id) => void core.registrar.connectionClosed(id),
    parseError: (err, src, raw) => {
      metrics.parseError(err.code);
      // answer 400 when we could read enough of a request to address a response
      const reply = malformedRequestReply(err, raw);
      if (reply !== undefined) {
        transport.send(reply.data, malformedReplyTarget(reply.topVia, src)).catch((e: unknown) => log.debug({ err: String(e) }, 'cannot answer malformed request'));
        metrics.responseSent(400);
      } else metrics.dropped('unparseable');
      if (debugOn) log.debug({ code: err.code, reason: err.reason, src: `${src.transport}:${src.address}:${src.port}` }, 'parse error');
    },
  };
}

// ================================================================================ housekeeping

interface Housekeeping {
  /** refresh the transaction / transport / flood gauges (each scrape). */
  refreshGauges(): void;
  stop(): void;
}

/** Expire bindings and refresh the location gauges every location.expire_interval_s; gauges on demand. */
function startHousekeeping(config: Config, log: Logger, metrics: Metrics, stores: Stores, core: Core, transport: SipTransportLayer, flood: FloodGuard | undefined, now: () => number): Housekeeping {
  const timer = setInterval(() => {
    void (async () => {
      try {
        await stores.locations.expire(now());
        const c = await stores.locations.counts();
        metrics.aors.set(c.aors);
        metrics.contacts.set(c.contacts);
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'location expiry failed');
      }
    })();
  }, config.location.expire_interval_s * 1000);
  timer.unref();
  // one full GC when the server has gone quiet after a load (src/idle-gc.ts, bench/RSS.md)
  const gc = fullGc();
  const idle = new IdleCollector({
    load: () => {
      const s = core.tx.stats();
      return s.server + s.client + s.lingering;
    },
    collect: () => {
      if (gc === undefined) return;
      const before = process.memoryUsage.rss();
      gc();
      log.debug({ rssBefore: before, rssAfter: process.memoryUsage.rss() }, 'idle: full gc after load');
    },
    minPeak: IDLE_GC_MIN_PEAK,
  });
  const idleTimer = setInterval(() => idle.tick(), IDLE_GC_CHECK_MS);
  idleTimer.unref();
  return {
    refreshGauges() {
      const s = core.tx.stats();
      metrics.transactions.set({ kind: 'server' }, s.server);
      metrics.transactions.set({ kind: 'client' }, s.client);
      metrics.transactions.set({ kind: 'lingering' }, s.lingering);
      const t = transport.stats();
      metrics.tcpConnections.set({ direction: 'inbound' }, t.byTransport.tcp?.inbound ?? 0);
      metrics.tcpConnections.set({ direction: 'outbound' }, t.byTransport.tcp?.outbound ?? 0);
      for (const [name, c] of Object.entries(t.byTransport)) {
        metrics.transportConnections.set({ transport: name, direction: 'inbound' }, c.inbound);
        metrics.transportConnections.set({ transport: name, direction: 'outbound' }, c.outbound);
      }
      for (const [reason, n] of Object.entries(t.drops)) metrics.transportDrops.set({ reason }, n);
      for (const [kind, n] of Object.entries(t.sendErrors)) metrics.transportSendErrors.set({ kind }, n);
      if (flood !== undefined) {
        const f = flood.stats();
        metrics.floodBanned.set(f.banned);
        metrics.floodTracked.set(f.tracked);
      }
    },
    stop: () => {
      clearInterval(timer);
      clearInterval(idleTimer);
    },
  };
}

/** how often the idle collector checks, and the load (transactions + linger entries) that counts as a load */
const IDLE_GC_CHECK_MS = 2000;
const IDLE_GC_MIN_PEAK = 4096;

/**
 * A full-GC function without `--expose-gc` on the command line: the flag set at run time gives
 * `gc` to contexts created afterwards, here one vm context (the main context gets no global `gc`).
 * undefined when that fails (then the idle collector does nothing).
 */
function fullGc(): (() => void) | undefined {
  const exposed: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return () => void (exposed as () => unknown)();
  try {
    setFlagsFromString('--expose-gc');
    const f: unknown = runInNewContext('gc');
    if (typeof f === 'function') return () => void (f as () => unknown)();
  } catch {
    // not available
  }
  return undefined;
}

// ================================================================================ admin / metrics HTTP

/** The metrics / health / admin-verb endpoint (src/http.ts), listening; undefined when metrics are off. Rejects with StartupError. */
async function startAdminHttp(
  config: Config,
  secrets: Secrets,
  log: Logger,
  metrics: Metrics,
  stores: Stores,
  transport: SipTransportLayer,
  housekeeping: Housekeeping,
  stopping: () => boolean,
): Promise<{ http: HttpServer | undefined; admin: ReturnType<typeof adminPolicy> | undefined }> {
  if (config.metrics === null) return { http: undefined, admin: undefined };
  const m = config.metrics;
  const admin = adminPolicy(m.host, secrets.admin, config.admin.allowed_hosts);
  const http: HttpServer = createHttpServer(
    createHttpHandler({
      metrics: async () => {
        housekeeping.refreshGauges();
        try {
          const c = await stores.locations.counts();
          metrics.aors.set(c.aors);
          metrics.contacts.set(c.contacts);
        } catch {
          /* store down: gauges keep their last value */
        }
        return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
      },
      health: async () => {
        const ok = !stopping() && (await stores.ping());
        return { ok, body: { status: ok ? 'ok' : 'unavailable', store: ok, transports: transport.endpoints().length } };
      },
      removeLocation: (aor) => stores.locations.removeAll(aor),
      admin,
      listen: () => {
        const a = http.address();
        return { host: m.host, port: a && typeof a === 'object' ? a.port : m.port };
      },
      log: { info: (obj, msg) => log.info(obj, msg), warn: (obj, msg) => log.warn(obj, msg) },
    }),
  );
  await new Promise<void>((resolve, reject) => {
    http.once('error', (e) => reject(new StartupError(`metrics ${m.host}:${m.port}: ${(e as Error).message}`)));
    http.listen(m.port, m.host, () => resolve());
  });
  return { http, admin };
}

// ================================================================================ the server

/**
 * Start sipd: stores → core (transactions, proxy, auth, registrar, router) → warm-up (src/warmup.ts,
 * on a throwaway core) → admin/metrics HTTP and housekeeping → transports, LAST: when the first
 * message can arrive every handler exists.
 */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? createLogger(config.log_level);
  // ---- TLS material first: a missing or bad certificate is one error line before anything opens
  const tlsContexts = config.listen.some((l) => l.transport === 'tls' || l.transport === 'wss') ? openTls(config) : undefined;
  const metrics = new Metrics();
  // the log level is fixed for the life of the server: per-message debug calls are skipped (their
  // objects not built) when debug is off
  const debugOn = log.isLevelEnabled('debug');
  const now = (): number => Date.now();

  // ---- stores
  let stores: Stores;
  try {
    stores = await openStores(config, {
      now,
      onQuery: (store, op, ms) => metrics.storeQuery(store, op, ms / 1000),
      writeBack: writeBackLog(log, metrics),
    });
  } catch (e) {
    throw new StartupError(`cannot open database: ${(e as Error).message}`);
  }
  metrics.setLocationBacklogSource(() => stores.locationBacklog());
  metrics.setKernelUdpSource(() => {
    const text = readProcNetSnmp();
    return text === undefined ? undefined : parseUdpSnmp(text);
  });
  const secrets = opts.secrets ?? ephemeralSecrets(config);

  // ---- core, on a transport layer that has no socket yet
  const state = { stopping: false };
  const stopped = (): boolean => state.stopping;
  const flood = floodGuard(config, log, metrics, now);
  const transport = transportLayer(config, log, metrics, flood, tlsContexts);
  // the host's own addresses, for "is this next hop sipd itself?" behind wildcard listeners
  const localAddresses = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) localAddresses.add(normaliseAddress(a.address));
  const core = buildCore({
    settings: config,
    transport,
    subscribers: stores.subscribers,
    locations: stores.locations,
    secret: Buffer.from(secrets.authSecret),
    clock: realClock(),
    now,
    ...serverParts(log, metrics, debugOn, localAddresses, state),
  });

  // ---- warm-up: synthetic traffic through a throwaway core, so that the first real load meets
  // optimised code; before the metrics endpoint too, so that /healthz is not ok while SIP is not listening
  await runWarmup(config, log, opts.warmUp ?? warmUp, localAddresses);

  // ---- housekeeping, admin / metrics HTTP
  const housekeeping = startHousekeeping(config, log, metrics, stores, core, transport, flood, now);
  let web: Awaited<ReturnType<typeof startAdminHttp>>;
  try {
    web = await startAdminHttp(config, secrets, log, metrics, stores, transport, housekeeping, stopped);
  } catch (e) {
    housekeeping.stop();
    core.tx.close();
    await stores.close();
    throw e;
  }
  const { http, admin } = web;

  // ---- transports, last: every handler exists
  try {
    await transport.start(transportEvents(core, transport, log, metrics, debugOn));
  } catch (e) {
    housekeeping.stop();
    core.tx.close();
    if (http !== undefined) await new Promise<void>((r) => http.close(() => r()));
    await stores.close();
    throw new StartupError((e as Error).message);
  }

  // ---- TLS reload: SIGHUP and a change of the certificate files (new handshakes only)
  const tlsReload = tlsContexts === undefined ? undefined : startTlsReload(config, log, tlsContexts);

  // ---- event-loop delay, read and reset at each scrape (sipd_event_loop_delay_*); disabled in stop()
  const loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  loopDelay.enable();
  metrics.setEventLoopDelaySource(loopDelay);

  log.info(
    {
      listen: transport.endpoints().map((e) => `${e.transport}:${e.address}:${e.port}`),
      domains: config.domains.map((d) => d.toLowerCase()),
      db: config.db.kind,
      admin: admin === undefined ? 'off: no metrics endpoint' : admin.on ? 'on' : `off: ${admin.reason}`,
    },
    'sipd started',
  );

  return {
    config,
    log,
    metrics,
    endpoints: () => transport.endpoints(),
    reloadTls: () => tlsReload?.reload('request') ?? false,
    metricsAddress: () => {
      const a = http?.address();
      return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
    },
    async stop() {
      if (state.stopping) return;
      state.stopping = true;
      tlsReload?.stop();
      log.info('stopping: waiting for transactions to finish');
      // wait for requests still being decided or forwarded, not for completed transactions that only
      // linger to absorb retransmissions (Timer J/K): those end with the process
      const deadline = Date.now() + config.shutdown_grace_ms;
      while (Date.now() < deadline && core.busy()) await new Promise((r) => setTimeout(r, 20));
      housekeeping.stop();
      core.tx.close();
      // every step is bounded, so that a stop finishes whatever the database (or a peer) does:
      // the stores' own bounds (location.final_flush_ms for the write-back queue, then the pool's
      // end) come first, these are the backstop
      const bounded = async (what: string, p: Promise<unknown>, ms: number): Promise<void> => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<'late'>((r) => {
          timer = setTimeout(() => r('late'), ms);
        });
        const done = p.then(
          () => 'done' as const,
          (e: unknown) => {
            log.warn({ err: errText(e) }, `stop: ${what} failed`);
            return 'done' as const;
          },
        );
        const r = await Promise.race([done, late]);
        clearTimeout(timer);
        if (r === 'late') log.warn({ ms }, `stop: ${what} did not finish in time; going on`);
      };
      await bounded('closing the transports', transport.close(), STOP_STEP_MS);
      await bounded('closing the stores', stores.close(), config.location.final_flush_ms + STOP_STEP_MS);
      if (http) {
        const h = http;
        const closed = new Promise<void>((r) => h.close(() => r()));
        h.closeIdleConnections();
        await bounded('closing the HTTP endpoint', closed, STOP_STEP_MS);
        h.closeAllConnections();
      }
      loopDelay.disable();
      metrics.setEventLoopDelaySource(undefined);
      log.info('stopped');
    },
  };
}

export { buildResponse };

/** routing's view of a digest-auth result (one function, not a closure per request). */
function authOutcome(r: AuthResult): AuthOutcome {
  return r.ok ? { ok: true, user: r.user } : { ok: false, reason: r.reason, response: r.response };
}

/** stop(): longest wait for closing the transports or the HTTP endpoint, and slack beyond the stores' own bounds (ms). */
const STOP_STEP_MS = 2000;

/** Sampling interval of the event-loop delay histogram (ms): a stall shorter than this is not seen as one. */
const EVENT_LOOP_RESOLUTION_MS = 10;

/** Most AORs named in the shutdown line about unwritten location changes. */
const UNWRITTEN_AORS_LOGGED = 20;

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Log lines and metrics for the write-back location queue. */
function writeBackLog(log: Logger, metrics: Metrics): WriteBackEvents {
  return {
    unavailable: (err, backlog) => log.warn({ err: errText(err), backlog }, 'location database unavailable; changes are kept in memory and retried'),
    recovered: (backlog) => log.info({ backlog }, 'location database available again'),
    retrying: (change, err) => log.warn({ ...change, err: errText(err) }, 'location write failed; will retry'),
    dropped: (change, err) => log.error({ ...change, err: errText(err) }, 'location change dropped: the database refused it'),
    failure: (kind) => metrics.locationWriteFailures.inc({ kind }),
    expireFailed: (err) => log.warn({ err: errText(err) }, 'deleting expired bindings from the database failed'),
    unwritten: (changes) => {
      const aors = [...new Set(changes.map((c) => c.aor))];
      log.error(
        { unwritten: changes.length, aors: aors.slice(0, UNWRITTEN_AORS_LOGGED), moreAors: Math.max(0, aors.length - UNWRITTEN_AORS_LOGGED) },
        'location changes not written to the database before shutdown (lost)',
      );
    },
  };
}

/**
 * The 400 for a request the parser rejected, built from what it could still read (`err.partial`):
 * the Via values copied verbatim (§8.2.6.2), From, To (with a tag added), Call-ID and CSeq. Built as
 * text, not re-parsed, so that a malformed Via (RFC 4475 badinv01) still gets its 400. Undefined when
 * there is not enough to address a response, or the message is a response or an ACK.
 */
export function malformedRequestReply(err: SipParseError, raw?: Buffer): { data: Buffer; topVia: string } | undefined {
  const p = err.partial.isRequest === undefined && raw !== undefined ? partialFromRaw(raw) : err.partial;
  if (p.isRequest !== true || p.method === 'ACK') return undefined;
  if (p.via === undefined || p.via.length === 0 || p.callId === undefined || p.cseq === undefined || p.from === undefined || p.to === undefined) return undefined;
  const clean = (v: string): string => v.replace(/\r?\n[ \t]*/g, ' ').replace(/[\r\n\0]/g, ' ').trim();
  const vias = p.via.map(clean);
  const to = clean(p.to);
  const tag = createHash('md5').update(`${p.callId}|${vias[0]}|${p.from}`).digest('hex').slice(0, 16);
  const lines = [
    `SIP/2.0 400 ${err.reason.replace(/[^\x20-\x7e]/g, '?') || 'Bad Request'}`,
    ...vias.map((v) => `Via: ${v}`),
    `From: ${clean(p.from)}`,
    `To: ${/;\s*tag\s*=/i.test(to) ? to : `${to};tag=${tag}`}`,
    `Call-ID: ${clean(p.callId)}`,
    `CSeq: ${clean(p.cseq)}`,
    'Content-Length: 0',
    '',
    '',
  ];
  return { data: Buffer.from(lines.join('\r\n'), 'latin1'), topVia: vias[0]! };
}

/**
 * The fields of a message that parsed but failed a later check (the transport parses the top Via
 * lazily, after parseMessage: its SipParseError then carries no partial message, as for RFC 4475
 * badinv01).
 */
function partialFromRaw(raw: Buffer): PartialMessage {
  try {
    const m = parseMessage(raw);
    if (!(m instanceof SipRequest)) return { isRequest: false };
    return { isRequest: true, method: m.method, via: m.headerValues('via'), callId: m.header('call-id'), cseq: m.header('cseq'), from: m.header('from'), to: m.header('to') };
  } catch (e) {
    return isSipParseError(e) ? e.partial : {};
  }
}

/**
 * Where that 400 goes: back over the transport and connection it came in on, to the source address
 * (the `received` of §18.2.1) — never to a sent-by host taken from a message we could not parse. Over
 * UDP the port is the top Via's sent-by port (§18.2.2) when that Via parses and has no rport; else the
 * source port.
 */
export function malformedReplyTarget(topVia: string, src: Source): Target {
  const back: Target = { transport: src.transport, address: src.address, port: src.port, connectionId: src.connectionId, local: src.local };
  if (isConnectionOriented(src.transport)) return back;
  try {
    const v = parseVia(splitList(topVia)[0] ?? '');
    if (v.rport !== undefined) return back;
    return { ...back, port: v.port ?? 5060 };
  } catch {
    return back;
  }
}
