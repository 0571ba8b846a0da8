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

  test.each(['yesterday', '2026-13-01 00:00:00+00', '2026-11-21 25:00:00+00', '21/11/2026', '2026-11-21 22:30:01 +25:99x', ''])('refuses %j', (text) => {
    expect(parsePgTimestamp(text)).toBeUndefined();
  });
});
