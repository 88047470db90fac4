/**
 * Request targets (RFC 3263, simplified): numeric IPs directly, names through A/AAAA
 * (`dns.promises.lookup` with `all: true`, injectable) with a small bounded TTL cache, optional SRV.
 *
 * - The URI's `transport` parameter wins; otherwise UDP (RFC 3263 §4.1 for a numeric host or an
 *   explicit port), or TCP when there is no UDP listener. Default port: the transport's
 *   (TRANSPORT_INFO: 5060, 5061 for TLS).
 * - SRV (`_sip._udp.HOST`, `_sip._tcp.HOST`, `_sips._tcp.HOST` for TLS) is consulted only when an
 *   SRV lookup is configured and the URI has a name and no port; NAPTR is not used. Without SRV
 *   records, A/AAAA on the default port.
 * - `sips:` resolves to secure transports only (TLS; `transport=tcp` there means TLS, RFC 3261
 *   §19.1.2; `transport=wss` is kept): RFC 3261 §26.2.2 forbids sending a SIPS request over a
 *   non-TLS hop. Without a TLS listener it resolves to no targets.
 * - Targets of an address family (or transport) with no local listener are left out; lookup failures
 *   resolve to [] (negative-cached briefly). `resolve` never rejects.
 */
import { promises as dnsPromises } from 'node:dns';
import { ipFamily } from './common.js';
import { isSecure, TRANSPORT_INFO } from './transport.js';
import type { Target, TransportName } from './types.js';

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}
/** A/AAAA lookup of a host name (no brackets). May reject (e.g. ENOTFOUND). */
export type LookupFn = (host: string) => Promise<ResolvedAddress[]>;

export interface SrvRecord {
  readonly name: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}
/** SRV lookup of a full owner name, e.g. `_sip._udp.example.com`. May reject (ENODATA, ENOTFOUND). */
export type SrvLookupFn = (name: string) => Promise<SrvRecord[]>;

export const systemLookup: LookupFn = async (host) => {
  const rs = await dnsPromises.lookup(host, { all: true });
  return rs.map((r) => ({ address: r.address, family: r.family === 6 ? 6 : 4 }));
};

export const systemSrv: SrvLookupFn = (name) => dnsPromises.resolveSrv(name);

export interface ResolverOptions {
  lookup?: LookupFn;
  /** SRV lookup; off when absent. */
  srv?: SrvLookupFn;
  /** positive cache TTL, default 30 s. */
  ttlMs?: number;
  /** negative cache TTL (lookup failed or empty), default 5 s. */
  negativeTtlMs?: number;
  /** cache entries, default 1000 (oldest evicted first). */
  maxEntries?: number;
  now?: () => number;
}

/** Whether a local listener exists for a transport and address family. */
export type HasListener = (transport: TransportName, family: 4 | 6) => boolean;

interface Entry<T> {
  readonly value: T;
  readonly expires: number;
}

/** A bounded TTL cache: insertion-ordered Map, expired entries dropped on read, oldest evicted on overflow. */
export class TtlCache<T> {
  private readonly map = new Map<string, Entry<T>>();
  constructor(
    private readonly max: number,
    private readonly now: () => number,
  ) {}
  get(key: string): T | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e.expires <= this.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e.value;
  }
  set(key: string, value: T, ttlMs: number): void {
    this.map.delete(key);
    this.map.set(key, { value, expires: this.now() + ttlMs });
    while (this.map.size > this.max) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.map.delete(oldest);
    }
  }
  get size(): number {
    return this.map.size;
  }
  clear(): void {
    this.map.clear();
  }
}

export class Resolver {
  private readonly lookupFn: LookupFn;
  private readonly srvFn: SrvLookupFn | undefined;
  private readonly ttl: number;
  private readonly negTtl: number;
  private readonly addrCache: TtlCache<ResolvedAddress[]>;
  private readonly srvCache: TtlCache<SrvRecord[]>;
  private readonly inflight = new Map<string, Promise<ResolvedAddress[]>>();
  private readonly srvInflight = new Map<string, Promise<SrvRecord[]>>();

  constructor(opts: ResolverOptions = {}) {
    const now = opts.now ?? Date.now;
    const max = opts.maxEntries ?? 1000;
    this.lookupFn = opts.lookup ?? systemLookup;
    this.srvFn = opts.srv;
    this.ttl = opts.ttlMs ?? 30_000;
    this.negTtl = opts.negativeTtlMs ?? 5_000;
    this.addrCache = new TtlCache(max, now);
    this.srvCache = new TtlCache(max, now);
  }

  /** cached entries (addresses + SRV), for tests and metrics. */
  get cacheSize(): number {
    return this.addrCache.size + this.srvCache.size;
  }

  /** Addresses of a host: an IP literal as is; a name via the cache/lookup. Never rejects ([] on failure). */
  lookupHost(host: string): Promise<ResolvedAddress[]> {
    const h = stripBrackets(host);
    const fam = ipFamily(h);
    if (fam !== 0) return Promise.resolve([{ address: h, family: fam }]);
    const key = h.toLowerCase();
    const hit = this.addrCache.get(key);
    if (hit !== undefined) return Promise.resolve(hit);
    const pending = this.inflight.get(key);
    if (pending !== undefined) return pending;
    const p = (async (): Promise<ResolvedAddress[]> => {
      let out: ResolvedAddress[] = [];
      try {
        const rs = await this.lookupFn(key);
        const seen = new Set<string>();
        for (const r of rs) {
          if (ipFamily(r.address) === 0 || seen.has(r.address)) continue;
          seen.add(r.address);
          out.push({ address: r.address, family: r.family });
        }
      } catch {
        out = [];
      }
      this.addrCache.set(key, out, out.length > 0 ? this.ttl : this.negTtl);
      this.inflight.delete(key);
      return out;
    })();
    this.inflight.set(key, p);
    return p;
  }

  private lookupSrv(name: string): Promise<SrvRecord[]> {
    const fn = this.srvFn;
    if (fn === undefined) return Promise.resolve([]);
    const key = name.toLowerCase();
    const hit = this.srvCache.get(key);
    if (hit !== undefined) return Promise.resolve(hit);
    const pending = this.srvInflight.get(key);
    if (pending !== undefined) return pending;
    const p = (async (): Promise<SrvRecord[]> => {
      let out: SrvRecord[] = [];
      try {
        out = (await fn(key)).filter((r) => r.port > 0 && r.port < 65536 && r.name !== '' && r.name !== '.');
        // RFC 2782: lower priority first; within a priority, heavier first (deterministic, no random pick)
        out.sort((a, b) => a.priority - b.priority || b.weight - a.weight);
      } catch {
        out = [];
      }
      this.srvCache.set(key, out, out.length > 0 ? this.ttl : this.negTtl);
      this.srvInflight.delete(key);
      return out;
    })();
    this.srvInflight.set(key, p);
    return p;
  }

  /**
   * What resolve() answers when that needs no lookup (an IP literal, an empty host, sips: over a
   * cleartext transport), at once; undefined when it needs DNS (a host name).
   */
  resolveNow(host: string, port: number | undefined, transport: TransportName | undefined, sips: boolean, has: HasListener): Target[] | undefined {
    if (sips) {
      transport = transport === undefined || transport === 'tcp' ? 'tls' : transport;
      if (!isSecure(transport)) return [];
    }
    const h = stripBrackets(host);
    if (h === '') return [];
    const fam = ipFamily(h);
    if (fam === 0) return undefined;
    // one address (lookupHost's answer for a literal): resolve()'s last step, without the lookup
    const fallback: TransportName = transport ?? (has('udp', 4) || has('udp', 6) || !(has('tcp', 4) || has('tcp', 6)) ? 'udp' : 'tcp');
    if (!has(fallback, fam)) return [];
    return [{ transport: fallback, address: h, port: port ?? TRANSPORT_INFO[fallback].defaultPort }];
  }

  /** RFC 3263 (simplified): targets in preference order. Never rejects. */
  resolve(host: string, port: number | undefined, transport: TransportName | undefined, sips: boolean, has: HasListener): Promise<Target[]> {
    // an IP literal without an async frame, a Set and closures each
    const now = this.resolveNow(host, port, transport, sips, has);
    return now !== undefined ? Promise.resolve(now) : this.resolveName(host, port, transport, sips, has);
  }

  private async resolveName(host: string, port: number | undefined, transport: TransportName | undefined, sips: boolean, has: HasListener): Promise<Target[]> {
    if (sips) {
      transport = transport === undefined || transport === 'tcp' ? 'tls' : transport;
      if (!isSecure(transport)) return [];
    }
    const h = stripBrackets(host);
    if (h === '') return [];
    const anyOf = (t: TransportName): boolean => has(t, 4) || has(t, 6);
    const fallback: TransportName = transport ?? (anyOf('udp') || !anyOf('tcp') ? 'udp' : 'tcp');
    const out: Target[] = [];
    const seen = new Set<string>();
    const add = (t: TransportName, a: ResolvedAddress, p: number): void => {
      if (!has(t, a.family)) return;
      const key = `${t}|${a.address}|${p}`;
      if (seen.has(key)) return;
      seen.add(key);
      out.push({ transport: t, address: a.address, port: p });
    };
    if (ipFamily(h) === 0 && port === undefined && this.srvFn !== undefined) {
      const transports: TransportName[] = transport !== undefined ? [transport] : (['udp', 'tcp'] as const).filter(anyOf);
      for (const t of transports) {
        const srv = SRV_NAME[t];
        if (srv === undefined) continue;
        for (const rec of await this.lookupSrv(`${srv}.${h}`)) {
          for (const a of await this.lookupHost(rec.name)) add(t, a, rec.port);
        }
      }
      if (out.length > 0) return out;
    }
    for (const a of await this.lookupHost(h)) add(fallback, a, port ?? TRANSPORT_INFO[fallback].defaultPort);
    return out;
  }
}

/** RFC 3263 §4.1 SRV owner-name prefix of a transport (none for WebSocket: RFC 7118 defines no SRV use). */
const SRV_NAME: Partial<Record<TransportName, string>> = { udp: '_sip._udp', tcp: '_sip._tcp', tls: '_sips._tcp' };

function stripBrackets(h: string): string {
  return h.charCodeAt(0) === 0x5b && h.endsWith(']') ? h.slice(1, -1) : h;
}
