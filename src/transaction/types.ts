import type { SipRequest, SipResponse } from '../sip/index.js';
import type { Source, Target, TransportError } from '../transport/types.js';

/** Injected time: every timer of §17 goes through this, so tests run on fake time. */
export interface Clock {
  now(): number;
  setTimer(ms: number, fn: () => void): TimerHandle;
  clearTimer(h: TimerHandle): void;
}
export type TimerHandle = { readonly __timer: unique symbol } | object;

export interface TimerSettings {
  /** RTT estimate, default 500 ms */
  t1: number;
  /** max non-INVITE retransmit interval, default 4000 ms */
  t2: number;
  /** max time a message stays in the network, default 5000 ms */
  t4: number;
  /** proxy INVITE timer C, > 3 min, default 180000 ms */
  timerC: number;
  /** send 100 Trying when the core has not answered an INVITE within this, default 200 ms */
  trying: number;
  /** (additive) client INVITE Timer D on UDP, "> 32 s" (§17.1.1.2); default 32000 ms; 0 on TCP always */
  timerD?: number;
}

export type ServerTxState = 'trying' | 'proceeding' | 'completed' | 'confirmed' | 'accepted' | 'terminated';
export type ClientTxState = 'calling' | 'trying' | 'proceeding' | 'completed' | 'accepted' | 'terminated';

export interface ServerTransaction {
  readonly id: string;
  readonly request: SipRequest;
  readonly source: Source;
  readonly state: ServerTxState;
  /** Send a response: provisional or final. Later finals after a final are ignored (for INVITE, later 2xx go out statelessly). */
  respond(res: SipResponse): void;
  /**
   * Called once when the transaction is removed from the table: at its final response for a
   * non-INVITE and for a 2xx to an INVITE, at the ACK (or Timer H) after a non-2xx to an INVITE.
   */
  onTerminated(fn: () => void): void;
  /**
   * (optional) The TU is still working on the request (e.g. a proxy starting its next serial-fork
   * group): re-arm the guard that drops a transaction the TU never answers.
   */
  keepAlive?(): void;
}

export interface ClientCallbacks {
  provisional?(res: SipResponse, tx: ClientTransaction): void;
  /** final response (for INVITE: the first one; later 2xx match no transaction: `strayResponse`). */
  final(res: SipResponse, tx: ClientTransaction): void;
  /** Timer B / F (or C) fired: the core acts as if a 408 had been received. */
  timeout(tx: ClientTransaction): void;
  transportError(err: TransportError, tx: ClientTransaction): void;
}

export interface ClientTransaction {
  readonly id: string;
  readonly branch: string;
  readonly request: SipRequest;
  readonly target: Target;
  readonly state: ClientTxState;
  /** true once any provisional response was received (CANCEL allowed, §9.1). */
  readonly gotProvisional: boolean;
  /**
   * Cancel an INVITE client transaction (§9.1): sends CANCEL now if a provisional arrived,
   * otherwise as soon as one does. No-op for non-INVITE or after a final response.
   */
  cancel(reason?: string): void;
}

/**
 * (additive) Options of `createClient`. The layer always pushes its own top Via
 * (`SIP/2.0/<UDP|TCP> <advertise>:<port>;branch=<branch>`) onto a clone of the request it is given;
 * `tx.request` is that clone, as sent.
 */
export interface ClientOptions {
  /** branch to use (must start with z9hG4bK); default: the layer's `newBranch()`. */
  branch?: string;
  /** extra Via parameters appended after the branch, e.g. ";rport". */
  viaParams?: string;
  /**
   * the caller hands the request over (a copy of its own that it no longer reads or edits): the
   * layer pushes its Via onto it instead of onto a clone. Default false.
   */
  owned?: boolean;
}

/** (additive) minimal logger (pino compatible). */
export interface TxLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** What the core provides to the transaction layer. */
export interface TransactionUser {
  /**
   * A request that matched no server transaction (retransmissions are absorbed before this).
   * The core either answers statelessly (`layer.respondStateless`) or calls `layer.createServer(req, src)`.
   * ACK never arrives here when it matches a server INVITE transaction (non-2xx ACK is absorbed).
   */
  request(req: SipRequest, src: Source): void;
  /** A response that matched no client transaction (e.g. a 2xx retransmission): proxies forward it statelessly. */
  strayResponse(res: SipResponse, src: Source): void;
}

export interface TransactionLayer {
  createServer(req: SipRequest, src: Source): ServerTransaction;
  createClient(req: SipRequest, target: Target, cb: ClientCallbacks, opts?: ClientOptions): ClientTransaction;
  /** Send a response without transaction state (§18.2.2 routing), e.g. auth challenges. */
  respondStateless(res: SipResponse, src: Source): void;
  /** Send a request without transaction state (ACK for 2xx, forwarded statelessly). */
  sendStateless(req: SipRequest, target: Target): void;
  /** The server INVITE transaction a CANCEL refers to (§9.2 matching), if any. */
  findInviteForCancel(cancel: SipRequest, src: Source): ServerTransaction | undefined;
  /**
   * (additive) A CANCEL that `findInviteForCancel` does not match: true when its INVITE was
   * answered and its transaction has ended but still lingers (Timer L after a 2xx, Timer I after
   * the ACK of a non-2xx). The INVITE transaction existed: the CANCEL gets 200 (§9.2), with
   * nothing left to cancel. False → 481 as for no match at all.
   */
  inviteAnswered(cancel: SipRequest, src: Source): boolean;
  /**
   * table sizes, for metrics and leak tests: live transactions (server, client), linger entries
   * (what ended transactions leave to absorb retransmissions), live timers.
   */
  stats(): { server: number; client: number; lingering: number; timers: number };
  /** stop: terminate everything, clear every timer. */
  close(): void;
  /** (additive) a fresh RFC 3261 branch: z9hG4bK + random. */
  newBranch(): string;
  /**
   * (additive) the Via value this layer would push for a request sent to `target`
   * (e.g. for an ACK-for-2xx the core forwards with `sendStateless`).
   */
  viaFor(target: Target, branch: string, params?: string): string;
}
