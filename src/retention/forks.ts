/**
 * Forked histories in one archive: a timeline that went on after a child timeline branched off it.
 * Pure.
 *
 * On a promotion at LSN X from timeline t to c, timeline t's last segment is the one holding X (the
 * promoted server archives it as `.partial`; the old primary may archive it whole), and timeline c
 * starts with a copy of it. A complete segment of t strictly after that one means t was written past
 * the branch. Two histories then live in one prefix, and recovery with `recovery_target_timeline =
 * latest` takes the newest timeline, whichever server wrote it.
 *
 * Segments of t past X that were stored before c's history file are not a second writer: that is the
 * dead end a point-in-time restore leaves behind (the old server was stopped and restored to X). Only
 * segments stored at or after the history file prove that two servers archived at once. Times are
 * the store's own (S3 `LastModified`, file mtime); a segment or history without one counts as stored
 * after the branch, so a fork is reported rather than missed.
 */
import { segmentName } from '../postgres/walName';
import type { ChainInput } from './walChain';

export interface ForkInput extends ChainInput {
  /** When each segment was stored (ms, store clock), per timeline and segment number. */
  readonly segmentTimes?: ReadonlyMap<number, ReadonlyMap<number, number>>;
  /** When each timeline's history file was stored (ms, store clock). */
  readonly historyTimes?: ReadonlyMap<number, number>;
}

export interface Branch {
  /** The timeline branched from, and the one that branched off it. */
  readonly parent: number;
  readonly child: number;
  /** First LSN no longer on `parent` in the child's history. */
  readonly switchLsn: bigint;
  /** Name of the parent's segment that holds the switch point (its last one on a clean promotion). */
  readonly switchSegment: string;
  /** Parent segments after `switchSegment` stored at or after the child's history: a second writer. */
  readonly continued: readonly string[];
  /** Parent segments after `switchSegment` stored before the child's history: a dead end. */
  readonly deadEnd: readonly string[];
  /** The timeline `recovery_target_timeline = latest` reaches from the parent (PostgreSQL probes up). */
  readonly latest: number;
}

/**
 * Every branch point whose parent has complete segments after the segment holding the switch point,
 * ordered by parent then child. `continued` non-empty is a fork; only `deadEnd` is a dead branch.
 */
export function findBranches(input: ForkInput): Branch[] {
  const size = BigInt(input.segmentSize);
  const branches: Branch[] = [];
  for (const [child, history] of [...input.histories].sort(([a], [b]) => a - b)) {
    // The last entry is the direct parent; earlier ones are checked through the parent's own history.
    const direct = history[history.length - 1];
    if (!direct) continue;
    const parent = direct.timeline;
    const switchSeg = Number(direct.switchLsn / size);
    const branchedAt = input.historyTimes?.get(child);
    const times = input.segmentTimes?.get(parent);
    const continued: number[] = [];
    const deadEnd: number[] = [];
    for (const s of input.segments.get(parent) ?? []) {
      if (s <= switchSeg) continue;
      const storedAt = times?.get(s);
      if (branchedAt !== undefined && storedAt !== undefined && storedAt < branchedAt) deadEnd.push(s);
      else continued.push(s);
    }
    if (continued.length + deadEnd.length === 0) continue;
    const names = (segs: number[]) => segs.sort((a, b) => a - b).map((segNo) => segmentName({ timeline: parent, segNo }, input.segmentSize));
    branches.push({ parent, child, switchLsn: direct.switchLsn, switchSegment: segmentName({ timeline: parent, segNo: switchSeg }, input.segmentSize), continued: names(continued), deadEnd: names(deadEnd), latest: latestFrom(input, parent) });
  }
  return branches.sort((a, b) => a.parent - b.parent || a.child - b.child);
}

/** PostgreSQL's `latest`: from timeline t, the highest t+1, t+2, ... whose history file exists without a gap. */
function latestFrom(input: ForkInput, timeline: number): number {
  let t = timeline;
  while (input.histories.has(t + 1)) t++;
  return t;
}
