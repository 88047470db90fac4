/**
 * Registrar (RFC 3261 §10.3), modelled on Kamailio's `registrar` save() over `usrloc`.
 *
 *   To → AOR (user unescaped once, host lower-cased, no port/params)  400 unless sip:/sips: with a user
 *   AOR domain served?                                                403 otherwise
 *   Contact: none → query; `*` → remove all (only alone, only with Expires: 0, else 400)
 *   per contact: expires param > Expires header > default; 0 removes; below min (non-zero) → 423
 *     with Min-Expires; above max → clamped; q 0..1 with up to 3 decimals (else 400)
 *   §10.3 step 7: same Call-ID and CSeq <= stored → that contact's update is ignored (out of
 *     order or repeated), newer state is never overwritten; another Call-ID replaces the binding
 *   RFC 5626: a contact with +sip.instance and reg-id replaces the binding with the same pair
 *   more than maxContacts bindings after the update → 503 Too Many Registered Contacts (no change)
 *   Path (RFC 3327) stored with each binding; echoed in the 200 when the UA sent Supported: path
 *     (Kamailio path_mode 1: stored either way)
 *   received (Kamailio fix_nated_register): with natReceived, the source address is stored for UDP
 *     REGISTERs, and for any transport when the Contact host:port differs from the source
 *     and always when the Contact cannot be reached otherwise (a `.invalid` host, an outbound flow)
 *   200 OK: every current binding as `Contact: <uri>;expires=<remaining>[;q=]`, plus Date
 *
 * Flows (RFC 5626 outbound; browser phones over WebSocket, phones behind NAT over TCP/TLS). A
 * REGISTER arriving over a connection-oriented transport (TRANSPORT_INFO.connectionOriented) is
 * bound to its connection in the process-local flow table (./flows.ts: ruid → connection id,
 * transport, peer address:port, local socket); the store keeps `received` and `socket`, as
 * Kamailio's usrloc does. Routing sends requests for the binding on that connection while it is
 * open (routing.ts). Not bound: a REGISTER with Path (its connection is the edge proxy's, and
 * requests follow the Path), and REGISTERs over UDP (a refresh over UDP drops an earlier flow).
 *   outbound processing: +sip.instance and reg-id with `Supported: outbound` → the 200 carries
 *     `Require: outbound` (§6); one binding per instance + reg-id, so two flows of one instance are
 *     two bindings; having passed a proxy that added no Path (more than one Via) → 439 (§6)
 *   connection closed (transport `connectionClosed` → `connectionClosed(id)`):
 *     - a flow binding (+sip.instance and reg-id) stays in the store until it expires or the UA
 *       re-registers over a new flow (RFC 5626 §4.4: the UA notices the failure and registers
 *       again); meanwhile routing skips it, and answers 430 Flow Failed when no other target is
 *       left (§5.3). (Kamailio's usrloc `handle_lost_tcp` removes every contact of a lost
 *       connection; RFC 5626 asks for the flow to fail instead, which is what this does.)
 *     - a binding that cannot be reached without the connection (`.invalid` Contact, or `received`
 *       set: the Contact is not where the REGISTER came from) is removed at once, as Kamailio's
 *       usrloc `handle_lost_tcp` does: nothing could deliver to it.
 *     - a Contact reachable as registered stays; routing falls back to it (a new connection).
 *   After a restart the table is empty: flow bindings from the database over a connection-oriented
 *   `socket` count as failed flows (430), `.invalid` ones as unreachable (skipped; Kamailio's
 *   `db_clean_tcp` drops such rows at start).
 *
 * Expiry: the registrar runs no timers. LocationStore.lookup() never returns expired bindings,
 * and the server calls `locations.expire(now)` periodically (config location.expire_interval) to
 * delete them from the store.
 *
 * Limits: a binding the location table cannot hold (a Call-ID, User-Agent, Path, +sip.instance, To
 * user or host longer than its column, see store/limits.ts) is refused with 400 naming the field
 * ("Bad Request (Call-ID too long)") before any change, rather than truncated or left for the database
 * to refuse later.
 *
 * Errors are values: parse errors become 400; a location store that is unavailable (StoreError
 * UNREACHABLE/BUSY: database down, query timeout, pool queue full) 503 with Retry-After; other store
 * failures 500; nothing is thrown.
 */
import {
  buildResponse,
  formatHost,
  isSipParseError,
  isSipUri,
  isStar,
  parseUri,
  unquote,
  uriEquals,
  type NameAddr,
  type SipRequest,
  type SipResponse,
  type Uri,
} from '../sip/index.js';
import { LOCATION_COLUMN_LENGTHS, LOCATION_INT_MAX, locationFieldProblem, type LocationColumn } from '../store/limits.js';
import type { Binding, LocationStore } from '../store/types.js';
import { isConnectionOriented, isSecure, transportFromToken } from '../transport/transport.js';
import type { LocalEndpoint } from '../transport/types.js';
import type { Flow, FlowTable, OnClose } from './flows.js';
import { deterministicToTag } from './tags.js';
import { isStoreUnavailable, retryAfterHeader } from './unavailable.js';

/** Where the REGISTER came from (a transport `Source` fits). */
export interface RegisterSource {
  readonly transport: string;
  readonly address: string;
  readonly port: number;
  /** the connection it arrived on (connection-oriented transports). */
  readonly connectionId?: number;
  readonly local: { readonly transport: string; readonly address: string; readonly port: number; readonly advertise?: string };
}

export interface RegistrarLogger {
  warn(obj: object, msg?: string): void;
}

export interface RegistrarOptions {
  locations: LocationStore;
  /** is this host (lower-case) one of our domains? */
  domains: (host: string) => boolean;
  /** seconds; a non-zero expiry below this gets 423 Interval Too Brief. */
  minExpires: number;
  defaultExpires: number;
  /** longer expiries are reduced to this. */
  maxExpires: number;
  /** most bindings per AOR; 0 = unlimited. */
  maxContacts: number;
  natReceived: boolean;
  /** clock, unix milliseconds. */
  now: () => number;
  newRuid: () => string;
  logger?: RegistrarLogger;
  /**
   * the flow table (RFC 5626): registrations over a connection are bound to it. Without it, no
   * flows are kept (and connectionClosed does nothing).
   */
  flows?: FlowTable;
}

/** Longest Contact URI accepted (Kamailio's location.contact column is VARCHAR(512)). */
export const MAX_CONTACT_LEN = LOCATION_COLUMN_LENGTHS.contact;

/** What a REGISTER calls the value stored in each location column (for the 400 reason phrase). */
const FIELD_NAMES: Record<LocationColumn, string> = {
  username: 'To user',
  domain: 'To host',
  contact: 'Contact URI',
  callid: 'Call-ID',
  user_agent: 'User-Agent',
  path: 'Path',
  received: 'source address',
  instance: '+sip.instance',
  socket: 'local socket',
  ruid: 'ruid',
  cseq: 'CSeq',
  reg_id: 'reg-id',
  flags: 'flags',
  cflags: 'cflags',
  methods: 'methods',
  expires: 'Expires',
  last_modified: 'time',
  q: 'q-value',
};

/**
 * The AOR of a SIP/SIPS URI as the location table keys it: `user@host`, the user unescaped once
 * (an escaped NUL stays in, so `null-%00-null` is not shortened), the host lower-cased, no
 * port or parameters. null for other schemes or a URI without user part.
 */
export function aorOf(uri: Uri): string | null {
  if (!isSipUri(uri) || uri.user === undefined || uri.user.length === 0) return null;
  return `${uri.user}@${uri.host}`;
}

class RegisterError extends Error {
  constructor(
    readonly status: number,
    readonly reasonPhrase: string,
    readonly headers: ReadonlyArray<readonly [string, string]> = [],
  ) {
    super(reasonPhrase);
  }
}

interface ContactUpdate {
  readonly contact: string;
  readonly parsed: Uri;
  /** seconds; 0 removes */
  readonly expires: number;
  readonly q: number | null;
  readonly instance: string | undefined;
  readonly regId: number | undefined;
  /** RFC 5626 outbound processing: +sip.instance and reg-id with `Supported: outbound`. */
  readonly outbound: boolean;
}

type Op = { kind: 'save'; binding: Binding; replaces?: string } | { kind: 'remove'; contact: string };

/** What step 3 (apply) works on: the REGISTER's validated parts. */
interface Apply {
  readonly aor: string;
  readonly username: string;
  readonly domain: string;
  readonly callId: string;
  readonly cseq: number;
  readonly now: number;
  readonly src: RegisterSource;
  readonly req: SipRequest;
  readonly path: string[];
  /** Contact: * (remove every binding) */
  readonly star: boolean;
  readonly updates: readonly ContactUpdate[];
}

const NO_UPDATES: readonly ContactUpdate[] = [];
const NO_BINDINGS: readonly Binding[] = [];

/** `tokens` has `want` (lower-case), case-insensitively. */
function hasToken(tokens: readonly string[], want: string): boolean {
  for (const t of tokens) if (t.toLowerCase() === want) return true;
  return false;
}

const Q_RE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;
const UINT32_MAX = 0xffffffff;

export class Registrar {
  constructor(private readonly o: RegistrarOptions) {}

  /**
   * Handle a REGISTER for one of our domains: the response to send, at once when the location store
   * answers from memory (lookupNow, saveNow, removeNow), else a Promise of it that always resolves.
   */
  register(req: SipRequest, src: RegisterSource): SipResponse | Promise<SipResponse> {
    const tag = registrarToTag(req);
    let res: SipResponse | Promise<SipResponse>;
    try {
      res = this.registerOrThrow(req, src, tag);
    } catch (e) {
      return this.failed(req, tag, e);
    }
    return res instanceof Promise ? res.catch((e: unknown) => this.failed(req, tag, e)) : res;
  }

  /** register() that throws (or rejects with) what failed() turns into a response. */
  private registerOrThrow(req: SipRequest, src: RegisterSource, tag: string): SipResponse | Promise<SipResponse> {
    const now = this.o.now();

    // 1. To → AOR
    const to = req.to();
    if (to === undefined) throw new RegisterError(400, 'Bad Request (missing To)');
    if (!isSipUri(to.uri)) throw new RegisterError(400, 'Bad Request (To must be a SIP or SIPS URI)');
    const aor = aorOf(to.uri);
    if (aor === null) throw new RegisterError(400, 'Bad Request (To without user part)');
    const username = to.uri.user!;
    const domain = to.uri.host;
    if (!this.o.domains(domain)) throw new RegisterError(403, 'Forbidden (domain not served here)');

    const callId = req.callId();
    const cseq = req.cseq();
    if (callId === undefined || cseq === undefined) throw new RegisterError(400, 'Bad Request (missing Call-ID or CSeq)');

    // 2. validate everything before touching the store
    const contacts = req.contacts();
    const headerExpires = req.expires();
    const pathValues = req.listValues('path');
    if (pathValues.length > 0) req.paths(); // throws on a malformed Path
    const star = contacts.find(isStar);
    const supported = req.tokens('supported');
    const supportsOutbound = hasToken(supported, 'outbound');
    let updates: readonly ContactUpdate[] = NO_UPDATES;
    /** some update does RFC 5626 outbound processing (and does not remove its binding) */
    let outbound = false;
    if (star !== undefined) {
      if (contacts.length !== 1) throw new RegisterError(400, 'Bad Request (* must be the only Contact)');
      if (headerExpires !== 0) throw new RegisterError(400, 'Bad Request (* requires Expires: 0)');
    } else {
      const list = new Array<ContactUpdate>(contacts.length);
      let tooBrief = false;
      for (let i = 0; i < contacts.length; i++) {
        const u = this.contactUpdate(contacts[i] as NameAddr, headerExpires, supportsOutbound);
        list[i] = u;
        if (u.expires !== 0 && u.expires < this.o.minExpires) tooBrief = true;
        if (u.outbound && u.expires !== 0) outbound = true;
      }
      updates = list;
      if (tooBrief) throw new RegisterError(423, 'Interval Too Brief', [['Min-Expires', String(this.o.minExpires)]]);
      // RFC 5626 §6: an outbound registration that passed a proxy without Path cannot have its flow
      // at the first hop (here): 439
      if (outbound && pathValues.length === 0 && req.vias().length > 1) {
        throw new RegisterError(439, 'First Hop Lacks Outbound Support');
      }
    }

    // 3. apply: at once when the store answers from memory, else waiting on each of its calls
    const a: Apply = { aor, username, domain, callId, cseq: cseq.seq, now, src, req, path: pathValues, star: star !== undefined, updates };
    const l = this.o.locations;
    if (l.lookupNow !== undefined && l.saveNow !== undefined && l.removeNow !== undefined) {
      return this.ok(req, tag, a, this.applyNow(a, l as LocationStore & Required<Pick<LocationStore, 'lookupNow' | 'saveNow' | 'removeNow'>>), supported, outbound);
    }
    return this.apply(a).then((bindings) => this.ok(req, tag, a, bindings, supported, outbound));
  }

  /** Step 3 with a store that answers at once (the same steps as apply()). */
  private applyNow(a: Apply, l: Required<Pick<LocationStore, 'lookupNow' | 'saveNow' | 'removeNow'>>): readonly Readonly<Binding>[] {
    const { aor } = a;
    let bindings = l.lookupNow(aor);
    const before = bindings;
    const saved: Binding[] = [];
    if (a.star) {
      for (const b of bindings) {
        // §10.3 step 6: a binding of the same Call-ID is only removed by a higher CSeq
        if (b.callId === a.callId && a.cseq <= b.cseq) continue;
        l.removeNow(aor, b.contact);
      }
      bindings = l.lookupNow(aor);
    } else if (a.updates.length > 0) {
      const ops = this.plan(a.updates, bindings, a);
      for (const op of ops) {
        if (op.kind === 'remove') l.removeNow(aor, op.contact);
        else {
          if (op.replaces !== undefined) l.removeNow(aor, op.replaces);
          l.saveNow(op.binding);
          if (this.o.flows !== undefined) saved.push(op.binding); // (only the flow table reads it)
        }
      }
      bindings = l.lookupNow(aor);
    }
    const lost = this.updateFlows(before, bindings, saved, a.src, a.path.length > 0);
    if (lost.length > 0) {
      // the connection closed while this REGISTER was processed: what it would have done on close
      for (const b of lost) l.removeNow(aor, b.contact);
      bindings = l.lookupNow(aor);
    }
    return bindings;
  }

  /** Step 3: the store changes, and the bindings of the AOR after them. */
  private async apply(a: Apply): Promise<Binding[]> {
    const { aor } = a;
    const l = this.o.locations;
    let bindings = await l.lookup(aor);
    const before = bindings;
    const saved: Binding[] = [];
    if (a.star) {
      for (const b of bindings) {
        // §10.3 step 6: a binding of the same Call-ID is only removed by a higher CSeq
        if (b.callId === a.callId && a.cseq <= b.cseq) continue;
        await l.remove(aor, b.contact);
      }
      bindings = await l.lookup(aor);
    } else if (a.updates.length > 0) {
      const ops = this.plan(a.updates, bindings, a);
      for (const op of ops) {
        if (op.kind === 'remove') await l.remove(aor, op.contact);
        else {
          if (op.replaces !== undefined) await l.remove(aor, op.replaces);
          await l.save(op.binding);
          if (this.o.flows !== undefined) saved.push(op.binding); // (only the flow table reads it)
        }
      }
      bindings = await l.lookup(aor);
    }
    const lost = this.updateFlows(before, bindings, saved, a.src, a.path.length > 0);
    if (lost.length > 0) {
      // the connection closed while this REGISTER was processed: what it would have done on close
      for (const b of lost) await l.remove(aor, b.contact);
      bindings = await l.lookup(aor);
    }
    return bindings;
  }

  /** 4. 200 OK with every current binding. */
  private ok(req: SipRequest, tag: string, a: Apply, bindings: readonly Binding[], supported: readonly string[], outbound: boolean): SipResponse {
    const echoPath = a.path.length > 0 && hasToken(supported, 'path');
    // sized once: Contacts, Paths, Require, Date
    const headers = new Array<readonly [string, string]>(bindings.length + (echoPath ? a.path.length : 0) + (outbound ? 1 : 0) + 1);
    let i = 0;
    for (const b of bindings) headers[i++] = ['Contact', formatBinding(b, a.now)];
    if (echoPath) {
      for (const v of a.path) headers[i++] = ['Path', v];
    }
    // RFC 5626 §6: the registrar that did outbound processing says so with Require: outbound
    if (outbound) headers[i++] = ['Require', 'outbound'];
    headers[i++] = ['Date', this.httpDate(a.now)];
    return buildResponse(req, 200, { toTag: tag, headers });
  }

  /** The response for what made a REGISTER fail (nothing is thrown). */
  private failed(req: SipRequest, tag: string, e: unknown): SipResponse {
    if (e instanceof RegisterError) return buildResponse(req, e.status, { toTag: tag, reason: e.reasonPhrase, headers: e.headers });
    if (isSipParseError(e)) return buildResponse(req, 400, { toTag: tag, reason: `Bad Request (${e.reason})` });
    this.o.logger?.warn({ err: e instanceof Error ? e.message : String(e), callId: req.callId() }, 'registrar failed');
    if (isStoreUnavailable(e)) {
      return buildResponse(req, 503, { toTag: tag, reason: 'Service Unavailable (location store)', headers: [retryAfterHeader()] });
    }
    return buildResponse(req, 500, { toTag: tag, reason: 'Server Internal Error (location store)' });
  }

  /**
   * A connection closed (transport `connectionClosed`): its flows end. Bindings that cannot be
   * reached without it (`onClose: 'remove'`) are removed from the location store, if they are still
   * the binding that was bound (same ruid and contact); the others stay (see the header comment).
   * Returns how many bindings were removed; store errors are logged, never thrown.
   */
  async connectionClosed(connectionId: number): Promise<number> {
    const entries = this.o.flows?.connectionClosed(connectionId) ?? [];
    let removed = 0;
    for (const e of entries) {
      if (e.onClose !== 'remove') continue;
      try {
        const current = await this.o.locations.lookup(e.aor);
        if (!current.some((b) => b.ruid === e.ruid && b.contact === e.contact)) continue;
        // re-registered over another connection meanwhile: that one owns it now
        if (this.o.flows?.forBinding({ ruid: e.ruid, aor: e.aor, contact: e.contact }) !== undefined) continue;
        if (await this.o.locations.remove(e.aor, e.contact)) removed++;
      } catch (err) {
        this.o.logger?.warn({ err: err instanceof Error ? err.message : String(err), aor: e.aor }, 'removing the binding of a closed connection failed');
      }
    }
    return removed;
  }

  /**
   * Keep the flow table in step with the store after a REGISTER (see the header comment). Returns
   * the saved bindings to remove because their connection is already gone (onClose 'remove').
   */
  private updateFlows(before: readonly Binding[], after: readonly Binding[], saved: readonly Binding[], src: RegisterSource, viaPath: boolean): readonly Binding[] {
    const flows = this.o.flows;
    if (flows === undefined) return NO_BINDINGS;
    const lost: Binding[] = [];
    const live = new Set(after.map((b) => b.ruid));
    for (const b of before) if (!live.has(b.ruid)) flows.drop(b.ruid);
    const flow = flowOf(src);
    for (const b of saved) {
      // over a connection from the UA itself; a REGISTER with Path came from an edge proxy, whose
      // connection is not the UA's flow (requests follow the Path)
      if (flow === undefined || viaPath || !live.has(b.ruid)) {
        flows.drop(b.ruid);
        continue;
      }
      const onClose = onCloseOf(b);
      if (!flows.bind({ ruid: b.ruid, aor: b.aor, contact: b.contact, flow, onClose }) && onClose === 'remove') lost.push(b);
    }
    return lost;
  }

  private lastDateSecond = NaN;
  private lastDate = '';
  /** The Date header value for `now` (toUTCString has second resolution: kept for the last second). */
  private httpDate(now: number): string {
    const second = Math.floor(now / 1000);
    if (second !== this.lastDateSecond) {
      this.lastDate = new Date(now).toUTCString();
      this.lastDateSecond = second;
    }
    return this.lastDate;
  }

  private contactUpdate(c: NameAddr, headerExpires: number | undefined, supportsOutbound: boolean): ContactUpdate {
    const contact = c.uri.raw;
    if (contact.length > MAX_CONTACT_LEN) throw new RegisterError(400, 'Bad Request (Contact URI too long)');
    const ep = c.params.get('expires');
    let fromParam: number | undefined;
    if (ep !== undefined) {
      if (ep === null || !/^\d+$/.test(ep)) throw new RegisterError(400, 'Bad Request (invalid Contact expires)');
      // like Message.expires(): values beyond 2^32-1 count as absent (RFC 4475 scalar02)
      const n = ep.length > 10 ? Infinity : Number(ep);
      if (n <= UINT32_MAX) fromParam = n;
    }
    let expires = fromParam ?? headerExpires ?? this.o.defaultExpires;
    if (expires > this.o.maxExpires) expires = this.o.maxExpires;

    let q: number | null = null;
    const qp = c.params.get('q');
    if (qp !== undefined) {
      if (qp === null || !Q_RE.test(qp)) throw new RegisterError(400, 'Bad Request (invalid q-value)');
      q = Math.round(Number(qp) * 1000) / 1000;
    }

    const inst = c.params.get('+sip.instance');
    const instance = inst === undefined || inst === null ? undefined : unquote(inst);
    let regId: number | undefined;
    const rid = c.params.get('reg-id');
    if (rid !== undefined) {
      // RFC 5626 §4.2: 1 to 2^31-1 (also what the INT reg_id column holds)
      if (rid === null || !/^\d{1,10}$/.test(rid) || Number(rid) < 1 || Number(rid) > LOCATION_INT_MAX) {
        throw new RegisterError(400, 'Bad Request (invalid reg-id)');
      }
      regId = Number(rid);
    }
    return { contact, parsed: c.uri, expires, q, instance, regId, outbound: supportsOutbound && instance !== undefined && regId !== undefined };
  }

  /** Turn the contact updates into store operations, enforcing ordering and max contacts. */
  private plan(
    updates: readonly ContactUpdate[],
    existing: readonly Readonly<Binding>[],
    ctx: Apply,
  ): Op[] {
    // working copy: contact → binding
    const current = new Map<string, Binding>();
    for (const b of existing) current.set(b.contact, b);
    const ops: Op[] = [];
    const userAgent = ctx.req.userAgent();
    const socket = `${ctx.src.local.transport.toLowerCase()}:${formatHost(ctx.src.local.address)}:${ctx.src.local.port}`;

    for (const u of updates) {
      const match = findMatch(current, u);
      // §10.3 step 7: an older (or the same) CSeq of the same Call-ID must not overwrite newer state
      if (match !== undefined && match.callId === ctx.callId && ctx.cseq <= match.cseq) continue;
      if (u.expires === 0) {
        if (match !== undefined) {
          ops.push({ kind: 'remove', contact: match.contact });
          current.delete(match.contact);
        }
        continue;
      }
      const binding: Binding = {
        aor: ctx.aor,
        username: ctx.username,
        domain: ctx.domain,
        contact: u.contact,
        expires: ctx.now + u.expires * 1000,
        q: u.q,
        callId: ctx.callId,
        cseq: ctx.cseq,
        ruid: match?.ruid ?? this.o.newRuid(),
        lastModified: ctx.now,
        flags: 0,
        cflags: 0,
      };
      const received = this.received(u.parsed, ctx.src, isUnreachableContact(u.parsed) || u.outbound);
      if (received !== undefined) binding.received = received;
      if (ctx.path.length > 0) binding.path = [...ctx.path];
      if (userAgent) binding.userAgent = userAgent;
      binding.socket = socket;
      if (u.instance !== undefined) binding.instance = u.instance;
      if (u.regId !== undefined) binding.regId = u.regId;
      const problem = locationFieldProblem(binding);
      if (problem !== undefined) throw new RegisterError(400, `Bad Request (${FIELD_NAMES[problem.column]} ${problem.problem})`);
      const op: Op = { kind: 'save', binding };
      if (match !== undefined && match.contact !== u.contact) {
        op.replaces = match.contact;
        current.delete(match.contact);
      }
      current.set(u.contact, binding);
      ops.push(op);
    }

    if (this.o.maxContacts > 0 && current.size > this.o.maxContacts) {
      // only refuse when this request grows the set beyond the limit (a smaller limit set
      // after registrations must not stop refreshes or removals)
      const before = existing.length;
      if (current.size > before) throw new RegisterError(503, 'Too Many Registered Contacts');
    }
    return ops;
  }

  /**
   * The source as a SIP URI when the phone may be behind NAT (fix_nated_register), and always when
   * its Contact cannot be reached otherwise (`always`: a `.invalid` host, an outbound flow).
   */
  private received(contact: Uri, src: RegisterSource, always: boolean): string | undefined {
    if (!this.o.natReceived && !always) return undefined;
    const transport = src.transport.toLowerCase();
    const known = transportFromToken(transport);
    // a connection (TCP, TLS, WS) is reached by its transport: the received URI names it
    const connection = known === undefined || isConnectionOriented(known);
    let differs = true;
    if (isSipUri(contact)) {
      const defaultPort = contact.scheme === 'sips' || (known !== undefined && isSecure(known)) ? 5061 : 5060;
      differs = contact.host !== formatHost(src.address).toLowerCase() || (contact.port ?? defaultPort) !== src.port;
    }
    if (connection && !differs && !always) return undefined;
    const base = `sip:${formatHost(src.address)}:${src.port}`;
    return connection ? `${base};transport=${transport}` : base;
  }
}

/** The flow a REGISTER arrived on: its connection, when the transport is connection-oriented. */
function flowOf(src: RegisterSource): Flow | undefined {
  const transport = transportFromToken(src.transport);
  if (transport === undefined || !isConnectionOriented(transport) || src.connectionId === undefined) return undefined;
  const localTransport = transportFromToken(src.local.transport) ?? transport;
  const local: LocalEndpoint = { transport: localTransport, address: src.local.address, port: src.local.port, advertise: src.local.advertise ?? formatHost(src.local.address) };
  return { connectionId: src.connectionId, transport, address: src.address, port: src.port, local };
}

/** A Contact nobody can send to: its host is under `.invalid` (RFC 2606; browser phones, RFC 7118 §5). */
export function isUnreachableContact(contact: Uri): boolean {
  return isSipUri(contact) && (contact.host === 'invalid' || contact.host.endsWith('.invalid'));
}

/**
 * What a connection loss does to a binding: an RFC 5626 flow binding (+sip.instance and reg-id)
 * stays — its UA re-registers over a new flow, and routing answers 430 until then; a binding that
 * cannot be reached without the connection (`.invalid` Contact, or `received` set: the Contact is
 * not where the REGISTER came from) is removed; a Contact reachable as registered stays.
 */
export function onCloseOf(b: Pick<Binding, 'contact' | 'instance' | 'regId' | 'received'>): OnClose {
  if (b.instance !== undefined && b.regId !== undefined) return 'keep';
  if (b.received !== undefined) return 'remove';
  try {
    return isUnreachableContact(parseUri(b.contact)) ? 'remove' : 'keep';
  } catch {
    return 'remove';
  }
}

function findMatch(current: Map<string, Binding>, u: ContactUpdate): Binding | undefined {
  // RFC 5626 §6: +sip.instance with reg-id identifies the flow's binding, whatever its URI
  if (u.instance !== undefined && u.regId !== undefined) {
    for (const b of current.values()) if (b.instance === u.instance && b.regId === u.regId) return b;
  }
  const exact = current.get(u.contact);
  if (exact !== undefined) return exact;
  for (const b of current.values()) {
    try {
      if (uriEquals(parseUri(b.contact), u.parsed)) return b;
    } catch {
      // a stored contact we cannot parse only matches byte for byte
    }
  }
  return undefined;
}

function formatQ(q: number): string {
  return q.toFixed(3).replace(/\.?0+$/, '') || '0';
}

function formatBinding(b: Binding, now: number): string {
  const remaining = Math.max(0, Math.ceil((b.expires - now) / 1000));
  let v = `<${b.contact}>;expires=${remaining}`;
  if (b.q !== null) v += `;q=${formatQ(b.q)}`;
  return v;
}

/** Deterministic To-tag for the registrar's responses (same request → same tag). */
export function registrarToTag(req: SipRequest): string {
  return deterministicToTag(req, 'reg\u0000');
}

