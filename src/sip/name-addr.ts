import { SipParseError } from './errors.js';
import { isTokenChar } from './headers.js';
import { scratchBytes } from './bytes.js';
import { checkHeaderParams, EMPTY_PARAMS, headerParam, headerParamsAt, parseHeaderParams, type Params } from './params.js';
import { checkUriAt, parseUriAt, type Uri } from './uri.js';

/** name-addr / addr-spec with header parameters: From, To, Contact, Route, Record-Route, Path. */
export interface NameAddr {
  /** display name: quotes removed and quoted-pairs decoded; undefined when absent. */
  readonly displayName: string | undefined;
  readonly uri: Uri;
  /** true when the URI was written inside < >. */
  readonly bracketed: boolean;
  /** header parameters (tag, expires, q, unknown ...), names lower-cased, values as written. */
  readonly params: Params;
  /** the element text as received. */
  readonly raw: string;
}

export interface ContactStar {
  readonly star: true;
  readonly params: Params;
  readonly raw: string;
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x09;

function bad(reason: string): SipParseError {
  return new SipParseError('BAD_NAME_ADDR', reason);
}

/** Parse one name-addr or addr-spec followed by optional header params. */
export function parseNameAddr(raw: string): NameAddr {
  return parseNameAddrAt(raw, scratchBytes(raw), 0, raw.length, raw);
}

/** parseNameAddr(raw) where raw = src.slice(start, end), scanning in place (b: the octets of src, see parseViaAt). */
export function parseNameAddrAt(src: string, b: Uint8Array, start: number, end: number, raw: string): NameAddr {
  return nameAddrAt(src, b, start, end, raw)!;
}

/**
 * Throws what parseNameAddrAt(src, b, start, end, src.slice(start, end)) throws (the same checks, in the same order),
 * without building the address: for a header only validated (checkRequest).
 */
export function checkNameAddrAt(src: string, b: Uint8Array, start: number, end: number): void {
  nameAddrAt(src, b, start, end, undefined);
}

/** parseNameAddrAt; with raw undefined only the checks (nothing built, undefined returned). */
function nameAddrAt(src: string, b: Uint8Array, start: number, end: number, raw: string | undefined): NameAddr | undefined {
  const build = raw !== undefined;
  const s = src;
  const n = end;
  let i = start;
  while (i < n && isWs(b[i]!)) i++;
  if (i >= n) throw bad('empty address');
  let displayName: string | undefined;
  let quoted = false;
  let bracketed = false;
  let uriStart: number;
  let uriEnd: number;
  if (b[i] === 0x22) {
    // quoted display name: quoted-pairs decoded
    quoted = true;
    i++;
    let dn = '';
    let from = i;
    for (;;) {
      if (i >= n) throw bad('unterminated display name');
      const c = b[i]!;
      if (c === 0x5c) {
        if (i + 1 >= n) throw bad('unterminated display name');
        if (build) dn += s.slice(from, i) + s[i + 1];
        i += 2;
        from = i;
        continue;
      }
      if (c === 0x22) {
        if (build) dn += s.slice(from, i);
        i++;
        break;
      }
      i++;
    }
    displayName = dn;
    while (i < n && isWs(b[i]!)) i++;
    if (i >= n || b[i] !== 0x3c) throw bad('expected < after display name');
  }
  const lt = !quoted ? findLt(b, i, n) : i;
  if (lt !== -1) {
    if (!quoted && lt > i) {
      const dn = s.slice(i, lt).trim();
      let inner = false;
      for (let k = 0; k < dn.length; k++) {
        const c = dn.charCodeAt(k);
        if (isWs(c)) inner = true;
        else if (!isTokenChar(c)) throw bad('bad display name');
      }
      displayName = inner ? dn.replace(/[ \t]+/g, ' ') : dn;
    }
    const gt = charAt(s, '>', lt + 1, n);
    if (gt === -1) throw bad('missing >');
    if (gt === lt + 1 || isWs(b[lt + 1]!) || isWs(b[gt - 1]!)) throw bad('spaces inside < >');
    uriStart = lt + 1;
    uriEnd = gt;
    bracketed = true;
    i = gt + 1;
  } else {
    // addr-spec: the URI runs to the first ';' (params belong to the header) or whitespace
    const us = i;
    while (i < n) {
      const c = b[i]!;
      if (c === 0x3b || isWs(c)) break;
      i++;
    }
    uriStart = us;
    uriEnd = i;
    for (let k = us; k < i; k++) if (b[k] === 0x3f || b[k] === 0x2c) throw bad('URI with ? or , must be in < >');
  }
  if (!build) {
    checkUriAt(s, b, uriStart, uriEnd);
    if (i !== n) checkHeaderParams(s, b, 'BAD_NAME_ADDR', 'address', i, n);
    return undefined;
  }
  const uri = parseUriAt(s, b, uriStart, uriEnd, s.slice(uriStart, uriEnd));
  const params = i === n ? EMPTY_PARAMS : headerParamsAt(s, b, 'BAD_NAME_ADDR', 'address', i, n);
  return { displayName, uri, bracketed, params, raw };
}

/**
 * Header parameters of a name-addr / addr-spec (tag, expires ...) without parsing its URI or display name.
 * Equal to parseNameAddr(raw).params whenever that succeeds; undefined when the shape is not recognised.
 * Used for From/To tags, which routing needs before (or without) the full address.
 */
export function nameAddrParams(raw: string): Params | undefined {
  return nameAddrParamsAt(raw, scratchBytes(raw), 0, raw.length);
}

/** nameAddrParams(src.slice(start, end)), scanning src in place. */
export function nameAddrParamsAt(src: string, b: Uint8Array, start: number, end: number): Params | undefined {
  const i = paramsStart(src, b, start, end);
  if (i === -1) return undefined;
  try {
    return i === end ? EMPTY_PARAMS : headerParamsAt(src, b, 'BAD_NAME_ADDR', 'address', i, end);
  } catch {
    return undefined;
  }
}

/**
 * nameAddrParamsAt(src, start, end)?.get(want) without building the Map; false where nameAddrParamsAt gives
 * undefined (shape not recognised, or bad parameters).
 */
export function nameAddrParamAt(src: string, b: Uint8Array, start: number, end: number, want: string): string | null | undefined | false {
  const i = paramsStart(src, b, start, end);
  if (i === -1) return false;
  if (i === end) return undefined;
  try {
    return headerParam(src, b, 'BAD_NAME_ADDR', 'address', i, end, want);
  } catch {
    return false;
  }
}

/** Where the header parameters of the name-addr / addr-spec src[start, end) start (end if none), or -1. */
function paramsStart(src: string, b: Uint8Array, start: number, end: number): number {
  const n = end;
  let i = start;
  while (i < n && isWs(b[i]!)) i++;
  if (i >= n) return -1;
  let quoted = false;
  if (b[i] === 0x22) {
    quoted = true;
    i++;
    for (;;) {
      if (i >= n) return -1;
      const c = b[i]!;
      if (c === 0x5c) i += 2;
      else if (c === 0x22) break;
      else i++;
    }
    i++;
    while (i < n && isWs(b[i]!)) i++;
    if (i >= n || b[i] !== 0x3c) return -1;
  }
  const lt = quoted ? i : findLt(b, i, n);
  if (lt !== -1) {
    const gt = charAt(src, '>', lt + 1, n);
    if (gt === -1) return -1;
    i = gt + 1;
  } else {
    while (i < n) {
      const c = b[i]!;
      if (c === 0x3b || isWs(c)) break;
      i++;
    }
  }
  return i;
}

/** Position of a '<' that starts a name-addr URI (outside quotes), or -1. */
function findLt(b: Uint8Array, from: number, end: number): number {
  for (let i = from; i < end; i++) {
    const c = b[i]!;
    if (c === 0x3c) return i;
    if (c === 0x3b) return -1; // a ';' before any '<' means addr-spec with params
  }
  return -1;
}

/** Index of the (ASCII) character c in s[from, to), or -1; indexOf, which is much cheaper than a loop over the octets. */
function charAt(s: string, c: string, from: number, to: number): number {
  const i = s.indexOf(c, from);
  return i === -1 || i >= to ? -1 : i;
}

export function parseContact(raw: string): NameAddr | ContactStar {
  const t = raw.trim();
  if (t.charCodeAt(0) === 0x2a) {
    const params = parseHeaderParams(t.slice(1), 'BAD_NAME_ADDR', 'contact');
    return { star: true, params, raw };
  }
  return parseNameAddr(raw);
}

export function isStar(c: NameAddr | ContactStar): c is ContactStar {
  return 'star' in c;
}

/** Format a name-addr for a header we generate. */
export function formatNameAddr(uri: string, params: Params | undefined, displayName?: string): string {
  let out = displayName !== undefined ? `"${displayName.replace(/(["\\])/g, '\\$1')}" <${uri}>` : `<${uri}>`;
  if (params) for (const [k, v] of params) out += v === null ? `;${k}` : `;${k}=${v}`;
  return out;
}
