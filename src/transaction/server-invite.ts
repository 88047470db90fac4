import { buildResponse, type SipRequest, type SipResponse } from '../sip/index.js';
import type { Source } from '../transport/types.js';
import type { TxContext } from './common.js';
import { ServerTxBase } from './server-base.js';

/**
 * INVITE server transaction (RFC 3261 §17.2.1 as updated by RFC 6026 §7.1, figure 7 there).
 *
 * Proceeding: 100 Trying goes out when the TU has not responded within `timers.trying`;
 *   provisionals from the TU are sent; an INVITE retransmission gets the last provisional
 *   (or a 100 Trying when none was sent yet).
 * 2xx from TU → Accepted, Timer L = 64*T1 (on TCP too: L does not depend on the transport). The
 *   transaction ends at the 2xx and leaves an `accepted` linger entry for L: INVITE retransmissions
 *   are absorbed, an ACK does not match (it goes to the TU as a new request, the proxy forwards
 *   it), a CANCEL is told the INVITE existed (`inviteAnswered`). Later 2xx from the TU (a proxy
 *   forwarding the UAS's retransmissions, or a 2xx of another fork) are sent statelessly.
 * 300-699 from TU → Completed: Timer G (UDP; T1 doubling up to T2) retransmits the final, Timer H
 *   = 64*T1 gives up waiting for the ACK; INVITE retransmissions get the final again.
 * ACK → Confirmed, Timer I = T4 (UDP) / 0 (TCP): the transaction ends and leaves an `absorb`
 *   linger entry for I (none on TCP) that absorbs further ACKs and INVITE retransmissions.
 * Guard (not in the RFC): a transaction the TU never answers ends after timerC + 128*T1 without any
 *   response from the TU (re-armed on each provisional), so a core that forgets a request cannot leak it.
 */
export class ServerInviteTx extends ServerTxBase {
  /** a provisional (the TU's or our 100 Trying) was sent: retransmissions get it again. */
  private provisionalSent = false;
  private gInterval = 0;

  constructor(id: string, request: SipRequest, source: Source, ctx: TxContext, legacy = false) {
    super(id, request, source, ctx, 'proceeding', legacy);
    this.timers.start('trying', this.tv.trying, () => this.sendTrying());
    this.armGuard();
  }

  /** the proxy is still at work (next serial group): the guard starts over. */
  keepAlive(): void {
    if (this.state === 'proceeding') this.armGuard();
  }

  private armGuard(): void {
    this.timers.start('guard', this.tv.c + 2 * this.tv.sixtyFour, () => {
      this.ctx.log.warn({ tx: this.id }, 'TU never answered the INVITE; server transaction dropped');
      this.terminate();
    });
  }

  private sendTrying(): void {
    if (this.state !== 'proceeding' || this.provisionalSent) return;
    const req = this.request;
    const ts = req.header('timestamp');
    const trying = buildResponse(req, 100, ts === undefined ? {} : { headers: [['Timestamp', ts]] });
    this.provisionalSent = true;
    this.send(trying);
  }

  respond(res: SipResponse): void {
    const status = res.status;
    if (this.state === 'terminated') {
      // after the first 2xx (Accepted is a linger entry, not a transaction) or a transport error,
      // the 2xx retransmissions of a UAS still have to reach the UAC: send them statelessly, as a
      // proxy does with stray 2xx (RFC 6026 §8.2).
      if (status >= 200 && status < 300) this.ctx.respondStateless(res, this.source);
      return;
    }
    if (this.state !== 'proceeding') {
      this.ctx.log.debug({ tx: this.id, status, state: this.state }, 'response after final ignored');
      return;
    }
    this.timers.cancel('trying');
    if (status < 200) {
      this.provisionalSent = true;
      this.armGuard();
      this.send(res);
      return;
    }
    this.timers.cancel('guard');
    this.release();
    if (status < 300) {
      this.state = 'accepted';
      this.send(res);
      if (this.state === 'accepted') this.endInto('accepted', this.tv.sixtyFour);
      return;
    }
    this.state = 'completed';
    this.send(res);
    if (this.state !== 'completed') return;
    if (this.tv.retransmit !== undefined) {
      this.gInterval = this.tv.retransmit;
      this.timers.start('G', this.gInterval, () => this.fireG());
    }
    this.timers.start('H', this.tv.sixtyFour, () => {
      this.ctx.log.debug({ tx: this.id }, 'Timer H: no ACK for the final response');
      this.terminate();
    });
  }

  private fireG(): void {
    if (this.state !== 'completed') return;
    this.resend();
    this.gInterval = Math.min(2 * this.gInterval, this.tv.t2);
    this.timers.start('G', this.gInterval, () => this.fireG());
  }

  receive(req: SipRequest): boolean {
    if (req.method === 'ACK') {
      if (this.state === 'completed') {
        this.state = 'confirmed';
        this.endInto('absorb', this.tv.t4);
        return true;
      }
      // Proceeding: not ours (RFC 6026: to the TU). Confirmed / Accepted are linger entries.
      return false;
    }
    switch (this.state) {
      case 'proceeding':
        if (!this.provisionalSent) {
          this.timers.cancel('trying');
          this.sendTrying();
        } else this.resend();
        break;
      case 'completed':
        this.resend();
        break;
      default:
        break;
    }
    return true;
  }
}
