/**
 * The WAL chain a backup needs, following timeline switches as recovery does (src/retention/walChain.ts).
 * Segments are 16 MiB, so segment number n on timeline t is `0000000t 00000000 0000000n` and the
 * switch LSN 0/5000000 is the start of segment 5.
 */
import { checkChain, parseHistory, type ChainInput, type HistoryEntry } from '../../../src/retention/walChain';
import { parseLsn, segmentName } from '../../../src/postgres/walName';

const SEG = 16 * 1024 * 1024;
const seg = (tl: number, n: number) => segmentName({ timeline: tl, segNo: n }, SEG);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function input(segments: Record<number, number[]>, histories: Record<number, string> = {}): ChainInput {
  return {
    segments: new Map(Object.entries(segments).map(([t, s]) => [Number(t), new Set(s)])),
    histories: new Map(Object.entries(histories).map(([t, text]) => [Number(t), parseHistory(text)])),
    segmentSize: SEG,
  };
}

describe('parseHistory', () => {
  it('reads timeline, switch LSN and ignores comments, blank lines and the reason', () => {
    const text = '# comment\n1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tat restore point "x"\n';
    expect(parseHistory(text)).toEqual<HistoryEntry[]>([
      { timeline: 1, switchLsn: parseLsn('0/3000060') },
      { timeline: 2, switchLsn: parseLsn('0/5000000') },
    ]);
  });

  it('reads high LSNs, lower-case hex and CRLF lines; an empty file has no entries', () => {
    expect(parseHistory('1\t1A/ff000000\tbefore 2026-11-21 22:30:01+00\r\n')).toEqual([{ timeline: 1, switchLsn: (0x1an << 32n) | 0xff000000n }]);
    expect(parseHistory('')).toEqual([]);
  });

  it('refuses a malformed line', () => {
    expect(() => parseHistory('1\tnot-an-lsn\treason\n')).toThrow(/malformed timeline history line/);
    expect(() => parseHistory('x 0/1 y')).toThrow(RangeError);
  });
});

describe('checkChain on one timeline', () => {
  it('a continuous chain: every segment from the start to the newest is expected and present', () => {
    const c = checkChain(input({ 1: range(2, 9) }), seg(1, 4));
    expect(c).toEqual({ targetTimeline: 1, newest: seg(1, 9), expected: 6, missing: [], missingHistory: [] });
  });

  it('names every missing segment in a gap, in replay order', () => {
    const c = checkChain(input({ 1: [4, 5, 8, 9] }), seg(1, 4));
    expect(c.missing).toEqual([seg(1, 6), seg(1, 7)]);
    expect(c.newest).toBe(seg(1, 9));
    expect(c.expected).toBe(6);
  });

  it('a missing start segment is reported', () => {
    const c = checkChain(input({ 1: [5, 6] }), seg(1, 4));
    expect(c.missing).toEqual([seg(1, 4)]);
  });

  it('no WAL at all from the start on: nothing expected, newest undefined', () => {
    const c = checkChain(input({ 1: [1, 2] }), seg(1, 4));
    expect(c).toMatchObject({ newest: undefined, missing: [], expected: 0 });
  });

  it('crosses a log id boundary (segment FF to 100)', () => {
    const c = checkChain(input({ 1: range(0xfe, 0x101) }), seg(1, 0xfe));
    expect(c.missing).toEqual([]);
    expect(c.newest).toBe('000000010000000100000001');
    expect(c.expected).toBe(4);
  });
});

describe('checkChain across a switch to timeline 2', () => {
  // Timeline 1 was left at 0/5000060 (inside segment 5): recovery reads timeline 1 up to segment 4
  // and timeline 2 from segment 5 on (its segment 5 starts as a copy of timeline 1's).
  const HISTORY2 = '1\t0/5000060\tno recovery target specified\n';

  it('with the history file: follows the switch to the newest segment of timeline 2', () => {
    const c = checkChain(input({ 1: range(2, 7), 2: range(5, 9) }, { 2: HISTORY2 }), seg(1, 3));
    expect(c).toEqual({ targetTimeline: 2, newest: seg(2, 9), expected: 7, missing: [], missingHistory: [] });
  });

  it('a gap on either side of the switch is named with its timeline', () => {
    const c = checkChain(input({ 1: [3, 5, 6], 2: [5, 6, 8] }, { 2: HISTORY2 }), seg(1, 3));
    expect(c.missing).toEqual([seg(1, 4), seg(2, 7)]);
    expect(c.newest).toBe(seg(2, 8));
  });

  it('timeline 1 segments after the switch point do not count (recovery never reads them)', () => {
    // Segment 5 of timeline 2 is missing: timeline 1's segment 5 cannot stand in for it.
    const c = checkChain(input({ 1: range(3, 9), 2: [6, 7] }, { 2: HISTORY2 }), seg(1, 3));
    expect(c.targetTimeline).toBe(2);
    expect(c.missing).toEqual([seg(2, 5)]);
  });

  it('without the history file: a timeline-1 backup cannot know timeline 2 descends from it and stays on timeline 1', () => {
    const c = checkChain(input({ 1: range(3, 5), 2: range(5, 9) }), seg(1, 3));
    expect(c).toMatchObject({ targetTimeline: 1, newest: seg(1, 5), missing: [], missingHistory: [] });
  });

  it('without the history file: a timeline-2 backup reports the missing history', () => {
    const c = checkChain(input({ 1: range(3, 5), 2: range(5, 9) }), seg(2, 6));
    expect(c).toMatchObject({ targetTimeline: 2, newest: seg(2, 9), missing: [], missingHistory: [2] });
  });

  it('a backup taken on timeline 2 reads only timeline 2', () => {
    const c = checkChain(input({ 1: range(1, 9), 2: range(5, 9) }, { 2: HISTORY2 }), seg(2, 7));
    expect(c).toEqual({ targetTimeline: 2, newest: seg(2, 9), expected: 3, missing: [], missingHistory: [] });
  });

  it('two switches (1 → 2 → 3): a timeline-1 backup ends on timeline 3', () => {
    const histories = { 2: HISTORY2, 3: `${HISTORY2}2\t0/8000000\tpromoted\n` };
    const c = checkChain(input({ 1: range(2, 6), 2: range(5, 8), 3: range(8, 10) }, histories), seg(1, 2));
    expect(c).toMatchObject({ targetTimeline: 3, newest: seg(3, 10), missing: [], expected: 9 });
  });

  it('a backup on a dead-end branch: timeline 1 went on after timeline 2 forked off before the backup', () => {
    // The backup started at segment 7 of timeline 1, after the fork at segment 5: timeline 2 is not
    // its descendant (recovery into it would fail); its WAL is timeline 1's, to the newest there.
    const c = checkChain(input({ 1: range(3, 10), 2: range(5, 12) }, { 2: HISTORY2 }), seg(1, 7));
    expect(c).toEqual({ targetTimeline: 1, newest: seg(1, 10), expected: 4, missing: [], missingHistory: [] });
  });

  it('a dead-end branch with a gap on it is still reported', () => {
    const c = checkChain(input({ 1: [7, 8, 10], 2: range(5, 12) }, { 2: HISTORY2 }), seg(1, 7));
    expect(c.missing).toEqual([seg(1, 9)]);
  });

  it('of two branches off timeline 1, the one forked after the backup is followed', () => {
    // Timeline 2 forked at segment 5 (before the backup), timeline 3 at segment 9 (after it).
    const histories = { 2: HISTORY2, 3: '1\t0/9000000\tpromoted\n' };
    const c = checkChain(input({ 1: range(3, 10), 2: range(5, 12), 3: range(9, 11) }, histories), seg(1, 7));
    expect(c).toMatchObject({ targetTimeline: 3, newest: seg(3, 11), missing: [], expected: 5 });
  });
});
