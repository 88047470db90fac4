/**
 * The routing policy: Kamailio's stock request_route (WITH_MYSQL, WITH_AUTH, WITH_USRLOCDB) as one
 * TypeScript pipeline. Read `handle()` top to bottom: each step is a small method that either
 * finishes the request (answers, relays or drops it) and returns true, or lets it continue.
 *
 *   scanner → sanity → Max-Forwards → loop → sips without TLS → keepalive OPTIONS → in-dialog → CANCEL → auth
 *         → preloaded Route → relay policy → registrar → location → relay
 *
 * Relay policy (issue 8: not an open relay). A request is *privileged* when its source is trusted
 * (`auth.trusted_ips`) or it authenticated as one of our subscribers. Only privileged initial
 * requests may go to a foreign host (call out) or follow a preloaded Route; every other initial
 * request reaches nothing but a binding of one of our domains (location lookup): a foreign
 * Request-URI gets 403, a preloaded Route naming anything but us gets 403 (not silently dropped:
 * the sender learns at once that its route is refused, and nothing it asked for is re-interpreted).
 * The strict-route fix-up runs before these checks, so it never widens what may be reached, and
 * no URI naming sipd itself (or with maddr, which is never obeyed) is sent anywhere.
 * In-dialog requests (To-tag) are loose-routed only on a Route we issued: its token (route-token.ts)
 * must verify for the dialog and the next hop must be the other party of the dialog; otherwise 403.
 * A trusted source may also send in-dialog requests along a route set that does not name us (as it
 * may preload Routes), but a Route naming us must carry a valid token whoever sends it.
 *
 * Flows (RFC 5626, ./flows.ts, filled by the registrar): a binding with a live flow is sent on its
 * connection; one whose flow is gone is skipped, and when nothing is left the answer is 430 Flow
 * Failed (outbound bindings) or 480 (`.invalid` Contacts). An in-dialog request whose Request-URI is
 * a Contact known to the flow table (registered, or the Contact of a caller over a connection) goes
 * on that connection; a `.invalid` one with no flow left gets 430.
 */
import { buildResponse, isSipUri, isStar, parseUri, type NameAddr, type Rejection, type SipRequest, type SipResponse, type SipUri } from '../sip/index.js';
import type { Binding, LocationStore } from '../store/types.js';
import type { ServerTransaction, TransactionLayer } from '../transaction/types.js';
import type { Source } from '../transport/types.js';
import type { Acl } from './acl.js';
import { isConnectionOriented, transportFromToken } from '../transport/transport.js';
import type { FlowTable } from './flows.js';
import { aorOf, isUnreachableContact } from './registrar.js';
import type { ForwardTarget, NextHop, Proxy } from './proxy.js';
import type { VerifiedRoute } from './route-token.js';
import { sanityCheck } from './sanity.js';
import { isStoreUnavailable, retryAfterHeader } from './unavailable.js';
import type { ScannerFilter } from './scanner.js';

export type AuthOutcome =
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly reason: string; readonly response: SipResponse };

/** What routing needs from digest auth (src/core/auth.ts). */
export interface Authenticator {
  /** A plain value when it can be decided without waiting (cached credentials), else a Promise. */
  verify(req: SipRequest, realm: string, kind: 'www' | 'proxy'): AuthOutcome | Promise<AuthOutcome>;
  stripCredentials(req: SipRequest, realm: string): void;
}

/** What routing needs from the registrar (src/core/registrar.ts). */
export interface RegistrarLike {
  /** the response, at once or as a Promise (that resolves: failures are responses too) */
  register(req: SipRequest, src: Source): SipResponse | Promise<SipResponse>;
}

export interface RoutingEvents {
  /** one line per handled request: status sent by us (0 = relayed, -1 = dropped). */
  handled(req: SipRequest, src: Source, result: number | 'relayed' | 'dropped' | 'absorbed', why: string, ms: number): void;
  challenge(kind: 'www' | 'proxy'): void;
  authFailure(reason: string): void;
  drop(reason: string): void;
  /** a request refused by the relay policy (reason: a small fixed set, see `Denial`). */
  denied(reason: Denial): void;
  response(status: number): void;
  /** undefined when debug is off (called as `debug?.(...)`: the log object is then not built). */
  debug?(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface RoutingDeps {
  tx: TransactionLayer;
  proxy: Proxy;
  auth: Authenticator | undefined;
  registrar: RegistrarLike;
  locations: LocationStore;
  /** scanner User-Agent drop list (undefined: off). The per-source rate limit is in the transport's admission hook. */
  scanners: ScannerFilter | undefined;
  trusted: Acl;
  /** is this host one of our domains (SIPD_DOMAINS)? */
  isOurDomain(host: string): boolean;
  /** a to-tag for responses we generate statelessly (deterministic per request, so retransmissions match). */
  toTag(req: SipRequest): string;
  events: RoutingEvents;
  /**
   * the flow table the registrar fills (RFC 5626 flows, ./flows.ts): requests for a binding with a
   * live flow go on its connection. Without it, bindings are routed by `received` / Contact only.
   */
  flows?: FlowTable;
}

/** Why the relay policy refused a request (a metrics label: keep the set small and fixed). */
export type Denial =
  /** initial request from an unprivileged source to a host that is not one of our domains */
  | 'foreign-target'
  /** initial request from an unprivileged source with a Route that does not name us */
  | 'preloaded-route'
  /** in-dialog request whose top Route names another host */
  | 'dialog-foreign-route'
  /** in-dialog request whose Route names us without a token */
  | 'dialog-no-token'
  /** in-dialog request whose token does not verify for its dialog */
  | 'dialog-bad-token'
  /** in-dialog request from outside the dialog, or towards a host that is not its other party */
  | 'dialog-hop';

const ONE_TARGET = '1 target(s)';

const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, INFO, MESSAGE, REFER, NOTIFY, SUBSCRIBE';

interface Ctx {
  readonly req: SipRequest;
  readonly src: Source;
  readonly t0: number;
  logged?: boolean;
  st?: ServerTransaction;
  /** the subscriber the request authenticated as (digest), if any. */
  user?: string;
}

export class Router {
  /** requests being processed (async auth/DB), keyed by transaction identity: retransmissions meanwhile are dropped. */
  private readonly inFlight = new Set<string>();

  constructor(private readonly d: RoutingDeps) {}

  /** requests the pipeline is still working on (auth, database lookups). */
  get busy(): number {
    return this.inFlight.size;
  }

  /** Entry point from the transaction layer (a request that matched no transaction). Never throws. */
  onRequest(req: SipRequest, src: Source): void {
    // only a request whose handling went async is in flight (nothing else runs while one is handled
    // synchronously): the key is built when there is a set to look in, or one to add to
    if (this.inFlight.size > 0) {
      const key = txKey(req);
      if (key !== undefined && this.inFlight.has(key)) {
        this.d.events.drop('retransmission-in-flight');
        return;
      }
    }
    const ctx: Ctx = { req, src, t0: performance.now() };
    let pending: Promise<void> | undefined;
    try {
      pending = this.handle(ctx);
    } catch (err) {
      this.failed(ctx, err);
    }
    if (pending !== undefined) {
      // (the identity parts, top Via and method, are not edited by the pipeline)
      const key = txKey(req);
      if (key !== undefined) this.inFlight.add(key);
      void this.settle(ctx, pending, key);
    }
  }

  /** A request whose handling went async: its error answer and the in-flight bookkeeping once it is done. */
  private async settle(ctx: Ctx, pending: Promise<void>, key: string | undefined): Promise<void> {
    try {
      await pending;
    } catch (err) {
      this.failed(ctx, err);
    } finally {
      if (key !== undefined) this.inFlight.delete(key);
    }
  }

  private failed(ctx: Ctx, err: unknown): void {
    this.d.events.error({ err: err instanceof Error ? (err.stack ?? err.message) : String(err), method: ctx.req.method, callId: ctx.req.callId() }, 'internal error');
    this.reply(ctx, 500, 'Server Internal Error');
  }

  /**
   * request_route. The steps run synchronously as long as none of them has to wait (auth with cached
   * credentials, in-dialog checks, replies): a Promise only from the first step that waits on.
   */
  private handle(ctx: Ctx): Promise<void> | undefined {
    if (this.scanner(ctx)) return;
    if (this.sanity(ctx)) return;
    if (this.maxForwards(ctx)) return;
    if (this.loop(ctx)) return;
    if (this.sipsUnsupported(ctx)) return;
    if (this.keepalive(ctx)) return;
    if (ctx.req.toTag() !== undefined) {
      const inDialog = this.withinDialog(ctx);
      if (inDialog === true) return;
      if (inDialog !== false) return inDialog.then((done) => (done ? undefined : this.initial(ctx)));
    }
    return this.initial(ctx);
  }

  /** request_route from CANCEL on (a request that is not handled as in-dialog). */
  private initial(ctx: Ctx): Promise<void> | undefined {
    if (this.cancel(ctx)) return;
    if (this.strayAck(ctx)) return;
    const authed = this.authenticate(ctx);
    if (authed === true) return;
    if (authed !== false) return authed.then((done) => (done ? undefined : this.authorised(ctx)));
    return this.authorised(ctx);
  }

  /** request_route after auth. */
  private authorised(ctx: Ctx): Promise<void> | undefined {
    if (this.preloadedRoute(ctx)) return;
    if (this.relayPolicy(ctx)) return;
    const registered = this.registrar(ctx);
    if (registered === true) return;
    if (registered !== false) return registered.then((done) => (done ? undefined : this.afterRegistrar(ctx)));
    return this.afterRegistrar(ctx);
  }

  /** request_route after the registrar step: address checks, location lookup, relay. */
  private afterRegistrar(ctx: Ctx): Promise<void> | undefined {
    if (this.addressIncomplete(ctx)) return;
    if (this.toSelf(ctx)) return;
    return this.locationThenRelay(ctx);
  }

  private locationThenRelay(ctx: Ctx): Promise<void> | undefined {
    // (no Promise while the location store answers from memory)
    const located = this.location(ctx);
    if (located instanceof Promise) return located.then((done) => this.relayUnlocated(ctx, done));
    this.relayUnlocated(ctx, located);
    return undefined;
  }

  /** After the location step: relay to the Request-URI unless it answered (`done`). */
  private relayUnlocated(ctx: Ctx, done: boolean): void {
    if (!done) this.relay(ctx, [{ q: null }]);
  }

  /** Trusted source, or authenticated as one of our subscribers: may call out and follow Routes. */
  private privileged(ctx: Ctx): boolean {
    return ctx.user !== undefined || this.d.trusted.has(ctx.src.address);
  }

  // ---------------------------------------------------------------- REQINIT

  /** A scanner's User-Agent (friendly-scanner, sipvicious ...) → drop silently: no answer, no log line, counted. */
  private scanner(ctx: Ctx): boolean {
    if (this.d.scanners === undefined || !this.d.scanners.matches(ctx.req)) return false;
    this.d.events.drop('scanner');
    return true;
  }

  /** sanity_check: malformed requests get 400/416/420/501/505 (an ACK is never answered). */
  private sanity(ctx: Ctx): boolean {
    let r: Rejection | null;
    try {
      r = sanityCheck(ctx.req);
    } catch {
      r = { status: 400, reason: 'Bad Request' };
    }
    if (r === null) return false;
    if (ctx.req.method === 'ACK') {
      this.done(ctx, 'dropped', 'bad ACK');
      return true;
    }
    this.reply(ctx, r.status, r.reason, r.headers);
    return true;
  }

  /** mf_process_maxfwd_header: 0 → 483 (OPTIONS to us included, like Kamailio). */
  private maxForwards(ctx: Ctx): boolean {
    const mf = ctx.req.maxForwards();
    if (mf === undefined || mf > 0) return false;
    if (ctx.req.method === 'ACK') {
      this.done(ctx, 'dropped', 'ACK with Max-Forwards 0');
      return true;
    }
    this.reply(ctx, 483, 'Too Many Hops');
    return true;
  }

  /** §16.3 step 4: the same request came back through us unchanged. */
  private loop(ctx: Ctx): boolean {
    if (!this.d.proxy.isLoop(ctx.req)) return false;
    this.reply(ctx, 482, 'Loop Detected');
    return true;
  }

  /**
   * A `sips:` Request-URI while sipd serves no secure transport (TLS, WSS): 416 Unsupported URI
   * Scheme, for every request (an ACK is dropped). RFC 3261 §26.2.2 forbids any non-TLS hop for it,
   * and §8.2.2.1 / §16.3 answer a scheme the server cannot serve with 416; Kamailio without a TLS
   * listener has nothing to send it over either. When a secure transport is served, the request is
   * routed as usual and a target that no secure hop reaches makes the branch fail: the caller gets
   * 480 (RFC 5630 §3.1.3) unless another branch answered (proxy.ts, findHop).
   */
  private sipsUnsupported(ctx: Ctx): boolean {
    const uri = ctx.req.uri;
    if (!isSipUri(uri) || uri.scheme !== 'sips' || this.d.proxy.servesSecure()) return false;
    if (ctx.req.method === 'ACK') {
      this.done(ctx, 'dropped', 'ACK to a sips: URI without TLS');
      return true;
    }
    this.reply(ctx, 416, 'Unsupported URI Scheme');
    return true;
  }

  /** OPTIONS to the server itself (no user, our host): 200 with Allow/Accept/Supported. */
  private keepalive(ctx: Ctx): boolean {
    const { req } = ctx;
    if (req.method !== 'OPTIONS') return false;
    const uri = req.uri;
    if (!isSipUri(uri) || uri.user !== undefined) return false;
    if (!this.d.proxy.isSelf(uri) && !this.d.isOurDomain(uri.host)) return false;
    // through us as outbound proxy: every Route must name us
    if (!req.routes().every((r) => isSipUri(r.uri) && this.d.proxy.isSelf(r.uri))) return false;
    this.reply(ctx, 200, 'OK', [
      ['Allow', ALLOW],
      ['Accept', 'application/sdp'],
      ['Supported', 'path'],
    ]);
    return true;
  }

  // ---------------------------------------------------------------- WITHINDLG

  /**
   * Requests with a To-tag follow their Route set (loose_route) when its top entry is a Record-Route
   * of ours whose token verifies for this dialog, and only towards the dialog's other party. They
   * are not challenged or looked up. A Route we did not issue: 403; no Route at all: 404.
   */
  private withinDialog(ctx: Ctx): boolean | Promise<boolean> {
    const { req, src } = ctx;
    if (req.toTag() === undefined) return false;
    const check = this.d.proxy.checkDialogRoute(req);
    if (check.kind === 'none') {
      if (req.method === 'ACK') {
        // an ACK that matched no transaction (e.g. the ACK of a stateless 407): absorb it
        this.done(ctx, 'absorbed', 'ACK of a stateless reply');
        return true;
      }
      this.reply(ctx, 404, 'Not here');
      return true;
    }
    // a trusted peer may route through us along a route set of its own, as with preloaded Routes
    if (check.kind === 'foreign' && !this.d.trusted.has(src.address)) return this.deny(ctx, 'dialog-foreign-route', 'Forbidden (Route not issued here)');
    if (check.kind === 'bad') return this.deny(ctx, check.reason === 'no-token' ? 'dialog-no-token' : 'dialog-bad-token', 'Forbidden (Route not issued here)');
    this.d.proxy.processRoutes(req);
    const target = this.dialogFlowTarget(req);
    if (target === undefined && this.flowGone(req)) {
      // RFC 5626 §5.3: the connection this dialog's peer was reached over is gone
      if (req.method === 'ACK') this.done(ctx, 'dropped', 'in-dialog ACK: flow gone');
      else this.reply(ctx, 430, 'Flow Failed');
      return true;
    }
    if (check.kind === 'ours' && !this.d.trusted.has(src.address)) return this.dialogHopThenRelay(ctx, check.route, target);
    return this.dialogRelay(ctx, target);
  }

  /** An in-dialog request of a verified dialog from an untrusted source: only towards the dialog's other party. */
  private dialogHopThenRelay(ctx: Ctx, route: VerifiedRoute, target: ForwardTarget | undefined): boolean | Promise<boolean> {
    // (no async frame while the next hop is known at once)
    const hop = this.d.proxy.nextHop(ctx.req, target);
    return hop instanceof Promise ? hop.then((h) => this.dialogHopChecked(ctx, route, target, h)) : this.dialogHopChecked(ctx, route, target, hop);
  }

  private dialogHopChecked(ctx: Ctx, route: VerifiedRoute, target: ForwardTarget | undefined, hop: NextHop | undefined): boolean | Promise<boolean> {
    const { src } = ctx;
    if (hop !== undefined && !this.d.proxy.dialogAllows(route, src, hop.target.address, hop.target.port)) {
      return this.deny(ctx, 'dialog-hop', 'Forbidden (not a party of this dialog)');
    }
    // the next hop checked here is the one the request is then sent to (not looked up again)
    const next: ForwardTarget | undefined = hop === undefined ? target : target === undefined ? { q: null, hop } : { q: null, flow: target.flow!, hop };
    return this.dialogRelay(ctx, next);
  }

  /** loose_route's relay of an in-dialog request (an ACK statelessly). */
  private dialogRelay(ctx: Ctx, target: ForwardTarget | undefined): true | Promise<boolean> {
    const { req } = ctx;
    this.d.events.debug?.({ method: req.method, callId: req.callId(), flow: target?.flow?.connectionId }, 'in-dialog: loose route');
    if (req.method === 'ACK') {
      const relayed = this.d.proxy.relayStateless(req, target);
      return relayed instanceof Promise ? relayed.then(() => this.ackRelayed(ctx)) : this.ackRelayed(ctx);
    }
    this.relay(ctx, [target ?? { q: null }], false);
    return true;
  }

  private ackRelayed(ctx: Ctx): true {
    this.done(ctx, 'relayed', 'in-dialog ACK');
    return true;
  }

  /**
   * An in-dialog request whose route set is used up and whose Request-URI is a Contact registered
   * over a live flow (a browser phone's `….invalid` URI): it goes on that flow's connection.
   */
  private dialogFlowTarget(req: SipRequest): ForwardTarget | undefined {
    if (this.d.flows === undefined || req.has('route')) return undefined;
    const flow = this.d.flows.forContact(req.uriText);
    return flow === undefined ? undefined : { q: null, flow };
  }

  /**
   * A dialog-forming request from a connection whose Contact is `.invalid` (a browser phone that
   * calls out): the other party's in-dialog requests to that Contact must come back on this
   * connection, registered or not. Kept in the flow table (removed when the connection closes).
   */
  private noteCallerFlow(ctx: Ctx): void {
    const { req, src } = ctx;
    const flows = this.d.flows;
    if (flows === undefined || src.connectionId === undefined || !isConnectionOriented(src.transport)) return;
    let uri;
    try {
      uri = req.contacts().find((c): c is NameAddr => !isStar(c))?.uri;
    } catch {
      return;
    }
    if (uri === undefined || !isUnreachableContact(uri)) return;
    // a Contact already bound (registered, or learned from an earlier call) keeps its connection: a
    // caller naming someone else's Contact must not redirect that Contact's in-dialog requests to itself
    if (flows.forContact(uri.raw) !== undefined) return;
    const flow = { connectionId: src.connectionId, transport: src.transport, address: src.address, port: src.port, local: src.local };
    flows.bind({ ruid: `dialog:${src.connectionId}:${uri.raw}`, aor: '', contact: uri.raw, flow, onClose: 'keep' });
  }

  /** With flows kept: the route set is used up and the Request-URI is a `.invalid` Contact with no flow. */
  private flowGone(req: SipRequest): boolean {
    return this.d.flows !== undefined && !req.has('route') && isUnreachableContact(req.uri);
  }

  /** The relay policy refused the request: 403 (an ACK is dropped), counted by reason. */
  private deny(ctx: Ctx, reason: Denial, phrase: string): true {
    this.d.events.denied(reason);
    this.d.events.debug?.({ method: ctx.req.method, callId: ctx.req.callId(), src: ctx.src.address, reason }, 'relay denied');
    if (ctx.req.method === 'ACK') this.done(ctx, 'dropped', `relay denied: ${reason}`);
    else this.reply(ctx, 403, phrase);
    return true;
  }

  // ---------------------------------------------------------------- CANCEL

  /** CANCEL (§16.10): 200 to the CANCEL and cancel the INVITE's branches (none left once it was answered); 481 when nothing matches. */
  private cancel(ctx: Ctx): boolean {
    const { req, src } = ctx;
    if (req.method !== 'CANCEL') return false;
    const inv = this.d.tx.findInviteForCancel(req, src);
    // an INVITE already answered whose transaction ended (Timer L / I linger): it existed, 200 with nothing to cancel
    if (inv === undefined ? !this.d.tx.inviteAnswered(req, src) : !this.d.proxy.cancel(inv)) {
      this.reply(ctx, 481, 'Call/Transaction Does Not Exist');
      return true;
    }
    const st = this.d.tx.createServer(req, src);
    ctx.st = st;
    this.respond(ctx, buildResponse(req, 200, { toTag: this.d.toTag(req) }));
    return true;
  }

  /** An initial ACK (no To-tag) matching no transaction: nothing to do. */
  private strayAck(ctx: Ctx): boolean {
    if (ctx.req.method !== 'ACK') return false;
    this.done(ctx, 'dropped', 'stray ACK');
    return true;
  }

  // ---------------------------------------------------------------- AUTH

  /**
   * REGISTER → 401 (realm = To domain); requests from one of our domains → 407 (realm = From domain).
   * Trusted source IPs skip authentication. Credentials for our realm are removed before forwarding.
   */
  private authenticate(ctx: Ctx): boolean | Promise<boolean> {
    const { req, src } = ctx;
    if (this.d.auth === undefined || this.d.trusted.has(src.address)) return false;
    const isRegister = req.method === 'REGISTER';
    const realmUri = isRegister ? req.to()?.uri : req.from()?.uri;
    if (realmUri === undefined || !isSipUri(realmUri) || !this.d.isOurDomain(realmUri.host)) return false;
    const realm = realmUri.host;
    const kind = isRegister ? 'www' : 'proxy';
    const verdict = this.d.auth.verify(req, realm, kind);
    // synchronous when the credentials are cached: no Promise on that path
    return verdict instanceof Promise ? verdict.then((outcome) => this.authenticated(ctx, outcome, realm, kind)) : this.authenticated(ctx, verdict, realm, kind);
  }

  /** The verdict of authenticate(): true when it answered the request. */
  private authenticated(ctx: Ctx, outcome: AuthOutcome, realm: string, kind: 'www' | 'proxy'): boolean {
    const { req, src } = ctx;
    if (!outcome.ok) {
      if (outcome.response.status === 401 || outcome.response.status === 407) this.d.events.challenge(kind);
      if (outcome.reason !== 'no-credentials') this.d.events.authFailure(outcome.reason);
      this.sendStateless(ctx, outcome.response, `auth: ${outcome.reason}`);
      return true;
    }
    this.d.events.debug?.({ user: outcome.user, realm }, 'authenticated');
    ctx.user = outcome.user;
    if (req.method !== 'REGISTER') this.d.auth!.stripCredentials(req, realm);
    if (req.method === 'INVITE') {
      // an authenticated INVITE gets 100 Trying at once, before lookup and forwarding
      ctx.st = this.d.tx.createServer(req, src);
      ctx.st.respond(buildResponse(req, 100));
      this.d.events.response(100);
    }
    return false;
  }

  /**
   * An initial request with a Route set: the strict-route fix-up and our own entries first; if other
   * entries remain, a privileged request follows them, any other gets 403 (preloaded routes from
   * unknown senders are how an outsider picks a gateway or scans the network behind us).
   */
  private preloadedRoute(ctx: Ctx): boolean {
    const { req } = ctx;
    if (!req.has('route')) return false;
    this.d.proxy.processRoutes(req);
    if (!req.has('route')) return false;
    if (!this.privileged(ctx)) return this.deny(ctx, 'preloaded-route', 'Forbidden (preloaded Route not accepted)');
    this.relay(ctx, [{ q: null }]);
    return true;
  }

  /**
   * Not an open relay: an unprivileged initial request may only go to one of our domains (then the
   * registrar or the location lookup decide), or be a REGISTER sent to us; anything else gets 403.
   */
  private relayPolicy(ctx: Ctx): boolean {
    if (this.privileged(ctx)) return false;
    const { req } = ctx;
    const uri = req.uri;
    if (isSipUri(uri) && (this.d.isOurDomain(uri.host) || (req.method === 'REGISTER' && this.d.proxy.isSelf(uri)))) return false;
    return this.deny(ctx, 'foreign-target', 'Forbidden (not relaying)');
  }

  /** A Request-URI naming this server that is not one of our domains: nothing is registered there. */
  private toSelf(ctx: Ctx): boolean {
    const uri = ctx.req.uri;
    if (!isSipUri(uri) || this.d.isOurDomain(uri.host) || !this.d.proxy.isSelf(uri)) return false;
    this.reply(ctx, 404, 'Not Found', undefined, true);
    return true;
  }

  // ---------------------------------------------------------------- REGISTRAR / LOCATION

  /** save("location") for a REGISTER to us: true (a Promise of it) once answered; false when not a REGISTER for us. */
  private registrar(ctx: Ctx): boolean | Promise<boolean> {
    const { req, src } = ctx;
    if (req.method !== 'REGISTER') return false;
    const uri = req.uri;
    if (isSipUri(uri) && !this.d.isOurDomain(uri.host) && !this.d.proxy.isSelf(uri)) return false; // REGISTER for elsewhere: relay
    ctx.st ??= this.d.tx.createServer(req, src);
    // (no async frame of its own: the registrar's answer, at once when its store answers from memory)
    const res = this.d.registrar.register(req, src);
    if (res instanceof Promise) {
      return res.then((r) => {
        this.respond(ctx, r);
        return true;
      });
    }
    this.respond(ctx, res);
    return true;
  }

  /** A request for one of our domains without a user part: 484. */
  private addressIncomplete(ctx: Ctx): boolean {
    const uri = ctx.req.uri;
    if (!isSipUri(uri) || uri.user !== undefined || !this.d.isOurDomain(uri.host)) return false;
    this.reply(ctx, 484, 'Address Incomplete');
    return true;
  }

  /** lookup("location"): our domain → the AOR's bindings, 404 when there are none. */
  private location(ctx: Ctx): boolean | Promise<boolean> {
    const uri = ctx.req.uri;
    if (!isSipUri(uri) || !this.d.isOurDomain(uri.host)) return false;
    const aor = aorOf(uri);
    if (aor === null) {
      this.reply(ctx, 404, 'Not Found', undefined, true);
      return true;
    }
    const locations = this.d.locations;
    if (locations.lookupNow === undefined) return locations.lookup(aor).then((bindings) => this.located(ctx, aor, bindings), (e: unknown) => this.lookupFailed(ctx, e));
    let bindings: readonly Readonly<Binding>[];
    try {
      bindings = locations.lookupNow(aor);
    } catch (e) {
      return this.lookupFailed(ctx, e);
    }
    return this.located(ctx, aor, bindings);
  }

  /** The location lookup failed: 503 when the store is unavailable; anything else is an internal error (thrown). */
  private lookupFailed(ctx: Ctx, e: unknown): true {
    if (!isStoreUnavailable(e)) throw e;
    // db-only with the database down (or its pool full): come back later, not "server error"
    this.reply(ctx, 503, 'Service Unavailable (location store)', [retryAfterHeader()], true);
    return true;
  }

  /** lookup("location") once the AOR's bindings are known. */
  private located(ctx: Ctx, aor: string, bindings: readonly Readonly<Binding>[]): boolean {
    this.d.events.debug?.({ aor, contacts: bindings.length }, 'location lookup');
    if (bindings.length === 0) {
      this.reply(ctx, 404, 'Not Found', undefined, true);
      return true;
    }
    const targets: ForwardTarget[] = [];
    let failedFlows = 0;
    for (const b of bindings) {
      const t = flowTarget(b, this.d.flows);
      if (t === 'failed') failedFlows++;
      else if (t !== 'unreachable') targets.push(t);
    }
    if (targets.length === 0) {
      // RFC 5626 §5.3: the flow of every outbound binding is gone → 430 (the UA re-registers);
      // bindings only reachable over a connection that no longer exists → 480
      if (failedFlows > 0) this.reply(ctx, 430, 'Flow Failed', undefined, true);
      else this.reply(ctx, 480, 'Temporarily Unavailable', undefined, true);
      return true;
    }
    this.relay(ctx, targets);
    return true;
  }

  // ---------------------------------------------------------------- RELAY

  /** t_relay: stateful forwarding to the targets; Record-Route for dialog-forming requests. */
  private relay(ctx: Ctx, targets: ForwardTarget[], initial = true): void {
    const { req, src } = ctx;
    const recordRoute = initial && (req.method === 'INVITE' || req.method === 'SUBSCRIBE' || req.method === 'REFER');
    if (recordRoute) this.noteCallerFlow(ctx);
    ctx.st ??= this.d.tx.createServer(req, src);
    this.d.proxy.forward(ctx.st, req, targets, { recordRoute, privileged: this.privileged(ctx) });
    this.done(ctx, 'relayed', targets.length === 1 ? ONE_TARGET : `${targets.length} target(s)`);
  }

  // ---------------------------------------------------------------- replies

  /** Reply; stateless unless a transaction exists or `stateful` is asked (Kamailio send_reply after t_newtran). */
  private reply(ctx: Ctx, status: number, reason: string, headers?: ReadonlyArray<readonly [string, string]>, stateful = false): void {
    const res = buildResponse(ctx.req, status, { reason, toTag: this.d.toTag(ctx.req), headers });
    if (ctx.st === undefined && stateful) ctx.st = this.d.tx.createServer(ctx.req, ctx.src);
    if (ctx.st !== undefined) this.respond(ctx, res);
    else this.sendStateless(ctx, res, reason);
  }

  private respond(ctx: Ctx, res: SipResponse): void {
    ctx.st!.respond(res);
    this.d.events.response(res.status);
    this.done(ctx, res.status, res.reason);
  }

  private sendStateless(ctx: Ctx, res: SipResponse, why: string): void {
    this.d.tx.respondStateless(res, ctx.src);
    this.d.events.response(res.status);
    this.done(ctx, res.status, why);
  }

  private done(ctx: Ctx, result: number | 'relayed' | 'dropped' | 'absorbed', why: string): void {
    if (ctx.logged === true) return;
    ctx.logged = true;
    this.d.events.handled(ctx.req, ctx.src, result, why, performance.now() - ctx.t0);
  }
}

export function bindingTarget(b: Binding): ForwardTarget {
  return { uri: b.contact, path: b.path, received: b.received, q: b.q };
}

/**
 * The target of a binding given the flow table: with a live flow, sent on its connection; a binding
 * that needs a flow and has none is 'failed' (RFC 5626 flow binding — +sip.instance and reg-id —
 * registered over a connection-oriented transport) or 'unreachable' (a `.invalid` Contact). A
 * binding with Path follows its Path. Without a flow table: bindingTarget.
 */
export function flowTarget(b: Binding, flows: FlowTable | undefined): ForwardTarget | 'failed' | 'unreachable' {
  const base = bindingTarget(b);
  if (flows === undefined || (b.path !== undefined && b.path.length > 0)) return base;
  const flow = flows.forBinding(b);
  if (flow !== undefined) return { ...base, flow };
  const socketTransport = b.socket === undefined ? undefined : transportFromToken(b.socket.slice(0, Math.max(0, b.socket.indexOf(':'))));
  // registered over UDP (or unknown): `received` / the Contact, as ever
  if (socketTransport === undefined || !isConnectionOriented(socketTransport)) return base;
  if (b.instance !== undefined && b.regId !== undefined) return 'failed';
  try {
    if (isUnreachableContact(parseUri(b.contact))) return 'unreachable';
  } catch {
    /* an unparsable stored Contact: left to the proxy, as before */
  }
  return base;
}

/** Identity of a request's transaction (branch + sent-by + method), for the in-flight set. */
function txKey(req: SipRequest): string | undefined {
  try {
    const v = req.topVia();
    if (v?.branch === undefined) return undefined;
    return `${v.branch}|${v.host}:${v.port ?? ''}|${req.method}`;
  } catch {
    return undefined;
  }
}

export type { SipUri };
