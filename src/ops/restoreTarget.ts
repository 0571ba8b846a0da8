/**
 * Before a restore writes anything: can the archive reach the recovery target? PostgreSQL 13+ stops
 * with "recovery ended before configured recovery target was reached" (and the copy cannot start)
 * when the WAL runs out first, so walts looks at what is archived:
 * - `--target-lsn` beyond the end of the newest archived segment: refused (exit 2). The position is
 *   exact, and a restore should not depend on WAL that does not exist yet;
 * - `--target-time` after the newest WAL object was stored: a warning. Store times only approximate
 *   commit times (the origin may archive that WAL soon, clocks differ), so this is not a refusal.
 */
import { WAL_ROOT, parseWalKey } from '../archive/layout';
import type { BackupSentinel } from '../backup/sentinel';
import type { RecoveryTarget } from '../backup/recovery';
import type { Deps } from '../deps';
import { UsageError } from '../errors';
import { parsePgTimestamp } from '../postgres/timestamp';
import { formatLsn, isValidSegmentSize, parseLsn, parseSegmentName, segmentStartLsn } from '../postgres/walName';

export async function checkTargetInArchive(deps: Deps, backup: BackupSentinel, target: RecoveryTarget, signal?: AbortSignal): Promise<void> {
  if (target.lsn === undefined && target.time === undefined) return;
  const segSize = backup.wal_segment_size;
  if (!isValidSegmentSize(segSize)) return; // a malformed sentinel: the restore itself will not get far
  let endLsn = -1n;
  let newestStored: Date | undefined;
  for await (const o of deps.storage.list(`${WAL_ROOT}/`, { signal })) {
    const parsed = parseWalKey(o.key);
    if (!parsed || parsed.name.kind !== 'segment') continue;
    const end = segmentStartLsn(parseSegmentName(parsed.name.name, segSize), segSize) + BigInt(segSize);
    if (end > endLsn) endLsn = end;
    if (o.lastModified && (!newestStored || o.lastModified > newestStored)) newestStored = o.lastModified;
  }
  if (target.lsn !== undefined && parseLsn(target.lsn) > endLsn) {
    const have = endLsn < 0n ? 'the archive holds no WAL segment' : `the archived WAL ends at ${formatLsn(endLsn)}`;
    throw new UsageError(`--target-lsn ${target.lsn} is beyond the archive: ${have}; recovery could not reach it (nothing written)`);
  }
  const time = target.time !== undefined ? parsePgTimestamp(target.time) : undefined;
  if (time && (!newestStored || time.epochMs > newestStored.getTime())) {
    const newest = newestStored ? `after the newest WAL in the archive was stored (${newestStored.toISOString()})` : 'given, but the archive holds no WAL segment';
    deps.log.warn(
      { target_time: target.time, newest_wal_stored: newestStored?.toISOString() ?? null },
      `--target-time ${target.time} is ${newest}: unless the origin archives more WAL first, PostgreSQL will stop with "recovery ended before configured recovery target was reached"`,
    );
  }
}
