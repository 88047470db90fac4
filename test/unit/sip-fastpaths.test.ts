/**
 * The parser's fast path gives exactly what the general code gives:
 *  parseMessage (messages up to 8 KiB: header section scanned on the bytes, its end found during the line scan)
 *    against parseMessageGeneral (end of the header section found first, lines scanned in the string), on the
 *    conformance corpus and on random edits of it (CR, LF, colons, blanks, commas, cuts), values and errors alike.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseMessage, parseMessageGeneral, SipParseError, type SipRequest, type SipResponse } from '../../src/sip/index.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'conformance');
interface ManifestEntry { file: string }
const manifest: ManifestEntry[] = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
const corpus = manifest.map((e) => readFileSync(join(DIR, e.file))).filter((d) => d.length <= 8192);

/** A map by behaviour (Map, or the ReadonlyMap src/sip returns for parameters): compared as its entries in order. */
const isMapLike = (x: unknown): x is ReadonlyMap<unknown, unknown> =>
  x instanceof Map ||
  (typeof x === 'object' && x !== null && typeof (x as ReadonlyMap<unknown, unknown>).get === 'function' && typeof (x as ReadonlyMap<unknown, unknown>).entries === 'function' && typeof (x as ReadonlyMap<unknown, unknown>).size === 'number');

const json = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (isMapLike(x) ? [...x.entries()] : Buffer.isBuffer(x) ? x.toString('latin1') : x));

function attempt(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    if (e instanceof SipParseError) return `threw ${e.code}`;
    throw e;
  }
}

/** Everything a message yields: start line, lines, body and every accessor (or the error each throws). */
function view(parse: (d: Buffer) => SipRequest | SipResponse, d: Buffer): string {
  let m: SipRequest | SipResponse;
  try {
    m = parse(d);
  } catch (e) {
    if (e instanceof SipParseError) return json({ error: e.code, partial: e.partial });
    throw e;
  }
  const out: Record<string, unknown> = {
    start: m.isRequest ? [m.method, m.uriText, attempt(() => m.isRequest && m.uri)] : [m.status, m.reasonRaw],
    version: m.version,
    headers: m.headers,
    body: m.body,
  };
  const acc = m as unknown as Record<string, () => unknown>;
  for (const k of ['vias', 'topVia', 'from', 'to', 'fromTag', 'toTag', 'callId', 'cseq', 'maxForwards', 'contentLength', 'expires', 'contacts', 'routes', 'recordRoutes', 'paths']) {
    out[k] = attempt(() => acc[k]!.call(m));
  }
  out.allow = attempt(() => m.tokens('allow'));
  out.auth = attempt(() => m.auth('authorization'));
  out.wire = m.toBuffer();
  return json(out);
}

const same = (d: Buffer): void => expect(view(parseMessage, d)).toBe(view(parseMessageGeneral, d));

const EDITS = ['\r', '\n', '\r\n', '\r\n\r\n', ':', ' ', '\t', ',', '\r\n ', ';', '<', '"', '\xa0', '\v', ''];

describe('parseMessage fast path = general path', () => {
  it('on the conformance corpus', () => {
    for (const d of corpus) same(d);
  });

  it('on random edits of the corpus (insert, replace, cut)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...corpus),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...EDITS), fc.nat(3)), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (d, edits, cut) => {
          let s = d.toString('latin1');
          for (const [at, ins, del] of edits) {
            const p = at % (s.length + 1);
            s = s.slice(0, p) + ins + s.slice(p + del);
          }
          if (cut) {
            const e = s.indexOf('\r\n\r\n');
            if (e !== -1) s = s.slice(0, e + (edits[0]![2] % 4));
          }
          same(Buffer.from(s, 'latin1'));
        },
      ),
      { numRuns: 3000 },
    );
  });
});

