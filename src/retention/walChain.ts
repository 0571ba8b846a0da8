/**
 * Which WAL segments a backup needs to be restored to the newest archived point, following timeline
 * switches the way recovery does, and which of them are missing. Pure.
 *
 * A timeline history file (`00000003.history`) lists the ancestors of timeline 3 and where each
 * ended: `1<TAB>0/3000060<TAB>reason`, `2<TAB>0/5000000<TAB>reason`. On a switch at LSN X from
 * timeline t to t+1, the segment holding X exists on the new timeline (a copy of the old one up to X),
 * so recovery reads timeline t up to the segment before X's and timeline t+1 from X's segment on.
 */
import { parseLsn, parseSegmentName, segmentName } from '../postgres/walName';

export interface HistoryEntry {
  readonly timeline: number;
  /** First LSN that is no longer on `timeline`. */
  readonly switchLsn: bigint;
}

/** Parses a timeline history file's text (comment and blank lines ignored). */
export function parseHistory(text: string): HistoryEntry[] {
  const entries: HistoryEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (!m) throw new RangeError(`malformed timeline history line: ${JSON.stringify(line)}`);
    entries.push({ timeline: Number(m[1]), switchLsn: parseLsn(m[2] as string) });
  }
  return entries;
}

export interface ChainInput {
  /** Segment numbers present, per timeline (complete segments only: no .partial). */
  readonly segments: ReadonlyMap<number, ReadonlySet<number>>;
  /** Parsed history per timeline that has a history file. */
  readonly histories: ReadonlyMap<number, readonly HistoryEntry[]>;
  readonly segmentSize: number;
}

export interface ChainCheck {
  /** The timeline recovery would end on (the newest one descending from the backup's). */
  readonly targetTimeline: number;
  /** Newest segment the chain reaches (name), or undefined when none is archived. */
  readonly newest?: string;
  /** Segment names expected and present. */
  readonly expected: number;
  /** Missing segments, as names, in replay order. */
  readonly missing: readonly string[];
  /** A history file that a timeline in the chain needs and that is not in the store. */
  readonly missingHistory: readonly number[];
}

/** Checks the chain from `startWalFile` (a backup's first segment) to the newest archived segment. */
export function checkChain(input: ChainInput, startWalFile: string): ChainCheck {
  const start = parseSegmentName(startWalFile, input.segmentSize);
  const target = newestDescendant(input, start.timeline, start.segNo);
  const path = timelinePath(input, target); // [{timeline, endSeg (exclusive) | undefined}], oldest first
  const missingHistory = target > 1 && !input.histories.has(target) ? [target] : [];
  const fromIndex = path.findIndex((p) => p.timeline === start.timeline);
  const steps = fromIndex < 0 ? [{ timeline: start.timeline, endSeg: undefined }] : path.slice(fromIndex);
  const missing: string[] = [];
  let expected = 0;
  let newest: string | undefined;
  let seg = start.segNo;
  for (const step of steps) {
    const present = input.segments.get(step.timeline) ?? new Set<number>();
    const last = step.endSeg !== undefined ? step.endSeg - 1 : maxOf(present, seg - 1);
    for (; seg <= last; seg++) {
      const name = segmentName({ timeline: step.timeline, segNo: seg }, input.segmentSize);
      expected++;
      if (present.has(seg)) newest = name;
      else missing.push(name);
    }
  }
  return { targetTimeline: target, newest, expected, missing, missingHistory };
}

/**
 * The highest timeline whose history descends from `timeline` at or after segment `fromSeg` (or
 * `timeline` itself). A timeline that forked off before the backup started is not reachable from it:
 * the backup is on a dead-end branch of that fork, and its WAL stays on its own timeline.
 */
function newestDescendant(input: ChainInput, timeline: number, fromSeg: number): number {
  const all = new Set<number>([...input.segments.keys(), ...input.histories.keys()]);
  const size = BigInt(input.segmentSize);
  let best = timeline;
  for (const t of all) {
    if (t <= best) continue;
    const history = input.histories.get(t);
    if (history?.some((h) => h.timeline === timeline && Number(h.switchLsn / size) >= fromSeg)) best = t;
  }
  return best;
}

/** The timelines recovery walks to reach `target`, each with the segment where it was left. */
function timelinePath(input: ChainInput, target: number): { timeline: number; endSeg?: number }[] {
  const history = input.histories.get(target) ?? [];
  const size = BigInt(input.segmentSize);
  return [...history.map((h) => ({ timeline: h.timeline, endSeg: Number(h.switchLsn / size) })), { timeline: target }];
}

function maxOf(values: ReadonlySet<number>, floor: number): number {
  let max = floor;
  for (const v of values) if (v > max) max = v;
  return max;
}
