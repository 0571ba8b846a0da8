/**
 * Retention: which backups and WAL files a `delete` removes, and why. Pure: it sees the store's
 * contents as data and returns a plan; `apply.ts` carries it out. (reliability.md rules 28-30)
 *
 * Rules:
 * - only complete backups (with a sentinel) count; they are ordered by start LSN, never by name;
 * - `retain N` keeps the N newest; `before X` deletes the backups older than backup X (by start LSN)
 *   or that finished before time X; `everything` deletes all backups and all WAL;
 * - `window D` keeps what a restore to any point of the last D needs: every backup that finished
 *   inside the window, and the newest that finished at or before its first second (the one a restore
 *   to that second starts from; see `decideWindow`);
 * - a backup folder without a sentinel is a backup in progress while its marker is younger than the
 *   leftover age, and is never touched then (nor is the WAL it needs); older, it is a leftover of a
 *   failed backup and is deleted; a folder marked `deleting.json` is an interrupted delete: finished;
 * - WAL at positions before the start of the oldest kept (or in-progress) backup is deleted, on every
 *   timeline; `.history` files are always kept (they are tiny and recovery probes them); a
 *   receiver's partial segments (`receive/`) follow the same cutoff;
 * - with no complete backup left to anchor it, no WAL is deleted (except by `everything`).
 */
import type { BackupSentinel } from '../backup/sentinel';
import { compareSegmentNames, type WalFileName } from '../postgres/walName';
import { formatWindowTime, windowStartMs } from './window';

export type RetentionRule =
  | { readonly kind: 'retain'; readonly count: number }
  | { readonly kind: 'before-backup'; readonly name: string }
  | { readonly kind: 'before-time'; readonly epochMs: number; readonly text: string }
  /** A recovery window ending at `RetentionInput.nowMs`; `text` as written (`7d`). */
  | { readonly kind: 'window'; readonly durationMs: number; readonly text: string }
  | { readonly kind: 'everything' };

/** A backup folder without a sentinel. */
export interface UnfinishedBackup {
  readonly name: string;
  /** From started.json when readable: where its WAL starts. */
  readonly startWalFile?: string;
  /** Newest object time in the folder (store clock), for the leftover age. */
  readonly lastModifiedMs: number;
  /** A delete was interrupted here (deleting.json present). */
  readonly deleting: boolean;
  readonly keys: readonly string[];
}

export interface WalObject {
  readonly key: string;
  readonly name: WalFileName;
  readonly size: number;
  /** When the store says it was written (ms), when it says: verify tells a fork from a dead end by it. */
  readonly lastModifiedMs?: number;
}

export interface ReceivedObject {
  readonly key: string;
  readonly slot: string;
  readonly segment: string;
  readonly codecs?: readonly string[];
  readonly storedSize?: number;
  readonly lastModifiedMs?: number;
}

export interface RetentionInput {
  readonly backups: readonly BackupSentinel[];
  /** Every key of each complete backup's folder, by name. */
  readonly backupKeys: ReadonlyMap<string, readonly string[]>;
  readonly unfinished: readonly UnfinishedBackup[];
  readonly wal: readonly WalObject[];
  /** Other keys under the layout root that `everything` removes (cluster.json, probes). */
  readonly otherKeys: readonly string[];
  /** A receiver's segments in progress (`receive/<slot>/<segment>.partial<codecs>`). */
  readonly received?: readonly ReceivedObject[];
  /** Size in the store of every key listed. */
  readonly sizes: ReadonlyMap<string, number>;
  readonly nowMs: number;
  readonly leftoverAgeMs: number;
}

export interface BackupDecision {
  readonly name: string;
  readonly action: 'keep' | 'delete';
  readonly reason: string;
  readonly keys: readonly string[];
  readonly complete: boolean;
}

export interface WalRange {
  readonly timeline: number;
  readonly first: string;
  readonly last: string;
  readonly count: number;
  readonly bytes: number;
  readonly action: 'keep' | 'delete';
  readonly reason: string;
}

export interface RetentionPlan {
  readonly backups: readonly BackupDecision[];
  readonly wal: readonly WalRange[];
  /** WAL keys to delete, in name order. */
  readonly walKeys: readonly string[];
  readonly otherKeys: readonly string[];
  /**
   * Received partials to delete: those of segments before the cutoff (the complete segment was
   * archived long ago, or the receiver died there), all of them with `everything`; never one at or
   * after the cutoff (it may be the newest WAL there is).
   */
  readonly receivedKeys: readonly string[];
  /** Position (segment name, any timeline) before which WAL goes; undefined = none goes. */
  readonly walCutoff?: string;
  /** For `window`: where it starts, and the backup a restore to that point starts from. */
  readonly window?: WindowFacts;
}

export interface WindowFacts {
  /** The window's first second, `2026-11-25 12:00:00+00` (usable as `--target-time`). */
  readonly start: string;
  readonly startMs: number;
  /** The newest backup finished at or before `start`; undefined when none did (all are kept). */
  readonly anchor?: string;
}

export function planRetention(input: RetentionInput, rule: RetentionRule): RetentionPlan {
  const window = rule.kind === 'window' ? windowFacts(input, rule.durationMs) : undefined;
  const backups = rule.kind === 'window' && window ? decideWindow(input, rule.text, window) : decideBackups(input, rule);
  const unfinished = input.unfinished.map((u) => decideUnfinished(u, input, rule));
  const all = [...backups, ...unfinished];

  const everything = rule.kind === 'everything';
  const anchors = everything ? [] : walAnchors(input, backups, unfinished);
  const cutoff = everything ? undefined : anchors.sort(compareSegmentNames)[0];
  const canDeleteWal = everything || (cutoff !== undefined && backups.some((b) => b.action === 'keep'));
  const deletes = (w: WalObject): boolean => {
    if (w.name.kind === 'history') return everything;
    if (everything) return true;
    return canDeleteWal && cutoff !== undefined && compareSegmentNames(w.name.segment ?? w.name.name, cutoff) < 0;
  };
  const reasonDelete = everything ? 'delete everything' : `before ${cutoff}, the start of the oldest backup kept`;
  const reasonKeep = !canDeleteWal ? 'no complete backup is kept to anchor a cutoff' : `needed from ${cutoff} on`;
  const wal = walRanges(input.wal, deletes, reasonDelete, reasonKeep);
  return {
    backups: all,
    wal,
    walKeys: input.wal.filter(deletes).map((w) => w.key),
    otherKeys: everything ? input.otherKeys : [],
    receivedKeys: (input.received ?? []).filter((r) => everything || (canDeleteWal && cutoff !== undefined && compareSegmentNames(r.segment, cutoff) < 0)).map((r) => r.key),
    walCutoff: everything ? undefined : canDeleteWal ? cutoff : undefined,
    ...(window ? { window } : {}),
  };
}

/**
 * The window is measured on the clock of the machine running delete (`nowMs`), against the server
 * clock's `finish_time` in the sentinels: keep the clocks in sync (NTP), or a skew of S moves the
 * window by S.
 *
 * The anchor is the newest backup (by start LSN, the order backup-fetch LATEST --target-time uses)
 * whose `finish_time` is at or before the window's first second. Finish, not start: a backup is
 * consistent only at its stop point, and `finish_time` is read from the server clock after
 * pg_backup_stop returned, so every commit in the WAL the backup needs to become consistent is
 * older than it; a restore to a time at or after it passes the consistent point before it stops.
 */
function windowFacts(input: RetentionInput, durationMs: number): WindowFacts {
  const startMs = windowStartMs(input.nowMs, durationMs);
  const before = input.backups.filter((b) => Date.parse(b.finish_time) <= startMs);
  return { start: formatWindowTime(startMs), startMs, anchor: before[before.length - 1]?.name };
}

/**
 * Inside the window (finished after its start): kept, every one, since a restore to a later point may
 * start from any of them. The anchor: kept. Every other backup finished at or before the window start:
 * deleted (a restore to any point of the window starts from the anchor or a newer backup). No backup finished by the window start: all are kept (the window then reaches back only to the
 * oldest backup's finish; nothing older exists to keep). A finish_time that does not parse: kept.
 */
function decideWindow(input: RetentionInput, text: string, w: WindowFacts): BackupDecision[] {
  return input.backups.map((b) => {
    const keys = input.backupKeys.get(b.name) ?? [];
    const decision = (action: 'keep' | 'delete', reason: string): BackupDecision => ({ name: b.name, action, reason, keys, complete: true });
    const finish = Date.parse(b.finish_time);
    if (Number.isNaN(finish)) return decision('keep', `finish time ${JSON.stringify(b.finish_time)} unreadable: kept`);
    if (finish > w.startMs) return decision('keep', `inside the ${text} window (finished after ${w.start})`);
    if (b.name === w.anchor) {
      const where = finish === w.startMs ? 'finished at the window start' : 'newest before the window start';
      return decision('keep', `${where}: needed to restore to ${w.start}`);
    }
    return decision('delete', `finished before the window start (${w.start}); ${w.anchor} is newer and restores to it`);
  });
}

function decideBackups(input: RetentionInput, rule: RetentionRule): BackupDecision[] {
  const n = input.backups.length;
  const namedIndex = rule.kind === 'before-backup' ? input.backups.findIndex((b) => b.name === rule.name) : -1;
  return input.backups.map((b, i) => {
    const keys = input.backupKeys.get(b.name) ?? [];
    const decision = (action: 'keep' | 'delete', reason: string): BackupDecision => ({ name: b.name, action, reason, keys, complete: true });
    switch (rule.kind) {
      case 'everything':
        return decision('delete', 'delete everything');
      case 'retain':
        return i >= n - rule.count ? decision('keep', `one of the ${rule.count} newest`) : decision('delete', `older than the ${rule.count} newest`);
      case 'before-backup':
        return i < namedIndex ? decision('delete', `older than ${rule.name}`) : decision('keep', i === namedIndex ? 'the backup named' : `not older than ${rule.name}`);
      case 'before-time':
        return Date.parse(b.finish_time) < rule.epochMs ? decision('delete', `finished before ${rule.text}`) : decision('keep', `finished at or after ${rule.text}`);
      case 'window':
        throw new Error('window rules are decided by decideWindow');
    }
  });
}

function decideUnfinished(u: UnfinishedBackup, input: RetentionInput, rule: RetentionRule): BackupDecision {
  const base = { name: u.name, keys: u.keys, complete: false };
  if (u.deleting) return { ...base, action: 'delete', reason: 'an interrupted delete: finishing it' };
  if (rule.kind === 'everything') return { ...base, action: 'delete', reason: 'delete everything' };
  const ageMs = input.nowMs - u.lastModifiedMs;
  if (ageMs < input.leftoverAgeMs) return { ...base, action: 'keep', reason: 'in progress (no sentinel yet): never touched' };
  return { ...base, action: 'delete', reason: `leftover of a failed backup (no sentinel, untouched for ${Math.round(ageMs / 3_600_000)} h)` };
}

/** Start segments of everything that stays: kept complete backups and backups in progress. */
function walAnchors(input: RetentionInput, backups: readonly BackupDecision[], unfinished: readonly BackupDecision[]): string[] {
  const kept = new Set(backups.filter((d) => d.action === 'keep').map((d) => d.name));
  const anchors = input.backups.filter((b) => kept.has(b.name)).map((b) => b.start_wal_file);
  const inProgress = new Set(unfinished.filter((d) => d.action === 'keep').map((d) => d.name));
  for (const u of input.unfinished) {
    if (!inProgress.has(u.name)) continue;
    // A backup in progress whose start is unknown protects all WAL: the cutoff cannot be computed.
    anchors.push(u.startWalFile ?? '000000000000000000000000');
  }
  return anchors;
}

/** Consecutive runs of WAL per timeline with the same decision, for the explanation. */
function walRanges(wal: readonly WalObject[], deletes: (w: WalObject) => boolean, reasonDelete: string, reasonKeep: string): WalRange[] {
  const segments = wal.filter((w) => w.name.kind !== 'history').sort((a, b) => a.name.timeline - b.name.timeline || compareSegmentNames(a.name.name, b.name.name) || (a.name.name < b.name.name ? -1 : 1));
  const ranges: WalRange[] = [];
  for (const w of segments) {
    const action = deletes(w) ? 'delete' : 'keep';
    const last = ranges[ranges.length - 1];
    if (last && last.timeline === w.name.timeline && last.action === action) {
      ranges[ranges.length - 1] = { ...last, last: w.name.name, count: last.count + 1, bytes: last.bytes + w.size };
    } else {
      ranges.push({ timeline: w.name.timeline, first: w.name.name, last: w.name.name, count: 1, bytes: w.size, action, reason: action === 'delete' ? reasonDelete : reasonKeep });
    }
  }
  const histories = wal.filter((w) => w.name.kind === 'history');
  for (const h of histories) {
    const action = deletes(h) ? 'delete' : 'keep';
    ranges.push({ timeline: h.name.timeline, first: h.name.name, last: h.name.name, count: 1, bytes: h.size, action, reason: action === 'delete' ? reasonDelete : 'timeline history: always kept' });
  }
  return ranges;
}

