/**
 * The flow table (RFC 5626 §3.1, "flow"): which registration is reachable over which open
 * connection. Connection ids are process-local (they die with the process and their sockets), so
 * the table lives in memory next to the core, not in the location store; the store keeps what
 * Kamailio's usrloc keeps (`received`, `socket`).
 *
 * One entry per binding (keyed by its ruid, which stays the same while aor + contact do and moves
 * with an RFC 5626 instance + reg-id), indexed by connection (to drop a closed connection's
 * entries) and by Contact URI (in-dialog requests whose Request-URI is a registered Contact, e.g.
 * the `….invalid` URI of a browser phone, follow the same flow). A caller over a connection with
 * a `.invalid` Contact gets an entry too (ruid `dialog:<connection>:<contact>`, no binding behind
 * it), so that the callee's in-dialog requests find their way back.
 *
 * Limits: at most `maxEntries` entries (default 100,000); a bind beyond that evicts the oldest
 * entry (its binding then routes as if it had no flow). Nothing here does I/O; callers decide
 * what a closed connection means for the store (see Registrar.connectionClosed).
 */
import type { LocalEndpoint, TransportName } from '../transport/types.js';

/** Where a flow goes: one open connection of a connection-oriented transport. */
export interface Flow {
  readonly connectionId: number;
  readonly transport: TransportName;
  /** the peer's address and port (the connection's remote end). */
  readonly address: string;
  readonly port: number;
  /** the local socket the connection belongs to. */
  readonly local: LocalEndpoint;
}

/** What a connection loss does to the binding of an entry. */
export type OnClose =
  /** remove the binding: its Contact cannot be reached without this connection (`.invalid`, behind NAT) */
  | 'remove'
  /** keep it: an RFC 5626 flow the UA re-registers (routing answers 430 meanwhile), or a reachable Contact */
  | 'keep';

export interface FlowEntry {
  readonly ruid: string;
  readonly aor: string;
  readonly contact: string;
  readonly flow: Flow;
  readonly onClose: OnClose;
}

export const DEFAULT_MAX_FLOWS = 100_000;

/** How many closed connection ids are remembered (a REGISTER still in the registrar when its connection closed). */
const CLOSED_REMEMBERED = 4096;

export class FlowTable {
  private readonly byRuid = new Map<string, FlowEntry>();
  private readonly byConnection = new Map<number, Set<string>>();
  private readonly byContact = new Map<string, string>();
  /** recently closed connections (ids are never reused), oldest first. */
  private readonly closed = new Set<number>();

  private readonly maxEntries: number;

  constructor(maxEntries = DEFAULT_MAX_FLOWS) {
    this.maxEntries = Math.max(1, Math.floor(maxEntries));
  }

  get size(): number {
    return this.byRuid.size;
  }

  /**
   * Bind (or re-bind) a binding to a flow; replaces the binding's previous entry. false (and no
   * entry) when the flow's connection closed meanwhile: the REGISTER was still being processed.
   */
  bind(entry: FlowEntry): boolean {
    this.drop(entry.ruid);
    if (this.closed.has(entry.flow.connectionId)) return false;
    while (this.byRuid.size >= this.maxEntries) {
      const oldest = this.byRuid.keys().next().value;
      if (oldest === undefined) break;
      this.drop(oldest);
    }
    this.byRuid.set(entry.ruid, entry);
    let set = this.byConnection.get(entry.flow.connectionId);
    if (set === undefined) this.byConnection.set(entry.flow.connectionId, (set = new Set()));
    set.add(entry.ruid);
    this.byContact.set(entry.contact, entry.ruid);
    return true;
  }

  /** Forget a binding's flow (the binding was removed, or re-registered without a connection). */
  drop(ruid: string): void {
    const e = this.byRuid.get(ruid);
    if (e === undefined) return;
    this.byRuid.delete(ruid);
    const set = this.byConnection.get(e.flow.connectionId);
    if (set !== undefined) {
      set.delete(ruid);
      if (set.size === 0) this.byConnection.delete(e.flow.connectionId);
    }
    if (this.byContact.get(e.contact) === ruid) this.byContact.delete(e.contact);
  }

  /** The live flow of a binding: its entry, if it is still the same aor + contact. */
  forBinding(b: { readonly ruid: string; readonly aor: string; readonly contact: string }): Flow | undefined {
    const e = this.byRuid.get(b.ruid);
    return e !== undefined && e.aor === b.aor && e.contact === b.contact ? e.flow : undefined;
  }

  /** The live flow of a registered Contact URI (exact text), for in-dialog requests addressed to it. */
  forContact(contact: string): Flow | undefined {
    const ruid = this.byContact.get(contact);
    return ruid === undefined ? undefined : this.byRuid.get(ruid)?.flow;
  }

  /** A connection closed: remove and return its entries. */
  connectionClosed(connectionId: number): FlowEntry[] {
    this.closed.add(connectionId);
    if (this.closed.size > CLOSED_REMEMBERED) {
      const oldest = this.closed.values().next().value;
      if (oldest !== undefined) this.closed.delete(oldest);
    }
    const set = this.byConnection.get(connectionId);
    if (set === undefined) return [];
    const out: FlowEntry[] = [];
    for (const ruid of [...set]) {
      const e = this.byRuid.get(ruid);
      if (e !== undefined) out.push(e);
      this.drop(ruid);
    }
    this.byConnection.delete(connectionId);
    return out;
  }
}
