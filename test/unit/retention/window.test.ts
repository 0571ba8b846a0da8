/** Reading `delete window <duration>` / `delete retain <count|duration>` (src/retention/window.ts). */
import { formatWindowTime, parseDuration, parseRetainArgument, windowStartMs } from '../../../src/retention/window';

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['45m', 45 * 60_000],
    ['90min', 90 * 60_000],
    ['36h', 36 * 3_600_000],
    ['7d', 7 * 86_400_000],
    ['2w', 14 * 86_400_000],
  ])('%s', (text, ms) => expect(parseDuration(text)).toEqual({ ms, text }));

  it.each(['7', '0d', '1.5d', '-1d', '7D', '7 d', ' 7d', '7days', '7mo', '7y', 'd', '', '1d12h', '99999999999999w'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('parseRetainArgument', () => {
  it('a bare whole number is a count, as before; a duration is a window', () => {
    expect(parseRetainArgument('8')).toEqual({ kind: 'count', count: 8 });
    expect(parseRetainArgument('7d')).toEqual({ kind: 'window', duration: { ms: 7 * 86_400_000, text: '7d' } });
  });
  it.each(['0', '7x', '1.5', '', 'all'])('refuses %j', (text) => expect(parseRetainArgument(text)).toBeUndefined());
});

describe('windowStartMs and formatWindowTime', () => {
  it('rounds the start down to a whole second and prints it as a --target-time', () => {
    const now = Date.parse('2026-11-25T12:00:36.999Z');
    expect(windowStartMs(now, 36_000)).toBe(Date.parse('2026-11-25T12:00:00Z'));
    expect(windowStartMs(now, 37_000)).toBe(Date.parse('2026-11-25T11:59:59Z'));
    expect(formatWindowTime(Date.parse('2026-11-25T12:00:00Z'))).toBe('2026-11-25 12:00:00+00');
  });
});
