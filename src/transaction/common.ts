import { SipRequest, type SipResponse } from '../sip/index.js';
import { TransportError, type Source, type Target } from '../transport/types.js';
import type { LingerTable } from './linger.js';
import type { NamedTimer, TimerSet, TimerValues } from './timers.js';
import type { TimerSettings, TxLogger } from './types.js';

/** What a transaction needs from the layer (internal). */
export interface TxContext {
  readonly timers: TimerSet;
  readonly settings: TimerSettings;
  /** the timer values for a transaction (shared between transactions). */
  timerValues(reliable: boolean): TimerValues;
  readonly log: TxLogger;
  /** hand bytes to the transport; the promise never rejects with anything but a TransportError. */
  send(data: Buffer, target: Target): Promise<void>;
  responseTarget(res: SipResponse, src: Source): Target;
  respondStateless(res: SipResponse, src: Source): void;
  /** remove a terminated transaction from the table. */
  removeServer(key: string): void;
  removeClient(key: string): void;
  /** what is left of ended transactions that still absorb retransmissions (linger.ts). */
  readonly linger: LingerTable;
  /** create the CANCEL client transaction for an INVITE client transaction (same branch, no new Via). */
  startCancel(cancel: SipRequest, target: Target, branch: string): void;
}

/** V8 copies substrings and concatenations shorter than this; longer ones may point into their parent. */
export const DETACH_MIN = 13;

/**
 * A flat copy of `s` that shares no storage with the string it was cut from. Strings of a parsed
 * message are slices of the whole received text; a long-lived transaction that kept one (a branch,
 * a key built from it, a tag) would keep that whole text alive.
 */
export function detach(s: string): string {
  return s.length < DETACH_MIN ? s : (JSON.parse(JSON.stringify(s)) as string);
}

export const noopLogger: TxLogger = { debug: () => undefined, warn: () => undefined };

export function asTransportError(e: unknown): TransportError {
  if (e instanceof TransportError) return e;
  return new TransportError('unreachable', e instanceof Error ? e.message : String(e));
}

/**
 * Per-transaction named timers: starting a name again replaces the previous timer of that name.
 * A linked list through the timers themselves (a transaction has one to four names): no Map or
 * arrays per transaction.
 */
export class NamedTimers {
  private head: NamedTimer | undefined = undefined;
  constructor(private readonly set: TimerSet) {}

  start(name: string, ms: number, fn: () => void): void {
    this.cancel(name);
    this.head = this.set.startNamed(name, ms, fn, this.head);
  }

  cancel(name: string): void {
    let prev: NamedTimer | undefined;
    for (let t = this.head; t !== undefined; prev = t, t = t.next) {
      if (t.name !== name) continue;
      t.cancel();
      if (prev === undefined) this.head = t.next;
      else prev.next = t.next;
      return;
    }
  }

  isLive(name: string): boolean {
    for (let t = this.head; t !== undefined; t = t.next) if (t.name === name) return t.live;
    return false;
  }

  clear(): void {
    for (let t = this.head; t !== undefined; t = t.next) t.cancel();
    this.head = undefined;
  }
}

/** Run a TU callback; an exception from the core must not break the state machine. */
export function safe(log: TxLogger, what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log.warn({ err, what }, 'transaction user callback threw');
  }
}

export type { TimerValues };

/**
 * Build the ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same Request-URI, Call-ID,
 * From, CSeq number and top Via (only that one) as the INVITE, To from the response, Route copied.
 */
export function buildNon2xxAck(invite: SipRequest, res: SipResponse): SipRequest {
  const ack = new SipRequest('ACK', invite.uriText, [], Buffer.alloc(0));
  copyCommon(invite, ack, 'ACK');
  ack.setHeader('To', res.header('to') ?? invite.header('to') ?? '');
  return ack;
}

/** Build a CANCEL for an INVITE (RFC 3261 §9.1). */
export function buildCancel(invite: SipRequest, reason?: string): SipRequest {
  const c = new SipRequest('CANCEL', invite.uriText, [], Buffer.alloc(0));
  copyCommon(invite, c, 'CANCEL');
  c.setHeader('To', invite.header('to') ?? '');
  if (reason !== undefined) c.addHeader('Reason', reason);
  return c;
}

function copyCommon(invite: SipRequest, out: SipRequest, method: string): void {
  const top = invite.topVia();
  out.addHeader('Via', top?.raw ?? '');
  out.addHeader('Max-Forwards', '70');
  for (const r of invite.headerValues('route')) out.addHeader('Route', r);
  out.addHeader('From', invite.header('from') ?? '');
  out.addHeader('To', '');
  out.addHeader('Call-ID', invite.header('call-id') ?? '');
  out.addHeader('CSeq', `${invite.cseq()?.seq ?? 0} ${method}`);
}
