import { parsePgTimestamp } from '../../../src/postgres/timestamp';

describe('target time parsing', () => {
  test.each([
    ['2026-11-21 22:30:01.123456+00', '2026-11-21T22:30:01.123Z'],
    ['2026-11-21 22:30:01+00', '2026-11-21T22:30:01.000Z'],
    ['2026-11-21 23:30:01.5+01', '2026-11-21T22:30:01.500Z'],
    ['2026-11-21 17:00:01-05:30', '2026-11-21T22:30:01.000Z'],
    ['2026-11-21T22:30:01Z', '2026-11-21T22:30:01.000Z'],
    ['2026-11-21T22:30Z', '2026-11-21T22:30:00.000Z'],
    ['2026-11-21 22:30:01 UTC', '2026-11-21T22:30:01.000Z'],
    ['2026-11-21 22:30:01+0000', '2026-11-21T22:30:01.000Z'],
  ])('%s is %s', (text, iso) => {
    expect(new Date(parsePgTimestamp(text)?.epochMs ?? NaN).toISOString()).toBe(iso);
    expect(parsePgTimestamp(text)?.hasOffset).toBe(true);
  });

  it('reads a time without offset in the local zone, and says so', () => {
    const p = parsePgTimestamp('2026-11-21 22:30:01');
    expect(p?.hasOffset).toBe(false);
    expect(p?.epochMs).toBe(new Date(2026, 10, 21, 22, 30, 1).getTime());
  });

  test.each([
    '2027-02-30 00:00:00+00', // no such day (Date would read it as March 2nd)
    '2026-02-29T00:00:00Z', // not a leap year
    '2026-04-31 12:00:00+00',
    '2026-11-21 22:30:60+00',
    '2026-11-21 22:30:01+16',
    '2026-11-21 22:30:01+01:60',
  ])('refuses the impossible date or offset %j', (text) => {
    expect(parsePgTimestamp(text)).toBeUndefined();
  });

  it('accepts February 29th of a leap year', () => {
    expect(new Date(parsePgTimestamp('2028-02-29 12:00:00+00')?.epochMs ?? NaN).toISOString()).toBe('2028-02-29T12:00:00.000Z');
  });

  test.each(['yesterday', '2026-13-01 00:00:00+00', '2026-11-21 25:00:00+00', '21/11/2026', '2026-11-21 22:30:01 +25:99x', ''])('refuses %j', (text) => {
    expect(parsePgTimestamp(text)).toBeUndefined();
  });
});
