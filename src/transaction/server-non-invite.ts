import type { SipRequest, SipResponse } from '../sip/index.js';
import type { Source } from '../transport/types.js';
import type { TxContext } from './common.js';
import { ServerTxBase } from './server-base.js';

/**
 * Non-INVITE server transaction (RFC 3261 §17.2.2, figure 8).
 *
 * Trying --1xx from TU--> Proceeding --final from TU--> Completed --Timer J--> Terminated.
 * Retransmissions: absorbed in Trying, answered with the last provisional in Proceeding.
 * Completed is not kept as a transaction: at the final the transaction ends and leaves a `resend`
 * entry in the linger table for Timer J (64*T1 on UDP; on TCP J is 0: no entry), which answers
 * request retransmissions with the same final.
 * Guard (not in the RFC): a transaction the TU never answers ends after 128*T1 (twice Timer F),
 * so a core that forgets a request cannot leak it.
 */
export class ServerNonInviteTx extends ServerTxBase {
  constructor(id: string, request: SipRequest, source: Source, ctx: TxContext, legacy = false) {
    super(id, request, source, ctx, 'trying', legacy);
    this.timers.start('guard', 2 * this.tv.sixtyFour, () => this.guardFired());
  }

  /** the proxy is still at work (next serial group): the guard starts over. */
  keepAlive(): void {
    if (this.state === 'trying' || this.state === 'proceeding') this.timers.start('guard', 2 * this.tv.sixtyFour, () => this.guardFired());
  }

  private guardFired(): void {
    this.ctx.log.warn({ tx: this.id, method: this.request.method }, 'TU never answered; server transaction dropped');
    this.terminate();
  }

  respond(res: SipResponse): void {
    if (this.state !== 'trying' && this.state !== 'proceeding') {
      this.ctx.log.debug({ tx: this.id, status: res.status, state: this.state }, 'response after final ignored');
      return;
    }
    if (res.status < 200) {
      this.state = 'proceeding';
      this.send(res);
      return;
    }
    this.state = 'completed';
    this.timers.cancel('guard');
    this.release();
    this.send(res);
    if (this.state !== 'completed') return; // a synchronous failure terminated us
    this.endInto('resend', this.tv.j);
  }

  receive(_req: SipRequest): boolean {
    if (this.state === 'proceeding') this.resend();
    return true;
  }
}
