/** ParamList (src/sip/params.ts), the ReadonlyMap the parsers return for parameter sets, behaves as a Map filled with set(). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EMPTY_PARAMS, ParamList } from '../../src/sip/params.js';

const names = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'.split(''), 'branch', 'tag', 'lr', 'x-1', 'x-2');
const puts = fc.array(fc.tuple(names, fc.option(fc.string({ maxLength: 4 }), { nil: null })), { maxLength: 60 });

describe('ParamList', () => {
  it('gives what a Map filled with the same set() calls gives: get, has, size, order of entries, keys, values, forEach', () => {
    fc.assert(
      fc.property(puts, names, (ps, probe) => {
        const m = new Map<string, string | null>();
        const l = new ParamList<string | null>();
        for (const [k, v] of ps) {
          const had = m.has(k);
          m.set(k, v);
          // put reports whether the name was new
          expect(l.put(k, v)).toBe(!had);
        }
        expect(l.size).toBe(m.size);
        expect([...l]).toEqual([...m]);
        expect([...l.entries()]).toEqual([...m.entries()]);
        expect([...l.keys()]).toEqual([...m.keys()]);
        expect([...l.values()]).toEqual([...m.values()]);
        const seen: Array<[string, string | null]> = [];
        l.forEach((v, k, map) => {
          expect(map).toBe(l);
          seen.push([k, v]);
        });
        expect(seen).toEqual([...m]);
        expect(l.get(probe)).toBe(m.get(probe));
        expect(l.has(probe)).toBe(m.has(probe));
      }),
      { numRuns: 500 },
    );
  });

  it('the shared empty set has nothing', () => {
    expect(EMPTY_PARAMS.size).toBe(0);
    expect(EMPTY_PARAMS.get('tag')).toBeUndefined();
    expect(EMPTY_PARAMS.has('lr')).toBe(false);
    expect([...EMPTY_PARAMS]).toEqual([]);
  });
});
