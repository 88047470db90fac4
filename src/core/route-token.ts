/**
 * Integrity tokens for the Record-Route URIs sipd inserts (issue 8): an in-dialog request is
 * loose-routed only on a Route we issued, from one party of that dialog, towards the other.
 *
 * A Record-Route URI of ours carries `;sdt=TOKEN`:
 *
 *   TOKEN = base64url( version[1] ‖ flags[1] ‖ nA[1] ‖ nB[1] ‖ A_1..A_nA[4 each] ‖ B_1..B_nB[4 each] ‖ mac[12] )
 *   X_i   = HMAC-SHA256(secret, "hop" ‖ Call-ID ‖ hopKey)[0..4]
 *   mac   = HMAC-SHA256(secret, "rr" ‖ Call-ID ‖ from-tag ‖ flags ‖ nA ‖ nB ‖ A ‖ B)[0..12]
 *
 * - The MAC binds the route to the dialog: its Call-ID and the From-tag of the dialog-forming
 *   request (an in-dialog request carries that tag as its From-tag, or in the other direction as
 *   its To-tag). Without the secret no valid token can be made.
 * - A and B are the two parties as sipd saw them when the dialog was formed: A the caller side (the
 *   source IP of the request on any port; for a caller that authenticated or is trusted also its
 *   Contact and nearest upstream Record-Route when they are IP literals), B the callee side (the
 *   address the branch was sent to, on that port and on any port of that IP, and the registered
 *   contact when it is an IP literal). A hop key is `IP|PORT` or `IP|*`.
 * - flags bit 0: the caller was authenticated (or trusted).
 *
 * An in-dialog request from source S (its IP must be an `IP|*` hop of A or of B) may go to a next
 * hop N only on the other side: from A to B, from B to A (from both, as when both parties share an
 * address, to either). A request from the A side of a dialog whose caller authenticated may go
 * anywhere, as that caller's initial requests may. So a participant of a real dialog cannot use its
 * token to make sipd reach a third host (a PSTN gateway), and nobody else can use it at all.
 *
 * The key is the auth secret (`auth.secret`, or the persisted secret file), so tokens survive a
 * restart when the secret does. Hop hashes are keyed and per dialog: a token reveals nothing about
 * its hops and a 32-bit hash cannot be matched offline; a guess costs a request (flood bans apply).
 */
import { constantTimeEqual, HmacSha256 } from './mac.js';

const VERSION = 1;
const HOP_LEN = 4;
const MAC_LEN = 12;
const HEAD_LEN = 4;
/** most hops one side of a token names. */
export const MAX_HOPS_PER_SIDE = 4;
const FLAG_PRIVILEGED_CALLER = 1;
/** hex digits of the branch MAC (see branchMac). */
export const BRANCH_MAC_LEN = 8;

/** Name of the Record-Route URI parameter carrying the token. */
export const TOKEN_PARAM = 'sdt';

/** A hop as the proxy names it: normalised IP and port, or `*` for any port of that IP. */
export function hopKey(address: string, port: number | '*'): string {
  return `${address}|${port}`;
}

export interface DialogParties {
  /** hop keys of the caller side (the first one is normally its source `IP|*`). */
  readonly a: readonly string[];
  /** hop keys of the callee side. */
  readonly b: readonly string[];
  /** the caller authenticated as one of our subscribers, or is a trusted source. */
  readonly privilegedCaller: boolean;
}

export interface VerifiedRoute {
  readonly callId: string;
  readonly privilegedCaller: boolean;
  readonly a: readonly string[];
  readonly b: readonly string[];
}

export type TokenCheck = ({ readonly ok: true } & VerifiedRoute) | { readonly ok: false; readonly reason: 'malformed' | 'forged' };

/** Which side(s) of a verified dialog a source IP belongs to. */
export interface Sides {
  readonly a: boolean;
  readonly b: boolean;
}

export class RouteTokens {
  /** keyed once (HMAC-SHA256 without an Hmac object per MAC; same output) */
  private readonly hmac: HmacSha256;

  constructor(secret: Buffer) {
    if (secret.length < 16) throw new RangeError('route token secret must be at least 16 bytes');
    this.hmac = new HmacSha256(secret);
  }

  /** HOP_LEN bytes of the hop's keyed hash, hex. */
  private hopHash(callId: string, key: string): string {
    return this.hmac.begin().str('hop\u0000').str(callId).str('\u0000').str(key).hex().slice(0, 2 * HOP_LEN);
  }

  /** MAC_LEN bytes of the token MAC, hex. */
  private mac(callId: string, ftag: string, signed: Uint8Array): string {
    return this.hmac.begin().str('rr\u0000').str(callId).str('\u0000').str(ftag).str('\u0000').bytes(signed).hex().slice(0, 2 * MAC_LEN);
  }

  /** The token for a dialog: its Call-ID, the From-tag of the dialog-forming request, its parties. */
  issue(callId: string, ftag: string, parties: DialogParties): string {
    const a = distinct(parties.a);
    const b = distinct(parties.b);
    const buf = Buffer.allocUnsafe(HEAD_LEN + (a.length + b.length) * HOP_LEN + MAC_LEN);
    buf[0] = VERSION;
    buf[1] = parties.privilegedCaller ? FLAG_PRIVILEGED_CALLER : 0;
    buf[2] = a.length;
    buf[3] = b.length;
    let off = HEAD_LEN;
    for (const k of a) off += buf.write(this.hopHash(callId, k), off, 'hex');
    for (const k of b) off += buf.write(this.hopHash(callId, k), off, 'hex');
    buf.write(this.mac(callId, ftag, buf.subarray(0, off)), off, 'hex');
    return buf.toString('base64url');
  }

  /**
   * Verify a token against an in-dialog request's Call-ID and tags (the dialog's From-tag is the
   * request's From-tag in one direction and its To-tag in the other).
   */
  verify(token: string, callId: string, tags: readonly (string | undefined)[]): TokenCheck {
    if (token.length === 0 || token.length > 96 || !/^[A-Za-z0-9_-]+$/.test(token)) return { ok: false, reason: 'malformed' };
    const buf = Buffer.from(token, 'base64url');
    if (buf.length < HEAD_LEN || buf[0] !== VERSION) return { ok: false, reason: 'malformed' };
    const na = buf[2]!;
    const nb = buf[3]!;
    if (na > MAX_HOPS_PER_SIDE || nb > MAX_HOPS_PER_SIDE || buf.length !== HEAD_LEN + (na + nb) * HOP_LEN + MAC_LEN) return { ok: false, reason: 'malformed' };
    const signed = buf.subarray(0, buf.length - MAC_LEN);
    const mac = buf.toString('hex', buf.length - MAC_LEN);
    for (let t = 0; t < tags.length; t++) {
      const tag = tags[t] ?? '';
      if (tagSeenBefore(tags, t, tag)) continue;
      if (!constantTimeEqual(this.mac(callId, tag, signed), mac)) continue;
      const a: string[] = [];
      const b: string[] = [];
      for (let i = 0; i < na; i++) a.push(buf.toString('hex', HEAD_LEN + i * HOP_LEN, HEAD_LEN + (i + 1) * HOP_LEN));
      for (let i = na; i < na + nb; i++) b.push(buf.toString('hex', HEAD_LEN + i * HOP_LEN, HEAD_LEN + (i + 1) * HOP_LEN));
      return { ok: true, callId, privilegedCaller: (buf[1]! & FLAG_PRIVILEGED_CALLER) !== 0, a, b };
    }
    return { ok: false, reason: 'forged' };
  }

  /**
   * A short MAC for the unique part of the Via branches we send (8 hex digits): a 2xx that matches no
   * transaction is forwarded upstream only when its top Via branch carries one, so a forged
   * "retransmission" cannot make sipd reflect a response to an address of someone's choosing.
   */
  branchMac(value: string): string {
    return this.hmac.begin().str('branch\u0000').str(value).hex().slice(0, BRANCH_MAC_LEN);
  }

  /** The side(s) a source IP belongs to (an `IP|*` hop). */
  sidesOf(v: VerifiedRoute, address: string): Sides {
    const h = this.hopHash(v.callId, hopKey(address, '*'));
    return { a: v.a.includes(h), b: v.b.includes(h) };
  }

  /**
   * May a request from `from` go to `address:port`? From A: to B (anywhere when the caller
   * authenticated); from B: to A; from both: to either.
   */
  allows(v: VerifiedRoute, from: Sides, address: string, port: number): boolean {
    if (from.a && v.privilegedCaller) return true;
    const exact = this.hopHash(v.callId, hopKey(address, port));
    const any = this.hopHash(v.callId, hopKey(address, '*'));
    const inA = v.a.includes(exact) || v.a.includes(any);
    const inB = v.b.includes(exact) || v.b.includes(any);
    return (from.a && inB) || (from.b && inA);
  }
}

/** The first MAX_HOPS_PER_SIDE distinct keys, in order. */
function distinct(keys: readonly string[]): string[] {
  const out: string[] = [];
  for (const k of keys) {
    if (out.length === MAX_HOPS_PER_SIDE) break;
    if (!out.includes(k)) out.push(k);
  }
  return out;
}

/** `tags[t]` (undefined read as '') occurs earlier in `tags`: its MAC was already tried. */
function tagSeenBefore(tags: readonly (string | undefined)[], t: number, tag: string): boolean {
  for (let i = 0; i < t; i++) if ((tags[i] ?? '') === tag) return true;
  return false;
}
