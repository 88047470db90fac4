/**
 * Store interfaces. The registrar and auth code only see these; whether the
 * data lives in memory, SQLite or MySQL is decided by openStores().
 */

export type StoreErrorCode =
  /** add(): the subscriber already exists. */
  | 'EXISTS'
  /** The database cannot be reached (connection refused, access denied, unknown database, connect timeout). */
  | 'UNREACHABLE'
  /**
   * The database did not answer a query within the query timeout, or too many queries already wait
   * for a connection (pool queue full), or it is locked. Like UNREACHABLE, a later attempt may succeed.
   */
  | 'BUSY'
  /** Tables missing or of an unexpected version; run `sipctl db init`. */
  | 'SCHEMA'
  /**
   * Invalid argument (e.g. empty username or password, a malformed AOR, a value longer than its
   * column): the same operation can never succeed.
   */
  | 'INVALID'
  /** Any other database error. */
  | 'DB';

/** Typed store error; `message` is a single line suitable for operators. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * true when `e` says the database is unavailable for now (UNREACHABLE or BUSY): the same operation
 * may succeed later. What to do about it (retry, answer 503) is the caller's decision.
 */
export function isStoreUnavailable(e: unknown): boolean {
  return e instanceof StoreError && (e.code === 'UNREACHABLE' || e.code === 'BUSY');
}

export interface Subscriber {
  username: string;
  domain: string;
  /** Plain-text password (kamctl default STORE_PLAINTEXT_PW=1). */
  password: string;
  /** MD5(username:domain:password) — the realm is the domain. */
  ha1: string;
  /** MD5(username@domain:domain:password). */
  ha1b: string;
}

/** One subscriber to look up (getMany). */
export interface SubscriberKey {
  username: string;
  domain: string;
}

export interface SubscriberStore {
  get(username: string, domain: string): Promise<Subscriber | null>;
  /**
   * Several get()s at once, with the same matching rules as get() (one round trip where the store
   * can); the results are in the order of `keys`. Optional: callers fall back to get().
   */
  getMany?(keys: readonly SubscriberKey[]): Promise<(Subscriber | null)[]>;
  /**
   * Synchronous cache lookup: the subscriber (or null for a cached "no such subscriber") when the
   * answer is cached and fresh, undefined when get() must be asked. Only caches implement it.
   * The subscriber returned is the cache's own, frozen (not a copy): read it, never change it.
   */
  peek?(username: string, domain: string): Readonly<Subscriber> | null | undefined;
  /** Computes ha1/ha1b like kamctl. Throws StoreError EXISTS on duplicates, INVALID on empty fields. */
  add(username: string, domain: string, password: string): Promise<void>;
  /** true if a subscriber was removed. */
  remove(username: string, domain: string): Promise<boolean>;
  /** Replaces password, ha1 and ha1b; false if the subscriber does not exist. */
  setPassword(username: string, domain: string, password: string): Promise<boolean>;
  /** All subscribers (of one domain if given), ordered by domain then username. */
  list(domain?: string): Promise<Subscriber[]>;
  close(): Promise<void>;
}

/** One registered contact of an address-of-record. */
export interface Binding {
  /** `username@domain`. */
  aor: string;
  username: string;
  domain: string;
  /** Contact URI exactly as registered (URI parameters and escaped headers included). */
  contact: string;
  /** Source address of the REGISTER when behind NAT, as a SIP URI (e.g. `sip:1.2.3.4:5060;transport=udp`). */
  received?: string;
  /** Path header values (RFC 3327), in order, e.g. [`<sip:edge.example.com;lr>`]. */
  path?: string[];
  /** Absolute expiry, unix milliseconds. SQL stores keep second precision (floored). */
  expires: number;
  /** q-value 0..1, or null when the contact carried none. */
  q: number | null;
  callId: string;
  cseq: number;
  userAgent?: string;
  /** Local socket the REGISTER arrived on, e.g. `udp:127.0.0.1:5060`. */
  socket?: string;
  /** +sip.instance (RFC 5626). */
  instance?: string;
  /** reg-id (RFC 5626), >= 1 when present. */
  regId?: number;
  /** Unique record id (Kamailio ruid). */
  ruid: string;
  /** Unix milliseconds of the last change. SQL stores keep second precision. */
  lastModified: number;
  flags: number;
  cflags: number;
  /** Bitmask of supported methods (Kamailio methods column), if known. */
  methods?: number;
}

export interface LocationCounts {
  /** AORs with at least one unexpired binding. */
  aors: number;
  /** Unexpired bindings. */
  contacts: number;
}

/**
 * Location (usrloc). "Unexpired" means `expires > now()`, with `now` injected
 * when the store is opened.
 *
 * Ordering of returned bindings: by aor (list only), then q descending (a
 * missing q ranks as 1.0), then most recently modified first, then contact.
 */
export interface LocationStore {
  /** Unexpired bindings of one AOR. */
  lookup(aor: string): Promise<Binding[]>;
  /**
   * (optional) lookup() answered at once, for stores that answer from memory: the same bindings,
   * and it throws what lookup() would reject with. The bindings are the store's own (not copies):
   * read them, never change them; a later change of the store replaces them, it does not edit them.
   */
  lookupNow?(aor: string): readonly Readonly<Binding>[];
  /** (optional, with lookupNow) save() done at once: it throws what save() would reject with. */
  saveNow?(binding: Binding): void;
  /** (optional, with lookupNow) remove() done at once: it throws what remove() would reject with. */
  removeNow?(aor: string, contact: string): boolean;
  /**
   * Insert, or replace the binding with the same aor + contact. A binding keeps its ruid while its
   * aor + contact stay the same (the registrar reuses it), and the SQL stores key the write on the
   * ruid (the table's unique ruid_idx: an UPDATE of the row, an insert when there is none, as
   * Kamailio's usrloc does): a caller that gives
   * an existing aor + contact a NEW ruid must remove the old binding first. Saving an existing ruid
   * under another contact (RFC 5626 flow moving) moves that row.
   */
  save(binding: Binding): Promise<void>;
  /**
   * Several saves in order, in few statements (optional). Each statement is atomic: when one fails
   * nothing of it was written (earlier statements of the call may have been), and the caller may
   * retry row by row.
   */
  saveMany?(bindings: readonly Binding[]): Promise<void>;
  /** true if the binding existed. */
  remove(aor: string, contact: string): Promise<boolean>;
  /** Removes every binding of the AOR; returns how many. */
  removeAll(aor: string): Promise<number>;
  /** Deletes bindings with `expires <= now`; returns how many. */
  expire(now: number): Promise<number>;
  /** All unexpired bindings. */
  list(): Promise<Binding[]>;
  /** AORs with unexpired bindings, sorted. */
  aors(): Promise<string[]>;
  counts(): Promise<LocationCounts>;
  close(): Promise<void>;
}

/** Observes store latency: store name (e.g. `subscriber`, `location`), operation, duration in ms. */
export type QueryHook = (store: string, op: string, ms: number) => void;

/** Clock returning unix milliseconds. */
export type Clock = () => number;
