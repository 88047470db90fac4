import { parseAuthHeader, parseAuthHeaderAt, type AuthHeader } from './digest-header.js';
import { scratchBytes } from './bytes.js';
import { SipParseError } from './errors.js';
import { canonicalName, headerKey, keyBit, pushNonEmptyElements, splitList } from './headers.js';
import { checkNameAddrAt, nameAddrParamAt, parseContact, parseNameAddr, parseNameAddrAt, type ContactStar, type NameAddr } from './name-addr.js';
import { parseUri, type Uri } from './uri.js';
import { parseVia, parseViaAt, viaWithReceived, type Via } from './via.js';

/**
 * One header line as received (or as added by us). `raw` keeps the exact received text
 * (folding included, CRLF excluded) so that forwarding does not touch what we did not edit.
 * Strings hold bytes as latin1 characters, so every octet survives a round trip.
 */
export interface HeaderField {
  /** name as written (or canonical for headers we add). */
  readonly name: string;
  /** lower-case long form (compact forms expanded). */
  readonly key: string;
  /** value with folding replaced by a space and surrounding whitespace trimmed. */
  readonly value: string;
  /** the received line(s), or null when generated or edited. */
  readonly raw: string | null;
}

/**
 * A header line as parsed from a message: its value and its raw text are sliced from the received text when first
 * read, and its value is parsed there in place (see bytes.ts) by the accessors. Carries the received text, so it
 * can be moved to another message (e.g. copied into a response) and still be parsed in place.
 * @internal (parseMessage)
 */
export class ReceivedField implements HeaderField {
  readonly name: string;
  readonly key: string;
  /** the received text and its octets (bytes[i] = src.charCodeAt(i)) */
  readonly src: string;
  readonly bytes: Uint8Array;
  /** the value is src[vs, ve) when vs !== -1; otherwise it is `v` (folded or trimmed) */
  readonly vs: number;
  readonly ve: number;
  /** the line (raw) is src[ls, le) (bytes[ls, le): toBuffer copies it from there) */
  readonly ls: number;
  readonly le: number;
  private v: string | undefined;
  private r: string | undefined;

  constructor(name: string, key: string, src: string, bytes: Uint8Array, ls: number, le: number, vs: number, ve: number, value: string | undefined) {
    this.name = name;
    this.key = key;
    this.src = src;
    this.bytes = bytes;
    this.ls = ls;
    this.le = le;
    this.vs = vs;
    this.ve = ve;
    this.v = value;
    this.r = undefined;
  }

  get value(): string {
    let v = this.v;
    if (v === undefined) v = this.v = this.src.slice(this.vs, this.ve);
    return v;
  }

  get raw(): string {
    let r = this.r;
    if (r === undefined) r = this.r = this.src.slice(this.ls, this.le);
    return r;
  }

  /** True when the value is a non-empty range of src (so it can be parsed there). */
  inPlace(): boolean {
    return this.vs !== -1 && this.ve > this.vs;
  }

  toJSON(): { name: string; key: string; value: string; raw: string } {
    return { name: this.name, key: this.key, value: this.value, raw: this.raw };
  }
}

export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

const CRLF = '\r\n';

/** Presence-mask bits of the headers the accessors read (see SipMessage.indexed). */
const BIT_VIA = keyBit('via');
const BIT_FROM = keyBit('from');
const BIT_TO = keyBit('to');
const BIT_CALL_ID = keyBit('call-id');
const BIT_CSEQ = keyBit('cseq');
const BIT_MAX_FORWARDS = keyBit('max-forwards');
const BIT_CONTENT_LENGTH = keyBit('content-length');
const BIT_CONTENT_TYPE = keyBit('content-type');
const BIT_EXPIRES = keyBit('expires');
const BIT_MIN_EXPIRES = keyBit('min-expires');
const BIT_CONTACT = keyBit('contact');
const BIT_USER_AGENT = keyBit('user-agent');

/** Buffer's own latin1 writer (what buf.write(s, o, 'latin1') ends in), without the argument juggling. */
interface Latin1Writable {
  latin1Write(s: string, offset: number): number;
}

const isSpTab = (c: number): boolean => c === 0x20 || c === 0x09;

/**
 * Span [start, end) of the first `;rport[=digits]` (name 'rport': value absent or digits; the span stops before
 * trailing whitespace) or `;received=value` (name 'received': a value is required; the span runs to the next ';')
 * parameter in a Via value, names case-insensitive: returns start and sets viaParamEnd to end; -1 when there is none.
 */
function findViaParam(v: string, name: 'rport' | 'received'): number {
  for (let semi = v.indexOf(';'); semi !== -1; semi = v.indexOf(';', semi + 1)) {
    let i = semi + 1;
    while (i < v.length && isSpTab(v.charCodeAt(i))) i++;
    if (v.length - i < name.length) return -1;
    let match = true;
    for (let k = 0; k < name.length; k++) {
      if ((v.charCodeAt(i + k) | 0x20) !== name.charCodeAt(k)) {
        match = false;
        break;
      }
    }
    if (!match) continue;
    i += name.length;
    let j = i;
    while (j < v.length && isSpTab(v.charCodeAt(j))) j++;
    const next = v.indexOf(';', j);
    const segEnd = next === -1 ? v.length : next;
    if (name === 'received') {
      if (v.charCodeAt(j) !== 0x3d) continue;
      viaParamEnd = segEnd;
      return semi;
    }
    // rport: nothing, or '=' digits, then only whitespace up to the next ';'
    if (j === segEnd) {
      viaParamEnd = i;
      return semi;
    }
    if (v.charCodeAt(j) !== 0x3d) continue;
    j++;
    while (j < segEnd && isSpTab(v.charCodeAt(j))) j++;
    while (j < segEnd && v.charCodeAt(j) >= 0x30 && v.charCodeAt(j) <= 0x39) j++;
    let t = j;
    while (t < segEnd && isSpTab(v.charCodeAt(t))) t++;
    if (t === segEnd) {
      viaParamEnd = j;
      return semi;
    }
  }
  return -1;
}

const T_COMMA = 1;
const T_TRIM = 2;
const T_ABORT = 3;
/** Octets of a token list by class: ',' ; what String.prototype.trim removes (latin1) ; '"' or '<' ; 0 anything else. */
const TOKEN_LIST_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = c === 0x2c ? T_COMMA : c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0 ? T_TRIM : c === 0x22 || c === 0x3c ? T_ABORT : 0;
  return t;
})();

/**
 * pushNonEmptyElements(src.slice(vs, ve), out) scanning the octets b[vs, ve) of the received text in place (one pass),
 * for a value without '"' or '<' (every comma separates); false (and out as it was) when the value holds either.
 */
function pushTokensAt(src: string, b: Uint8Array, vs: number, ve: number, out: string[]): boolean {
  const n0 = out.length;
  // the element being scanned: its first and after-last octets that are not trimmed (a === -1: none yet)
  let a = -1;
  let z = -1;
  for (let k = vs; k < ve; k++) {
    const t = TOKEN_LIST_CLASS[b[k]!]!;
    if (t === 0) {
      if (a === -1) a = k;
      z = k + 1;
    } else if (t === T_COMMA) {
      if (a !== -1) out.push(src.slice(a, z));
      a = -1;
    } else if (t === T_ABORT) {
      out.length = n0;
      return false;
    }
  }
  if (a !== -1) out.push(src.slice(a, z));
  return true;
}

/** where the span findViaParam found ends (set with its result: no tuple per call) */
let viaParamEnd = 0;

/** Parse a non-negative decimal (leading zeros allowed) with an upper bound; throws BAD_NUMBER. */
export function parseBoundedInt(v: string, max: number, what: string): number {
  if (v.length === 0 || v.length > 12) throw new SipParseError('BAD_NUMBER', `bad ${what}`);
  // the digits' value, exact (at most 12 digits): as Number(v), without the string-to-number conversion
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) throw new SipParseError('BAD_NUMBER', `bad ${what}`);
    n = n * 10 + (c - 0x30);
  }
  if (n > max) throw new SipParseError('BAD_NUMBER', `${what} out of range`);
  return n;
}

/** True when a string starts or ends with whitespace (so it needs trimming). */
export function edgeWs(v: string): boolean {
  if (v.length === 0) return false;
  const a = v.charCodeAt(0);
  const b = v.charCodeAt(v.length - 1);
  return a <= 0x20 || b <= 0x20 || a === 0xa0 || b === 0xa0;
}

/** CSeq value: 1*DIGIT LWS Method, number <= 2^31-1. */
function parseCSeq(v: string): CSeq {
  let i = 0;
  let seq = 0;
  for (; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    seq = seq * 10 + (c - 0x30);
  }
  if (i === 0 || i > 12) throw new SipParseError('BAD_CSEQ', 'bad CSeq');
  const digitsEnd = i;
  while (i < v.length && (v.charCodeAt(i) === 0x20 || v.charCodeAt(i) === 0x09)) i++;
  if (i === digitsEnd || i === v.length) throw new SipParseError('BAD_CSEQ', 'bad CSeq');
  for (let j = i; j < v.length; j++) if (v.charCodeAt(j) === 0x20 || v.charCodeAt(j) === 0x09) throw new SipParseError('BAD_CSEQ', 'bad CSeq');
  // seq: the digits' value, exact (at most 12 digits)
  if (seq > 0x7fffffff) throw new SipParseError('BAD_CSEQ', 'CSeq out of range');
  return { seq, method: i === 0 ? v : v.slice(i) };
}

/** Number of decimal digits of a non-negative integer. */
function decimalDigits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Write n (digits: decimalDigits(n)) at out[o]; returns the offset after it. */
function writeDecimal(out: Buffer, o: number, n: number, digits: number): number {
  for (let k = o + digits - 1; k >= o; k--) {
    out[k] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return o + digits;
}

/** Is the value of this line String(n) exactly (no leading zeros, no sign)? Compared on its octets when in place. */
function sameDecimal(h: ReceivedField, n: number): boolean {
  if (!h.inPlace()) return h.value === String(n);
  const b = h.bytes;
  const len = h.ve - h.vs;
  if (len !== decimalDigits(n)) return false;
  for (let k = h.ve - 1; k >= h.vs; k--) {
    if (b[k] !== 0x30 + (n % 10)) return false;
    n = Math.floor(n / 10);
  }
  return true;
}

/** True when the lines with this key are the same objects in the same order in a and b. */
function sameLines(a: readonly HeaderField[], b: readonly HeaderField[], key: string): boolean {
  let i = 0;
  let j = 0;
  for (;;) {
    while (i < a.length && a[i]!.key !== key) i++;
    while (j < b.length && b[j]!.key !== key) j++;
    if (i === a.length || j === b.length) return i === a.length && j === b.length;
    if (a[i] !== b[j]) return false;
    i++;
    j++;
  }
}

/** Copy bytes[start, end) and a CRLF to out[o]; returns the offset after them. */
function copyRun(bytes: Uint8Array, start: number, end: number, out: Buffer, o: number): number {
  const n = end - start;
  if (n <= 64) for (let k = 0; k < n; k++) out[o + k] = bytes[start + k]!;
  else out.set(bytes.subarray(start, end), o);
  o += n;
  out[o++] = 0x0d;
  out[o++] = 0x0a;
  return o;
}

export abstract class SipMessage {
  /** the header lines (see `headers`) */
  protected hs: HeaderField[];
  // the body: bodyBuf, or (when that is undefined) bodySrc[bodyStart, bodyEnd), made a Buffer view on first read
  private bodyBuf: Buffer | undefined;
  private bodySrc: Buffer | undefined = undefined;
  private bodyStart = 0;
  private bodyEnd = 0;
  /** version as written in the start line, upper-cased, e.g. "SIP/2.0". */
  version: string;
  protected startLineRaw: string | null;
  // parsed-value caches (undefined: not parsed yet; null: header absent)
  private cVias: Via[] | undefined = undefined;
  private cTopVia: Via | null | undefined = undefined;
  /** the line cTopVia was parsed from when it is a line of its own (one element), else undefined (see adoptTopVia) */
  private cTopViaField: HeaderField | undefined = undefined;
  private cSecondVia: Via | null | undefined = undefined;
  private cFrom: NameAddr | null | undefined = undefined;
  private cTo: NameAddr | null | undefined = undefined;
  private cCSeq: CSeq | null | undefined = undefined;
  private cContacts: Array<NameAddr | ContactStar> | undefined = undefined;
  private cRoutes: NameAddr[] | undefined = undefined;
  private cRecordRoutes: NameAddr[] | undefined = undefined;
  private cPaths: NameAddr[] | undefined = undefined;
  private cAuth: Map<string, AuthHeader[]> | undefined = undefined;
  // where some values sit in the received header text (see source)
  // presence mask (see indexed): valid while the lines are pArr
  private pMask = 0;
  private pArr: HeaderField[] | undefined = undefined;

  constructor(headers: HeaderField[], body: Buffer, version: string, startLineRaw: string | null) {
    this.hs = headers;
    this.bodyBuf = body;
    this.version = version;
    this.startLineRaw = startLineRaw;
  }

  /**
   * The header lines, in order. Editing through the methods below is cheapest; the array may also be edited directly
   * or replaced (reading it here makes the accessors scan the lines from then on instead of using the presence mask).
   */
  get headers(): HeaderField[] {
    this.pArr = undefined;
    return this.hs;
  }

  /** The header lines, in order, to read only (unlike `headers`, reading them keeps the presence mask). */
  get headerList(): readonly HeaderField[] {
    return this.hs;
  }

  set headers(hs: HeaderField[]) {
    const old = this.hs;
    this.hs = hs;
    this.pArr = undefined;
    this.invalidateChanged(old, hs);
  }

  get body(): Buffer {
    let b = this.bodyBuf;
    if (b === undefined) {
      b = this.bodyBuf = this.bodySrc!.subarray(this.bodyStart, this.bodyEnd);
      this.bodySrc = undefined;
    }
    return b;
  }

  set body(b: Buffer) {
    this.bodyBuf = b;
    this.bodySrc = undefined;
  }

  /** @internal (parseMessage) the body is data[start, end) (not empty); its Buffer view is made when first read. */
  bodyIn(data: Buffer, start: number, end: number): void {
    this.bodyBuf = undefined;
    this.bodySrc = data;
    this.bodyStart = start;
    this.bodyEnd = end;
  }

  abstract readonly isRequest: boolean;
  protected abstract buildStartLine(): string;
  /** the three parts of the start line buildStartLine() joins with single spaces (toBuffer writes them one by one) */
  protected abstract startLinePart(i: 0 | 1 | 2): string;

  // ---------------------------------------------------------------- generic access

  /** First value of a header (any spelling or compact form of the name). */
  header(name: string): string | undefined {
    return this.first(headerKey(name));
  }

  /** First value of the header with this key (lower-case long form). */
  private first(key: string, bit: number = keyBit(key)): string | undefined {
    if (!this.may(bit)) return undefined;
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) if (hs[i]!.key === key) return hs[i]!.value;
    return undefined;
  }

  /** Values of every line of a header, in order. */
  headerValues(name: string): string[] {
    return this.valuesOf(headerKey(name));
  }

  private valuesOf(key: string): string[] {
    const out: string[] = [];
    if (!this.may(keyBit(key))) return out;
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) if (hs[i]!.key === key) out.push(hs[i]!.value);
    return out;
  }

  /** Every list element of a list header across all its lines (Via, Route, Contact, Supported ...). */
  listValues(name: string): string[] {
    return this.listOf(headerKey(name));
  }

  private listOf(key: string, bit: number = keyBit(key)): string[] {
    const out: string[] = [];
    if (!this.may(bit)) return out;
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      if (h.key !== key) continue;
      const v = h.value;
      if (v.indexOf(',') === -1 && !edgeWs(v)) out.push(v);
      else for (const e of splitList(v)) out.push(e);
    }
    return out;
  }

  /** Number of list elements of a header across its lines (listValues(name).length, without the list). */
  listCount(name: string): number {
    const key = headerKey(name);
    if (!this.may(keyBit(key))) return 0;
    const hs = this.hs;
    let n = 0;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      if (h.key !== key) continue;
      const v = h.value;
      n += v.indexOf(',') === -1 ? 1 : splitList(v).length;
    }
    return n;
  }

  has(name: string): boolean {
    return this.first(headerKey(name)) !== undefined;
  }

  count(name: string): number {
    const key = headerKey(name);
    let n = 0;
    for (const h of this.hs) if (h.key === key) n++;
    return n;
  }

  /** After the lines `old` were replaced by `hs`: forget the parsed values of every header whose lines are not the same. */
  private invalidateChanged(old: readonly HeaderField[], hs: readonly HeaderField[]): void {
    if ((this.cVias !== undefined || this.cTopVia !== undefined || this.cSecondVia !== undefined) && !sameLines(old, hs, 'via')) this.invalidate('via');
    if (this.cFrom !== undefined && !sameLines(old, hs, 'from')) this.cFrom = undefined;
    if (this.cTo !== undefined && !sameLines(old, hs, 'to')) this.cTo = undefined;
    if (this.cCSeq !== undefined && !sameLines(old, hs, 'cseq')) this.cCSeq = undefined;
    if (this.cContacts !== undefined && !sameLines(old, hs, 'contact')) this.cContacts = undefined;
    if (this.cRoutes !== undefined && !sameLines(old, hs, 'route')) this.cRoutes = undefined;
    if (this.cRecordRoutes !== undefined && !sameLines(old, hs, 'record-route')) this.cRecordRoutes = undefined;
    if (this.cPaths !== undefined && !sameLines(old, hs, 'path')) this.cPaths = undefined;
    const auth = this.cAuth;
    if (auth !== undefined) for (const key of [...auth.keys()]) if (!sameLines(old, hs, key)) auth.delete(key);
  }

  protected invalidate(key: string): void {
    switch (key) {
      case 'via':
        this.cVias = undefined;
        this.cTopVia = undefined;
        this.cTopViaField = undefined;
        this.cSecondVia = undefined;
        break;
      case 'from':
        this.cFrom = undefined;
        break;
      case 'to':
        this.cTo = undefined;
        break;
      case 'cseq':
        this.cCSeq = undefined;
        break;
      case 'contact':
        this.cContacts = undefined;
        break;
      case 'route':
        this.cRoutes = undefined;
        break;
      case 'record-route':
        this.cRecordRoutes = undefined;
        break;
      case 'path':
        this.cPaths = undefined;
        break;
      default:
        this.cAuth?.delete(key);
    }
  }

  // ---------------------------------------------------------------- structured access (lazy, cached)

  /** parseVia(v) for the value v of line h (v = h.value, one element). */
  private viaOf(h: HeaderField, v: string): Via {
    return h instanceof ReceivedField && h.inPlace() ? parseViaAt(h.src, h.bytes, h.vs, h.ve, v) : parseVia(v);
  }

  /** parseNameAddr(v) for the value v of line h (v = h.value). */
  private nameAddrOf(h: HeaderField, v: string): NameAddr {
    return h instanceof ReceivedField && h.inPlace() ? parseNameAddrAt(h.src, h.bytes, h.vs, h.ve, v) : parseNameAddr(v);
  }

  /** First line of a header. */
  private firstField(key: string, bit: number = keyBit(key)): HeaderField | undefined {
    if (!this.may(bit)) return undefined;
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) if (hs[i]!.key === key) return hs[i]!;
    return undefined;
  }

  /**
   * @internal (parseMessage) Every key with a presence bit (keyBit) that a line has is in mask, so the accessors of a
   * header that is absent return without scanning the lines. The mask holds while the lines are only edited through
   * the methods below (which keep it) and `headers` is not read from outside (which could edit the array).
   */
  indexed(mask: number): void {
    this.pMask = mask;
    this.pArr = this.hs;
  }

  /** False only when no line has the key of this bit (bit 0: a key without a bit, which may be there). */
  private may(bit: number): boolean {
    return bit === 0 || (this.pMask & bit) !== 0 || this.hs !== this.pArr;
  }

  private maskValid(): boolean {
    return this.pArr !== undefined && this.hs === this.pArr;
  }

  /** After an edit through the methods that may have added lines of `key`: keep the mask if it held before (ok). */
  private reindex(ok: boolean, key: string): void {
    if (!ok) {
      this.pArr = undefined;
      return;
    }
    this.pMask |= keyBit(key);
    this.pArr = this.hs;
  }

  /** @internal (clone) the presence mask of `from`, when it holds, for a copy of its lines. */
  protected copyIndex(from: SipMessage): void {
    if (from.maskValid()) this.indexed(from.pMask);
  }

  /** All Via values top to bottom. Throws SipParseError(BAD_VIA) if any is malformed. */
  vias(): Via[] {
    if (this.cVias !== undefined) return this.cVias;
    // every element in order (as listValues('via')); a line holding one element is parsed in place
    const out: Via[] = [];
    if (this.may(BIT_VIA)) {
      const hs = this.hs;
      for (let i = 0; i < hs.length; i++) {
        const h = hs[i]!;
        if (h.key !== 'via') continue;
        const v = h.value;
        if (v.indexOf(',') === -1 && !edgeWs(v)) {
          if (v.length === 0) throw new SipParseError('BAD_VIA', 'empty Via value');
          // the top Via may already be parsed
          out.push(out.length === 0 && this.cTopVia ? this.cTopVia : this.viaOf(h, v));
        } else {
          const es = splitList(v);
          for (let k = 0; k < es.length; k++) {
            const e = es[k]!;
            if (e.length === 0) throw new SipParseError('BAD_VIA', 'empty Via value');
            out.push(out.length === 0 && this.cTopVia ? this.cTopVia : parseVia(e));
          }
        }
      }
    }
    this.cVias = out;
    return out;
  }

  topVia(): Via | undefined {
    if (this.cTopVia !== undefined) return this.cTopVia ?? undefined;
    if (this.cVias !== undefined) {
      this.cTopVia = this.cVias[0] ?? null;
      return this.cTopVia ?? undefined;
    }
    const h = this.firstField('via', BIT_VIA);
    if (h === undefined) {
      this.cTopVia = null;
      return undefined;
    }
    const first = h.value;
    const simple = first.indexOf(',') === -1 && !edgeWs(first);
    const v = simple ? first : (splitList(first)[0] ?? '');
    if (v.length === 0) throw new SipParseError('BAD_VIA', 'empty Via value');
    const via = simple ? this.viaOf(h, v) : parseVia(v);
    this.cTopVia = via;
    if (simple) this.cTopViaField = h;
    return via;
  }

  /**
   * The second Via element (the one below the top Via), undefined when there is none. Throws SipParseError(BAD_VIA)
   * when it is malformed (the top one is not parsed). A response's next hop after ours: the top Via once ours is
   * removed (removeFirstValue('via') keeps it parsed).
   */
  secondVia(): Via | undefined {
    if (this.cSecondVia !== undefined) return this.cSecondVia ?? undefined;
    if (this.cVias !== undefined) {
      this.cSecondVia = this.cVias[1] ?? null;
      return this.cSecondVia ?? undefined;
    }
    let seen = 0;
    if (this.may(BIT_VIA)) {
      const hs = this.hs;
      for (let i = 0; i < hs.length; i++) {
        const h = hs[i]!;
        if (h.key !== 'via') continue;
        const v = h.value;
        if (v.indexOf(',') === -1 && !edgeWs(v)) {
          if (++seen === 2) return (this.cSecondVia = this.viaOf(h, v));
        } else {
          const es = splitList(v);
          if (seen + es.length >= 2) return (this.cSecondVia = parseVia(es[1 - seen]!));
          seen += es.length;
        }
      }
    }
    this.cSecondVia = null;
    return undefined;
  }

  /** @internal (clone) the parsed top and second Via of `from`, whose lines this message has (the same objects). */
  protected copyVias(from: SipMessage): void {
    this.cTopVia = from.cTopVia;
    this.cTopViaField = from.cTopViaField;
    this.cSecondVia = from.cSecondVia;
  }

  /**
   * @internal (buildResponse) Take the parsed top Via of `from` when this message's first Via line is the very line
   * it was parsed from (a response's Via lines are the request's own objects): one parse for both.
   */
  adoptTopVia(from: SipMessage): void {
    const f = from.cTopViaField;
    const via = from.cTopVia;
    if (f === undefined || via === undefined || via === null || this.cTopVia !== undefined) return;
    if (this.firstField('via', BIT_VIA) !== f || from.firstField('via', BIT_VIA) !== f) return;
    this.cTopVia = via;
    this.cTopViaField = f;
  }

  from(): NameAddr | undefined {
    if (this.cFrom === undefined) {
      const h = this.firstField('from', BIT_FROM);
      this.cFrom = h === undefined ? null : this.nameAddrOf(h, h.value);
    }
    return this.cFrom ?? undefined;
  }

  to(): NameAddr | undefined {
    if (this.cTo === undefined) {
      const h = this.firstField('to', BIT_TO);
      this.cTo = h === undefined ? null : this.nameAddrOf(h, h.value);
    }
    return this.cTo ?? undefined;
  }

  /** Throws what from() throws; where From is not parsed yet, without building the address (checkRequest). */
  checkFrom(): void {
    this.checkAddress('from', BIT_FROM, this.cFrom);
  }

  /** Throws what to() throws; where To is not parsed yet, without building the address (checkRequest). */
  checkTo(): void {
    this.checkAddress('to', BIT_TO, this.cTo);
  }

  private checkAddress(key: 'from' | 'to', bit: number, parsed: NameAddr | null | undefined): void {
    if (parsed !== undefined) return;
    const h = this.firstField(key, bit);
    if (h === undefined) return;
    if (h instanceof ReceivedField && h.inPlace()) checkNameAddrAt(h.src, h.bytes, h.vs, h.ve);
    else if (key === 'from') this.from();
    else this.to();
  }

  /**
   * From tag. Reads only the header parameters (not the URI or display name) unless From is already parsed,
   * so it is available for routing and transaction matching even when from() would reject the address.
   */
  fromTag(): string | undefined {
    return this.tagOf('from');
  }

  /** To tag; see fromTag(). */
  toTag(): string | undefined {
    return this.tagOf('to');
  }

  private tagOf(key: 'from' | 'to'): string | undefined {
    const parsed = key === 'from' ? this.cFrom : this.cTo;
    if (parsed !== undefined) return parsed?.params.get('tag') ?? undefined;
    const h = this.firstField(key, key === 'from' ? BIT_FROM : BIT_TO);
    if (h === undefined) return undefined;
    const v = h.value;
    const tag = h instanceof ReceivedField && h.inPlace() ? nameAddrParamAt(h.src, h.bytes, h.vs, h.ve, 'tag') : nameAddrParamAt(v, scratchBytes(v), 0, v.length, 'tag');
    if (tag !== false) return tag ?? undefined;
    const full = key === 'from' ? this.from() : this.to();
    return full?.params.get('tag') ?? undefined;
  }

  callId(): string | undefined {
    return this.first('call-id', BIT_CALL_ID);
  }

  cseq(): CSeq | undefined {
    if (this.cCSeq === undefined) {
      const v = this.first('cseq', BIT_CSEQ);
      this.cCSeq = v === undefined ? null : parseCSeq(v);
    }
    return this.cCSeq ?? undefined;
  }

  maxForwards(): number | undefined {
    const v = this.first('max-forwards', BIT_MAX_FORWARDS);
    return v === undefined ? undefined : parseBoundedInt(v, 0xffffffff, 'Max-Forwards');
  }

  contentLength(): number | undefined {
    const v = this.first('content-length', BIT_CONTENT_LENGTH);
    return v === undefined ? undefined : parseBoundedInt(v, 0xffffffff, 'Content-Length');
  }

  contentType(): string | undefined {
    return this.first('content-type', BIT_CONTENT_TYPE);
  }

  /** Expires header in seconds; values beyond 2^32-1 are treated as absent (RFC 4475 scalar02). */
  expires(): number | undefined {
    const v = this.first('expires', BIT_EXPIRES);
    if (v === undefined) return undefined;
    try {
      return parseBoundedInt(v, 0xffffffff, 'Expires');
    } catch (e) {
      if (e instanceof SipParseError && e.reason.endsWith('out of range')) return undefined;
      throw e;
    }
  }

  minExpires(): number | undefined {
    const v = this.first('min-expires', BIT_MIN_EXPIRES);
    return v === undefined ? undefined : parseBoundedInt(v, 0xffffffff, 'Min-Expires');
  }

  contacts(): Array<NameAddr | ContactStar> {
    return (this.cContacts ??= this.nameAddrList('contact', 'Contact', true));
  }

  /**
   * Every name-addr of the `key` lines in order (as listValues(key)); a line holding one element is
   * parsed in place. `contact`: an element may be '*' (parseContact).
   */
  private nameAddrList(key: string, label: string): NameAddr[];
  private nameAddrList(key: string, label: string, contact: true): Array<NameAddr | ContactStar>;
  private nameAddrList(key: string, label: string, contact = false): Array<NameAddr | ContactStar> {
    const out: Array<NameAddr | ContactStar> = [];
    if (!this.may(keyBit(key))) return out;
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      if (h.key !== key) continue;
      const v = h.value;
      if (v.indexOf(',') === -1 && !edgeWs(v)) {
        if (v.length === 0) throw new SipParseError('BAD_NAME_ADDR', `empty ${label} value`);
        // parseContact: '*' (after trimming) or a name-addr; an element of its own line has no edge whitespace
        out.push(contact && v.charCodeAt(0) === 0x2a ? parseContact(v) : this.nameAddrOf(h, v));
      } else {
        const es = splitList(v);
        for (let k = 0; k < es.length; k++) {
          const e = es[k]!;
          if (e.length === 0) throw new SipParseError('BAD_NAME_ADDR', `empty ${label} value`);
          out.push(contact ? parseContact(e) : parseNameAddr(e));
        }
      }
    }
    return out;
  }

  routes(): NameAddr[] {
    return (this.cRoutes ??= this.nameAddrList('route', 'route'));
  }

  recordRoutes(): NameAddr[] {
    return (this.cRecordRoutes ??= this.nameAddrList('record-route', 'record-route'));
  }

  paths(): NameAddr[] {
    return (this.cPaths ??= this.nameAddrList('path', 'path'));
  }

  /** Option tags / tokens of a list header (Require, Proxy-Require, Supported, Unsupported, Allow, Accept ...). */
  tokens(name: string): string[] {
    // a name already in key form (the usual call) needs no lower-casing
    let key = name;
    let bit = keyBit(name);
    if (bit === 0) {
      key = headerKey(name);
      bit = keyBit(key);
    }
    const out: string[] = [];
    if (!this.may(bit)) return out;
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      if (h.key !== key) continue;
      if (h instanceof ReceivedField && h.inPlace() && pushTokensAt(h.src, h.bytes, h.vs, h.ve, out)) continue;
      const v = h.value;
      if (v.indexOf(',') === -1 && !edgeWs(v)) {
        if (v.length !== 0) out.push(v);
      } else pushNonEmptyElements(v, out);
    }
    return out;
  }

  /** Authorization-style headers (Authorization, Proxy-Authorization, WWW-Authenticate, Proxy-Authenticate). */
  auth(name: 'authorization' | 'proxy-authorization' | 'www-authenticate' | 'proxy-authenticate'): AuthHeader[] {
    const hit = this.cAuth?.get(name);
    if (hit !== undefined) return hit;
    const v: AuthHeader[] = [];
    if (!this.may(keyBit(name))) return v;
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      if (h.key !== name) continue;
      v.push(h instanceof ReceivedField && h.inPlace() ? parseAuthHeaderAt(h.src, h.bytes, h.vs, h.ve, h.value) : parseAuthHeader(h.value));
    }
    (this.cAuth ??= new Map()).set(name, v);
    return v;
  }

  userAgent(): string | undefined {
    return this.first('user-agent', BIT_USER_AGENT);
  }

  // ---------------------------------------------------------------- in-place editing

  /** Insert a header line. `top` puts it above every other header, `before` above the first line of the same name. */
  addHeader(name: string, value: string, where: 'top' | 'bottom' | 'before' = 'bottom'): void {
    const key = headerKey(name);
    const field: HeaderField = { name: canonicalName(name), key, value, raw: null };
    this.invalidate(key);
    const ok = this.maskValid();
    if (where === 'top') this.hs.unshift(field);
    else if (where === 'before') {
      const i = this.indexOfKey(key);
      if (i === -1) this.hs.unshift(field);
      else this.hs.splice(i, 0, field);
    } else this.hs.push(field);
    this.reindex(ok, key);
  }

  /** Index of the first line with this key, -1 when there is none. */
  private indexOfKey(key: string): number {
    const hs = this.hs;
    for (let i = 0; i < hs.length; i++) if (hs[i]!.key === key) return i;
    return -1;
  }

  /** Replace every line of a header by one line with `value` (kept at the position of the first). */
  setHeader(name: string, value: string): void {
    const key = headerKey(name);
    const i = this.indexOfKey(key);
    this.invalidate(key);
    const ok = this.maskValid();
    if (i === -1) {
      this.hs.push({ name: canonicalName(name), key, value, raw: null });
      this.reindex(ok, key);
      return;
    }
    const hs = this.hs;
    const old = hs[i]!;
    hs[i] = { name: old.name, key, value, raw: null };
    // the other lines of the header go (in place: the array is this message's own)
    let w = i + 1;
    for (let j = i + 1; j < hs.length; j++) {
      const h = hs[j]!;
      if (h.key !== key) hs[w++] = h;
    }
    hs.length = w;
    this.reindex(ok, key);
  }

  /** Remove every line of a header; returns how many lines were removed. */
  removeHeader(name: string): number {
    const key = headerKey(name);
    if (this.indexOfKey(key) === -1) {
      this.invalidate(key);
      return 0;
    }
    const before = this.hs.length;
    const ok = this.maskValid();
    this.hs = this.hs.filter((h) => h.key !== key);
    this.reindex(ok, key);
    this.invalidate(key);
    return before - this.hs.length;
  }

  /** Remove the first list element of a list header (top Via, first Route); returns it, or undefined. */
  removeFirstValue(name: string): string | undefined {
    const key = headerKey(name);
    const i = this.indexOfKey(key);
    if (i === -1) return undefined;
    const h = this.hs[i]!;
    const v = h.value;
    if (v.indexOf(',') === -1 && !edgeWs(v)) {
      // one element (splitList would return [v]): the line goes
      const second = key === 'via' ? this.cSecondVia : undefined;
      this.invalidate(key);
      const ok = this.maskValid();
      this.hs.splice(i, 1);
      this.reindex(ok, key);
      if (second !== undefined) {
        // the second Via, parsed, is the top one now
        this.cTopVia = second;
        const h2 = second === null ? undefined : this.firstField('via', BIT_VIA);
        if (h2 !== undefined && second !== null && h2.value === second.raw && h2.value.indexOf(',') === -1 && !edgeWs(h2.value)) this.cTopViaField = h2;
      }
      return v;
    }
    const parts = splitList(v);
    const first = parts.shift();
    this.invalidate(key);
    const ok = this.maskValid();
    if (parts.length === 0) this.hs.splice(i, 1);
    else this.hs[i] = { name: h.name, key, value: parts.join(', '), raw: null };
    this.reindex(ok, key);
    return first;
  }

  /** Replace the first list element of a header (e.g. the top Via after adding received/rport). */
  replaceFirstValue(name: string, value: string): void {
    const key = headerKey(name);
    const i = this.indexOfKey(key);
    if (i === -1) throw new Error(`no ${name} header`);
    const h = this.hs[i]!;
    const old = h.value;
    if (old.indexOf(',') === -1 && !edgeWs(old)) {
      // one element (splitList would return [old]): the line's value is `value`
      this.invalidate(key);
      this.hs[i] = { name: h.name, key, value, raw: null };
      return;
    }
    const parts = splitList(old);
    parts[0] = value;
    this.invalidate(key);
    this.hs[i] = { name: h.name, key, value: parts.join(', '), raw: null };
  }

  /**
   * RFC 3261 §18.2.1 / RFC 3581: add `received` and fill `rport` in the top Via.
   * Only the top Via value is rewritten; other values and headers keep their bytes.
   */
  setViaReceived(received: string | undefined, rport: number | undefined): void {
    const first = this.first('via', BIT_VIA);
    if (first === undefined) return;
    const simple = first.indexOf(',') === -1 && !edgeWs(first);
    const top = simple ? first : (splitList(first)[0] ?? '');
    let v = top;
    // replace a value-less rport (or an existing value) by rport=PORT
    let rportReplaced = false;
    if (rport !== undefined) {
      const r = findViaParam(v, 'rport');
      if (r !== -1) {
        v = viaParamEnd === v.length ? `${v.slice(0, r)};rport=${rport}` : `${v.slice(0, r)};rport=${rport}${v.slice(viaParamEnd)}`;
        rportReplaced = true;
      }
    }
    let receivedReplaced = false;
    if (received !== undefined) {
      const r = findViaParam(v, 'received');
      receivedReplaced = r !== -1;
      v = r === -1 ? `${v};received=${received}` : `${v.slice(0, r)};received=${received}${v.slice(viaParamEnd)}`;
    }
    if (v === top) return;
    // the top Via as parsed before the edit (when it was, from this line of one element): the edited one is made from
    // it rather than parsed again (viaWithReceived says where it cannot be)
    const parsed = simple && this.cTopViaField !== undefined ? this.cTopVia : undefined;
    this.replaceFirstValue('via', v);
    if (parsed === undefined || parsed === null || parsed.raw !== top) return;
    const edited = viaWithReceived(parsed, v, received, receivedReplaced, rport, rportReplaced);
    if (edited === undefined) return;
    this.cTopVia = edited;
    this.cTopViaField = this.firstField('via', BIT_VIA);
  }

  /** Set the body and its Content-Type; Content-Length is fixed on serialisation. */
  setBody(body: Buffer, contentType?: string): void {
    this.body = body;
    if (contentType !== undefined) this.setHeader('content-type', contentType);
  }

  // ---------------------------------------------------------------- serialisation

  /**
   * Header section + body as bytes. Unedited lines are emitted exactly as received. Content-Length always matches the body.
   * One Buffer, written in place: the size is summed first, then the start line and the edited lines are written as
   * latin1 and the runs of unedited received lines (adjacent in their source) are copied from the received bytes.
   */
  toBuffer(): Buffer {
    const startLine = this.startLineRaw;
    const src = this.bodyBuf === undefined ? this.bodySrc : undefined;
    const bodyLen = src !== undefined ? this.bodyEnd - this.bodyStart : this.body.length;
    const hs = this.hs;
    const lenDigits = decimalDigits(bodyLen);
    // pass 1: the size; the Content-Length line kept as received (index), or -1 when rewritten / added
    let size = startLine !== null ? startLine.length + 2 : this.startLinePart(0).length + this.startLinePart(1).length + this.startLinePart(2).length + 4;
    let clIndex = -2;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      if (h.key === 'content-length') {
        if (clIndex !== -2) continue;
        clIndex = -1;
        if (h instanceof ReceivedField) {
          if (sameDecimal(h, bodyLen)) {
            clIndex = i;
            size += h.le - h.ls + 2;
          } else size += h.name.length + 4 + lenDigits;
        } else if (h.raw !== null && h.value === String(bodyLen)) {
          clIndex = i;
          size += h.raw.length + 2;
        } else size += h.name.length + 4 + lenDigits;
        continue;
      }
      if (h instanceof ReceivedField) size += h.le - h.ls + 2;
      else if (h.raw !== null) size += h.raw.length + 2;
      else size += h.name.length + 4 + h.value.length;
    }
    if (clIndex === -2) size += 18 + lenDigits; // 'Content-Length: ' + digits + CRLF
    size += 2;
    const headLen = size;
    size += bodyLen;
    // pass 2: write
    const out = Buffer.allocUnsafe(size);
    const w = out as unknown as Latin1Writable;
    let o: number;
    if (startLine !== null) o = w.latin1Write(startLine, 0);
    else {
      o = w.latin1Write(this.startLinePart(0), 0);
      out[o++] = 0x20;
      o += w.latin1Write(this.startLinePart(1), o);
      out[o++] = 0x20;
      o += w.latin1Write(this.startLinePart(2), o);
    }
    out[o++] = 0x0d;
    out[o++] = 0x0a;
    // a run of received lines adjacent in `runBytes`: [runStart, runEnd)
    let runBytes: Uint8Array | undefined;
    let runStart = 0;
    let runEnd = 0;
    let sawLength = false;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      let verbatim = h instanceof ReceivedField;
      if (h.key === 'content-length') {
        if (sawLength) continue;
        sawLength = true;
        if (i !== clIndex) verbatim = false;
        else if (!verbatim) {
          if (runBytes !== undefined) o = copyRun(runBytes, runStart, runEnd, out, o);
          runBytes = undefined;
          o += w.latin1Write(h.raw!, o);
          out[o++] = 0x0d;
          out[o++] = 0x0a;
          continue;
        }
        if (!verbatim) {
          if (runBytes !== undefined) o = copyRun(runBytes, runStart, runEnd, out, o);
          runBytes = undefined;
          o += w.latin1Write(h.name, o);
          out[o++] = 0x3a;
          out[o++] = 0x20;
          o = writeDecimal(out, o, bodyLen, lenDigits);
          out[o++] = 0x0d;
          out[o++] = 0x0a;
          continue;
        }
      }
      if (verbatim) {
        const f = h as ReceivedField;
        if (runBytes === f.bytes && f.ls === runEnd + 2) runEnd = f.le;
        else {
          if (runBytes !== undefined) o = copyRun(runBytes, runStart, runEnd, out, o);
          runBytes = f.bytes;
          runStart = f.ls;
          runEnd = f.le;
        }
        continue;
      }
      if (runBytes !== undefined) o = copyRun(runBytes, runStart, runEnd, out, o);
      runBytes = undefined;
      if (h.raw !== null) o += w.latin1Write(h.raw, o);
      else {
        o += w.latin1Write(h.name, o);
        out[o++] = 0x3a;
        out[o++] = 0x20;
        o += w.latin1Write(h.value, o);
      }
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    }
    if (runBytes !== undefined) o = copyRun(runBytes, runStart, runEnd, out, o);
    if (!sawLength) {
      o += w.latin1Write('Content-Length: ', o);
      o = writeDecimal(out, o, bodyLen, lenDigits);
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    }
    out[o++] = 0x0d;
    out[o++] = 0x0a;
    if (o !== headLen) throw new Error(`toBuffer: wrote ${o} of ${headLen} header octets`);
    if (bodyLen > 0) {
      if (src !== undefined) src.copy(out, headLen, this.bodyStart, this.bodyEnd);
      else this.body.copy(out, headLen);
    }
    return out;
  }

  toString(): string {
    return this.toBuffer().toString('latin1');
  }
}

export class SipRequest extends SipMessage {
  readonly isRequest = true as const;
  method: string;
  private uriRaw: string;
  private uriParsed: Uri | undefined;

  constructor(method: string, uri: string, headers: HeaderField[], body: Buffer, version = 'SIP/2.0', startLineRaw: string | null = null, parsedUri?: Uri) {
    super(headers, body, version, startLineRaw);
    this.method = method;
    this.uriRaw = uri;
    this.uriParsed = parsedUri;
  }

  /** Request-URI text as received (or as set). */
  get uriText(): string {
    return this.uriRaw;
  }

  /** Parsed Request-URI. */
  get uri(): Uri {
    if (this.uriParsed === undefined) this.uriParsed = parseUri(this.uriRaw);
    return this.uriParsed;
  }

  /** Replace the Request-URI (§16.6 step 2). */
  setUri(uri: string): void {
    this.uriRaw = uri;
    this.uriParsed = undefined;
    this.startLineRaw = null;
  }

  setMethod(method: string): void {
    this.method = method;
    this.startLineRaw = null;
  }

  protected buildStartLine(): string {
    return `${this.method} ${this.uriRaw} ${this.version}`;
  }

  protected startLinePart(i: 0 | 1 | 2): string {
    return i === 0 ? this.method : i === 1 ? this.uriRaw : this.version;
  }

  /** A deep-enough copy to edit independently (forking: one copy per branch). */
  clone(): SipRequest {
    const c = new SipRequest(this.method, this.uriRaw, this.hs.slice(), this.body, this.version, this.startLineRaw, this.uriParsed);
    c.copyIndex(this);
    c.copyVias(this);
    return c;
  }
}

export class SipResponse extends SipMessage {
  readonly isRequest = false as const;
  status: number;
  /** reason phrase bytes as latin1 characters; see `reason` for the decoded text. */
  reasonRaw: string;

  constructor(status: number, reason: string, headers: HeaderField[], body: Buffer, version = 'SIP/2.0', startLineRaw: string | null = null) {
    super(headers, body, version, startLineRaw);
    this.status = status;
    this.reasonRaw = reason;
  }

  /** Reason phrase decoded as UTF-8. */
  get reason(): string {
    const r = this.reasonRaw;
    // ASCII decodes to itself
    let ascii = true;
    for (let i = 0; i < r.length; i++) {
      if (r.charCodeAt(i) >= 0x80) {
        ascii = false;
        break;
      }
    }
    return ascii ? r : Buffer.from(r, 'latin1').toString('utf8');
  }

  setStatus(status: number, reason: string): void {
    this.status = status;
    // latin1 of its UTF-8 octets: ASCII is itself
    let ascii = true;
    for (let i = 0; i < reason.length; i++) {
      if (reason.charCodeAt(i) >= 0x80) {
        ascii = false;
        break;
      }
    }
    this.reasonRaw = ascii ? reason : Buffer.from(reason, 'utf8').toString('latin1');
    this.startLineRaw = null;
  }

  protected buildStartLine(): string {
    return `${this.version} ${this.status} ${this.reasonRaw}`;
  }

  protected startLinePart(i: 0 | 1 | 2): string {
    return i === 0 ? this.version : i === 1 ? String(this.status) : this.reasonRaw;
  }

  clone(): SipResponse {
    const c = new SipResponse(this.status, this.reasonRaw, this.hs.slice(), this.body, this.version, this.startLineRaw);
    c.copyIndex(this);
    c.copyVias(this);
    return c;
  }
}

export type SipMessageAny = SipRequest | SipResponse;
