/**
 * Retention: which backups and WAL files a `delete` removes, and why. Pure: it sees the store's
 * contents as data and returns a plan; `apply.ts` carries it out. (reliability.md rules 28-30)
 *
 * Rules:
 * - only complete backups (with a sentinel) count; they are ordered by start LSN, never by name;
 * - `retain N` keeps the N newest; `before X` deletes the backups older than backup X (by start LSN)
 *   or that finished before time X; `everything` deletes all backups and all WAL;
 * - a backup folder without a sentinel is a backup in progress while its marker is younger than the
 *   leftover age, and is never touched then (nor is the WAL it needs); older, it is a leftover of a
 *   failed backup and is deleted; a folder marked `deleting.json` is an interrupted delete: finished;
 * - WAL at positions before the start of the oldest kept (or in-progress) backup is deleted, on every
 *   timeline; `.history` files are always kept (they are tiny and recovery probes them);
 * - with no complete backup left to anchor it, no WAL is deleted (except by `everything`).
 */
import type { BackupSentinel } from '../backup/sentinel';
import { compareSegmentNames, type WalFileName } from '../postgres/walName';

export type RetentionRule =
  | { readonly kind: 'retain'; readonly count: number }
  | { readonly kind: 'before-backup'; readonly name: string }
  | { readonly kind: 'before-time'; readonly epochMs: number; readonly text: string }
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

export interface RetentionInput {
  readonly backups: readonly BackupSentinel[];
  /** Every key of each complete backup's folder, by name. */
  readonly backupKeys: ReadonlyMap<string, readonly string[]>;
  readonly unfinished: readonly UnfinishedBackup[];
  readonly wal: readonly WalObject[];
  /** Other keys under the layout root that `everything` removes (cluster.json, probes). */
  readonly otherKeys: readonly string[];
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
  /** Position (segment name, any timeline) before which WAL goes; undefined = none goes. */
  readonly walCutoff?: string;
}

export function planRetention(input: RetentionInput, rule: RetentionRule): RetentionPlan {
  const backups = decideBackups(input, rule);
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
    walCutoff: everything ? undefined : canDeleteWal ? cutoff : undefined,
  };
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

