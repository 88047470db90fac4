import { hash } from 'node:crypto';
import {
  buildResponse, formatHost, hostAddress, isSipUri, isStar, parseSipUri, splitList, MAGIC_COOKIE,
  type NameAddr, type SipRequest, type SipResponse, type SipUri,
} from '../sip/index.js';
import type { ClientCallbacks, ClientTransaction, ServerTransaction, TransactionLayer } from '../transaction/types.js';
import type { LocalEndpoint, Source, Target, TransportLayer, TransportName } from '../transport/types.js';
import { isIP } from 'node:net';
import { normaliseAddress } from '../transport/common.js';
import { isReliable, isSecure, TRANSPORT_INFO, transportFromToken } from '../transport/transport.js';
import type { Flow } from './flows.js';
import { BRANCH_MAC_LEN, hopKey, RouteTokens, TOKEN_PARAM, type DialogParties, type VerifiedRoute } from './route-token.js';
import {
  FORWARD, MAX_FAILURE_ROUNDS, MAX_RETRY_TARGETS,
  type BranchInfo, type FailureStep, type FailureVerdict, type ReplyStep, type ResponseSteps,
} from './response-steps.js';

/** One destination of a forwarded request (a location binding, or the Request-URI itself). */
export interface ForwardTarget {
  /** new Request-URI; undefined keeps the current one. */
  readonly uri?: string;
  /** Path of the binding (RFC 3327): becomes the Route set of the forwarded request. */
  readonly path?: readonly string[];
  /** where to send instead of resolving the URI (NAT: the registered source address), as a SIP URI. */
  readonly received?: string;
  /** q-value (null = 1.0). */
  readonly q: number | null;
  /**
   * the open connection the binding registered over (RFC 5626 flow, ./flows.ts): sent on it, to its
   * peer address and port, instead of resolving the URI. A Route (the binding's Path) comes first.
   */
  readonly flow?: Flow;
  /**
   * the next hop of this target, found already for this very request (an in-dialog request whose
   * next hop the relay policy checked): forwarding sends there instead of finding it again.
   */
  readonly hop?: NextHop;
}

/** Where a request goes next: the target and the local endpoint it leaves from. */
export interface NextHop {
  readonly target: Target;
  readonly local: LocalEndpoint;
}

export interface ProxyDeps {
  tx: TransactionLayer;
  transport: Pick<TransportLayer, 'send' | 'endpoints' | 'endpointFor' | 'resolve' | 'resolveNow'>;
  /** unique branch suffix generator (randomness injected). */
  random: () => string;
  /** log hook for routing decisions. */
  debug?: (obj: Record<string, unknown>, msg: string) => void;
  /** called with every response the proxy sends upstream. */
  onResponse?: (status: number) => void;
  /** integrity tokens for our Record-Route URIs (keyed with the auth secret). */
  routeTokens: RouteTokens;
  /**
   * the host's own IP addresses (normalised), for "is this next hop sipd itself?" when a listener is
   * bound to a wildcard address; loopback addresses always count. Default: none besides loopback.
   */
  localAddresses?: () => ReadonlySet<string>;
  /** the response side of the pipeline (reply and failure steps, response-steps.ts); default none. */
  steps?: ResponseSteps;
}

/** What the top Route (or a strict router's Request-URI) of an in-dialog request says about us. */
export type DialogRouteCheck =
  /** no Route at all, and the Request-URI is not a Record-Route URI of ours */
  | { readonly kind: 'none' }
  /** the top Route names another host: we did not issue it */
  | { readonly kind: 'foreign' }
  /** the top Route names us but carries no valid token */
  | { readonly kind: 'bad'; readonly reason: 'no-token' | 'malformed' | 'forged' }
  | { readonly kind: 'ours'; readonly route: VerifiedRoute };

/** Who asked for a request to be forwarded, as the routing policy decided it. */
export interface ForwardOptions {
  /** Record-Route (dialog-forming requests). */
  readonly recordRoute: boolean;
  /** the caller authenticated as one of our subscribers or is trusted (see route-token.ts). */
  readonly privileged: boolean;
}

/** One branch of a response context; it is also the callbacks of its client transaction (no closures per branch). */
class Branch implements ClientCallbacks {
  ct: ClientTransaction | undefined = undefined;
  done = false;
  /** what the reply steps are told about it (set once it was sent). */
  info: BranchInfo | undefined = undefined;

  constructor(private readonly rc: ResponseContext) {}

  provisional(res: SipResponse): void {
    this.rc.onProvisional(res, this);
  }

  final(res: SipResponse): void {
    this.rc.onFinal(res, this);
  }

  timeout(): void {
    this.rc.branchDone(this, this.rc.localResponse(408));
  }

  transportError(): void {
    this.rc.branchTransportError(this);
  }
}

const NO_REPLY_STEPS: readonly ReplyStep[] = [];
const NO_FAILURE_STEPS: readonly FailureStep[] = [];

/**
 * The stateful proxy of RFC 3261 §16: request forwarding (§16.6), response context and forking (§16.7),
 * CANCEL (§16.10), Record-Route and loop detection.
 */
export class Proxy {
  /** response contexts by server transaction id (for CANCEL). */
  private readonly contexts = new Map<string, ResponseContext>();
  /** requests whose double Record-Route entries were popped: the endpoint named by the second (see processRoutes). */
  private readonly leaveSide = new WeakMap<SipRequest, LocalEndpoint>();

  /**
   * Debug log sink, undefined when debug is off: call it as `debug?.(...)` so that the log object
   * is not even built then (several calls are on the per-request path).
   */
  readonly debug: ProxyDeps['debug'];

  /** reply steps (onreply_route), in order. */
  readonly replySteps: readonly ReplyStep[];
  /** failure steps (failure_route), in order. */
  readonly failureSteps: readonly FailureStep[];

  constructor(private readonly d: ProxyDeps) {
    this.debug = d.debug;
    this.replySteps = d.steps?.reply ?? NO_REPLY_STEPS;
    this.failureSteps = d.steps?.failure ?? NO_FAILURE_STEPS;
  }

  get activeContexts(): number {
    return this.contexts.size;
  }

  /** forwarded requests still waiting for a final response (graceful shutdown waits for these). */
  pending = 0;

  // ------------------------------------------------------------------ "is it us?"

  /** A URI that names this proxy (one of our sockets): Route processing, strict-route fix-up, loops. */
  isSelf(uri: SipUri): boolean {
    const port = uri.port ?? (uri.scheme === 'sips' ? 5061 : 5060);
    for (const ep of this.d.transport.endpoints()) {
      if (ep.port !== port) continue;
      if (uri.host === ep.advertise.toLowerCase() || uri.host === formatHost(ep.address).toLowerCase()) return true;
    }
    return false;
  }

  /**
   * Route processing of §16.4: strict-route fix-up (Request-URI is one of our Record-Route values),
   * then remove our own entries from the top of Route (one, or two after double Record-Route).
   * Returns true when the request was routed through us: the strict-route fix-up was applied, or at
   * least one of our entries was removed (loose routing).
   */
  processRoutes(req: SipRequest): boolean {
    let removed = false;
    const ruri = req.uri;
    if (isSipUri(ruri) && this.isSelf(ruri) && ruri.user === undefined && req.has('route')) {
      // strict router upstream (RFC 2543): the real Request-URI is the last Route value
      const all = req.listValues('route');
      const last = all[all.length - 1]!;
      const na = parseRouteUri(last);
      if (na !== undefined) {
        req.setUri(na);
        removeLastRoute(req);
        removed = true;
      }
    }
    const popped: SipUri[] = [];
    for (let i = 0; i < 2; i++) {
      const routes = req.routes();
      const top = routes[0];
      if (top === undefined || !isSipUri(top.uri) || !this.isSelf(top.uri)) break;
      req.removeFirstValue('route');
      popped.push(top.uri);
      removed = true;
    }
    // double Record-Route (RFC 5658): the second of our entries names the side the request leaves
    // on; like Kamailio's loose_route with r2=on, it picks the transport and socket of the next hop
    const side = popped.length === 2 ? this.endpointNamed(popped[1]!) : undefined;
    if (side !== undefined) this.leaveSide.set(req, side);
    return removed;
  }

  /** The local endpoint a Record-Route URI of ours names (transport parameter, host, port). */
  private endpointNamed(uri: SipUri): LocalEndpoint | undefined {
    const tp = uri.params.get('transport');
    const transport = tp === undefined || tp === null ? URI_DEFAULT_TRANSPORT : transportFromToken(tp);
    if (transport === undefined) return undefined;
    const port = uri.port ?? TRANSPORT_INFO[transport].defaultPort;
    return this.d.transport
      .endpoints()
      .find((ep) => ep.transport === transport && ep.port === port && (uri.host === ep.advertise.toLowerCase() || uri.host === formatHost(ep.address).toLowerCase()));
  }

  // ------------------------------------------------------------------ loops (§16.3 step 4)

  /** Hash of the fields that identify a request at this hop; it is part of our branch (§16.6 step 8). */
  loopHash(req: SipRequest): string {
    // one string, one one-shot hash (UTF-8, as Hash.update(string) hashed it before)
    const text = `${req.uriText}\0${req.fromTag() ?? ''}\0${req.toTag() ?? ''}\0${req.callId() ?? ''}\0${req.cseq()?.seq ?? ''}\0${joinedValues(req, 'proxy-require')}\0${joinedValues(req, 'route')}`;
    return hash('md5', text, 'hex').slice(0, 16);
  }

  /** true when a Via we added carries the same loop hash: the request came back unchanged (482). */
  isLoop(req: SipRequest): boolean {
    const vias = req.vias();
    let hash: string | undefined;
    for (const v of vias) {
      if (v.branch === undefined || !v.branch.startsWith(MAGIC_COOKIE + 'sd')) continue;
      const port = v.port ?? 5060;
      const ours = this.d.transport.endpoints().some((ep) => ep.port === port && (v.host === ep.advertise.toLowerCase() || v.host === formatHost(ep.address)));
      if (!ours) continue;
      hash ??= this.loopHash(req);
      if (v.branch.slice(MAGIC_COOKIE.length + 2, MAGIC_COOKIE.length + 18) === hash) return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ forwarding

  /**
   * Forward `req` statefully to the targets (§16.6), forking by q-value groups (§16.7).
   * Responses go back through `st`. `recordRoute` adds Record-Route (double when the transport or socket changes).
   */
  forward(st: ServerTransaction, req: SipRequest, targets: readonly ForwardTarget[], opts: ForwardOptions): void {
    const groups = groupByQ(targets);
    const ctx = new ResponseContext(this, st, req, groups, opts);
    this.pending++;
    if (req.method === 'INVITE') {
      this.contexts.set(st.id, ctx);
      st.onTerminated(() => this.contexts.delete(st.id));
    }
    ctx.start();
  }

  /** CANCEL for a server INVITE transaction (§16.10): cancel every pending branch. */
  cancel(st: ServerTransaction): boolean {
    const ctx = this.contexts.get(st.id);
    if (ctx === undefined) return false;
    ctx.cancelAll(true);
    return true;
  }

  /**
   * Stateless relay (ACK for 2xx): Via, Max-Forwards, no transaction. Done when it returns, or when
   * the Promise it returns settles (the next hop had to be looked up).
   */
  relayStateless(req: SipRequest, target: ForwardTarget | undefined): void | Promise<void> {
    const out = req.clone();
    if (target?.uri !== undefined) out.setUri(target.uri);
    decrementMaxForwards(out);
    const hop: HopResult | Promise<HopResult> =
      target?.hop !== undefined ? { ok: true, target: target.hop.target, local: target.hop.local } : this.findHop(out, target, needsSecure(req), this.leaveSide.get(req));
    if (hop instanceof Promise) return hop.then((h) => this.sendStatelessTo(req, out, h));
    this.sendStatelessTo(req, out, hop);
  }

  private sendStatelessTo(req: SipRequest, out: SipRequest, hop: HopResult): void {
    if (!hop.ok) return;
    // a stateless relay uses a branch derived from the incoming one, so retransmissions get the same branch
    const inBranch = req.topVia()?.branch ?? '';
    const branch = MAGIC_COOKIE + 'sl' + hash('md5', inBranch + req.method, 'hex').slice(0, 16);
    out.addHeader('via', viaFor(hop.local, hop.target.transport, branch), 'top');
    this.d.tx.sendStateless(out, hop.target);
  }

  /** Forward a response that matched no transaction (a 2xx retransmission): strip our Via, send to the next one. */
  strayResponse(res: SipResponse, send: (res: SipResponse) => void, dropped?: (reason: 'stray-foreign') => void): void {
    if (res.status < 200 || res.status >= 300) return;
    const top = res.topVia();
    if (top === undefined) return;
    const port = top.port ?? 5060;
    const ours = this.d.transport.endpoints().some((ep) => ep.port === port && (top.host === ep.advertise.toLowerCase() || top.host === formatHost(ep.address)));
    if (!ours || !this.isOurBranch(top.branch)) {
      // not a retransmission of a 2xx to a request we forwarded: forged, or sent to us by mistake
      this.debug?.({ status: res.status, branch: top.branch }, 'stray 2xx not of our making: dropped');
      dropped?.('stray-foreign');
      return;
    }
    res.removeFirstValue('via');
    if (!res.has('via')) return;
    send(res);
  }

  /** A branch of a request we forwarded statefully: `z9hG4bKsd` + loop hash + `.` + random + MAC. */
  isOurBranch(branch: string | undefined): boolean {
    const prefix = MAGIC_COOKIE + 'sd';
    if (branch === undefined || !branch.startsWith(prefix) || branch.length < prefix.length + 16 + 1 + BRANCH_MAC_LEN) return false;
    const unique = branch.slice(prefix.length, branch.length - BRANCH_MAC_LEN);
    return this.d.routeTokens.branchMac(unique) === branch.slice(branch.length - BRANCH_MAC_LEN);
  }

  /**
   * Where the request goes next: first Route, else the binding's flow (its connection), else the NAT
   * address of the binding, else the Request-URI.
   */
  nextHop(req: SipRequest, target: ForwardTarget | undefined): NextHop | undefined | Promise<NextHop | undefined> {
    const r = this.findHop(req, target, needsSecure(req), this.leaveSide.get(req));
    return r instanceof Promise ? r.then(okHop) : okHop(r);
  }

  /** Does sipd serve a secure transport (TLS, WSS) at all? Without one a `sips:` Request-URI gets 416. */
  servesSecure(): boolean {
    return this.d.transport.endpoints().some((ep) => isSecure(ep.transport));
  }

  /** Does sipd listen on this transport (a next hop over it can be sent)? */
  private serves(t: TransportName): boolean {
    return this.d.transport.endpoints().some((ep) => ep.transport === t);
  }

  /**
   * The next hop (see nextHop), or why there is none. `secure`: every hop must be secure (the
   * Request-URI the request arrived with is sips:, RFC 3261 §26.2.2); a sips: next-hop URI or one
   * asking for a secure transport requires it too. A secure hop is never replaced by a cleartext
   * one: `insecure` when no secure transport reaches the target, `no-route` for everything else.
   * `side`: the endpoint our second Record-Route entry names (in-dialog, double Record-Route): used
   * when the next-hop URI names no transport, so the request leaves on the side it was recorded for.
   */
  findHop(req: SipRequest, target: ForwardTarget | undefined, secure: boolean, side?: LocalEndpoint): HopResult | Promise<HopResult> {
    let uri: SipUri | undefined;
    const routes = req.routes();
    if (routes.length === 0 && target?.flow !== undefined) {
      const f = target.flow;
      if (secure && !isSecure(f.transport)) return INSECURE;
      return { ok: true, target: { transport: f.transport, address: f.address, port: f.port, connectionId: f.connectionId, local: f.local }, local: f.local };
    }
    if (routes.length > 0 && isSipUri(routes[0]!.uri)) uri = routes[0]!.uri;
    else if (target?.received !== undefined) uri = parseSipUri(target.received);
    else if (isSipUri(req.uri)) uri = req.uri;
    if (uri === undefined) return NO_ROUTE;
    // maddr is never obeyed: a URI of someone else's choosing must not redirect us (issue 8)
    const host = uri.host;
    const tp = uri.params.get('transport');
    let transport: TransportName | undefined;
    if (tp !== undefined && tp !== null) {
      transport = transportFromToken(tp);
      // a transport sipd knows nothing of (sctp): no next hop, never another transport instead
      if (transport === undefined) {
        this.debug?.({ transport: tp }, 'next hop needs a transport sipd does not know: not sent');
        return NO_ROUTE;
      }
    }
    const needSecure = secure || uri.scheme === 'sips' || (transport !== undefined && isSecure(transport));
    if (needSecure) {
      // sips: with transport=tcp means TLS over TCP (RFC 5630 §3.2); no secure form of UDP
      const t: TransportName | undefined = transport === undefined ? SIPS_DEFAULT_TRANSPORT : isSecure(transport) ? transport : SECURE_FORM[transport];
      if (t === undefined) {
        this.debug?.({ transport }, 'next hop must be secure but asks for a cleartext transport: not sent');
        return INSECURE;
      }
      transport = t;
      if (!this.serves(t)) {
        this.debug?.({ transport: t }, 'next hop must be secure and sipd does not serve its transport: not sent');
        return INSECURE;
      }
    } else if (transport === undefined && side !== undefined) transport = side.transport;
    // a transport sipd does not serve (no listener: ws without one) is no next hop: never another instead
    else if (transport !== undefined && !this.serves(transport)) {
      this.debug?.({ transport }, 'next hop needs a transport sipd does not serve: not sent');
      return NO_ROUTE;
    }
    // an IP literal is answered at once (no Promise, no async frame): the hop is known now
    const tp0 = transport;
    const now = this.d.transport.resolveNow?.(host, uri.port, tp0, uri.scheme === 'sips');
    if (now !== undefined) return this.pickHop(req, now, needSecure, tp0, side);
    return this.d.transport.resolve(host, uri.port, tp0, uri.scheme === 'sips').then((targets) => this.pickHop(req, targets, needSecure, tp0, side));
  }

  /** findHop's last step: the target out of the resolved ones, and the local endpoint it leaves from. */
  private pickHop(req: SipRequest, targets: Target[], needSecure: boolean, transport: TransportName | undefined, side: LocalEndpoint | undefined): HopResult {
    let t = needSecure ? targets.find((x) => isSecure(x.transport)) : targets[0];
    if (t === undefined) return needSecure ? INSECURE : NO_ROUTE;
    // §18.1.1: a request larger than 1300 bytes (MTU - 200) over UDP with no transport chosen goes over TCP
    if (transport === undefined && !isReliable(t.transport) && req.body.length + 800 > 1300) {
      const tcpEp = this.d.transport.endpointFor('tcp', t.address.includes(':') ? 6 : 4);
      if (tcpEp !== undefined) t = { ...t, transport: 'tcp' };
    }
    const family = t.address.includes(':') ? 6 : 4;
    const local = side !== undefined && side.transport === t.transport && endpointFamily(side) === family ? side : this.d.transport.endpointFor(t.transport, family);
    if (local === undefined) return needSecure ? INSECURE : NO_ROUTE;
    // never to ourselves: a URI naming sipd's own address and port would only bounce back out
    if (this.isOwnAddress(t.address, t.port)) {
      this.debug?.({ address: t.address, port: t.port }, 'next hop is this server: not sent');
      return NO_ROUTE;
    }
    const to: Target = t.connectionId === undefined ? { transport: t.transport, address: t.address, port: t.port, local } : { transport: t.transport, address: t.address, port: t.port, connectionId: t.connectionId, local };
    return { ok: true, target: to, local };
  }

  /** Is `address:port` one of our own listening sockets (wildcard listeners: any local address)? */
  isOwnAddress(address: string, port: number): boolean {
    const a = normaliseIp(address);
    for (const ep of this.d.transport.endpoints()) {
      if (ep.port !== port) continue;
      const epa = normaliseIp(ep.address);
      if (epa === a) return true;
      if ((epa === '0.0.0.0' || epa === '::') && (isLoopback(a) || (this.d.localAddresses?.().has(a) ?? false))) return true;
    }
    return false;
  }

  /**
   * The top Route of an in-dialog request (or the Request-URI a strict router put our Record-Route
   * URI into): ours with a token that verifies for this dialog, ours without one, someone else's, or none.
   */
  checkDialogRoute(req: SipRequest): DialogRouteCheck {
    const ruri = req.uri;
    let uri: SipUri;
    if (isSipUri(ruri) && this.isSelf(ruri) && ruri.user === undefined && req.has('route')) uri = ruri;
    else {
      const top = req.routes()[0];
      if (top === undefined) return { kind: 'none' };
      if (!isSipUri(top.uri) || !this.isSelf(top.uri)) return { kind: 'foreign' };
      uri = top.uri;
    }
    const token = uri.params.get(TOKEN_PARAM);
    if (token === undefined || token === null) return { kind: 'bad', reason: 'no-token' };
    const v = this.d.routeTokens.verify(token, req.callId() ?? '', [req.fromTag(), req.toTag()]);
    return v.ok ? { kind: 'ours', route: v } : { kind: 'bad', reason: v.reason };
  }

  /** May an in-dialog request of a verified dialog, received from `src`, be sent to `address:port`? */
  dialogAllows(route: VerifiedRoute, src: Source, address: string, port: number): boolean {
    const tokens = this.d.routeTokens;
    const sides = tokens.sidesOf(route, normaliseAddress(src.address));
    if (!sides.a && !sides.b) return false;
    return tokens.allows(route, sides, normaliseAddress(address), port);
  }

  /** The parties of the dialog a branch forms, for its Record-Route token (see route-token.ts). */
  private dialogParties(req: SipRequest, src: Source, target: ForwardTarget, sentTo: Target, privileged: boolean): DialogParties {
    const a = [hopKey(normaliseAddress(src.address), '*')];
    if (privileged) {
      // an authenticated caller's own Contact and upstream proxy: in-dialog requests towards it go there
      const rr = safe(() => req.recordRoutes()[0]?.uri);
      const ct = safe(() => req.contacts().find((c): c is NameAddr => !isStar(c))?.uri);
      for (const u of [rr, ct]) {
        const k = u !== undefined && isSipUri(u) ? literalHop(u) : undefined;
        if (k !== undefined) a.push(k);
      }
    }
    const to = normaliseAddress(sentTo.address);
    const b = [hopKey(to, '*'), hopKey(to, sentTo.port)];
    const contact = target.uri !== undefined ? safe(() => parseSipUri(target.uri!)) : undefined;
    const ck = contact !== undefined ? literalHop(contact) : undefined;
    if (ck !== undefined) b.push(ck);
    return { a, b, privilegedCaller: privileged };
  }

  /** Build the branch copy of the request for one target (§16.6 steps 1–8). Returns the hop to send to. */
  prepareBranch(
    req: SipRequest,
    target: ForwardTarget,
    opts: ForwardOptions,
    src: Source,
  ): PreparedBranch | NoHop | Promise<PreparedBranch | NoHop> {
    const secure = needsSecure(req);
    const side = this.leaveSide.get(req);
    const out = req.clone();
    if (target.uri !== undefined) out.setUri(target.uri);
    if (target.path !== undefined && target.path.length > 0) {
      // the binding's Path becomes the (pre-loaded) route set, in order
      for (let i = target.path.length - 1; i >= 0; i--) out.addHeader('route', target.path[i]!, 'before');
    }
    decrementMaxForwards(out);
    const hop: HopResult | Promise<HopResult> = target.hop !== undefined ? { ok: true, target: target.hop.target, local: target.hop.local } : this.findHop(out, target, secure, side);
    // (no async frame while the hop is known at once)
    return hop instanceof Promise ? hop.then((h) => this.branchTo(req, out, target, opts, src, h)) : this.branchTo(req, out, target, opts, src, hop);
  }

  /** prepareBranch once the hop is known. */
  private branchTo(req: SipRequest, out: SipRequest, target: ForwardTarget, opts: ForwardOptions, src: Source, hop: HopResult): PreparedBranch | NoHop {
    const inbound = src.local;
    if (!hop.ok) return hop;
    if (opts.recordRoute) {
      const outEp = hop.local;
      const token = this.d.routeTokens.issue(req.callId() ?? '', req.fromTag() ?? '', this.dialogParties(req, src, target, hop.target, opts.privileged));
      // double Record-Route (RFC 5658, Kamailio's enable_double_rr) when the request changes
      // transport or socket: one entry per side, the top one facing downstream, each with r2=on
      const double = outEp.transport !== inbound.transport || outEp.address !== inbound.address || outEp.port !== inbound.port;
      out.addHeader('record-route', recordRouteFor(inbound, token, double), 'before');
      if (double) out.addHeader('record-route', recordRouteFor(outEp, token, true), 'before');
    }
    // the Via itself is added by the client transaction, with this branch (§16.6 step 8: loop hash +
    // unique part), signed so that a stray 2xx can be told from a forged one (strayResponse)
    const unique = `${this.loopHash(req)}.${this.d.random()}`;
    const branch = `${MAGIC_COOKIE}sd${unique}${this.d.routeTokens.branchMac(unique)}`;
    return { ok: true, out, branch, hop };
  }


  get deps(): ProxyDeps {
    return this.d;
  }

  /** Send a response upstream through the server transaction. */
  sendUpstream(st: ServerTransaction, res: SipResponse): void {
    if (res.status >= 200 && res.status < 300 && (st.state === 'completed' || st.state === 'confirmed')) {
      // §16.7 step 5: a 2xx after a non-2xx final (e.g. our local 487 after CANCEL) is still forwarded;
      // the server transaction would drop it, so it goes statelessly
      this.d.tx.respondStateless(res, st.source);
    } else st.respond(res);
    this.d.onResponse?.(res.status);
  }
}

/** Why a branch got no next hop: none at all, or none that is secure where one must be. */
export type HopFailure = 'no-route' | 'insecure';

export type HopResult = { readonly ok: true; readonly target: Target; readonly local: LocalEndpoint } | NoHop;

interface PreparedBranch {
  readonly ok: true;
  readonly out: SipRequest;
  readonly branch: string;
  readonly hop: { readonly target: Target; readonly local: LocalEndpoint };
}

interface NoHop {
  readonly ok: false;
  readonly reason: HopFailure;
}
const NO_ROUTE: NoHop = { ok: false, reason: 'no-route' };

/** nextHop's answer for a findHop result. */
function okHop(r: HopResult): NextHop | undefined {
  return r.ok ? r : undefined;
}
const INSECURE: NoHop = { ok: false, reason: 'insecure' };

/** RFC 3263 §4.1: a sips: URI without a transport parameter is reached over TLS. */
const SIPS_DEFAULT_TRANSPORT: TransportName = 'tls';
/** the secure form of a cleartext transport a URI names (sips:…;transport=tcp is TLS); UDP has none here. */
const SECURE_FORM: Partial<Record<TransportName, TransportName>> = { tcp: 'tls', ws: 'wss' };

/** Every hop of this request must be secure: its Request-URI (as it reached us) is sips: (RFC 3261 §26.2.2). */
function needsSecure(req: SipRequest): boolean {
  const u = req.uri;
  return isSipUri(u) && u.scheme === 'sips';
}

/** The response context of §16.7 for one server transaction. */
class ResponseContext {
  private groupIndex = -1;
  private branches: Branch[] = [];
  private finalSent = false;
  private cancelled = false;
  private readonly all: SipResponse[] = [];
  private best: SipResponse | undefined;
  /** the q-groups still to try (failure steps append to it). */
  private readonly groups: ForwardTarget[][];
  /** branches started so far (BranchInfo.index). */
  private branchCount = 0;
  /** failure rounds retried so far. */
  private round = 0;
  /** the failure steps are being asked (async): nothing else may finish the context meanwhile. */
  private consulting = false;
  /** a branch found no secure next hop where one was required (answered 480 rather than 500). */
  private insecure = false;

  constructor(
    private readonly p: Proxy,
    private readonly st: ServerTransaction,
    private readonly req: SipRequest,
    groups: ForwardTarget[][],
    private readonly opts: ForwardOptions,
  ) {
    this.groups = groups;
  }

  start(): void {
    this.nextGroup();
  }

  localResponse(status: number): SipResponse {
    return local(buildResponse(this.req, status, { toTag: this.p.deps.random() }));
  }

  private nextGroup(): void {
    this.groupIndex++;
    const group = this.groups[this.groupIndex];
    if (group === undefined || this.cancelled) {
      // stay on the last group: targets a failure step adds are the next ones
      this.groupIndex = this.groups.length - 1;
      this.finish();
      return;
    }
    // a later group (serial forking) may run past the guard the transaction keeps for a TU that
    // never answers: tell it we are still at work
    if (this.groupIndex > 0) this.st.keepAlive?.();
    const pending: Branch[] = [];
    for (let i = 0; i < group.length; i++) pending.push(new Branch(this));
    this.branches = pending;
    for (let i = 0; i < group.length; i++) this.startBranch(group[i]!, pending[i]!);
  }

  /** Prepare and send one branch: at once when its hop is known without a lookup, else once it is. */
  private startBranch(target: ForwardTarget, b: Branch): void {
    let prepared: PreparedBranch | NoHop | Promise<PreparedBranch | NoHop>;
    try {
      prepared = this.p.prepareBranch(this.req, target, this.opts, this.st.source);
    } catch {
      prepared = NO_ROUTE;
    }
    if (prepared instanceof Promise) {
      prepared.then(
        (p) => this.branchPrepared(target, b, p),
        () => this.branchPrepared(target, b, NO_ROUTE),
      );
    } else this.branchPrepared(target, b, prepared);
  }

  private branchPrepared(target: ForwardTarget, b: Branch, prepared: PreparedBranch | NoHop): void {
    if (this.cancelled || this.finalSent) {
      this.branchDone(b, undefined);
      return;
    }
    if (!prepared.ok) {
      this.p.debug?.({ uri: target.uri ?? this.req.uriText, reason: prepared.reason }, 'no route to target');
      if (prepared.reason === 'insecure') this.insecure = true;
      this.branchDone(b, this.localResponse(503));
      return;
    }
    this.p.debug?.({ target: prepared.hop.target, branch: prepared.branch }, 'forwarding');
    if (this.p.replySteps.length > 0) b.info = { index: this.branchCount, target, sentTo: prepared.hop.target, request: prepared.out };
    this.branchCount++;
    // prepared.out is this branch's own copy: handed over (no second clone) unless a reply step
    // keeps it as the request as sent, which is without our Via
    b.ct = this.p.deps.tx.createClient(prepared.out, prepared.hop.target, b, { branch: prepared.branch, viaParams: ';rport', owned: b.info === undefined });
  }

  /** The branch's client transaction could not send. */
  branchTransportError(b: Branch): void {
    // a sips: request whose TLS hop cannot be reached (a phone registered over UDP with a plain
    // sip: contact has no TLS listener there): no secure route, 480 as for no TLS hop at all
    if (needsSecure(this.req)) this.insecure = true;
    this.branchDone(b, this.localResponse(503));
  }

  /** The reply steps for a response received on branch `b`: false when one of them dropped it (provisionals only). */
  private replySteps(res: SipResponse, b: Branch): boolean {
    const steps = this.p.replySteps;
    if (steps.length === 0 || b.info === undefined) return true;
    for (const step of steps) {
      let verdict;
      try {
        verdict = step.onReply({ request: this.req, branch: b.info, response: res });
      } catch (err) {
        this.p.debug?.({ step: step.name, err: String(err) }, 'reply step failed: response passed on');
        continue;
      }
      if (verdict === 'drop') {
        if (res.status < 200) {
          this.p.debug?.({ step: step.name, status: res.status }, 'provisional dropped by a reply step');
          return false;
        }
        this.p.debug?.({ step: step.name, status: res.status }, 'a final response cannot be dropped: passed on');
      }
    }
    return true;
  }

  onProvisional(res: SipResponse, b: Branch): void {
    if (!this.replySteps(res, b)) return;
    if (res.status === 100 || this.finalSent) return;
    if (!hasViaBelowOurs(res)) return this.invalid(res);
    const up = res.clone();
    up.removeFirstValue('via');
    this.p.sendUpstream(this.st, up);
  }

  /** §16.7 step 3: a response with no Via left after ours has nowhere to go: it is dropped. */
  private invalid(res: SipResponse): void {
    this.p.debug?.({ status: res.status, callId: res.callId() }, 'response without a Via below ours: dropped');
  }

  onFinal(res: SipResponse, b: Branch): void {
    if (!hasViaBelowOurs(res)) {
      // the branch has its final (its client transaction is done) but it cannot be passed on: the
      // branch counts as failed with a 502 of our own, so that the caller still gets a final
      this.invalid(res);
      this.branchDone(b, this.localResponse(502));
      return;
    }
    this.replySteps(res, b);
    if (res.status >= 200 && res.status < 300) {
      // every 2xx goes upstream at once (§16.7 step 5), and the other branches are cancelled
      const up = res.clone();
      up.removeFirstValue('via');
      if (!this.finalSent) this.p.pending--;
      this.finalSent = true;
      this.p.sendUpstream(this.st, up);
      b.done = true;
      this.cancelAll(false);
      return;
    }
    this.branchDone(b, res);
  }

  branchDone(b: Branch, res: SipResponse | undefined): void {
    if (b.done) return;
    b.done = true;
    if (res !== undefined) {
      this.all.push(res);
      if (res.status >= 600) {
        this.best = res;
        this.cancelAll(false);
      } else if (this.best === undefined || (this.best.status < 600 && rank(res.status) < rank(this.best.status))) this.best = res;
    }
    if (this.branches.every((x) => x.done)) {
      if (this.finalSent) return;
      if (this.best !== undefined && this.best.status >= 600) this.finish();
      else this.nextGroup();
    }
  }

  /** Cancel pending branches; `byCancel` is true for a CANCEL from upstream (the INVITE then ends with 487). */
  cancelAll(byCancel: boolean): void {
    if (byCancel) this.cancelled = true;
    for (const b of this.branches) {
      if (b.done) continue;
      if (b.ct === undefined || !b.ct.gotProvisional) {
        // nothing can be CANCELled yet (§9.1): the transaction sends CANCEL if a provisional arrives later
        b.ct?.cancel();
        if (byCancel) this.branchDone(b, this.localResponse(487));
        continue;
      }
      b.ct.cancel();
    }
  }

  /** The best final response as it goes upstream (before the 503 → 500 of §16.7 step 6). */
  private upstreamFinal(): SipResponse {
    let res: SipResponse;
    if (this.best === undefined) res = this.localResponse(this.cancelled ? 487 : 480);
    else if (this.insecure && this.best.status === 503 && LOCAL.has(this.best)) {
      // no branch answered and at least one target could not be reached securely: 480, as RFC 5630
      // §3.1.3 has it for a target that cannot be reached over TLS (not the 500 of a failed branch)
      res = this.localResponse(480);
      res.setStatus(480, 'Temporarily Unavailable (no secure route)');
    } else {
      res = this.best.clone();
      // a response received from downstream carries our Via on top; one we built carries only the upstream ones
      if (!LOCAL.has(this.best)) res.removeFirstValue('via');
    }
    if (res.status === 401 || res.status === 407) mergeChallenges(res, this.all);
    return res;
  }

  private finish(): void {
    if (this.finalSent || this.consulting) return;
    const res = this.upstreamFinal();
    if (this.cancelled || this.p.failureSteps.length === 0 || this.round >= MAX_FAILURE_ROUNDS) {
      this.sendFinal(res);
      return;
    }
    this.consulting = true;
    void this.consultFailureSteps(res, this.best === undefined || LOCAL.has(this.best)).then((targets) => {
      this.consulting = false;
      if (this.finalSent) return;
      if (this.cancelled) {
        this.sendFinal(this.localResponse(487));
        return;
      }
      if (targets.length === 0) {
        this.sendFinal(res);
        return;
      }
      this.round++;
      this.p.debug?.({ round: this.round, targets: targets.length }, 'failure step: new targets');
      this.groups.push(...groupByQ(targets));
      this.nextGroup();
    });
  }

  /** Ask the failure steps in order; the targets of the first that retries (none: forward). Never rejects. */
  private async consultFailureSteps(res: SipResponse, isLocal: boolean): Promise<readonly ForwardTarget[]> {
    const e = { request: this.req, response: res, local: isLocal, finals: [...this.all], round: this.round };
    for (const step of this.p.failureSteps) {
      let v: FailureVerdict;
      try {
        v = await step.onFailure(e);
      } catch (err) {
        this.p.debug?.({ step: step.name, err: String(err) }, 'failure step failed: response passed on');
        v = FORWARD;
      }
      if (v.action === 'retry' && v.targets.length > 0) return v.targets.slice(0, MAX_RETRY_TARGETS);
    }
    return [];
  }

  private sendFinal(res: SipResponse): void {
    if (this.finalSent) return;
    this.finalSent = true;
    this.p.pending--;
    if (res.status === 503) res.setStatus(500, 'Server Internal Error'); // §16.7 step 6
    this.p.sendUpstream(this.st, res);
  }
}

/** Responses the proxy built itself (timeouts, transport errors, local 487): they have no Via of ours to strip. */
const LOCAL = new WeakSet<SipResponse>();

function local(res: SipResponse): SipResponse {
  LOCAL.add(res);
  return res;
}

function mergeChallenges(res: SipResponse, all: readonly SipResponse[]): void {
  const www = new Set(res.headerValues('www-authenticate'));
  const prx = new Set(res.headerValues('proxy-authenticate'));
  for (const r of all) {
    if (r.status !== 401 && r.status !== 407) continue;
    for (const v of r.headerValues('www-authenticate')) if (!www.has(v)) {
      www.add(v);
      res.addHeader('WWW-Authenticate', v);
    }
    for (const v of r.headerValues('proxy-authenticate')) if (!prx.has(v)) {
      prx.add(v);
      res.addHeader('Proxy-Authenticate', v);
    }
  }
}

/** Preference among non-2xx finals (lower is better), §16.7 step 6. */
function rank(status: number): number {
  if (status >= 600) return 0;
  if (status === 401 || status === 407) return 1;
  if (status === 408) return 900;
  if (status === 503) return 800;
  if (status === 487) return 50;
  return status;
}

function groupByQ(targets: readonly ForwardTarget[]): ForwardTarget[][] {
  if (targets.length === 1) return [[targets[0]!]];
  const sorted = [...targets].sort((a, b) => (b.q ?? 1) - (a.q ?? 1));
  const groups: ForwardTarget[][] = [];
  let lastQ: number | undefined;
  for (const t of sorted) {
    const q = t.q ?? 1;
    if (groups.length === 0 || q !== lastQ) groups.push([]);
    groups[groups.length - 1]!.push(t);
    lastQ = q;
  }
  return groups;
}

export function decrementMaxForwards(req: SipRequest): void {
  const mf = req.maxForwards();
  req.setHeader('max-forwards', mf === undefined ? '70' : String(Math.max(0, mf - 1)));
}

/** Our Record-Route value for a listener, with the dialog's integrity token (route-token.ts). */
export function recordRouteFor(ep: LocalEndpoint, token?: string, double = false): string {
  return `<sip:${ep.advertise}:${ep.port}${transportParam(ep.transport)};lr${double ? ';r2=on' : ''}${token !== undefined ? `;${TOKEN_PARAM}=${token}` : ''}>`;
}

/**
 * The transport a sip: URI without a transport parameter is reached over (RFC 3263 §4.1 for a URI
 * with a numeric host or a port, which ours always have): our UDP entries carry none.
 */
const URI_DEFAULT_TRANSPORT: TransportName = 'udp';

/** `;transport=…` for a URI of ours on `t` (none for the URI default), from TRANSPORT_INFO. */
function transportParam(t: TransportName): string {
  return t === URI_DEFAULT_TRANSPORT ? '' : `;transport=${TRANSPORT_INFO[t].viaToken.toLowerCase()}`;
}

function endpointFamily(ep: LocalEndpoint): 4 | 6 {
  return isIP(ep.address) === 6 ? 6 : 4;
}

/** Does the response carry a Via besides ours (the top one)? Only then can it be forwarded. */
function hasViaBelowOurs(res: SipResponse): boolean {
  try {
    return res.listCount('via') >= 2;
  } catch {
    return false;
  }
}

/** req.headerValues(name).join(','), without the array when there are no such lines. */
function joinedValues(req: SipRequest, name: string): string {
  return req.has(name) ? req.headerValues(name).join(',') : '';
}

function safe<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function normaliseIp(a: string): string {
  return normaliseAddress(a);
}

function isLoopback(a: string): boolean {
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/** `IP|PORT` of a URI whose host is an IP literal (default port 5060, 5061 for sips:), else undefined. */
function literalHop(u: SipUri): string | undefined {
  const h = hostAddress(u.host);
  if (isIP(h) === 0) return undefined;
  return hopKey(normaliseAddress(h), u.port ?? (u.scheme === 'sips' ? 5061 : 5060));
}

export function viaFor(ep: LocalEndpoint, transport: TransportName, branch: string): string {
  return `SIP/2.0/${TRANSPORT_INFO[transport].viaToken} ${ep.advertise}:${ep.port};branch=${branch};rport`;
}

function parseRouteUri(value: string): string | undefined {
  const lt = value.indexOf('<');
  const gt = value.indexOf('>', lt + 1);
  if (lt === -1 || gt === -1) return value.split(';')[0];
  return value.slice(lt + 1, gt);
}

function removeLastRoute(req: SipRequest): void {
  const all = req.listValues('route');
  all.pop();
  req.removeHeader('route');
  for (const v of all) req.addHeader('route', v);
}
