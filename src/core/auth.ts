/**
 * Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), modelled on Kamailio's `auth` +
 * `auth_db` modules: stateless HMAC nonces, credentials from the subscriber table (`ha1`, `ha1b`
 * or the plain-text `password`, like `calculate_ha1`), and `auth_check`'s From/To user match.
 *
 * Challenges
 *   One challenge per configured algorithm, in the order of the `algorithms` option. The default
 *   configuration lists MD5 first, although RFC 8760 §2.4 advises the strongest first: SIPp 3.6.1
 *   (the Debian `sip-tester`, our load tool) reads the *first* `algorithm=` of the challenges and
 *   aborts on anything but MD5/AKAv1-MD5 (checked against this module: SHA-256 first gave
 *   "createAuthHeader: authentication must use MD5 or AKAv1-MD5" and every call failed; MD5
 *   first, every REGISTER authenticated); PJSIP before 2.10 likewise answers only the first
 *   header. Newer SIPp and RFC 8760 clients pick the challenge they support, so listing SHA-256
 *   first is a configuration choice once such clients are the norm. All challenges of one
 *   response share one nonce and opaque, so a client that mixes parameters of several challenges
 *   still answers correctly.
 *   `challenge()` creates no state (RFC 3261 §26.3.2.4): the nonce carries its own issue time and
 *   an HMAC, and the To-tag is a hash of the request, so a retransmitted request gets an
 *   equivalent challenge.
 *
 * Nonces
 *   nonce  = base64url(time_ms[6] ‖ seq[6] ‖ random[4] ‖ HMAC-SHA256(secret, time_ms ‖ seq ‖ random ‖ realm)[32])
 *   `seq` is a per-process counter (like the nonce index of Kamailio's nid/nc modules); it orders
 *   nonces for the replay tracker below. It is not per-request state: nothing is stored.
 *   opaque = base64url(HMAC-SHA256(secret, "opaque" ‖ nonce)[0..12])
 *   A nonce whose HMAC does not verify (forged, or from another realm/secret) is `bad`; one older
 *   than `nonceLifetimeS` with an otherwise correct response is `stale` (new challenge with
 *   stale=true, so the phone retries without asking its user).
 *
 * Replay
 *   With qop, each (nonce, nc) pair is accepted once. A ring of `ncWindow` preallocated slots,
 *   indexed by seq like Kamailio's nc array, keeps for the last `ncWindow` nonces issued the
 *   highest nc seen and a 64-bit window of the nc values below it. An nc that was seen, or that
 *   lies below the window, is a `replay` (fresh challenge, stale=true like Kamailio's nc check).
 *   A nonce that is not tracked any more (`ncWindow` newer nonces were issued, or its slot is
 *   taken) is treated as stale, never accepted a second time; nonces issued before this process
 *   started likewise (their seq belongs to another process). Instances sharing a secret do not
 *   share this memory, so a nonce answered to one instance can be used once more at another.
 *   Answers without qop (RFC 2069 clients) cannot number their uses, so their nonce is accepted
 *   once (Kamailio's one-time-nonce).
 *
 *   NOTE for the routing/transaction layer: a *retransmission* of an authenticated request (same
 *   Via branch, sent again because our final response was lost on UDP) must be absorbed by its
 *   server transaction and answered with the stored response before verify() is called. verify()
 *   cannot tell a retransmission from a replay: it would reject the second copy as a replay. A new
 *   request (new branch) must use a new nc, which verify() accepts.
 *
 * Enumeration resistance (SIPVicious svwar and the like)
 *   An unknown user is answered exactly like a known user with a wrong password: same status,
 *   same headers, and the same hashing work (the response is computed against a dummy HA1 and
 *   compared in constant time).
 *
 * Nothing secret is logged: no password, HA1, response or Authorization header.
 */
import {
  buildResponse,
  formatAuthHeader,
  isSipUri,
  parseAuthHeader,
  parseUri,
  uriEquals,
  type AuthHeader,
  type NameAddr,
  type SipRequest,
  type SipResponse,
} from '../sip/index.js';
import type { Subscriber, SubscriberStore } from '../store/types.js';
import { constantTimeEqual, hashLatin1Hex, HmacSha256 } from './mac.js';
import { deterministicToTag } from './tags.js';
import { isStoreUnavailable, retryAfterHeader } from './unavailable.js';

export type DigestAlgorithmName = 'MD5' | 'SHA-256';
export type AuthKind = 'www' | 'proxy';

export type AuthFailureReason =
  /** no Digest credentials for this realm: a plain challenge */
  | 'no-credentials'
  /** expired nonce (correct response), or a nonce no longer tracked: challenge with stale=true */
  | 'stale'
  /** wrong password, unknown user, forged nonce, unsupported algorithm: challenge; malformed credentials: 400 */
  | 'bad'
  /** a nonce-count (or a no-qop nonce) used again: challenge with stale=true */
  | 'replay'
  /** valid credentials of another user than the From (or, for REGISTER, To) user: 403 */
  | 'user-mismatch'
  /** the subscriber store is unavailable for now (unreachable, query timeout, pool queue full): 503 with Retry-After */
  | 'unavailable'
  /** the subscriber store failed otherwise: 500 */
  | 'error';

export type AuthResult =
  | { readonly ok: true; readonly user: string; readonly realm: string }
  | {
      readonly ok: false;
      readonly reason: AuthFailureReason;
      /** the response to send (statelessly): 401/407 challenge, 400, 403, 500 or 503. */
      readonly response: SipResponse;
    };

/** Minimal pino-compatible logger. */
export interface AuthLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface DigestAuthOptions {
  subscribers: SubscriberStore;
  /** HMAC key for nonces; at least 16 bytes. Share it between instances that share subscribers. */
  secret: Buffer;
  nonceLifetimeS: number;
  /** offered algorithms, one challenge each, in this order (see the module comment about MD5 first). */
  algorithms: readonly DigestAlgorithmName[];
  /** 'auth': offer qop="auth" (answers without qop are still accepted, once per nonce); 'none': RFC 2069 style. */
  qop: 'auth' | 'none';
  /** require the digest `uri` to equal the Request-URI (off by default: SIPp puts sip:<server>:<port> there). */
  checkUri: boolean;
  /** the last this many nonces issued are tracked for replay protection; older ones are stale. */
  ncWindow: number;
  /** clock, unix milliseconds. */
  now: () => number;
  random: (n: number) => Buffer;
  logger?: AuthLogger;
}

// ------------------------------------------------------------------------------------------- hashing

export type DigestHashAlgorithm = 'MD5' | 'MD5-sess' | 'SHA-256' | 'SHA-256-sess';

function hashName(alg: DigestHashAlgorithm): 'md5' | 'sha256' {
  return alg.startsWith('SHA-256') ? 'sha256' : 'md5';
}

function h(alg: DigestHashAlgorithm, s: string): string {
  // SIP strings hold bytes as latin1 characters (see src/sip/message.ts); one-shot, no Hash object
  return hashLatin1Hex(hashName(alg), s);
}

/** HA1 = H(username:realm:password) (RFC 7616 §3.4.2, non-sess). */
export function digestHa1(algorithm: DigestHashAlgorithm, username: string, realm: string, password: string): string {
  return h(algorithm, `${username}:${realm}:${password}`);
}

export interface DigestResponseInput {
  algorithm: DigestHashAlgorithm;
  /** H(username:realm:password), hex. For -sess algorithms the session key is derived here. */
  ha1: string;
  method: string;
  /** the digest `uri` parameter, as sent. */
  uri: string;
  nonce: string;
  /** 'auth' with nc and cnonce, or undefined for RFC 2069 style. */
  qop?: 'auth';
  nc?: string;
  cnonce?: string;
}

/** The request-digest of RFC 2617 §3.2.2.1 / RFC 7616 §3.4.1 (lower-case hex). */
export function digestResponse(p: DigestResponseInput): string {
  let ha1 = p.ha1.toLowerCase();
  if (p.algorithm.endsWith('-sess')) ha1 = h(p.algorithm, `${ha1}:${p.nonce}:${p.cnonce ?? ''}`);
  const ha2 = h(p.algorithm, `${p.method}:${p.uri}`);
  if (p.qop === 'auth') return h(p.algorithm, `${ha1}:${p.nonce}:${p.nc ?? ''}:${p.cnonce ?? ''}:auth:${ha2}`);
  return h(p.algorithm, `${ha1}:${p.nonce}:${ha2}`);
}

// ------------------------------------------------------------------------------------------- helpers

/**
 * A deterministic To-tag for responses sent without transaction state: the same request (and its
 * retransmissions) always gets the same tag.
 */
export function statelessToTag(req: SipRequest): string {
  return deterministicToTag(req);
}

function credentialHeaderName(kind: AuthKind): 'authorization' | 'proxy-authorization' {
  return kind === 'www' ? 'authorization' : 'proxy-authorization';
}

/** Parsed Digest credentials of one header line, or null when they are not Digest. */
function parseCredentials(value: string): AuthHeader | null {
  try {
    const a = parseAuthHeader(value);
    return a.scheme.toLowerCase() === 'digest' ? a : null;
  } catch {
    return null;
  }
}

function realmMatches(a: string | undefined, realm: string): boolean {
  return a !== undefined && a.toLowerCase() === realm.toLowerCase();
}

/**
 * Remove the Proxy-Authorization lines carrying credentials for `realm` (they were for us);
 * credentials for other realms are kept, byte for byte, for the next hop. Returns how many lines
 * were removed.
 */
export function stripCredentials(req: SipRequest, realm: string): number {
  // without credentials, nothing to do (and the raw header array, which would turn off the parser's
  // presence mask for this message, is not read)
  if (req.header('proxy-authorization') === undefined) return 0;
  const kept = req.headers.filter((f) => {
    if (f.key !== 'proxy-authorization') return true;
    const c = parseCredentials(f.value);
    return !(c !== null && realmMatches(c.params.get('realm'), realm));
  });
  const removed = req.headers.length - kept.length;
  if (removed > 0) {
    req.removeHeader('proxy-authorization'); // drops the parsed-header cache of this name
    req.headers = kept;
  }
  return removed;
}

const b64url = (b: Buffer): string => b.toString('base64url');

const TS_LEN = 6;
const SEQ_LEN = 6;
const RND_LEN = 4;
const MAC_LEN = 32;
const SIGNED_LEN = TS_LEN + SEQ_LEN + RND_LEN;
const NONCE_LEN = SIGNED_LEN + MAC_LEN;
const NONCE_B64_LEN = Math.ceil((NONCE_LEN * 4) / 3);
const B64URL_RE = /^[A-Za-z0-9_-]+$/;
type NcVerdict = 'ok' | 'replay' | 'stale';

/**
 * Bounded replay tracker without per-nonce objects, after Kamailio's nid + nc modules: a ring of
 * `capacity` slots in preallocated typed arrays, indexed by the nonce's issue sequence number
 * (`seq % capacity`; seq and issue time are inside the MAC, so they are authentic). Per slot: the
 * seq and issue time of the nonce it holds, its highest nc and a 64-bit window of the nc values
 * below it (two 32-bit words). Memory is fixed (28 bytes a slot); use() allocates nothing.
 *
 * The tracker issues the seqs (issue()) and tracks the `capacity` most recently issued ones:
 *   - seq older than that (seq < next seq - capacity) → stale, used or not, so a nonce whose slot
 *     may have been reused is never accepted again;
 *   - slot holds this nonce → the window: 'ok' once per nc, 'replay' for an nc seen or below it;
 *   - slot empty or holding an older seq → first use: the slot is taken, 'ok';
 *   - slot holding a newer seq (possible only with nonces of other instances) → stale;
 *   - slot holding the same seq with another issue time (another instance sharing the secret
 *     issued that seq too) → stale: the two cannot be told apart in one slot;
 *   - issued before the tracker started (an earlier process; its seqs mean nothing here) → stale.
 * A slot's seq only grows, so a nonce, once used, is either tracked or stale for good.
 * Unlike the former LRU (of last use), eviction is by issue order: a nonce a phone keeps reusing
 * goes stale once `capacity` newer nonces were issued, challenges nobody answered included, and
 * the phone is challenged again with stale=true (as with Kamailio's nc). Nonces of other instances
 * sharing the secret are accepted while their seq is in range here (or ahead) and their slot free.
 */
export class NonceCountTracker {
  private readonly seqs: Float64Array; // seq is up to 48 bits; -1: empty
  private readonly issuedAt: Float64Array;
  private readonly maxNc: Uint32Array;
  /** window bit i (0..31 in lo, 32..63 in hi) set: nc (max - i) was accepted */
  private readonly lo: Uint32Array;
  private readonly hi: Uint32Array;
  private nextSeq = 0;

  /** `startTime`: nonces issued before it come from an earlier process. */
  constructor(
    private readonly capacity: number,
    private readonly startTime: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('ncWindow must be an integer >= 1');
    this.seqs = new Float64Array(capacity).fill(-1);
    this.issuedAt = new Float64Array(capacity);
    this.maxNc = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.hi = new Uint32Array(capacity);
  }

  /** The seq for a new nonce. */
  issue(): number {
    return this.nextSeq++;
  }

  /** Nonces currently tracked (<= capacity). Scans the slots: for tests and metrics, not per request. */
  get size(): number {
    const floor = this.nextSeq - this.capacity;
    let n = 0;
    for (let i = 0; i < this.capacity; i++) {
      const s = this.seqs[i]!;
      if (s >= 0 && s >= floor) n++;
    }
    return n;
  }

  /** Record one use of (nonce, nc); nc 0 stands for an answer without qop. */
  use(issued: number, seq: number, nc: number): NcVerdict {
    if (issued < this.startTime || seq < this.nextSeq - this.capacity) return 'stale';
    const i = seq % this.capacity;
    const held = this.seqs[i]!;
    if (held > seq) return 'stale';
    if (held < seq) {
      this.seqs[i] = seq;
      this.issuedAt[i] = issued;
      this.maxNc[i] = nc;
      this.lo[i] = 1;
      this.hi[i] = 0;
      return 'ok';
    }
    if (this.issuedAt[i] !== issued) return 'stale';
    const max = this.maxNc[i]!;
    if (nc > max) {
      const k = nc - max;
      if (k >= 64) {
        this.hi[i] = 0;
        this.lo[i] = 1;
      } else if (k >= 32) {
        this.hi[i] = this.lo[i]! << (k - 32);
        this.lo[i] = 1;
      } else {
        const lo = this.lo[i]!;
        this.hi[i] = (this.hi[i]! << k) | (lo >>> (32 - k));
        this.lo[i] = (lo << k) | 1;
      }
      this.maxNc[i] = nc;
      return 'ok';
    }
    const d = max - nc;
    if (d >= 64) return 'replay';
    if (d < 32) {
      const bit = 1 << d;
      if ((this.lo[i]! & bit) !== 0) return 'replay';
      this.lo[i] = this.lo[i]! | bit;
    } else {
      const bit = 1 << (d - 32);
      if ((this.hi[i]! & bit) !== 0) return 'replay';
      this.hi[i] = this.hi[i]! | bit;
    }
    return 'ok';
  }
}

// ------------------------------------------------------------------------------------------- authenticator

type NonceStatus = 'ok' | 'expired' | 'forged';
const HEX_RE = /^[0-9a-f]+$/;
const NC_RE = /^[0-9a-fA-F]{8}$/;

export class DigestAuthenticator {
  private readonly o: DigestAuthOptions;
  private readonly tracker: NonceCountTracker;
  /** stands in for the HA1 of users that do not exist, so their answers cost the same work. */
  private readonly dummyPassword: string;
  /** keyed once: nonce and opaque MACs without an Hmac object each */
  private readonly hmac: HmacSha256;
  /** scratch for making and checking nonces (synchronous use only) */
  private readonly nonceBuf = Buffer.alloc(NONCE_LEN);
  private readonly signedView = this.nonceBuf.subarray(0, SIGNED_LEN);

  constructor(opts: DigestAuthOptions) {
    if (opts.secret.length < 16) throw new RangeError('auth secret must be at least 16 bytes');
    if (opts.algorithms.length === 0) throw new RangeError('at least one digest algorithm is required');
    this.o = opts;
    this.hmac = new HmacSha256(opts.secret);
    this.tracker = new NonceCountTracker(opts.ncWindow, opts.now());
    this.dummyPassword = opts.random(16).toString('hex');
  }

  /** Number of nonces currently tracked for replay protection (<= ncWindow; scans the slots). */
  get trackedNonces(): number {
    return this.tracker.size;
  }

  // ------------------------------------------------------------------ challenge

  /** 401 + WWW-Authenticate (kind 'www') or 407 + Proxy-Authenticate ('proxy'); creates no state. */
  challenge(req: SipRequest, realm: string, kind: AuthKind, opts: { stale?: boolean } = {}): SipResponse {
    const nonce = this.makeNonce(realm);
    const opaque = this.opaqueFor(nonce);
    const name = kind === 'www' ? 'WWW-Authenticate' : 'Proxy-Authenticate';
    // what formatAuthHeader('Digest', [realm, nonce, qop?, opaque, algorithm, stale?]) writes, built
    // directly: nonce and opaque are base64url and need no escaping, the realm is quoted once per realm
    const head = `Digest realm=${this.quotedRealm(realm)}, nonce="${nonce}"${this.o.qop === 'auth' ? ', qop="auth"' : ''}, opaque="${opaque}", algorithm=`;
    const tail = opts.stale === true ? ', stale=true' : '';
    const algs = this.o.algorithms;
    const headers: Array<readonly [string, string]> = new Array(algs.length);
    for (let i = 0; i < algs.length; i++) headers[i] = [name, head + algs[i]! + tail];
    return buildResponse(req, kind === 'www' ? 401 : 407, { toTag: statelessToTag(req), headers });
  }

  private lastRealm: string | undefined;
  private lastQuotedRealm = '';
  /** The realm as a quoted auth-param value (formatAuthHeader's quoting), kept for the last realm asked. */
  private quotedRealm(realm: string): string {
    if (realm !== this.lastRealm) {
      this.lastQuotedRealm = formatAuthHeader('', [['realm', realm]]).slice(' realm='.length);
      this.lastRealm = realm;
    }
    return this.lastQuotedRealm;
  }

  private makeNonce(realm: string): string {
    const buf = this.nonceBuf;
    buf.writeUIntBE(Math.max(0, Math.floor(this.o.now())), 0, TS_LEN);
    buf.writeUIntBE(this.tracker.issue(), TS_LEN, SEQ_LEN);
    this.o.random(RND_LEN).copy(buf, TS_LEN + SEQ_LEN, 0, RND_LEN);
    buf.write(this.mac(this.signedView, realm), SIGNED_LEN, 'hex');
    return b64url(buf);
  }

  /** HMAC-SHA256(secret, signed ‖ lower(realm)), hex. */
  private mac(signed: Buffer, realm: string): string {
    return this.hmac.begin().bytes(signed).str(realm.toLowerCase()).hex();
  }

  private opaqueFor(nonce: string): string {
    // base64url of the first 12 bytes of the MAC = its first 16 characters (12 bytes = 4 groups of 3)
    return this.hmac.begin().str('opaque\u0000').str(nonce).base64url().slice(0, 16);
  }

  /** issue time and seq of the nonce checkNonce() last found authentic (read right after it: no object per check) */
  private checkedIssued = 0;
  private checkedSeq = 0;

  private checkNonce(nonce: string, realm: string): NonceStatus {
    if (nonce.length !== NONCE_B64_LEN || !B64URL_RE.test(nonce)) return 'forged';
    const buf = this.nonceBuf;
    if (buf.write(nonce, 0, 'base64url') !== NONCE_LEN) return 'forged';
    const want = this.mac(this.signedView, realm);
    if (!constantTimeEqual(want, buf.toString('hex', SIGNED_LEN, NONCE_LEN))) return 'forged';
    const issued = buf.readUIntBE(0, TS_LEN);
    this.checkedIssued = issued;
    this.checkedSeq = buf.readUIntBE(TS_LEN, SEQ_LEN);
    const age = this.o.now() - issued;
    // a nonce from the future (clock stepped back, or forged with the secret) is not trusted either
    if (age > this.o.nonceLifetimeS * 1000 || age < -5000) return 'expired';
    return 'ok';
  }

  // ------------------------------------------------------------------ verify

  /**
   * Check the Authorization (kind 'www') or Proxy-Authorization ('proxy') credentials for `realm`.
   * Never throws (nor rejects); on failure `response` is what to send back statelessly.
   * Synchronous (no Promise) when the request carries no usable credentials or the subscriber's
   * credentials are cached (SubscriberStore.peek); a Promise when the store must be asked.
   */
  verify(req: SipRequest, realm: string, kind: AuthKind): AuthResult | Promise<AuthResult> {
    // 1. the Digest credentials for our realm (other realms belong to other hops)
    let cred: AuthHeader | undefined;
    for (const v of req.headerValues(credentialHeaderName(kind))) {
      const c = parseCredentials(v);
      if (c !== null && realmMatches(c.params.get('realm'), realm)) {
        cred = c;
        break;
      }
    }
    if (cred === undefined) return this.fail(req, realm, 'no-credentials', this.challenge(req, realm, kind, NOT_STALE));
    const p = cred.params;

    // 2. well-formed?
    const username = p.get('username');
    const nonce = p.get('nonce');
    const duri = p.get('uri');
    const response = p.get('response')?.toLowerCase();
    const credRealm = p.get('realm')!;
    if (!username || !nonce || duri === undefined || !response) return this.badRequest(req, realm, 'incomplete credentials');
    const algorithm = this.algorithmOf(p.get('algorithm') ?? 'MD5');
    if (algorithm === undefined) return this.fail(req, realm, 'bad', this.challenge(req, realm, kind, NOT_STALE));
    const qopParam = p.get('qop');
    let qop: 'auth' | undefined;
    let nc = 0;
    let ncText: string | undefined;
    let cnonce: string | undefined;
    if (qopParam !== undefined) {
      if (qopParam.toLowerCase() !== 'auth') return this.fail(req, realm, 'bad', this.challenge(req, realm, kind, NOT_STALE));
      qop = 'auth';
      ncText = p.get('nc');
      cnonce = p.get('cnonce');
      if (ncText === undefined || !NC_RE.test(ncText) || !cnonce) return this.badRequest(req, realm, 'bad nc or cnonce');
      nc = parseInt(ncText, 16);
      if (nc === 0) return this.badRequest(req, realm, 'nc must be positive');
    }
    if (this.o.checkUri && !sameUri(duri, req.uriText)) return this.badRequest(req, realm, 'digest uri does not match the Request-URI');

    // 3. the nonce and opaque must be ours (checked here, but acted on only after the hashing
    //    below, so that the work done does not depend on them or on the user)
    const checked = this.checkNonce(nonce, realm);
    const issued = checked === 'forged' ? 0 : this.checkedIssued;
    const seq = checked === 'forged' ? 0 : this.checkedSeq;
    const opaque = p.get('opaque');
    const opaqueOk = opaque === undefined || (checked !== 'forged' && opaque === this.opaqueFor(nonce));

    // 4. credentials: from the cache without a Promise when it has them, else from the store
    const at = username.lastIndexOf('@');
    const lookupUser = at > 0 ? username.slice(0, at) : username;
    const st: Pending = { req, realm, kind, username, lookupUser, at, credRealm, algorithm, duri, nonce, response, qop, nc, ncText, cnonce, checked, issued, seq, opaqueOk };
    const lookupDomain = realm.toLowerCase();
    const cached = this.o.subscribers.peek?.(lookupUser, lookupDomain);
    if (cached !== undefined) return this.conclude(st, cached);
    let lookup: Promise<Subscriber | null>;
    try {
      lookup = this.o.subscribers.get(lookupUser, lookupDomain);
    } catch (e) {
      lookup = Promise.reject(e);
    }
    return lookup.then(
      (sub) => this.conclude(st, sub),
      (e: unknown) => {
        this.o.logger?.warn({ realm, err: e instanceof Error ? e.message : String(e) }, 'subscriber lookup failed');
        if (isStoreUnavailable(e)) {
          return this.fail(req, realm, 'unavailable', buildResponse(req, 503, { toTag: statelessToTag(req), reason: 'Service Unavailable (credentials store)', headers: [retryAfterHeader()] }));
        }
        return this.fail(req, realm, 'error', buildResponse(req, 500, { toTag: statelessToTag(req), reason: 'Server Internal Error (credentials unavailable)' }));
      },
    );
  }

  /** The configured algorithm named by an `algorithm=` parameter (case-insensitive). */
  private algorithmOf(name: string): DigestAlgorithmName | undefined {
    const want = name.toLowerCase();
    for (const a of this.o.algorithms) if (a.toLowerCase() === want) return a;
    return undefined;
  }

  private badRequest(req: SipRequest, realm: string, why: string): AuthResult {
    return this.fail(req, realm, 'bad', buildResponse(req, 400, { toTag: statelessToTag(req), reason: `Bad Request (${why})` }));
  }

  private fail(req: SipRequest, realm: string, reason: AuthFailureReason, response: SipResponse): AuthResult {
    this.o.logger?.debug({ realm, reason, method: req.method, callId: req.callId() }, 'digest auth failed');
    return { ok: false, reason, response };
  }

  /** Steps 4 (hashing) to 6 of verify(), once the subscriber (or its absence) is known. */
  private conclude(st: Pending, sub: Readonly<Subscriber> | null): AuthResult {
    const { req, realm, kind, username, lookupUser, at, credRealm, algorithm, duri, nonce, response, qop, ncText, cnonce, checked, opaqueOk } = st;
    let ha1: string | undefined;
    if (sub !== null) {
      if (algorithm === 'MD5') {
        const stored = at > 0 ? sub.ha1b : sub.ha1;
        if (stored && stored.length === 32 && HEX_RE.test(stored.toLowerCase())) ha1 = stored.toLowerCase();
        else if (sub.password) ha1 = digestHa1('MD5', username, credRealm, sub.password);
      } else if (sub.password) {
        ha1 = digestHa1(algorithm, username, credRealm, sub.password);
      }
    }
    const known = ha1 !== undefined;
    // same work for the unknown: SHA-256 always derives HA1 from a password; MD5 mostly reads a stored one
    const effectiveHa1 = ha1 ?? (algorithm === 'SHA-256' || sub !== null ? digestHa1(algorithm, username, credRealm, this.dummyPassword) : this.dummyHa1());
    const expected = digestResponse({ algorithm, ha1: effectiveHa1, method: req.method, uri: duri, nonce, qop, nc: ncText, cnonce });
    const matches = constantTimeEqualHex(expected, response) && known;

    // 5. verdicts, in an order that reveals nothing about the user before the password is right
    if (checked === 'forged' || !opaqueOk || !matches) return this.fail(req, realm, 'bad', this.challenge(req, realm, kind, NOT_STALE));
    if (checked === 'expired') return this.fail(req, realm, 'stale', this.challenge(req, realm, kind, STALE));
    const ncVerdict = this.tracker.use(st.issued, st.seq, st.nc);
    if (ncVerdict === 'stale') return this.fail(req, realm, 'stale', this.challenge(req, realm, kind, STALE));
    if (ncVerdict === 'replay') return this.fail(req, realm, 'replay', this.challenge(req, realm, kind, STALE));

    // 6. auth_check: the authenticated user must be the one the request claims to be
    const claimed = claimedUser(req);
    if (claimed !== lookupUser) {
      return this.fail(req, realm, 'user-mismatch', buildResponse(req, 403, { toTag: statelessToTag(req), reason: 'Forbidden (authentication user mismatch)' }));
    }
    this.o.logger?.debug({ realm, user: lookupUser, method: req.method }, 'digest auth ok');
    return { ok: true, user: lookupUser, realm };
  }

  /** Remove our realm's Proxy-Authorization lines before forwarding (see the module function). */
  stripCredentials(req: SipRequest, realm: string): number {
    return stripCredentials(req, realm);
  }

  private dummyHa1Cache: string | undefined;
  private dummyHa1(): string {
    // an unknown MD5 user costs two hashes (HA2 + response) like a known one with a stored ha1
    this.dummyHa1Cache ??= digestHa1('MD5', 'dummy', 'dummy', this.dummyPassword);
    return this.dummyHa1Cache;
  }
}

/** What verify() has checked before the subscriber lookup. */
interface Pending {
  req: SipRequest;
  realm: string;
  kind: AuthKind;
  username: string;
  lookupUser: string;
  at: number;
  credRealm: string;
  algorithm: DigestAlgorithmName;
  duri: string;
  nonce: string;
  response: string;
  qop: 'auth' | undefined;
  nc: number;
  ncText: string | undefined;
  cnonce: string | undefined;
  checked: NonceStatus;
  /** issue time and seq of the nonce (0 when forged) */
  issued: number;
  seq: number;
  opaqueOk: boolean;
}

/** The user a request claims to be: the To user of a REGISTER, else the From user (undefined when unreadable). */
function claimedUser(req: SipRequest): string | undefined {
  try {
    const na: NameAddr | undefined = req.method === 'REGISTER' ? req.to() : req.from();
    const u = na?.uri;
    return u !== undefined && isSipUri(u) ? u.user : undefined;
  } catch {
    return undefined;
  }
}

const NOT_STALE = { stale: false } as const;
const STALE = { stale: true } as const;

function sameUri(digestUri: string, requestUri: string): boolean {
  if (digestUri === requestUri) return true;
  try {
    return uriEquals(parseUri(digestUri), parseUri(requestUri));
  } catch {
    return false;
  }
}

/** `got` equals `expected` (a digest, whose length is public); time independent of where they differ. */
function constantTimeEqualHex(expected: string, got: string): boolean {
  return constantTimeEqual(expected, got);
}
