import { SipRequest, type SipResponse } from '../sip/index.js';
import { isReliable } from '../transport/transport.js';
import type { Source, Target, TransportError } from '../transport/types.js';
import { detach, DETACH_MIN, NamedTimers, safe, type TxContext } from './common.js';
import { NO_ENTRY, type LingerKind } from './linger.js';
import type { TimerValues } from './timers.js';
import type { ServerTransaction, ServerTxState } from './types.js';

const NO_BODY = Buffer.alloc(0);

/**
 * What both server machines share: sending and resending responses, termination, removal.
 *
 * Memory: a transaction does not live on only to absorb retransmissions. Where the RFC keeps it
 * for Timer J (non-INVITE Completed), L (INVITE Accepted) or I (INVITE Confirmed), it ends
 * (`terminated`, `onTerminated` fires, out of the table) and leaves a compact entry in the layer's
 * `LingerTable` (linger.ts) instead: key, kind, the final response's bytes (off the V8 heap) and its
 * target. Only INVITE Completed (Timers G/H: the final is retransmitted until the ACK) stays a
 * transaction after the final. The parsed request is released at the final (`release()`),
 * responses are never kept parsed, and the strings kept are copied out of the received message
 * text (a slice of it would keep the whole text alive).
 */
export abstract class ServerTxBase implements ServerTransaction {
  state: ServerTxState;
  protected readonly timers: NamedTimers;
  protected readonly tv: TimerValues;
  /** the parsed request while the TU may still need it (until the final response). */
  private req: SipRequest | undefined;
  /** method of the request, kept for the stub `request` returns after `release()`. */
  private readonly method: string;
  /** the last response sent, as bytes, and where it went (for retransmission) */
  private lastData: Buffer | undefined;
  private lastTarget: Target | undefined;
  private terminatedFns: Array<() => void> | undefined;
  /** handle of the entry this transaction left in the linger table (a transport error on the final drops it). */
  private lingered = NO_ENTRY;
  /** To tag of the last response sent (RFC 2543 ACK matching; only kept for RFC 2543 keys). */
  responseToTag: string | undefined;
  /** To tag of the request that created the transaction (RFC 2543 matching; only kept for RFC 2543 keys). */
  readonly requestToTag: string | undefined;

  constructor(
    readonly id: string,
    request: SipRequest,
    readonly source: Source,
    protected readonly ctx: TxContext,
    initial: ServerTxState,
    /** true for an RFC 2543 key: To tags are compared on matching. */
    private readonly legacy: boolean,
  ) {
    this.state = initial;
    this.req = request;
    this.method = internMethod(request.method);
    this.tv = ctx.timerValues(isReliable(source.transport));
    this.timers = new NamedTimers(ctx.timers);
    this.requestToTag = legacy ? detachTag(request) : undefined;
  }

  /**
   * The request that created the transaction. After the final response (once the parsed request
   * has been released) a fresh stub carrying only the method: no caller reads it by then.
   */
  get request(): SipRequest {
    return this.req ?? new SipRequest(this.method, '', [], NO_BODY);
  }

  /** drop the parsed request: from now on only retransmissions are absorbed. */
  protected release(): void {
    this.req = undefined;
  }

  abstract respond(res: SipResponse): void;

  /**
   * A request that matched this transaction (a retransmission, or for INVITE an ACK).
   * Returns true when absorbed, false when it must go to the TU as a new request.
   */
  abstract receive(req: SipRequest): boolean;

  onTerminated(fn: () => void): void {
    if (this.state === 'terminated') safe(this.ctx.log, 'onTerminated', fn);
    else (this.terminatedFns ??= []).push(fn);
  }

  get terminated(): boolean {
    return this.state === 'terminated';
  }

  protected send(res: SipResponse): void {
    let target: Target;
    try {
      target = this.ctx.responseTarget(res, this.source);
    } catch (err) {
      this.ctx.log.warn({ err, tx: this.id }, 'no route for response');
      this.terminate();
      return;
    }
    const data = res.toBuffer();
    this.lastData = data;
    this.lastTarget = compactTarget(target);
    if (this.legacy) this.responseToTag = detachTag(res);
    this.transmit(data, target);
  }

  protected resend(): void {
    if (this.lastData !== undefined && this.lastTarget !== undefined) this.transmit(this.lastData, this.lastTarget);
  }

  private transmit(data: Buffer, target: Target): void {
    this.ctx.send(data, target).catch((err: TransportError) => this.onTransportError(err));
  }

  /**
   * End now, leaving a linger entry of `kind` for `duration` ms (none when 0: reliable transports).
   * `resend` entries keep the last response sent, to answer request retransmissions with.
   */
  protected endInto(kind: LingerKind, duration: number): void {
    if (duration > 0 && this.lastTarget !== undefined) {
      // only a `resend` entry sends anything: the others keep no bytes and no target
      const resend = kind === 'resend';
      this.lingered = this.ctx.linger.add(
        'server',
        this.id,
        kind,
        duration,
        resend ? this.lastData : undefined,
        resend ? this.lastTarget : undefined,
        this.requestToTag,
        this.responseToTag,
        this.legacy,
      );
    }
    this.terminate();
  }

  /** §17.2.4: a transport failure terminates a server transaction (and drops what it left lingering). */
  protected onTransportError(err: TransportError): void {
    if (this.state === 'terminated') {
      const h = this.lingered;
      this.lingered = NO_ENTRY;
      if (h !== NO_ENTRY) this.ctx.linger.delete(h);
      return;
    }
    this.ctx.log.debug({ tx: this.id, kind: err.kind }, 'server transaction transport error');
    this.terminate();
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.timers.clear();
    this.release();
    this.lastData = undefined;
    this.lastTarget = undefined;
    this.ctx.removeServer(this.id);
    const fns = this.terminatedFns;
    this.terminatedFns = undefined;
    if (fns !== undefined) for (const fn of fns) safe(this.ctx.log, 'onTerminated', fn);
  }
}

export function safeTag(fn: () => string | undefined): string | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function detachTag(m: SipRequest | SipResponse): string | undefined {
  const t = safeTag(() => m.toTag());
  return t === undefined ? undefined : detach(t);
}

/**
 * A copy of the target kept for 32 s: its address copied out of the message text (see `detach`),
 * and built as an object literal so that all copies share one hidden class (a target made with
 * object spread, as `responseTarget` does, gets a hidden class of its own: ~300 bytes more each).
 */
export function compactTarget(t: Target): Target {
  const transport = t.transport;
  const address = t.address.length < DETACH_MIN ? t.address : detach(t.address);
  const port = t.port;
  const local = t.local;
  const connectionId = t.connectionId;
  if (connectionId !== undefined) {
    return local !== undefined ? { transport, address, port, connectionId, local } : { transport, address, port, connectionId };
  }
  return local !== undefined ? { transport, address, port, local } : { transport, address, port };
}

const METHODS = new Map(
  ['INVITE', 'ACK', 'BYE', 'CANCEL', 'REGISTER', 'OPTIONS', 'SUBSCRIBE', 'NOTIFY', 'MESSAGE', 'INFO', 'PRACK', 'UPDATE', 'REFER', 'PUBLISH'].map(
    (m) => [m, m],
  ),
);

/** the method as a shared string for the usual ones (one string less per transaction). */
function internMethod(m: string): string {
  return METHODS.get(m) ?? detach(m);
}
