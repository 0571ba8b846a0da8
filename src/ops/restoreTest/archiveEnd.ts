/**
 * "Replay reached the end of the archive" needs proof: PostgreSQL ends recovery, and promotes, at the
 * first WAL file restore_command does not find. A segment missing in the middle of the archive looks
 * to the server exactly like the end, so the drill lists the archive before the server starts and
 * compares where replay ended with the newest segment of the chain recovery follows (the same walk
 * as `walts verify`: retention/walChain.ts). WAL archived after the listing only moves the real end
 * further, so "reached at least the listed end" is the test.
 */
import { WAL_ROOT, parseWalKey } from '../../archive/layout';
import { readWalObject } from '../../archive/walRead';
import type { BackupSentinel } from '../../backup/sentinel';
import type { Deps } from '../../deps';
import { formatLsn, lsnToSegment, parseSegmentName, segmentName, type Lsn } from '../../postgres/walName';
import { checkChain, parseHistory, type ChainCheck, type HistoryEntry } from '../../retention/walChain';

export async function archiveChain(deps: Deps, backup: BackupSentinel, signal?: AbortSignal): Promise<ChainCheck> {
  const segmentSize = backup.wal_segment_size;
  const segments = new Map<number, Set<number>>();
  const histories = new Map<number, readonly HistoryEntry[]>();
  const historyKeys: { timeline: number; key: string }[] = [];
  for await (const o of deps.storage.list(`${WAL_ROOT}/`, { signal })) {
    const parsed = parseWalKey(o.key);
    if (!parsed) continue;
    if (parsed.name.kind === 'segment') {
      const id = parseSegmentName(parsed.name.name, segmentSize);
      let set = segments.get(id.timeline);
      if (!set) segments.set(id.timeline, (set = new Set()));
      set.add(id.segNo);
    } else if (parsed.name.kind === 'history') historyKeys.push({ timeline: parsed.name.timeline, key: o.key });
  }
  for (const h of historyKeys) {
    const { data } = await readWalObject(deps, h.key, true, signal);
    histories.set(h.timeline, parseHistory((data ?? Buffer.alloc(0)).toString('utf8')));
  }
  return checkChain({ segments, histories, segmentSize }, backup.start_wal_file);
}

export interface ReachedEnd {
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * Did replay, which ended at `reachedLsn` on `reachedTimeline`, reach the newest segment of `chain`?
 * `reachedLsn` is the end of the last record replayed: after a WAL switch it is the first byte of
 * the next segment, so the segment replay was in is the one holding the byte before it.
 */
export function compareWithArchiveEnd(chain: ChainCheck, reachedLsn: Lsn, reachedTimeline: number, segmentSize: number): ReachedEnd {
  const at = `replay ended at ${formatLsn(reachedLsn)} on timeline ${reachedTimeline}`;
  if (chain.newest === undefined) return { ok: false, detail: `${at}, but the archive holds no WAL from the backup's start on` };
  const reached = lsnToSegment(reachedLsn > 0n ? reachedLsn - 1n : 0n, reachedTimeline, segmentSize);
  const newest = parseSegmentName(chain.newest, segmentSize);
  const inSegment = segmentName(reached, segmentSize);
  if (reachedTimeline === newest.timeline && reached.segNo >= newest.segNo) {
    return { ok: true, detail: `${at} (segment ${inSegment}), the end of the archive (newest archived: ${chain.newest})` };
  }
  const missing = chain.missing.length > 0 ? `; missing from the archive: ${summarize(chain.missing)}` : '';
  const history = chain.missingHistory.length > 0 ? `; missing timeline history: ${chain.missingHistory.join(', ')}` : '';
  return { ok: false, detail: `${at} (segment ${inSegment}) but the archive holds WAL up to ${chain.newest}${missing}${history}: a restore cannot get past this point` };
}

function summarize(names: readonly string[]): string {
  return names.length <= 3 ? names.join(', ') : `${names[0]} .. ${names[names.length - 1]} (${names.length} segments)`;
}
