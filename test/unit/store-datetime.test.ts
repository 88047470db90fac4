/** toSqlDatetime keeps the last text per zone: interleaved seconds and zones still each get their own text. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromSqlDatetime, toSqlDatetime } from '../../src/store/util.js';

const utcRef = (ms: number): string => new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19).replace('T', ' ');

describe('toSqlDatetime', () => {
  // a zone where local time is not UTC, so that a text of the wrong zone shows (set before any call)
  const tz = process.env.TZ;
  beforeAll(() => {
    process.env.TZ = 'America/New_York';
  });
  afterAll(() => {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });

  it('answers each second and zone, however calls interleave (the cached last text is never another second’s or zone’s)', () => {
    const t = Date.UTC(2030, 0, 1, 12, 0, 0);
    const instants = [t, t + 999, t + 1000, t, t + 3600_000, t - 1, t + 1000, t + 1999, t + 2000, t + 86_400_000];
    for (const ms of instants) {
      for (const zone of ['utc', 'local', 'local', 'utc'] as const) {
        const text = toSqlDatetime(ms, zone);
        if (zone === 'local') expect(text).not.toBe(utcRef(ms));
        if (zone === 'utc') expect(text).toBe(utcRef(ms));
        expect(fromSqlDatetime(text, zone)).toBe(Math.floor(ms / 1000) * 1000);
      }
    }
  });
});
