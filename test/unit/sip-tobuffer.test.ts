/**
 * toBuffer writes the message into one Buffer in place (runs of unedited received lines copied from the received
 * bytes). Its output must be exactly what the plain algorithm gives: start line, every line as received (raw) or as
 * `Name: value`, the first Content-Length kept when it states the body length exactly and rewritten otherwise, the
 * others dropped, one added when there is none, an empty line, the body. Checked on the conformance corpus, with
 * and without the proxy's edits, and on messages built from scratch.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildResponse, parseMessage, SipRequest, SipResponse, type SipMessageAny } from '../../src/sip/index.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'conformance');
const manifest: Array<{ file: string }> = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
const corpus: Buffer[] = manifest.map((e) => readFileSync(join(DIR, e.file)));

/** The serialisation toBuffer must equal (string concatenation, then latin1). */
function reference(m: SipMessageAny): Buffer {
  const start = m.isRequest ? `${m.method} ${m.uriText} ${m.version}` : `${m.version} ${m.status} ${m.reasonRaw}`;
  const startLine = (m as unknown as { startLineRaw: string | null }).startLineRaw ?? start;
  const bodyLen = m.body.length;
  let head = startLine + '\r\n';
  let sawLength = false;
  for (const h of m.headers) {
    if (h.key === 'content-length') {
      if (sawLength) continue;
      sawLength = true;
      if (h.raw !== null && h.value === String(bodyLen)) head += h.raw + '\r\n';
      else head += `${h.name}: ${bodyLen}\r\n`;
      continue;
    }
    head += (h.raw ?? `${h.name}: ${h.value}`) + '\r\n';
  }
  if (!sawLength) head += `Content-Length: ${bodyLen}\r\n`;
  head += '\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), m.body]);
}

function parsed(d: Buffer): SipMessageAny | undefined {
  try {
    return parseMessage(d);
  } catch {
    return undefined;
  }
}

const EDITS: Array<(m: SipMessageAny) => void> = [
  (m) => m.addHeader('Via', 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsdtest;rport', 'top'),
  (m) => m.removeFirstValue('via'),
  (m) => m.setHeader('max-forwards', '69'),
  (m) => m.addHeader('Record-Route', '<sip:192.0.2.1;lr;sdt=abc>', 'before'),
  (m) => m.removeHeader('content-length'),
  (m) => m.setHeader('Content-Length', '007'),
  (m) => m.addHeader('X-Unknown', 'ü-latin1 \u00e9'),
  (m) => m.setViaReceived('198.51.100.7', 5099),
  (m) => m.setBody(Buffer.from('v=0\r\n'), 'application/sdp'),
  (m) => m.setBody(Buffer.alloc(0)),
  (m) => (m.isRequest ? m.setUri('sip:bob@192.0.2.9:5070') : m.setStatus(180, 'Ringing ünïcode')),
];

describe('toBuffer', () => {
  it('is the reference serialisation on every parsable corpus message, unedited', () => {
    let n = 0;
    for (const d of corpus) {
      const m = parsed(d);
      if (m === undefined) continue;
      n++;
      expect(m.toBuffer().equals(reference(m))).toBe(true);
    }
    expect(n).toBeGreaterThan(10);
  });

  it('is the reference serialisation after random sequences of edits', () => {
    const usable = corpus.filter((d) => parsed(d) !== undefined);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: usable.length - 1 }), fc.array(fc.integer({ min: 0, max: EDITS.length - 1 }), { maxLength: 6 }), (i, edits) => {
        const m = parsed(usable[i]!)!;
        for (const e of edits) {
          try {
            EDITS[e]!(m);
          } catch {
            /* an edit that does not apply (no Via to edit): skipped */
          }
        }
        const c = m.isRequest ? m.clone() : m.clone();
        expect(m.toBuffer().equals(reference(m))).toBe(true);
        expect(c.toBuffer().equals(reference(c))).toBe(true);
      }),
      { numRuns: 400, seed: 20261201 },
    );
  });

  it('is the reference serialisation of built messages (no received lines at all)', () => {
    const req = new SipRequest('OPTIONS', 'sip:a@example.com', [], Buffer.alloc(0));
    req.addHeader('Via', 'SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1');
    req.addHeader('Content-Length', '0');
    expect(req.toBuffer().toString('latin1')).toBe('OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n');
    const res = buildResponse(req, 200, { body: Buffer.from('hello'), contentType: 'text/plain', headers: [['Content-Length', '5'], ['content-length', '9']] });
    expect(res.toBuffer().equals(reference(res))).toBe(true);
    expect(res.toBuffer().toString('latin1')).toContain('Content-Length: 5\r\n');
    const big = new SipResponse(200, 'OK', [], Buffer.alloc(12345, 0x61));
    expect(big.toBuffer().equals(reference(big))).toBe(true);
    expect(big.toBuffer().toString('latin1')).toContain('Content-Length: 12345\r\n');
  });
});
