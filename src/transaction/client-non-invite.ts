import type { SipRequest, SipResponse } from '../sip/index.js';
import type { Target } from '../transport/types.js';
import { ClientTxBase } from './client-base.js';
import type { TxContext } from './common.js';
import type { ClientCallbacks } from './types.js';

/**
 * Non-INVITE client transaction (RFC 3261 §17.1.2, figure 6).
 *
 * Trying: request sent; Timer E (UDP only) retransmits at T1, 2*T1, ... capped at T2;
 *   Timer F = 64*T1 → `timeout` (the core acts as on a 408).
 * 1xx → Proceeding (`provisional`); Timer E continues at T2.
 * final → Completed (`final`): the transaction ends and leaves an `absorb` linger entry for
 *   Timer K = T4 (UDP; 0 on TCP: no entry) that absorbs later responses.
 */
export class ClientNonInviteTx extends ClientTxBase {
  private eInterval = 0;

  constructor(id: string, branch: string, request: SipRequest, target: Target, cb: ClientCallbacks, ctx: TxContext) {
    super(id, branch, request, target, cb, ctx, 'trying');
  }

  /** send the request and start E and F (separate from the constructor so the table holds us first). */
  start(): void {
    this.transmit();
    if (this.tv.retransmit !== undefined) {
      this.eInterval = this.tv.retransmit;
      this.timers.start('E', this.eInterval, () => this.fireE());
    }
    this.timers.start('F', this.tv.sixtyFour, () => this.timeout());
  }

  protected get pending(): boolean {
    return this.state === 'trying' || this.state === 'proceeding';
  }

  private fireE(): void {
    if (!this.pending) return;
    this.transmit();
    this.eInterval = this.state === 'trying' ? Math.min(2 * this.eInterval, this.tv.t2) : this.tv.t2;
    this.timers.start('E', this.eInterval, () => this.fireE());
  }

  receive(res: SipResponse): void {
    if (!this.pending) return;
    if (res.status < 200) {
      this.state = 'proceeding';
      this.gotProvisional = true;
      this.deliverProvisional(res);
      return;
    }
    this.state = 'completed';
    this.timers.cancel('E');
    this.timers.cancel('F');
    this.endInto('absorb', this.tv.t4);
    this.deliverFinal(res);
  }
}
