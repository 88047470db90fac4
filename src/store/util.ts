/** Helpers shared by the store implementations. */
import { createHash } from 'node:crypto';
import { locationFieldProblem } from './limits.js';
import type { Binding, Subscriber } from './types.js';
import { StoreError } from './types.js';

function md5(s: string): string {
  return createHash('md5').update(s).digest('hex');
}

/** kamctl: ha1 = MD5(user:realm:password), realm = domain. */
export function computeHa1(username: string, domain: string, password: string): string {
  return md5(`${username}:${domain}:${password}`);
}

/** kamctl: ha1b = MD5(user@domain:realm:password), realm = domain. */
export function computeHa1b(username: string, domain: string, password: string): string {
  return md5(`${username}@${domain}:${domain}:${password}`);
}

export function makeSubscriber(username: string, domain: string, password: string): Subscriber {
  if (!username) throw new StoreError('INVALID', 'username must not be empty');
  if (!domain) throw new StoreError('INVALID', 'domain must not be empty');
  if (!password) throw new StoreError('INVALID', 'password must not be empty');
  return {
    username,
    domain,
    password,
    ha1: computeHa1(username, domain, password),
    ha1b: computeHa1b(username, domain, password),
  };
}

/** `user@domain` -> [user, domain], split at the last '@'. */
export function splitAor(aor: string): { username: string; domain: string } {
  const at = aorAt(aor);
  return { username: aor.slice(0, at), domain: aor.slice(at + 1) };
}

/** The validation of splitAor() without the split (nothing allocated): throws on a malformed AOR. */
export function checkAor(aor: string): void {
  aorAt(aor);
}

function aorAt(aor: string): number {
  const at = aor.lastIndexOf('@');
  if (at <= 0 || at === aor.length - 1) throw new StoreError('INVALID', `malformed AOR "${aor}" (expected user@domain)`);
  return at;
}

/** Ordering documented on LocationStore: q desc (null = 1.0), newest first, then contact. */
export function compareBindings(a: Binding, b: Binding): number {
  const qa = a.q ?? 1;
  const qb = b.q ?? 1;
  if (qa !== qb) return qb - qa;
  if (a.lastModified !== b.lastModified) return b.lastModified - a.lastModified;
  return a.contact < b.contact ? -1 : a.contact > b.contact ? 1 : 0;
}

export function compareListed(a: Binding, b: Binding): number {
  if (a.aor !== b.aor) return a.aor < b.aor ? -1 : 1;
  return compareBindings(a, b);
}

export function cloneBinding(b: Binding): Binding {
  const c: Binding = { ...b };
  if (b.path) c.path = [...b.path];
  return c;
}

/** Path values stored Kamailio-style: one comma-separated string. */
export function joinPath(path: string[] | undefined): string | null {
  return path && path.length > 0 ? path.join(',') : null;
}

/** Split a stored Path string at top-level commas (not inside <...> or quotes). */
export function splitPath(s: string | null): string[] | undefined {
  if (!s) return undefined;
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (quoted) {
      if (ch === '\\' && i + 1 < s.length) {
        cur += ch + s[++i]!;
        continue;
      }
      if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === '<') depth++;
    else if (ch === '>' && depth > 0) depth--;
    else if (ch === ',' && depth === 0) {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out.length > 0 ? out : undefined;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** Unix ms -> 'YYYY-MM-DD HH:MM:SS' (floored to the second), in UTC or local time. */
export function toSqlDatetime(ms: number, zone: 'utc' | 'local'): string {
  const sec = Math.floor(ms / 1000);
  // a batch of saves writes the same few seconds (now, now + expires) over and over: the last text
  // of each zone is kept (one instant is one local text, DST included; only a TZ changed while
  // the process runs would be missed, for the second cached)
  const last = zone === 'utc' ? lastUtc : lastLocal;
  if (last.sec === sec) return last.text;
  const d = new Date(sec * 1000);
  const text =
    zone === 'utc'
      ? `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
      : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  last.sec = sec;
  last.text = text;
  return text;
}
const lastUtc = { sec: NaN, text: '' };
const lastLocal = { sec: NaN, text: '' };

/** 'YYYY-MM-DD HH:MM:SS' -> unix ms, in UTC or local time. */
export function fromSqlDatetime(s: string, zone: 'utc' | 'local'): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})/.exec(s);
  if (!m) throw new StoreError('DB', `unexpected datetime value "${s}"`);
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return zone === 'utc' ? Date.UTC(y, mo - 1, d, h, mi, se) : new Date(y, mo - 1, d, h, mi, se).getTime();
}

/** A row of the Kamailio `location` table, as both SQL stores read and write it. */
export interface LocationRow {
  ruid: string;
  username: string;
  domain: string | null;
  contact: string;
  received: string | null;
  path: string | null;
  expires: string;
  q: number;
  callid: string;
  cseq: number;
  last_modified: string;
  flags: number;
  cflags: number;
  user_agent: string;
  socket: string | null;
  methods: number | null;
  instance: string | null;
  reg_id: number;
}

/** Column order used by INSERT/UPDATE in both SQL stores. */
export const LOCATION_COLUMNS = [
  'ruid',
  'username',
  'domain',
  'contact',
  'received',
  'path',
  'expires',
  'q',
  'callid',
  'cseq',
  'last_modified',
  'flags',
  'cflags',
  'user_agent',
  'socket',
  'methods',
  'instance',
  'reg_id',
] as const;

/** Binding -> positional values in LOCATION_COLUMNS order. A null q is stored as -1 (Kamailio Q_UNSPECIFIED). */
export function bindingToValues(b: Binding, zone: 'utc' | 'local'): (string | number | null)[] {
  const out: (string | number | null)[] = [];
  pushBindingValues(out, b, zone);
  return out;
}

/** bindingToValues(b) appended to `out` (a multi-row statement's values, without an array per row). */
export function pushBindingValues(out: (string | number | null)[], b: Binding, zone: 'utc' | 'local'): void {
  out.push(
    b.ruid,
    b.username,
    b.domain,
    b.contact,
    b.received ?? null,
    joinPath(b.path),
    toSqlDatetime(b.expires, zone),
    b.q ?? -1,
    b.callId,
    b.cseq,
    toSqlDatetime(b.lastModified, zone),
    b.flags,
    b.cflags,
    b.userAgent ?? '',
    b.socket ?? null,
    b.methods ?? null,
    b.instance ?? null,
    b.regId ?? 0,
  );
}

export function rowToBinding(r: LocationRow, zone: 'utc' | 'local'): Binding {
  const domain = r.domain ?? '';
  const b: Binding = {
    aor: `${r.username}@${domain}`,
    username: r.username,
    domain,
    contact: r.contact,
    expires: fromSqlDatetime(r.expires, zone),
    q: r.q < 0 ? null : Math.round(Number(r.q) * 1000) / 1000,
    callId: r.callid,
    cseq: Number(r.cseq),
    ruid: r.ruid,
    lastModified: fromSqlDatetime(r.last_modified, zone),
    flags: Number(r.flags),
    cflags: Number(r.cflags),
  };
  if (r.received !== null) b.received = r.received;
  const path = splitPath(r.path);
  if (path) b.path = path;
  if (r.user_agent) b.userAgent = r.user_agent;
  if (r.socket !== null) b.socket = r.socket;
  if (r.methods !== null) b.methods = Number(r.methods);
  if (r.instance !== null) b.instance = r.instance;
  if (Number(r.reg_id) > 0) b.regId = Number(r.reg_id);
  return b;
}

/** Throws StoreError INVALID unless the location table can hold `b` (see limits.ts). */
export function checkBinding(b: Binding): void {
  // b.aor must be b.username@b.domain, split at its last '@' (compared in place: no substrings)
  const at = aorAt(b.aor);
  if (at !== b.username.length || !b.aor.startsWith(b.username) || b.aor.length - at - 1 !== b.domain.length || !b.aor.endsWith(b.domain)) {
    throw new StoreError('INVALID', `binding aor "${b.aor}" does not match username/domain "${b.username}"/"${b.domain}"`);
  }
  if (!b.contact) throw new StoreError('INVALID', 'binding contact must not be empty');
  const p = locationFieldProblem(b);
  if (p !== undefined) throw new StoreError('INVALID', `binding of ${b.aor}: location.${p.column} ${p.problem}`);
}

/** A synchronous store operation as a settled Promise: its result, or what it threw as the rejection. */
export function settled<T>(op: () => T): Promise<T> {
  try {
    return Promise.resolve(op());
  } catch (e) {
    return Promise.reject(e);
  }
}
