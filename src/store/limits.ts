/**
 * What the Kamailio `location` table (sql/mysql/schema.sql, sql/sqlite/schema.sql) can hold. Every
 * store refuses a binding outside these limits with StoreError INVALID before writing anything (a
 * MySQL server in strict mode would refuse it with "Data too long", one in non-strict mode would
 * truncate it silently, SQLite would store it), so memory, SQLite and MySQL behave alike and the
 * write-back queue never holds a change that can never be written. The registrar checks a REGISTER
 * against the same limits to answer 400 naming the field.
 *
 * Lengths are in characters, as VARCHAR(n) counts them. SIP text is held as one character per byte
 * (latin1), so this is also the length in bytes on the wire.
 */
import type { Binding } from './types.js';

/** VARCHAR sizes of the location columns sipd writes. */
export const LOCATION_COLUMN_LENGTHS = {
  ruid: 64,
  username: 64,
  domain: 64,
  contact: 512,
  received: 128,
  /** all Path values joined with "," (as stored). */
  path: 512,
  callid: 255,
  user_agent: 255,
  socket: 64,
  instance: 255,
} as const;

export type LocationTextColumn = keyof typeof LOCATION_COLUMN_LENGTHS;
/** INT(11) columns sipd writes (signed 32-bit). */
export type LocationIntColumn = 'cseq' | 'flags' | 'cflags' | 'methods' | 'reg_id';
export type LocationColumn = LocationTextColumn | LocationIntColumn | 'expires' | 'last_modified' | 'q';

/** Largest value of an INT(11) column. */
export const LOCATION_INT_MAX = 0x7fffffff;
const INT_MIN = -0x80000000;

export interface LocationFieldProblem {
  column: LocationColumn;
  problem: 'too long' | 'out of range';
}

function text(column: LocationTextColumn, v: string | undefined | null): LocationFieldProblem | undefined {
  return v !== undefined && v !== null && v.length > LOCATION_COLUMN_LENGTHS[column] ? { column, problem: 'too long' } : undefined;
}

function int(column: LocationIntColumn, v: number | undefined): LocationFieldProblem | undefined {
  return v !== undefined && (!Number.isInteger(v) || v < INT_MIN || v > LOCATION_INT_MAX) ? { column, problem: 'out of range' } : undefined;
}

/** The first column of `b` the location table cannot hold, or undefined when it fits. */
export function locationFieldProblem(b: Binding): LocationFieldProblem | undefined {
  return (
    text('username', b.username) ??
    text('domain', b.domain) ??
    text('contact', b.contact) ??
    text('callid', b.callId) ??
    text('user_agent', b.userAgent) ??
    text('path', b.path && b.path.length > 0 ? b.path.join(',') : undefined) ??
    text('received', b.received) ??
    text('instance', b.instance) ??
    text('socket', b.socket) ??
    text('ruid', b.ruid) ??
    int('cseq', b.cseq) ??
    int('reg_id', b.regId) ??
    int('flags', b.flags) ??
    int('cflags', b.cflags) ??
    int('methods', b.methods) ??
    (Number.isFinite(b.expires) ? undefined : { column: 'expires', problem: 'out of range' }) ??
    (Number.isFinite(b.lastModified) ? undefined : { column: 'last_modified', problem: 'out of range' }) ??
    (b.q === null || (b.q >= 0 && b.q <= 1) ? undefined : { column: 'q', problem: 'out of range' })
  );
}
