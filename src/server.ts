/**
 * Composition root: config → log → metrics → stores → transports → transactions → core.
 * Nothing else in src/ reads the environment or files (config.ts does, for this module).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { networkInterfaces } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readProcNetSnmp, type Config, type Secrets } from './config.js';
import { Acl } from './core/acl.js';
import { DigestAuthenticator, stripCredentials, type AuthResult } from './core/auth.js';
import { FloodGuard } from './core/flood.js';
import { ScannerFilter } from './core/scanner.js';
import { Proxy } from './core/proxy.js';
import { RouteTokens } from './core/route-token.js';
import { Registrar } from './core/registrar.js';
import { Router, type AuthOutcome, type Authenticator } from './core/routing.js';
import { deterministicToTag } from './core/tags.js';
import { adminPolicy, createHttpHandler } from './http.js';
import { createLogger, type Logger } from './log.js';
import { Metrics, parseUdpSnmp } from './metrics.js';
import { buildResponse, isSipParseError, parseMessage, parseVia, SipRequest, splitList, type PartialMessage, type SipParseError, type SipResponse } from './sip/index.js';
import { openStores, type Stores, type WriteBackEvents } from './store/index.js';
import { createTransactionLayer, realClock } from './transaction/index.js';
import { fixWebSocketContact } from './core/ws-contact.js';
import { createTransportLayer, normaliseAddress, responseTarget } from './transport/index.js';
import type { Source, Target } from './transport/types.js';

export interface RunningServer {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** actual bound endpoints (ports resolved when 0 was configured). */
  endpoints(): ReadonlyArray<{ transport: string; address: string; port: number }>;
  /** the HTTP metrics address, when enabled. */
  metricsAddress(): { host: string; port: number } | undefined;
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
}

/** The secrets when no caller resolved them: no files, nothing persistent. */
function ephemeralSecrets(config: Config): Secrets {
  return {
    authSecret: config.auth.secret ?? randomBytes(32).toString('hex'),
    admin: config.admin.token !== null ? { value: config.admin.token, explicit: true } : null,
  };
}

export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? createLogger(config.log_level);
  const metrics = new Metrics();
  // the log level is fixed for the life of the server: per-message debug calls are skipped (their
  // objects not built) when debug is off
  const debugOn = log.isLevelEnabled('debug');
  const now = (): number => Date.now();
  const clock = realClock();

  // ---- stores
  let stores: Stores;
  try {
    stores = await openStores(config, {
      now,
      onQuery: (store, op, ms) => metrics.storeDuration.observe({ store, op }, ms / 1000),
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

  const domains = new Set(config.domains.map((d) => d.toLowerCase()));
  const isOurDomain = (host: string): boolean => domains.has(host.toLowerCase());
  const secrets = opts.secrets ?? ephemeralSecrets(config);
  const secret = Buffer.from(secrets.authSecret);

  const trusted = new Acl(config.auth.trusted_ips);
  // ---- flood limiter: the transport asks it about every datagram, TCP message and connection
  const fl = config.flood;
  const flood =
    fl.enabled && fl.max_requests > 0
      ? new FloodGuard({
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
        })
      : undefined;

  let stopping = false;
  // ---- transports (events are bound once the transaction layer exists)
  let onRequest: (req: SipRequest, src: Source) => void = () => undefined;
  let onResponse: (res: SipResponse, src: Source) => void = () => undefined;
  const transport = createTransportLayer({
    listen: config.listen,
    advertise: config.advertise ?? undefined,
    limits: {
      maxMessageSize: config.limits.max_message_size,
      maxHeaders: config.limits.max_headers,
      maxHeaderLine: config.limits.max_header_line,
      maxVias: config.limits.max_vias,
      tcpMaxConnections: config.limits.tcp_max_connections,
      tcpMaxPerIp: config.limits.tcp_max_per_ip,
      tcpIdleTimeoutMs: config.limits.tcp_idle_timeout_ms,
      tcpMsgTimeoutMs: config.limits.tcp_msg_timeout_ms,
      tcpMaxBuffer: config.limits.tcp_max_buffer,
    },
    udpBuffers: { recvBytes: config.udp.recv_buffer_bytes, sendBytes: config.udp.send_buffer_bytes },
    ws: {
      maxConnections: config.ws.max_connections,
      maxPerIp: config.ws.max_per_ip,
      handshakeTimeoutMs: config.ws.handshake_timeout_ms,
      pingIntervalMs: config.ws.ping_interval_ms,
      origins: config.ws.origins,
      path: config.ws.path ?? undefined,
      maxBuffer: config.limits.tcp_max_buffer,
    },
    events: {
      request: (req, src) => {
        metrics.requestReceived(req.method);
        // a browser's *.invalid Contact → its connection's address (until flows bind dialogs)
        fixWebSocketContact(req, src);
        onRequest(req, src);
      },
      response: (res, src) => {
        fixWebSocketContact(res, src);
        onResponse(res, src);
      },
      parseError: (err, src, raw) => {
        metrics.parseErrors.inc({ code: err.code });
        // answer 400 when we could read enough of a request to address a response
        const reply = malformedRequestReply(err, raw);
        if (reply !== undefined) {
          transport.send(reply.data, malformedReplyTarget(reply.topVia, src)).catch((e: unknown) => log.debug({ err: String(e) }, 'cannot answer malformed request'));
          metrics.responseSent(400);
        } else metrics.drops.inc({ reason: 'unparseable' });
        if (debugOn) log.debug({ code: err.code, reason: err.reason, src: `${src.transport}:${src.address}:${src.port}` }, 'parse error');
      },
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
  try {
    await transport.start();
  } catch (e) {
    await stores.close();
    throw new StartupError((e as Error).message);
  }

  /**
   * A stray 2xx the proxy passes on statelessly (§16.7 step 10 for 2xx without a transaction). Its
   * next Via comes from the peer unchecked: a malformed or unsupported one is a counted drop at
   * debug, not an exception (that would be a warn line with a stack trace per datagram).
   */
  const sendStray = (r: SipResponse): void => {
    let target: Target;
    try {
      target = responseTarget(r);
    } catch (e) {
      metrics.drops.inc({ reason: 'stray-unroutable' });
      log.debug({ err: e instanceof Error ? e.message : String(e) }, 'stray response dropped: no route');
      return;
    }
    transport.send(r.toBuffer(), target).catch((e: unknown) => log.debug({ err: String(e) }, 'stray response not sent'));
  };

  // ---- transactions
  const random = (): string => randomBytes(8).toString('hex');
  const tx = createTransactionLayer({
    transport,
    user: {
      request: (req, src) => {
        if (stopping) {
          if (req.method !== 'ACK') tx.respondStateless(buildResponse(req, 503, { reason: 'Shutting Down', toTag: deterministicToTag(req) }), src);
          return;
        }
        router.onRequest(req, src);
      },
      strayResponse: (res) => proxy.strayResponse(res, sendStray, (reason) => metrics.drops.inc({ reason })),
    },
    timers: {
      t1: config.timers.t1_ms,
      t2: config.timers.t2_ms,
      t4: config.timers.t4_ms,
      timerC: config.timers.timer_c_ms,
      trying: config.timers.trying_ms,
    },
    clock,
    responseTarget,
    maxTransactions: config.limits.max_transactions,
    log: { debug: (obj, msg) => log.debug(obj, msg), warn: (obj, msg) => log.warn(obj, msg) },
  });
  onRequest = (req, src) => tx.receiveRequest(req, src);
  onResponse = (res, src) => tx.receiveResponse(res, src);

  // ---- core
  // the host's own addresses, for "is this next hop sipd itself?" behind wildcard listeners
  const localAddresses = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) localAddresses.add(normaliseAddress(a.address));
  const proxy = new Proxy({
    tx,
    transport,
    random,
    routeTokens: new RouteTokens(secret),
    localAddresses: () => localAddresses,
    ...(debugOn ? { debug: (obj: Record<string, unknown>, msg: string) => log.debug(obj, msg) } : {}),
    onResponse: (status) => metrics.responseSent(status),
  });
  const authenticator = new DigestAuthenticator({
    subscribers: stores.subscribers,
    secret,
    nonceLifetimeS: config.auth.nonce_lifetime_s,
    algorithms: config.auth.algorithms,
    qop: config.auth.qop,
    checkUri: config.auth.check_uri,
    ncWindow: config.auth.nc_window,
    now,
    random: (n: number) => randomBytes(n),
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
    locations: stores.locations,
    domains: isOurDomain,
    minExpires: config.registrar.min_expires,
    defaultExpires: config.registrar.default_expires,
    maxExpires: config.registrar.max_expires,
    maxContacts: config.registrar.max_contacts,
    natReceived: config.registrar.nat_received,
    now,
    newRuid: () => randomBytes(12).toString('hex'),
  });

  const router = new Router({
    tx,
    proxy,
    auth: config.auth.enabled ? auth : undefined,
    registrar,
    locations: stores.locations,
    scanners: config.scanners.enabled ? new ScannerFilter(config.scanners.user_agents) : undefined,
    trusted,
    isOurDomain,
    toTag: (req) => deterministicToTag(req),
    events: {
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
      challenge: (kind) => metrics.authChallenges.inc({ kind }),
      authFailure: (reason) => metrics.authFailures.inc({ reason }),
      drop: (reason) => metrics.drops.inc({ reason }),
      denied: (reason) => metrics.relayDenied.inc({ reason }),
      response: (status) => metrics.responseSent(status),
      ...(debugOn ? { debug: (obj: Record<string, unknown>, msg: string) => log.debug(obj, msg) } : {}),
      error: (obj, msg) => log.error(obj, msg),
    },
  });

  // ---- housekeeping: expire bindings, refresh gauges
  const houseKeeping = setInterval(() => {
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
  houseKeeping.unref();
  const refreshTxGauge = (): void => {
    const s = tx.stats();
    metrics.transactions.set({ kind: 'server' }, s.server);
    metrics.transactions.set({ kind: 'client' }, s.client);
    metrics.transactions.set({ kind: 'lingering' }, s.lingering);
    const t = transport.stats();
    metrics.tcpConnections.set({ direction: 'inbound' }, t.connections.inbound);
    metrics.tcpConnections.set({ direction: 'outbound' }, t.connections.outbound);
    for (const [reason, n] of Object.entries(t.drops)) metrics.transportDrops.set({ reason }, n);
    for (const [kind, n] of Object.entries(t.sendErrors)) metrics.transportSendErrors.set({ kind }, n);
    if (flood !== undefined) {
      const f = flood.stats();
      metrics.floodBanned.set(f.banned);
      metrics.floodTracked.set(f.tracked);
    }
  };

  // ---- metrics / health / admin verbs (src/http.ts)
  let http: HttpServer | undefined;
  const admin = config.metrics !== null ? adminPolicy(config.metrics.host, secrets.admin, config.admin.allowed_hosts) : undefined;
  if (config.metrics !== null && admin !== undefined) {
    const m = config.metrics;
    http = createHttpServer(
      createHttpHandler({
        metrics: async () => {
          refreshTxGauge();
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
          const ok = !stopping && (await stores.ping());
          return { ok, body: { status: ok ? 'ok' : 'unavailable', store: ok, transports: transport.endpoints().length } };
        },
        removeLocation: (aor) => stores.locations.removeAll(aor),
        admin,
        listen: () => {
          const a = http?.address();
          return { host: m.host, port: a && typeof a === 'object' ? a.port : m.port };
        },
        log: { info: (obj, msg) => log.info(obj, msg), warn: (obj, msg) => log.warn(obj, msg) },
      }),
    );
    await new Promise<void>((resolve, reject) => {
      http!.once('error', (e) => reject(new StartupError(`metrics ${m.host}:${m.port}: ${(e as Error).message}`)));
      http!.listen(m.port, m.host, () => resolve());
    }).catch(async (e: unknown) => {
      await transport.close();
      await stores.close();
      throw e;
    });
  }

  // ---- event-loop delay, read and reset at each scrape (sipd_event_loop_delay_*); disabled in stop()
  const loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  loopDelay.enable();
  metrics.setEventLoopDelaySource(loopDelay);

  log.info(
    {
      listen: transport.endpoints().map((e) => `${e.transport}:${e.address}:${e.port}`),
      domains: [...domains],
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
    metricsAddress: () => {
      const a = http?.address();
      return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      log.info('stopping: waiting for transactions to finish');
      // wait for requests still being decided or forwarded, not for completed transactions that only
      // linger to absorb retransmissions (Timer J/K): those end with the process
      const deadline = Date.now() + config.shutdown_grace_ms;
      while (Date.now() < deadline && (router.busy > 0 || proxy.pending > 0)) await new Promise((r) => setTimeout(r, 20));
      clearInterval(houseKeeping);
      tx.close();
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
  if (src.transport !== 'udp') return back;
  try {
    const v = parseVia(splitList(topVia)[0] ?? '');
    if (v.rport !== undefined) return back;
    return { ...back, port: v.port ?? 5060 };
  } catch {
    return back;
  }
}
