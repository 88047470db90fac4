/**
 * The transaction layer (RFC 3261 §17, RFC 6026, Timer C of §16.8).
 *
 * Wiring: the composition root passes the transport's `request` / `response` events to
 * `receiveRequest` / `receiveResponse`. Requests matching a server transaction are absorbed
 * (retransmissions, ACK for a non-2xx); everything else reaches `user.request`. Responses matching
 * a client transaction drive it; others reach `user.strayResponse`.
 *
 * Decisions worth knowing:
 * - `createClient` clones the request (unless the caller hands it over: `owned`) and pushes the
 *   layer's own Via (see `ClientOptions`);
 *   ACK (non-2xx) and CANCEL are built by the layer with that Via only.
 * - Timer A doubles without a cap (§17.1.1.2); E and G are capped at T2. On TCP, A/E/G are not
 *   used and D/I/J/K are 0.
 * - Guards beyond the RFC so nothing leaks when the core forgets to answer: a server non-INVITE
 *   ends after 128*T1 without a final; a server INVITE after timerC + 128*T1 without any TU
 *   response (re-armed by each provisional). A client INVITE that sent CANCEL ends with `timeout`
 *   if no final arrives within 64*T1 (§9.1).
 * - Transactions do not live on only to absorb retransmissions: where the RFC waits out Timer J
 *   (server non-INVITE Completed), L (server INVITE Accepted), I (server INVITE Confirmed), K
 *   (client non-INVITE Completed) or D (client INVITE Completed after a non-2xx), the transaction
 *   ends at once (`terminated`, `onTerminated` fires, out of the table) and leaves a compact entry
 *   in a `LingerTable` (linger.ts: key, kind, stored bytes + target, all off the V8 heap in typed
 *   arrays and a chunked byte store; one clock timer for the whole table, FIFO expiry per duration). Retransmissions are matched there after the live
 *   transactions: a request retransmission gets the stored final again, an ACK / INVITE / response
 *   retransmission is absorbed, a retransmitted non-2xx final gets the stored ACK again. J, I, K, D
 *   are 0 on TCP: no entry (L is 64*T1 on every transport, RFC 6026). A transport error on an
 *   entry's (re)send, or on the final / ACK that created it, drops the entry.
 * - A client INVITE transaction ends at its first 2xx (no Timer M state): 2xx retransmissions reach
 *   `user.strayResponse`, which a proxy forwards statelessly.
 * - `maxTransactions` (default 100000, server + client, live transactions only): a request that
 *   would need a new server transaction beyond it gets a stateless 503 (Retry-After: 5) and never
 *   reaches the TU. `maxLingering` (default 4 × maxTransactions) bounds the linger table: when it
 *   is full the oldest entry is evicted (counted in `counters().evicted`), and so are the oldest when
 *   the bytes they keep would pass `maxLingerBytes` (default 256 MiB).
 * - A CANCEL whose INVITE was answered and ended (linger entry present) is not matched by
 *   `findInviteForCancel`; `inviteAnswered` tells the core it existed (200 to the CANCEL, §9.2).
 * - A 2xx passed to `respond()` of a terminated INVITE server transaction is sent statelessly
 *   (UAS 2xx retransmissions and 2xx of other forks after the first 2xx).
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { buildResponse, formatVia, MAGIC_COOKIE, type SipRequest, type SipResponse, type Via } from '../sip/index.js';
import type { Source, Target, TransportLayer } from '../transport/types.js';
import { ClientInviteTx } from './client-invite.js';
import { ClientNonInviteTx } from './client-non-invite.js';
import { LingerTable, NO_ENTRY, type LingerSizes } from './linger.js';
import { asTransportError, detach, noopLogger, type TxContext } from './common.js';
import { ServerTxBase, safeTag } from './server-base.js';
import { ServerInviteTx } from './server-invite.js';
import { ServerNonInviteTx } from './server-non-invite.js';
import { clientKey, responseClientKey, serverKey, TxTable, type ServerKey } from './table.js';
import { TimerSet, TimerValuesCache } from './timers.js';
import type {
  ClientCallbacks,
  ClientOptions,
  ClientTransaction,
  Clock,
  ServerTransaction,
  TimerSettings,
  TransactionLayer,
  TransactionUser,
  TxLogger,
} from './types.js';
import type { ClientTxBase } from './client-base.js';

export * from './types.js';
export { DEFAULT_TIMERS, realClock, manualClock, type ManualClock } from './timers.js';
export { serverKey, clientKey, isRfc3261Branch } from './table.js';
export type { LingerKind, LingerSizes } from './linger.js';

export interface TransactionLayerOptions {
  transport: Pick<TransportLayer, 'send' | 'endpoints' | 'endpointFor'>;
  user: TransactionUser;
  timers: TimerSettings;
  clock: Clock;
  /** §18.2.2 response routing (from src/transport). */
  responseTarget: (res: SipResponse, src: Source) => Target;
  log?: TxLogger;
  /**
   * Limit on live transactions (server + client). A request that would create a new server
   * transaction beyond it is answered 503 (with Retry-After) statelessly and never reaches the TU.
   * ACKs still reach the TU (they create no transaction). Default 100000.
   */
  maxTransactions?: number;
  /**
   * Limit on linger entries (what ended transactions leave to absorb retransmissions, not counted
   * in `maxTransactions`); when full the oldest is evicted. Default 4 × maxTransactions.
   */
  maxLingering?: number;
  /**
   * Bound on the bytes linger entries keep off the V8 heap (keys, stored responses / ACKs, targets),
   * allocated in 1 MiB chunks as needed; when full the oldest entries are evicted. Default 256 MiB.
   */
  maxLingerBytes?: number;
  /** branch generator; default `z9hG4bK` + 12 random bytes (base64url). */
  newBranch?: () => string;
}

export interface TransactionLayerImpl extends TransactionLayer {
  /** wire to the transport's `request` event. Never throws. */
  receiveRequest(req: SipRequest, src: Source): void;
  /** wire to the transport's `response` event. Never throws. */
  receiveResponse(res: SipResponse, src: Source): void;
  /**
   * counters: absorbed retransmissions (by transactions and by linger entries), requests rejected
   * by the limit, unparseable drops, linger entries evicted because the table was full.
   */
  counters(): { absorbed: number; overload: number; dropped: number; evicted: number };
  /** linger table sizes by kind (`stats().lingering` is the total). */
  lingerSizes(): LingerSizes;
}

/** send()'s rejection: always a TransportError. */
function rethrowTransportError(err: unknown): never {
  throw asTransportError(err);
}

export function defaultBranch(): string {
  return MAGIC_COOKIE + randomBytes(12).toString('base64url');
}

export function createTransactionLayer(opts: TransactionLayerOptions): TransactionLayerImpl {
  const { transport, user, responseTarget } = opts;
  const log = opts.log ?? noopLogger;
  const timers = new TimerSet(opts.clock);
  const timerValues = new TimerValuesCache();
  const servers = new TxTable<ServerTxBase>();
  const clients = new TxTable<ClientTxBase>();
  const maxTx = opts.maxTransactions ?? 100_000;
  const linger = new LingerTable(timers, opts.maxLingering ?? 4 * maxTx, opts.maxLingerBytes !== undefined ? { maxBytes: opts.maxLingerBytes } : {});
  const newBranch = opts.newBranch ?? defaultBranch;
  const counters = { absorbed: 0, overload: 0, dropped: 0 };
  let closed = false;

  const send = (data: Buffer, target: Target): Promise<void> => {
    let p: Promise<void>;
    try {
      p = transport.send(data, target);
    } catch (err) {
      p = Promise.reject(err);
    }
    return p.catch(rethrowTransportError);
  };

  // one handler per kind of stateless send (no closure per send)
  const freeFailed = {
    response: (err: unknown): void => log.debug({ err: asTransportError(err), what: 'response' }, 'stateless send failed'),
    request: (err: unknown): void => log.debug({ err: asTransportError(err), what: 'request' }, 'stateless send failed'),
  };

  const sendFree = (data: Buffer, target: Target, what: 'response' | 'request'): void => {
    let p: Promise<void>;
    try {
      p = transport.send(data, target);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.catch(freeFailed[what]);
  };

  const respondStateless = (res: SipResponse, src: Source): void => {
    let target: Target;
    try {
      target = responseTarget(res, src);
    } catch (err) {
      log.warn({ err }, 'no route for stateless response');
      return;
    }
    sendFree(res.toBuffer(), target, 'response');
  };

  const viaFor = (target: Target, branch: string, params = ''): string => {
    const family = isIP(target.address) === 6 ? 6 : 4;
    const ep =
      target.local ?? transport.endpointFor(target.transport, family) ?? transport.endpoints().find((e) => e.transport === target.transport);
    if (ep === undefined) return formatVia(target.transport, 'invalid', undefined, branch, params);
    return formatVia(target.transport, ep.advertise, ep.port, branch, params);
  };

  const ctx: TxContext = {
    timers,
    settings: opts.timers,
    timerValues: (reliable) => timerValues.get(opts.timers, reliable),
    log,
    send,
    responseTarget,
    respondStateless,
    removeServer: (key) => servers.delete(key),
    removeClient: (key) => clients.delete(key),
    linger,
    startCancel(cancel, target, branch) {
      const id = clientKey(branch, 'CANCEL');
      if (clients.get(id) !== undefined) return;
      const tx = new ClientNonInviteTx(id, branch, cancel, target, cancelCallbacks, ctx);
      clients.set(id, tx);
      tx.start();
    },
  };

  const cancelCallbacks: ClientCallbacks = {
    final: (res, tx) => log.debug({ tx: tx.id, status: res.status }, 'CANCEL answered'),
    timeout: (tx) => log.debug({ tx: tx.id }, 'CANCEL timed out'),
    transportError: (err, tx) => log.debug({ tx: tx.id, kind: err.kind }, 'CANCEL transport error'),
  };

  // The RFC 3261 server key of the last request received (branch + sent-by + method: it depends on
  // the top Via and the method only), kept for the createServer / linger lookups of the same
  // request, so the key is built once per request. Checked against the request, its method and its
  // parsed top Via (an edit of the Via header parses a new one); RFC 2543 keys are not kept (they
  // read the Request-URI, which the core may rewrite).
  let lastReq: SipRequest | undefined;
  let lastMethod = '';
  let lastVia: Via | undefined;
  let lastKey: ServerKey | undefined;

  /** serverKey(req) (its default method), built once per received request. */
  const requestKey = (req: SipRequest): ServerKey | undefined => {
    const via = req.topVia();
    if (req === lastReq && via === lastVia && req.method === lastMethod) return lastKey;
    const k = serverKey(req);
    if (k !== undefined && !k.legacy) {
      lastReq = req;
      lastMethod = req.method;
      lastVia = via;
      lastKey = k;
    }
    return k;
  };

  /** the server transaction a request matches, if any (To tags compared for RFC 2543 keys). */
  const matchServer = (req: SipRequest, method?: string): ServerTxBase | undefined => {
    const k = method === undefined ? requestKey(req) : serverKey(req, method);
    return k === undefined ? undefined : matchKey(servers.get(k.key), req, k.legacy);
  };

  /** `found` if the request's To tag matches it (RFC 2543 keys), undefined otherwise. */
  const matchKey = <T extends { responseToTag: string | undefined; requestToTag: string | undefined }>(
    found: T | undefined,
    req: SipRequest,
    legacy: boolean,
  ): T | undefined => {
    if (found === undefined || !legacy) return found;
    const toTag = safeTag(() => req.toTag());
    if (req.method === 'ACK') return toTag === found.responseToTag ? found : undefined;
    return toTag === found.requestToTag ? found : undefined;
  };

  /** the linger entry (slot) a request with key `k` matches: To tags compared for RFC 2543 keys. */
  const lingerMatch = (k: { key: string; legacy: boolean }, req: SipRequest): number => {
    const s = linger.find('server', k.key);
    if (s === NO_ENTRY || !k.legacy) return s;
    const toTag = safeTag(() => req.toTag());
    if (req.method === 'ACK') return toTag === linger.responseToTagOf(s) ? s : NO_ENTRY;
    return toTag === linger.requestToTagOf(s) ? s : NO_ENTRY;
  };

  /** a linger entry's stored bytes sent again; a transport error drops the entry. */
  const resendLinger = (s: number): void => {
    const data = linger.dataOf(s);
    const target = linger.targetOf(s);
    if (data === undefined || target === undefined) return;
    const h = linger.handleOf(s);
    const key = linger.keyOf(s);
    send(data, target).catch((err: unknown) => {
      log.debug({ err, key }, 'linger re-send failed: entry dropped');
      linger.delete(h);
    });
  };

  /** a request retransmission that matches a linger entry: true when absorbed (or answered). */
  const lingerRequest = (req: SipRequest): boolean => {
    if (linger.size === 0) return false;
    const k = requestKey(req);
    if (k === undefined) return false;
    const s = lingerMatch(k, req);
    if (s === NO_ENTRY) return false;
    switch (linger.kindOf(s)) {
      case 'resend':
        if (req.method === 'ACK') return false;
        resendLinger(s);
        return true;
      case 'accepted':
        // the ACK for a 2xx is a request of its own (RFC 6026): it goes to the TU
        return req.method !== 'ACK';
      default:
        return true;
    }
  };

  const layer: TransactionLayerImpl = {
    createServer(req: SipRequest, src: Source): ServerTransaction {
      const k = requestKey(req);
      if (k === undefined) throw new Error('request without Via cannot create a server transaction');
      const existing = servers.get(k.key);
      if (existing !== undefined && !existing.terminated) return existing;
      // the key is built from slices of the received text: keep a copy of its own (see `detach`)
      const key = detach(k.key);
      const tx =
        req.method === 'INVITE' ? new ServerInviteTx(key, req, src, ctx, k.legacy) : new ServerNonInviteTx(key, req, src, ctx, k.legacy);
      servers.set(key, tx);
      if (closed) tx.terminate();
      return tx;
    },

    createClient(req: SipRequest, target: Target, cb: ClientCallbacks, o: ClientOptions = {}): ClientTransaction {
      const branch = o.branch ?? newBranch();
      const out = o.owned === true ? req : req.clone();
      out.addHeader('Via', viaFor(target, branch, o.viaParams), 'top');
      const id = clientKey(branch, req.method);
      const tx =
        req.method === 'INVITE'
          ? new ClientInviteTx(id, branch, out, target, cb, ctx)
          : new ClientNonInviteTx(id, branch, out, target, cb, ctx);
      clients.set(id, tx);
      if (closed) tx.terminate();
      else tx.start();
      return tx;
    },

    respondStateless,

    sendStateless(req: SipRequest, target: Target): void {
      sendFree(req.toBuffer(), target, 'request');
    },

    findInviteForCancel(cancel: SipRequest, _src: Source): ServerTransaction | undefined {
      try {
        const tx = matchServer(cancel, 'INVITE');
        return tx === undefined || tx.terminated ? undefined : tx;
      } catch {
        return undefined;
      }
    },

    inviteAnswered(cancel: SipRequest, _src: Source): boolean {
      try {
        const k = serverKey(cancel, 'INVITE');
        if (k === undefined) return false;
        const e = lingerMatch(k, cancel);
        if (e === NO_ENTRY) return false;
        const kind = linger.kindOf(e);
        return kind === 'accepted' || kind === 'absorb';
      } catch {
        return false;
      }
    },

    stats: () => ({ server: servers.size, client: clients.size, lingering: linger.size, timers: timers.size }),
    counters: () => ({ ...counters, evicted: linger.sizes().evicted }),
    lingerSizes: () => linger.sizes(),

    close(): void {
      closed = true;
      for (const tx of servers.values()) tx.terminate();
      for (const tx of clients.values()) tx.terminate();
      servers.clear();
      clients.clear();
      linger.clear();
      timers.clearAll();
    },

    newBranch,
    viaFor,

    receiveRequest(req: SipRequest, src: Source): void {
      if (closed) return;
      let tx: ServerTxBase | undefined;
      try {
        tx = matchServer(req);
      } catch (err) {
        counters.dropped++;
        log.debug({ err }, 'request with unparseable Via/CSeq dropped by the transaction layer');
        return;
      }
      if (tx !== undefined && !tx.terminated && tx.receive(req)) {
        counters.absorbed++;
        return;
      }
      try {
        if (tx === undefined && lingerRequest(req)) {
          counters.absorbed++;
          return;
        }
      } catch (err) {
        counters.dropped++;
        log.debug({ err }, 'request with unparseable Via/CSeq dropped by the transaction layer');
        return;
      }
      if (req.method !== 'ACK' && servers.size + clients.size >= maxTx) {
        counters.overload++;
        try {
          respondStateless(buildResponse(req, 503, { headers: [['Retry-After', '5']] }), src);
        } catch (err) {
          log.debug({ err }, 'could not answer 503');
        }
        return;
      }
      try {
        user.request(req, src);
      } catch (err) {
        log.warn({ err, method: req.method }, 'TU request handler threw');
      }
    },

    receiveResponse(res: SipResponse, src: Source): void {
      if (closed) return;
      let key: string | undefined;
      try {
        key = responseClientKey(res);
      } catch (err) {
        counters.dropped++;
        log.debug({ err }, 'response with unparseable Via/CSeq dropped');
        return;
      }
      const tx = key === undefined ? undefined : clients.get(key);
      if (tx !== undefined && tx.state !== 'terminated') {
        tx.receive(res);
        return;
      }
      const e = key === undefined || linger.size === 0 ? NO_ENTRY : linger.find('client', key);
      if (e !== NO_ENTRY) {
        // Timer K: absorbed; Timer D: a retransmitted non-2xx final gets the ACK again (others absorbed)
        if (linger.kindOf(e) === 'reack' && res.status >= 300) resendLinger(e);
        counters.absorbed++;
        return;
      }
      try {
        user.strayResponse(res, src);
      } catch (err) {
        log.warn({ err }, 'TU strayResponse handler threw');
      }
    },
  };
  return layer;
}
