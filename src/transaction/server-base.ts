import type { SipRequest, SipResponse } from '../sip/index.js';
import type { Source, Target, TransportError } from '../transport/types.js';
import { NamedTimers, safe, type TxContext } from './common.js';
import { timerValues, type TimerValues } from './timers.js';
import type { ServerTransaction, ServerTxState } from './types.js';

/** What both server machines share: sending and resending responses, termination, removal. */
export abstract class ServerTxBase implements ServerTransaction {
  state: ServerTxState;
  protected readonly timers: NamedTimers;
  protected readonly tv: TimerValues;
  protected readonly reliable: boolean;
  /** the last response sent, kept as bytes for retransmission */
  protected last: { status: number; data: Buffer; target: Target } | undefined;
  private readonly terminatedFns: Array<() => void> = [];
  /** To tag of the last response sent (RFC 2543 ACK matching). */
  responseToTag: string | undefined;
  /** To tag of the request that created the transaction (RFC 2543 matching). */
  readonly requestToTag: string | undefined;

  constructor(
    readonly id: string,
    readonly request: SipRequest,
    readonly source: Source,
    protected readonly ctx: TxContext,
    initial: ServerTxState,
  ) {
    this.state = initial;
    this.reliable = source.transport === 'tcp';
    this.tv = timerValues(ctx.settings, this.reliable);
    this.timers = new NamedTimers(ctx.timers);
    this.requestToTag = safeTag(() => request.toTag());
  }

  abstract respond(res: SipResponse): void;

  /**
   * A request that matched this transaction (a retransmission, or for INVITE an ACK).
   * Returns true when absorbed, false when it must go to the TU as a new request.
   */
  abstract receive(req: SipRequest): boolean;

  onTerminated(fn: () => void): void {
    if (this.state === 'terminated') safe(this.ctx.log, 'onTerminated', fn);
    else this.terminatedFns.push(fn);
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
    this.last = { status: res.status, data, target };
    this.responseToTag = safeTag(() => res.toTag());
    this.transmit(data, target);
  }

  protected resend(): void {
    if (this.last !== undefined) this.transmit(this.last.data, this.last.target);
  }

  private transmit(data: Buffer, target: Target): void {
    this.ctx.send(data, target).catch((err: TransportError) => this.onTransportError(err));
  }

  /** §17.2.4: a transport failure terminates a server transaction. */
  protected onTransportError(err: TransportError): void {
    if (this.state === 'terminated') return;
    this.ctx.log.debug({ tx: this.id, kind: err.kind }, 'server transaction transport error');
    this.terminate();
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.timers.clear();
    this.ctx.removeServer(this.id);
    for (const fn of this.terminatedFns.splice(0)) safe(this.ctx.log, 'onTerminated', fn);
  }
}

export function safeTag(fn: () => string | undefined): string | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
