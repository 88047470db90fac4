import { parseMessage, SipRequest, type SipResponse } from '../sip/index.js';
import { isReliable } from '../transport/transport.js';
import type { Target, TransportError } from '../transport/types.js';
import { NamedTimers, safe, type TxContext } from './common.js';
import { NO_ENTRY, type LingerKind } from './linger.js';
import type { TimerValues } from './timers.js';
import type { ClientCallbacks, ClientTransaction, ClientTxState } from './types.js';

/** our own bytes, parsed again: the limits that apply to received messages do not (one Via more than a received maximum). */
const REPARSE = { limits: { maxMessageSize: Infinity, maxHeaders: Infinity, maxHeaderLine: Infinity, maxVias: Infinity } };

/**
 * What both client machines share: the request bytes, (re)transmission, callbacks, termination.
 *
 * Memory: a client transaction keeps the request it sends as bytes only (`data`), not parsed: the
 * parsed clone (its header array, a field object per header, parsed Via/URI caches) would be a
 * second copy of the forwarded request per call in flight, next to the server transaction's, and a
 * call in flight across two scavenges is promoted whole. `request` parses the bytes again when read
 * (the INVITE's CANCEL or non-2xx ACK, which are rare; tests).
 */
export abstract class ClientTxBase implements ClientTransaction {
  state: ClientTxState;
  gotProvisional = false;
  protected readonly timers: NamedTimers;
  protected readonly tv: TimerValues;
  protected readonly reliable: boolean;
  protected readonly data: Buffer;
  /** handle of the entry this transaction left in the linger table (a transport error on its last send drops it). */
  private lingered = NO_ENTRY;

  constructor(
    readonly id: string,
    readonly branch: string,
    request: SipRequest,
    readonly target: Target,
    protected readonly cb: ClientCallbacks,
    protected readonly ctx: TxContext,
    initial: ClientTxState,
  ) {
    this.state = initial;
    this.reliable = isReliable(target.transport);
    this.tv = ctx.timerValues(this.reliable);
    this.timers = new NamedTimers(ctx.timers);
    this.data = request.toBuffer();
  }

  /** the request as sent (our Via on top), parsed again from the bytes sent: a new object each time. */
  get request(): SipRequest {
    const m = parseMessage(this.data, REPARSE);
    if (!(m instanceof SipRequest)) throw new Error('client transaction bytes are not a request');
    return m;
  }

  abstract receive(res: SipResponse): void;

  cancel(_reason?: string): void {
    // only INVITE transactions can be cancelled
  }

  /** true while no final response has arrived (a transport error is reported to the TU). */
  protected abstract get pending(): boolean;

  protected transmit(data: Buffer = this.data): void {
    this.ctx.send(data, this.target).catch((err: TransportError) => this.onTransportError(err));
  }

  /**
   * End now, leaving a linger entry of `kind` for `duration` ms (none when 0: reliable transports);
   * `data` is what a `reack` entry answers a retransmitted final with (copied into the table).
   */
  protected endInto(kind: LingerKind, duration: number, data?: Buffer): void {
    if (duration > 0) this.lingered = this.ctx.linger.add('client', this.id, kind, duration, data, data === undefined ? undefined : this.target);
    this.terminate();
  }

  /** §17.1.4: inform the TU and terminate (a failure after the end drops the linger entry). */
  protected onTransportError(err: TransportError): void {
    if (this.state === 'terminated') {
      const h = this.lingered;
      this.lingered = NO_ENTRY;
      if (h !== NO_ENTRY) this.ctx.linger.delete(h);
      return;
    }
    const report = this.pending;
    this.terminate();
    if (report) safe(this.ctx.log, 'transportError', () => this.cb.transportError(err, this));
    else this.ctx.log.debug({ tx: this.id, kind: err.kind }, 'transport error after final response');
  }

  protected timeout(): void {
    if (this.state === 'terminated') return;
    this.terminate();
    safe(this.ctx.log, 'timeout', () => this.cb.timeout(this));
  }

  protected deliverProvisional(res: SipResponse): void {
    const fn = this.cb.provisional;
    if (fn !== undefined) safe(this.ctx.log, 'provisional', () => fn.call(this.cb, res, this));
  }

  protected deliverFinal(res: SipResponse): void {
    safe(this.ctx.log, 'final', () => this.cb.final(res, this));
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.timers.clear();
    this.ctx.removeClient(this.id);
  }
}
