/**
 * The store half of `status`, as pure functions of what a listing and the sentinels show: the newest
 * archived WAL, and the point-in-time-recovery window.
 *
 * The window starts at the consistent point (finish time) of the oldest complete backup whose WAL
 * chain is unbroken from its first segment to the newest archived segment, following timeline
 * switches (retention/walChain.ts, the walk `verify` and recovery do), and that reaches the backup's
 * own last segment. It ends at the store time of that newest segment of the chain: every record in a
 * segment was written before the segment was archived, so restores can reach up to the end of that
 * segment, which lies at or shortly before this time (by at most `archive_timeout` when one is set).
 * Any doubt (an unreadable history file, a store without object times) makes the window unknown.
 */
import type { BackupSentinel } from '../../backup/sentinel';
import { compareSegmentNames, parseSegmentName } from '../../postgres/walName';
import type { WalObject } from '../../retention/policy';
import { checkChain, type HistoryEntry } from '../../retention/walChain';
import { unknown, type ArchivedWal, type Known, type PitrWindow } from './report';

export interface StoreContents {
  readonly backups: readonly BackupSentinel[];
  readonly wal: readonly WalObject[];
  /** Parsed history files by timeline. */
  readonly histories: ReadonlyMap<number, readonly HistoryEntry[]>;
  /** History files that could not be read, with the reason (e.g. no private key on this host). */
  readonly unreadableHistories: readonly string[];
  readonly segmentSize: number;
  readonly nowMs: number;
}

/** The newest segment (or .partial) by WAL position, then timeline; a full segment beats its .partial. */
export function lastArchivedWal(c: Pick<StoreContents, 'wal' | 'nowMs'>): Known<ArchivedWal> {
  let best: WalObject | undefined;
  for (const w of c.wal) {
    if (w.name.kind !== 'segment' && w.name.kind !== 'partial') continue;
    if (!best) {
      best = w;
      continue;
    }
    const order = compareSegmentNames(w.name.segment ?? w.name.name, best.name.segment ?? best.name.name);
    if (order > 0 || (order === 0 && w.name.kind === 'segment' && best.name.kind === 'partial')) best = w;
  }
  if (!best) return unknown('no WAL segment is archived in the store');
  const ms = best.lastModifiedMs;
  return {
    name: best.name.name,
    stored_at: ms === undefined ? null : new Date(ms).toISOString(),
    age_seconds: ms === undefined ? null : ageSeconds(c.nowMs, ms),
    objects: c.wal.length,
  };
}

export function pitrWindow(c: StoreContents): Known<PitrWindow> {
  if (c.backups.length === 0) return unknown('no complete backup in the store');
  if (c.unreadableHistories.length > 0) return unknown(`timeline history not readable: ${c.unreadableHistories.join('; ')}`);
  const segments = new Map<number, Set<number>>();
  const times = new Map<string, number>();
  for (const w of c.wal) {
    if (w.name.kind !== 'segment') continue;
    const id = parseSegmentName(w.name.name, c.segmentSize);
    let set = segments.get(id.timeline);
    if (!set) segments.set(id.timeline, (set = new Set()));
    set.add(id.segNo);
    // The same segment under two codec chains: the later copy is when it was (re)archived last.
    if (w.lastModifiedMs !== undefined) times.set(w.name.name, Math.max(w.lastModifiedMs, times.get(w.name.name) ?? 0));
  }
  const reasons: string[] = [];
  for (const b of c.backups) {
    const chain = checkChain({ segments, histories: c.histories, segmentSize: b.wal_segment_size || c.segmentSize }, b.start_wal_file);
    if (chain.missingHistory.length > 0) reasons.push(`${b.name}: history of timeline ${chain.missingHistory.join(', ')} missing`);
    else if (chain.missing.length > 0) reasons.push(`${b.name}: WAL gap at ${chain.missing[0]}${chain.missing.length > 1 ? ` (+${chain.missing.length - 1} more)` : ''}`);
    else if (chain.newest === undefined || compareSegmentNames(chain.newest, b.stop_wal_file) < 0) reasons.push(`${b.name}: WAL up to ${b.stop_wal_file} not archived`);
    else {
      const toMs = times.get(chain.newest);
      if (toMs === undefined) return unknown(`the store keeps no write time for ${chain.newest}`);
      const fromMs = Date.parse(b.finish_time);
      if (!Number.isFinite(fromMs)) return unknown(`${b.name}: finish time ${JSON.stringify(b.finish_time)} is not a time`);
      return {
        backup: b.name,
        from: new Date(fromMs).toISOString(),
        to_wal: chain.newest,
        to: new Date(toMs).toISOString(),
        seconds: Math.max(0, Math.round((toMs - fromMs) / 1000)),
      };
    }
  }
  return unknown(`no backup can be restored to the newest archived WAL (${reasons.join('; ')})`);
}

export function ageSeconds(nowMs: number, thenMs: number): number {
  return Math.round((nowMs - thenMs) / 1000);
}
