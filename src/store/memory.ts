/** In-process stores: tests, location db_mode=memory, and the write-through cache. */
import type { Binding, Clock, LocationCounts, LocationStore, Subscriber, SubscriberKey, SubscriberStore } from './types.js';
import { StoreError } from './types.js';
import { checkAor, checkBinding, cloneBinding, compareBindings, compareListed, makeSubscriber, settled } from './util.js';

const key = (username: string, domain: string): string => `${username}\u0000${domain}`;

export class MemorySubscriberStore implements SubscriberStore {
  private readonly rows = new Map<string, Subscriber>();

  async get(username: string, domain: string): Promise<Subscriber | null> {
    const s = this.rows.get(key(username, domain));
    return s ? { ...s } : null;
  }

  async getMany(keys: readonly SubscriberKey[]): Promise<(Subscriber | null)[]> {
    return keys.map((k) => {
      const s = this.rows.get(key(k.username, k.domain));
      return s ? { ...s } : null;
    });
  }

  async add(username: string, domain: string, password: string): Promise<void> {
    const s = makeSubscriber(username, domain, password);
    const k = key(username, domain);
    if (this.rows.has(k)) throw new StoreError('EXISTS', `subscriber ${username}@${domain} already exists`);
    this.rows.set(k, s);
  }

  async remove(username: string, domain: string): Promise<boolean> {
    return this.rows.delete(key(username, domain));
  }

  async setPassword(username: string, domain: string, password: string): Promise<boolean> {
    const k = key(username, domain);
    if (!this.rows.has(k)) return false;
    this.rows.set(k, makeSubscriber(username, domain, password));
    return true;
  }

  async list(domain?: string): Promise<Subscriber[]> {
    return [...this.rows.values()]
      .filter((s) => domain === undefined || s.domain === domain)
      .sort((a, b) => (a.domain !== b.domain ? (a.domain < b.domain ? -1 : 1) : a.username < b.username ? -1 : a.username > b.username ? 1 : 0))
      .map((s) => ({ ...s }));
  }

  async close(): Promise<void> {}
}

export class MemoryLocationStore implements LocationStore {
  /** aor -> contact -> binding */
  private readonly byAor = new Map<string, Map<string, Binding>>();

  constructor(private readonly now: Clock) {}

  // lookup, save and remove run on every REGISTER: plain functions answering with a settled Promise
  // (an invalid argument rejects it, as from an async function), without an async frame each

  lookup(aor: string): Promise<Binding[]> {
    try {
      return Promise.resolve(this.lookupCopies(aor));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** lookup()'s bindings: copies the caller may keep and edit. */
  private lookupCopies(aor: string): Binding[] {
    const held = this.lookupNow(aor);
    const out = new Array<Binding>(held.length);
    for (let i = 0; i < held.length; i++) out[i] = cloneBinding(held[i]!);
    return out;
  }

  /** The unexpired bindings as stored (see LocationStore.lookupNow: read only; saves replace them). */
  lookupNow(aor: string): readonly Readonly<Binding>[] {
    checkAor(aor); // same validation as the SQL stores
    const t = this.now();
    const m = this.byAor.get(aor);
    const out: Binding[] = [];
    if (!m) return out;
    for (const b of m.values()) if (b.expires > t) out.push(b);
    if (out.length > 1) out.sort(compareBindings);
    return out;
  }

  save(binding: Binding): Promise<void> {
    return settled(() => this.saveNow(binding));
  }

  saveNow(binding: Binding): void {
    checkBinding(binding);
    let m = this.byAor.get(binding.aor);
    if (!m) {
      m = new Map();
      this.byAor.set(binding.aor, m);
    }
    m.set(binding.contact, cloneBinding(binding));
  }

  remove(aor: string, contact: string): Promise<boolean> {
    return settled(() => this.removeNow(aor, contact));
  }

  removeNow(aor: string, contact: string): boolean {
    checkAor(aor);
    const m = this.byAor.get(aor);
    if (!m) return false;
    const removed = m.delete(contact);
    if (m.size === 0) this.byAor.delete(aor);
    return removed;
  }

  async removeAll(aor: string): Promise<number> {
    checkAor(aor);
    const n = this.byAor.get(aor)?.size ?? 0;
    this.byAor.delete(aor);
    return n;
  }

  async expire(now: number): Promise<number> {
    let n = 0;
    for (const [aor, m] of this.byAor) {
      for (const [contact, b] of m) {
        if (b.expires <= now) {
          m.delete(contact);
          n++;
        }
      }
      if (m.size === 0) this.byAor.delete(aor);
    }
    return n;
  }

  async list(): Promise<Binding[]> {
    const t = this.now();
    const out: Binding[] = [];
    for (const m of this.byAor.values()) for (const b of m.values()) if (b.expires > t) out.push(cloneBinding(b));
    return out.sort(compareListed);
  }

  async aors(): Promise<string[]> {
    const t = this.now();
    const out: string[] = [];
    for (const [aor, m] of this.byAor) {
      for (const b of m.values()) {
        if (b.expires > t) {
          out.push(aor);
          break;
        }
      }
    }
    return out.sort();
  }

  async counts(): Promise<LocationCounts> {
    const t = this.now();
    let aors = 0;
    let contacts = 0;
    for (const m of this.byAor.values()) {
      let live = 0;
      for (const b of m.values()) if (b.expires > t) live++;
      if (live > 0) aors++;
      contacts += live;
    }
    return { aors, contacts };
  }

  /** Drop everything (used by the write-through cache before reloading). */
  clear(): void {
    this.byAor.clear();
  }

  async close(): Promise<void> {
    this.byAor.clear();
  }
}
