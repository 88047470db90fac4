import type { SipRequest, SipResponse } from '../sip/index.js';
import type { Target } from '../transport/types.js';
import { ClientTxBase } from './client-base.js';
import { buildCancel, buildNon2xxAck, type TxContext } from './common.js';
import type { ClientCallbacks } from './types.js';

/**
 * INVITE client transaction (RFC 3261 §17.1.1 as updated by RFC 6026 §7.2), for a proxy (§16.8).
 *
 * Calling: INVITE sent; Timer A (UDP only) retransmits at T1, 2*T1, 4*T1 ... (no cap, §17.1.1.2);
 *   Timer B = 64*T1 → `timeout`.
 * 1xx → Proceeding (`provisional`): A and B stop; Timer C restarts; a deferred CANCEL goes out.
 * 2xx → `final`, and the transaction ends at once (no Accepted state kept, no Timer M): further
 *   2xx (retransmissions, other forks downstream) match no transaction and reach the TU as stray
 *   responses, which a proxy forwards statelessly (RFC 6026 §8.2 allows exactly that).
 * 300-699 → Completed (`final`): ACK sent hop by hop (same branch, Route copied); the transaction
 *   ends and leaves a `reack` linger entry for Timer D (> 32 s UDP; 0 on TCP: no entry) that
 *   answers a retransmitted final with the same ACK bytes.
 * Timer C (§16.8, `timers.timerC`, from creation and reset on each provisional): with a provisional
 *   received → CANCEL; without → `timeout`.
 * CANCEL (§9.1): only after a provisional; `cancel()` before that is remembered. It is its own
 *   non-INVITE client transaction with the INVITE's branch. If no final response arrives within
 *   64*T1 after the CANCEL, the transaction ends with `timeout`.
 */
export class ClientInviteTx extends ClientTxBase {
  private aInterval = 0;
  private cancelPending: { reason: string | undefined } | undefined;
  private cancelSent = false;

  constructor(id: string, branch: string, request: SipRequest, target: Target, cb: ClientCallbacks, ctx: TxContext) {
    super(id, branch, request, target, cb, ctx, 'calling');
  }

  start(): void {
    this.transmit();
    if (this.tv.retransmit !== undefined) {
      this.aInterval = this.tv.retransmit;
      this.timers.start('A', this.aInterval, () => this.fireA());
    }
    this.timers.start('B', this.tv.sixtyFour, () => this.timeout());
    this.timers.start('C', this.tv.c, () => this.fireC());
  }

  protected get pending(): boolean {
    return this.state === 'calling' || this.state === 'proceeding';
  }

  private fireA(): void {
    if (this.state !== 'calling') return;
    this.transmit();
    this.aInterval *= 2;
    this.timers.start('A', this.aInterval, () => this.fireA());
  }

  private fireC(): void {
    if (!this.pending) return;
    if (this.gotProvisional) {
      this.ctx.log.debug({ tx: this.id }, 'Timer C: cancelling');
      this.sendCancel(undefined);
    } else {
      this.ctx.log.debug({ tx: this.id }, 'Timer C: no provisional, timeout');
      this.timeout();
    }
  }

  override cancel(reason?: string): void {
    if (!this.pending || this.cancelSent) return;
    if (this.gotProvisional) this.sendCancel(reason);
    else this.cancelPending = { reason: reason ?? this.cancelPending?.reason };
  }

  /** true once CANCEL was sent or is waiting for a provisional. */
  get cancelRequested(): boolean {
    return this.cancelSent || this.cancelPending !== undefined;
  }

  private sendCancel(reason: string | undefined): void {
    if (this.cancelSent) return;
    this.cancelSent = true;
    this.cancelPending = undefined;
    this.timers.cancel('C');
    let cancel: SipRequest | undefined;
    try {
      cancel = buildCancel(this.request, reason);
    } catch (err) {
      this.ctx.log.warn({ err, tx: this.id }, 'CANCEL could not be built');
    }
    if (cancel !== undefined) this.ctx.startCancel(cancel, this.target, this.branch);
    // §9.1: no final response within 64*T1 after the CANCEL → give the INVITE up
    this.timers.start('cancel', this.tv.sixtyFour, () => this.timeout());
  }

  receive(res: SipResponse): void {
    const status = res.status;
    if (status < 200) {
      if (!this.pending) return;
      this.state = 'proceeding';
      this.gotProvisional = true;
      this.timers.cancel('A');
      this.timers.cancel('B');
      if (!this.cancelSent) this.timers.start('C', this.tv.c, () => this.fireC());
      this.deliverProvisional(res);
      if (this.cancelPending !== undefined && this.state === 'proceeding') this.sendCancel(this.cancelPending.reason);
      return;
    }
    if (!this.pending) return;
    this.clearRunning();
    if (status < 300) {
      this.state = 'accepted';
      this.terminate();
      this.deliverFinal(res);
      return;
    }
    this.state = 'completed';
    let ack: Buffer | undefined;
    try {
      ack = buildNon2xxAck(this.request, res).toBuffer();
    } catch (err) {
      this.ctx.log.warn({ err, tx: this.id }, 'ACK for a non-2xx final could not be built');
    }
    if (ack !== undefined) this.transmit(ack);
    this.endInto('reack', this.tv.d, ack);
    this.deliverFinal(res);
  }

  private clearRunning(): void {
    this.cancelPending = undefined;
    for (const t of ['A', 'B', 'C', 'cancel']) this.timers.cancel(t);
  }
}
