import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { constantTimeEqual, hashLatin1Hex, HmacSha256 } from '../../src/core/mac.js';
import { RandomPool } from '../../src/core/random.js';

describe('HmacSha256', () => {
  const keys = [Buffer.from('0123456789abcdef'), Buffer.alloc(64, 7), Buffer.from('k'.repeat(65)), Buffer.from('x'.repeat(200))];
  const messages: Array<Array<string | Buffer>> = [
    [],
    ['a'],
    ['hop\u0000', 'call-id@host', '\u0000', '127.0.0.1|*'],
    [Buffer.from([0, 1, 2, 255]), 'example.com'],
    ['caf\u00e9 \u00ff', Buffer.alloc(3, 0x80)],
    ['y'.repeat(1000), Buffer.alloc(700, 1)], // beyond the initial buffer: it grows
  ];
  for (const [ki, key] of keys.entries()) {
    it(`equals createHmac('sha256') for key ${ki} (${key.length} bytes), every message`, () => {
      const m = new HmacSha256(key, 32);
      for (const parts of messages) {
        const ref = createHmac('sha256', key);
        m.begin();
        for (const p of parts) {
          if (typeof p === 'string') {
            ref.update(p, 'latin1');
            m.str(p);
          } else {
            ref.update(p);
            m.bytes(p);
          }
        }
        const want = ref.digest();
        // hex and base64url of the same MAC (compute twice: each digest ends the message)
        expect(m.hex()).toBe(want.toString('hex'));
      }
      for (const parts of messages) {
        const ref = createHmac('sha256', key);
        m.begin();
        for (const p of parts) {
          if (typeof p === 'string') {
            ref.update(p, 'latin1');
            m.str(p);
          } else {
            ref.update(p);
            m.bytes(p);
          }
        }
        expect(m.base64url()).toBe(ref.digest('base64url'));
      }
    });
  }

  it('starts each message afresh (begin discards what was written)', () => {
    const m = new HmacSha256(Buffer.from('0123456789abcdef'));
    m.begin().str('left over');
    const a = m.begin().str('msg').hex();
    expect(a).toBe(createHmac('sha256', Buffer.from('0123456789abcdef')).update('msg').digest('hex'));
  });
});

describe('hashLatin1Hex', () => {
  it('hashes the latin1 bytes of the string, ASCII or not', () => {
    for (const s of ['', 'alice:example.com:secret', 'caf\u00e9:\u00ff\u0080', 'x'.repeat(5000)]) {
      expect(hashLatin1Hex('md5', s)).toBe(createHash('md5').update(s, 'latin1').digest('hex'));
      expect(hashLatin1Hex('sha256', s)).toBe(createHash('sha256').update(s, 'latin1').digest('hex'));
    }
  });
});

describe('constantTimeEqual', () => {
  it('compares strings', () => {
    expect(constantTimeEqual('abc', 'abc')).toBe(true);
    expect(constantTimeEqual('abc', 'abd')).toBe(false);
    expect(constantTimeEqual('abc', 'ab')).toBe(false);
    expect(constantTimeEqual('', '')).toBe(true);
  });
});

describe('RandomPool', () => {
  /** a fill that writes a counter sequence, and counts its calls */
  function counting(): { fill: (b: Buffer) => void; calls: () => number } {
    let next = 0;
    let calls = 0;
    return {
      fill: (b) => {
        calls++;
        for (let i = 0; i < b.length; i++) b[i] = next++ & 0xff;
      },
      calls: () => calls,
    };
  }

  it('hands out each byte once, in order, refilling when used up', () => {
    const f = counting();
    const p = new RandomPool(f.fill, 64);
    expect(f.calls()).toBe(0); // nothing drawn before the first use
    expect([...p.bytes(4)]).toEqual([0, 1, 2, 3]);
    expect(p.hex(2)).toBe('0405');
    expect(p.base64url(3)).toBe(Buffer.from([6, 7, 8]).toString('base64url'));
    expect(f.calls()).toBe(1);
    p.bytes(55); // 9 + 55 = 64: exactly used up
    expect(f.calls()).toBe(1);
    expect([...p.bytes(1)]).toEqual([64]); // the second fill continues the sequence
    expect(f.calls()).toBe(2);
  });

  it('does not split a value across fills: a value that does not fit takes a fresh pool', () => {
    const f = counting();
    const p = new RandomPool(f.fill, 64);
    p.bytes(60);
    expect([...p.bytes(8)]).toEqual([64, 65, 66, 67, 68, 69, 70, 71]);
  });

  it('serves values larger than the pool from a fill of their own', () => {
    const f = counting();
    const p = new RandomPool(f.fill, 64);
    const big = p.bytes(100);
    expect(big.length).toBe(100);
    expect(p.hex(100)).toHaveLength(200);
    expect(p.base64url(99)).toBe(Buffer.from(Array.from({ length: 99 }, (_, i) => (200 + i) & 0xff)).toString('base64url'));
  });

  it('returns Buffers of their own (later draws do not change earlier values)', () => {
    const p = new RandomPool(counting().fill, 64);
    const a = p.bytes(8);
    const copy = Buffer.from(a);
    for (let i = 0; i < 20; i++) p.bytes(8);
    expect(a.equals(copy)).toBe(true);
  });
});
