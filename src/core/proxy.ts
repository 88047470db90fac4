import { createHash } from 'node:crypto';
import {
  buildResponse, formatHost, hostAddress, isSipUri, isStar, parseSipUri, splitList, MAGIC_COOKIE,
  type NameAddr, type SipRequest, type SipResponse, type SipUri,
} from '../sip/index.js';
import type { ClientTransaction, ServerTransaction, TransactionLayer } from '../transaction/types.js';
import type { LocalEndpoint, Source, Target, TransportLayer, TransportName } from '../transport/types.js';
import { isIP } from 'node:net';
import { normaliseAddress } from '../transport/common.js';
import { BRANCH_MAC_LEN, hopKey, RouteTokens, TOKEN_PARAM, type DialogParties, type VerifiedRoute } from './route-token.js';

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
}

export interface ProxyDeps {
  tx: TransactionLayer;
  transport: Pick<TransportLayer, 'send' | 'endpoints' | 'endpointFor' | 'resolve'>;
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

interface Branch {
  ct: ClientTransaction | undefined;
  done: boolean;
  final: SipResponse | undefined;
}

/**
 * The stateful proxy of RFC 3261 §16: request forwarding (§16.6), response context and forking (§16.7),
 * CANCEL (§16.10), Record-Route and loop detection.
 */
export class Proxy {
  /** response contexts by server transaction id (for CANCEL). */
  private readonly contexts = new Map<string, ResponseContext>();

  /**
   * Debug log sink, undefined when debug is off: call it as `debug?.(...)` so that the log object
   * is not even built then (several calls are on the per-request path).
   */
  readonly debug: ProxyDeps['debug'];

  constructor(private readonly d: ProxyDeps) {
    this.debug = d.debug;
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
    for (let i = 0; i < 2; i++) {
      const routes = req.routes();
      const top = routes[0];
      if (top === undefined || !isSipUri(top.uri) || !this.isSelf(top.uri)) break;
      req.removeFirstValue('route');
      removed = true;
    }
    return removed;
  }

  // ------------------------------------------------------------------ loops (§16.3 step 4)

  /** Hash of the fields that identify a request at this hop; it is part of our branch (§16.6 step 8). */
  loopHash(req: SipRequest): string {
    const h = createHash('md5');
    h.update(req.uriText);
    h.update('\0' + (req.fromTag() ?? ''));
    h.update('\0' + (req.toTag() ?? ''));
    h.update('\0' + (req.callId() ?? ''));
    h.update('\0' + (req.cseq()?.seq ?? ''));
    h.update('\0' + req.headerValues('proxy-require').join(','));
    h.update('\0' + req.headerValues('route').join(','));
    return h.digest('hex').slice(0, 16);
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

  /** Stateless relay (ACK for 2xx): Via, Max-Forwards, no transaction. */
  async relayStateless(req: SipRequest, target: ForwardTarget | undefined): Promise<void> {
    const out = req.clone();
    if (target?.uri !== undefined) out.setUri(target.uri);
    decrementMaxForwards(out);
    const hop = await this.nextHop(out, target);
    if (hop === undefined) return;
    // a stateless relay uses a branch derived from the incoming one, so retransmissions get the same branch
    const inBranch = req.topVia()?.branch ?? '';
    const branch = MAGIC_COOKIE + 'sl' + createHash('md5').update(inBranch + req.method).digest('hex').slice(0, 16);
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

  /** Where the request goes next: first Route, else the NAT address of the binding, else the Request-URI. */
  async nextHop(req: SipRequest, target: ForwardTarget | undefined): Promise<{ target: Target; local: LocalEndpoint } | undefined> {
    let uri: SipUri | undefined;
    const routes = req.routes();
    if (routes.length > 0 && isSipUri(routes[0]!.uri)) uri = routes[0]!.uri;
    else if (target?.received !== undefined) uri = parseSipUri(target.received);
    else if (isSipUri(req.uri)) uri = req.uri;
    if (uri === undefined) return undefined;
    // maddr is never obeyed: a URI of someone else's choosing must not redirect us (issue 8)
    const host = uri.host;
    const tp = uri.params.get('transport')?.toLowerCase();
    // a transport sipd does not serve (tls, sctp) is no next hop: never downgraded to cleartext TCP
    // or UDP (RFC 3261 §26.2.2 for tls; the branch fails like an unresolvable one). ws/wss are served
    // when a listener exists (resolve finds none otherwise); they only reach open connections.
    if (tp !== undefined && tp !== 'udp' && tp !== 'tcp' && tp !== 'ws' && tp !== 'wss') {
      this.debug?.({ transport: tp }, 'next hop needs a transport sipd does not serve: not sent');
      return undefined;
    }
    const transport: TransportName | undefined = tp;
    const targets = await this.d.transport.resolve(host, uri.port, transport, uri.scheme === 'sips');
    let t = targets[0];
    if (t === undefined) return undefined;
    // §18.1.1: a request larger than 1300 bytes (MTU - 200) over UDP with no transport chosen goes over TCP
    if (transport === undefined && t.transport === 'udp' && req.body.length + 800 > 1300) {
      const tcpEp = this.d.transport.endpointFor('tcp', t.address.includes(':') ? 6 : 4);
      if (tcpEp !== undefined) t = { ...t, transport: 'tcp' };
    }
    const local = this.d.transport.endpointFor(t.transport, t.address.includes(':') ? 6 : 4);
    if (local === undefined) return undefined;
    // never to ourselves: a URI naming sipd's own address and port would only bounce back out
    if (this.isOwnAddress(t.address, t.port)) {
      this.debug?.({ address: t.address, port: t.port }, 'next hop is this server: not sent');
      return undefined;
    }
    return { target: { ...t, local }, local };
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
  async prepareBranch(
    req: SipRequest,
    target: ForwardTarget,
    opts: ForwardOptions,
    src: Source,
  ): Promise<{ out: SipRequest; branch: string; hop: { target: Target; local: LocalEndpoint } } | undefined> {
    const inbound = src.local;
    const out = req.clone();
    if (target.uri !== undefined) out.setUri(target.uri);
    if (target.path !== undefined && target.path.length > 0) {
      // the binding's Path becomes the (pre-loaded) route set, in order
      for (let i = target.path.length - 1; i >= 0; i--) out.addHeader('route', target.path[i]!, 'before');
    }
    decrementMaxForwards(out);
    const hop = await this.nextHop(out, target);
    if (hop === undefined) return undefined;
    if (opts.recordRoute) {
      const outEp = hop.local;
      const token = this.d.routeTokens.issue(req.callId() ?? '', req.fromTag() ?? '', this.dialogParties(req, src, target, hop.target, opts.privileged));
      out.addHeader('record-route', recordRouteFor(inbound, token), 'before');
      if (outEp.transport !== inbound.transport || outEp.address !== inbound.address || outEp.port !== inbound.port) {
        out.addHeader('record-route', recordRouteFor(outEp, token), 'before');
      }
    }
    // the Via itself is added by the client transaction, with this branch (§16.6 step 8: loop hash +
    // unique part), signed so that a stray 2xx can be told from a forged one (strayResponse)
    const unique = `${this.loopHash(req)}.${this.d.random()}`;
    const branch = `${MAGIC_COOKIE}sd${unique}${this.d.routeTokens.branchMac(unique)}`;
    return { out, branch, hop };
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

/** The response context of §16.7 for one server transaction. */
class ResponseContext {
  private groupIndex = -1;
  private branches: Branch[] = [];
  private finalSent = false;
  private cancelled = false;
  private readonly all: SipResponse[] = [];
  private best: SipResponse | undefined;

  constructor(
    private readonly p: Proxy,
    private readonly st: ServerTransaction,
    private readonly req: SipRequest,
    private readonly groups: ForwardTarget[][],
    private readonly opts: ForwardOptions,
  ) {}

  start(): void {
    this.nextGroup();
  }

  private localResponse(status: number): SipResponse {
    return local(buildResponse(this.req, status, { toTag: this.p.deps.random() }));
  }

  private nextGroup(): void {
    this.groupIndex++;
    const group = this.groups[this.groupIndex];
    if (group === undefined || this.cancelled) {
      this.finish();
      return;
    }
    // a later group (serial forking) may run past the guard the transaction keeps for a TU that
    // never answers: tell it we are still at work
    if (this.groupIndex > 0) this.st.keepAlive?.();
    const pending = group.map(() => ({ ct: undefined, done: false, final: undefined }) as Branch);
    this.branches = pending;
    group.forEach((t, i) => {
      void this.startBranch(t, pending[i]!);
    });
  }

  private async startBranch(target: ForwardTarget, b: Branch): Promise<void> {
    let prepared;
    try {
      prepared = await this.p.prepareBranch(this.req, target, this.opts, this.st.source);
    } catch {
      prepared = undefined;
    }
    if (this.cancelled || this.finalSent) {
      this.branchDone(b, undefined);
      return;
    }
    if (prepared === undefined) {
      this.p.debug?.({ uri: target.uri ?? this.req.uriText }, 'no route to target');
      this.branchDone(b, this.localResponse(503));
      return;
    }
    this.p.debug?.({ target: prepared.hop.target, branch: prepared.branch }, 'forwarding');
    b.ct = this.p.deps.tx.createClient(
      prepared.out,
      prepared.hop.target,
      {
        provisional: (res) => this.onProvisional(res),
        final: (res) => this.onFinal(res, b),
        timeout: () => this.branchDone(b, this.localResponse(408)),
        transportError: () => this.branchDone(b, this.localResponse(503)),
      },
      { branch: prepared.branch, viaParams: ';rport' },
    );
  }

  private onProvisional(res: SipResponse): void {
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

  private onFinal(res: SipResponse, b: Branch): void {
    if (!hasViaBelowOurs(res)) {
      // the branch has its final (its client transaction is done) but it cannot be passed on: the
      // branch counts as failed with a 502 of our own, so that the caller still gets a final
      this.invalid(res);
      this.branchDone(b, this.localResponse(502));
      return;
    }
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

  private branchDone(b: Branch, res: SipResponse | undefined): void {
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

  private finish(): void {
    if (this.finalSent) return;
    this.finalSent = true;
    this.p.pending--;
    let res: SipResponse;
    if (this.best === undefined) res = this.localResponse(this.cancelled ? 487 : 480);
    else {
      res = this.best.clone();
      // a response received from downstream carries our Via on top; one we built carries only the upstream ones
      if (!LOCAL.has(this.best)) res.removeFirstValue('via');
    }
    if (res.status === 503) res.setStatus(500, 'Server Internal Error'); // §16.7 step 6
    if (res.status === 401 || res.status === 407) mergeChallenges(res, this.all);
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
export function recordRouteFor(ep: LocalEndpoint, token?: string): string {
  return `<sip:${ep.advertise}:${ep.port}${ep.transport === 'tcp' ? ';transport=tcp' : ''};lr${token !== undefined ? `;${TOKEN_PARAM}=${token}` : ''}>`;
}

/** Does the response carry a Via besides ours (the top one)? Only then can it be forwarded. */
function hasViaBelowOurs(res: SipResponse): boolean {
  try {
    return res.listValues('via').length >= 2;
  } catch {
    return false;
  }
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
  return `SIP/2.0/${transport.toUpperCase()} ${ep.advertise}:${ep.port};branch=${branch};rport`;
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
