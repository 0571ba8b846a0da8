/**
 * Forked histories (src/retention/forks.ts): a timeline written past the point where a child branched
 * off it. Segments are 16 MiB, so segment n on timeline t is `0000000t 00000000 0000000n`.
 */
import { findBranches, type Branch, type ForkInput } from '../../../src/retention/forks';
import { parseHistory } from '../../../src/retention/walChain';
import { segmentName } from '../../../src/postgres/walName';

const SEG = 16 * 1024 * 1024;
const seg = (tl: number, n: number) => segmentName({ timeline: tl, segNo: n }, SEG);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Timeline 2 branched off timeline 1 inside segment 5; timeline 1's segment 5 is its last on a clean promotion. */
const H2 = '1\t0/5000060\tno recovery target specified\n';

interface Case {
  name: string;
  segments: Record<number, number[]>;
  histories: Record<number, string>;
  /** Store times: segment times per timeline (segNo -> ms), history times per timeline. */
  segmentTimes?: Record<number, Record<number, number>>;
  historyTimes?: Record<number, number>;
  /** Expected branches, abbreviated: [parent, child, continued segNos, dead-end segNos, latest]. */
  expected: [number, number, number[], number[], number][];
}

function input(c: Case): ForkInput {
  return {
    segments: new Map(Object.entries(c.segments).map(([t, s]) => [Number(t), new Set(s)])),
    histories: new Map(Object.entries(c.histories).map(([t, text]) => [Number(t), parseHistory(text)])),
    segmentSize: SEG,
    segmentTimes: c.segmentTimes && new Map(Object.entries(c.segmentTimes).map(([t, m]) => [Number(t), new Map(Object.entries(m).map(([s, ms]) => [Number(s), ms]))])),
    historyTimes: c.historyTimes && new Map(Object.entries(c.historyTimes).map(([t, ms]) => [Number(t), ms])),
  };
}

/** Times: segment n of the parent stored at n * 1000 ms unless a case says otherwise. */
const at = (segs: number[], ms: (n: number) => number = (n) => n * 1000) => Object.fromEntries(segs.map((n) => [n, ms(n)]));

const cases: Case[] = [
  { name: 'one timeline, no history: nothing', segments: { 1: range(1, 9) }, histories: {}, expected: [] },
  {
    name: 'normal promotion: timeline 1 ends with the segment holding the switch point (archived whole by the old primary)',
    segments: { 1: range(2, 5), 2: range(5, 9) },
    histories: { 2: H2 },
    expected: [],
  },
  {
    // The promoted server archives 000000010000000000000005.partial; partials are not in `segments`.
    name: 'normal promotion with the .partial: timeline 1 ends before the switch segment',
    segments: { 1: range(2, 4), 2: range(5, 9) },
    histories: { 2: H2 },
    expected: [],
  },
  {
    name: 'switch at a segment boundary: the parent segment that starts at the switch LSN is still its last',
    segments: { 1: range(2, 5), 2: range(5, 9) },
    histories: { 2: '1\t0/5000000\tpromoted\n' },
    expected: [],
  },
  {
    name: 'fork: timeline 1 went on after timeline 2 branched off (no store times: reported)',
    segments: { 1: range(2, 8), 2: range(5, 9) },
    histories: { 2: H2 },
    expected: [[1, 2, [6, 7, 8], [], 2]],
  },
  {
    name: 'fork: timeline 1 segments stored after the history file are a second writer',
    segments: { 1: range(2, 8), 2: range(5, 9) },
    histories: { 2: H2 },
    segmentTimes: { 1: at(range(2, 8)) },
    historyTimes: { 2: 5500 },
    expected: [[1, 2, [6, 7, 8], [], 2]],
  },
  {
    name: 'dead end of a point-in-time restore: timeline 1 past the switch was all stored before the history file',
    segments: { 1: range(2, 8), 2: range(5, 9) },
    histories: { 2: H2 },
    segmentTimes: { 1: at(range(2, 8)) },
    historyTimes: { 2: 60_000 },
    expected: [[1, 2, [], [6, 7, 8], 2]],
  },
  {
    name: 'a restore to a past point while the origin keeps archiving: both a dead end and a fork',
    segments: { 1: range(2, 12), 2: range(5, 9) },
    histories: { 2: H2 },
    segmentTimes: { 1: at(range(2, 12)) },
    historyTimes: { 2: 9000 },
    expected: [[1, 2, [9, 10, 11, 12], [6, 7, 8], 2]],
  },
  {
    name: 'a stored time equal to the history file counts as after it',
    segments: { 1: range(2, 6), 2: range(5, 9) },
    histories: { 2: H2 },
    segmentTimes: { 1: at(range(2, 6)) },
    historyTimes: { 2: 6000 },
    expected: [[1, 2, [6], [], 2]],
  },
  {
    name: 'a chain of clean promotions (1 → 2 → 3): no fork',
    segments: { 1: range(2, 5), 2: range(5, 8), 3: range(8, 10) },
    histories: { 2: H2, 3: `${H2}2\t0/8000100\tpromoted\n` },
    expected: [],
  },
  {
    name: 'a chain where timeline 2 went on after timeline 3 branched off it',
    segments: { 1: range(2, 5), 2: range(5, 11), 3: range(8, 10) },
    histories: { 2: H2, 3: `${H2}2\t0/8000100\tpromoted\n` },
    expected: [[2, 3, [9, 10, 11], [], 3]],
  },
  {
    name: 'two copies branched off timeline 1 (at segments 5 and 9) while it went on: two forks; latest is timeline 3',
    segments: { 1: range(2, 12), 2: range(5, 7), 3: range(9, 10) },
    histories: { 2: H2, 3: '1\t0/9000000\tpromoted\n' },
    expected: [
      [1, 2, range(6, 12), [], 3],
      [1, 3, [10, 11, 12], [], 3],
    ],
  },
  {
    name: 'several branches: timeline 1 clean at 2 but a dead end after 4, and timeline 2 went on past 3',
    segments: { 1: range(2, 4), 2: range(5, 12), 3: range(8, 9), 4: range(3, 4) },
    histories: { 2: H2, 3: `${H2}2\t0/8000000\tpromoted\n`, 4: '1\t0/3000028\tearly branch, timeline 1 stored before it\n' },
    segmentTimes: { 1: at(range(2, 4)) },
    historyTimes: { 4: 10_000 },
    expected: [
      [1, 4, [], [4], 4],
      [2, 3, [9, 10, 11, 12], [], 4],
    ],
  },
];

describe('findBranches', () => {
  it.each(cases)('$name', (c) => {
    const got = findBranches(input(c)).map((b: Branch) => [b.parent, b.child, b.continued, b.deadEnd, b.latest]);
    const want = c.expected.map(([p, ch, cont, dead, latest]) => [p, ch, cont.map((n) => seg(p, n)), dead.map((n) => seg(p, n)), latest]);
    expect(got).toEqual(want);
  });

  it('names the switch point and the parent segment holding it', () => {
    const [b] = findBranches(input({ name: '', segments: { 1: range(2, 7), 2: [5] }, histories: { 2: H2 }, expected: [] }));
    expect(b).toMatchObject({ parent: 1, child: 2, switchLsn: 0x5000060n, switchSegment: seg(1, 5) });
  });

  it('a history file with no entries is skipped', () => {
    expect(findBranches(input({ name: '', segments: { 1: range(2, 7) }, histories: { 2: '' }, expected: [] }))).toEqual([]);
  });
});
