/**
 * The end of every base backup, local (backupPush.ts) or over the replication protocol
 * (backupPushRemote.ts): the manifest of every entry, the wait until the backup's WAL is in the store,
 * and the sentinel (with its signature), written last: only then does the backup exist.
 */
import { Readable } from 'node:stream';
import type { KeyObject } from 'node:crypto';
import { encodeAndPut } from '../archive/encode';
import { backupKeys } from '../archive/layout';
import { findWalVariants } from '../archive/walObjects';
import type { BackupSentinel, StoredPart } from '../backup/sentinel';
import { signSentinel } from '../backup/signature';
import { manifestLines, type VolumeWriter } from '../backup/volumes';
import type { Deps } from '../deps';
import { UnavailableError } from '../errors';
import { nextSegment, parseSegmentName, parseWalFileName, segmentName } from '../postgres/walName';

export async function uploadManifest(
  deps: Deps,
  name: string,
  writer: VolumeWriter,
  start: { startLsn: string; systemIdentifier: string },
  stop: { stopLsn: string },
): Promise<StoredPart> {
  const key = backupKeys.manifest(name, deps.codecs.writeSuffix);
  const body = manifestLines({ format: 1, backup: name, system_identifier: start.systemIdentifier, start_lsn: start.startLsn, stop_lsn: stop.stopLsn, entries: writer.entries.length }, writer.entries);
  const { plain, storedBytes } = await encodeAndPut(deps, key, Readable.from([body]));
  return { key, stored_size: storedBytes, size: plain.size, sha256: plain.sha256 };
}

export interface WaitForWalArgs {
  /** How long to wait for the backup's WAL to reach the store. */
  readonly archiveTimeoutMs: number;
  readonly signal?: AbortSignal;
  readonly sleep?: (ms: number) => Promise<void>;
  /** The question the timeout error asks about what feeds the store (default: archive_command). */
  readonly feeder?: string;
}

/**
 * Waits until every WAL file the backup needs (start to stop segment) is archived, complete, in the
 * store: a backup whose WAL is missing cannot be restored. The server switched to a new segment at
 * the stop, so the last one is on its way; on timeout the error carries `archiverStatus()` (what
 * pg_stat_archiver says, when the caller can ask).
 */
export async function waitForWal(
  deps: Deps,
  archiverStatus: (() => Promise<string>) | undefined,
  first: string,
  last: string,
  segmentSize: number,
  args: WaitForWalArgs,
): Promise<void> {
  const sleep = args.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const deadline = Date.now() + args.archiveTimeoutMs;
  let seg = parseSegmentName(first, segmentSize);
  const end = parseSegmentName(last, segmentSize);
  let polls = 0;
  while (seg.segNo <= end.segNo) {
    const walName = segmentName(seg, segmentSize);
    const parsed = parseWalFileName(walName);
    const variants = parsed ? await findWalVariants(deps.storage, parsed, args.signal) : [];
    if (variants.some((v) => v.facts)) {
      seg = nextSegment(seg);
      continue;
    }
    if (Date.now() >= deadline) {
      const status = await archiverStatus?.().catch(() => undefined);
      const detail = status ? ` (pg_stat_archiver: ${status})` : '';
      throw new UnavailableError(`WAL file ${walName}, needed by this backup, did not reach the store within ${Math.round(args.archiveTimeoutMs / 1000)} s; ${args.feeder ?? "is archive_command = 'walts wal-push %p' working?"}${detail}`, { transient: false });
    }
    args.signal?.throwIfAborted();
    // The stop has just switched segments: the archiver is usually seconds away, so look again
    // soon at first (50 ms, doubling to 500 ms) rather than every 500 ms.
    await sleep(Math.min(500, 50 * 2 ** polls++));
  }
}

/** The commit point: the signature (if any), then the sentinel, after every part and WAL file it needs. */
export async function storeSentinel(deps: Deps, sentinel: BackupSentinel, signingKey: KeyObject | undefined, signal?: AbortSignal): Promise<void> {
  const sentinelBytes = Buffer.from(JSON.stringify(sentinel, null, 2) + '\n');
  if (signingKey) await deps.storage.put(backupKeys.signature(sentinel.name), Buffer.from(JSON.stringify(signSentinel(sentinelBytes, signingKey)) + '\n'), { signal });
  await deps.storage.put(backupKeys.sentinel(sentinel.name), sentinelBytes, { signal });
}
