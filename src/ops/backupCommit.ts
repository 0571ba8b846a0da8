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
import { SENTINEL_FORMAT, type BackupSentinel, type StoredPart } from '../backup/sentinel';
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

/** What a backup's sentinel records beyond what commitBackup derives from its volumes and entries. */
export type SentinelFacts = Omit<BackupSentinel, 'format' | 'name' | 'walts_version' | 'hostname' | 'file_count' | 'data_size' | 'stored_size' | 'codecs' | 'volumes' | 'manifest'>;

export interface CommitArgs {
  readonly name: string;
  readonly writer: VolumeWriter;
  /** Entries added after everything else (the local path's backup_label and tablespace_map). */
  readonly addLast?: () => Promise<void>;
  /** The caller's waitForWal, already running; `walStop` stops it when storing the parts fails. */
  readonly walArchived: Promise<void>;
  readonly walStop: AbortController;
  readonly facts: SentinelFacts;
  readonly signingKey: KeyObject | undefined;
  readonly signal?: AbortSignal;
}

/**
 * The end of a base backup of either kind: the last entries, every volume stored, the manifest,
 * then (once the backup's WAL is in the store) the sentinel: the commit point, written last.
 */
export async function commitBackup(deps: Deps, args: CommitArgs): Promise<BackupSentinel> {
  const { writer, facts } = args;
  args.walArchived.catch(() => undefined); // awaited below, after the parts
  let volumes: StoredPart[];
  let manifest: StoredPart;
  try {
    await args.addLast?.();
    volumes = await writer.settle();
    manifest = await uploadManifest(deps, args.name, writer, { startLsn: facts.start_lsn, systemIdentifier: facts.system_identifier }, { stopLsn: facts.stop_lsn });
  } catch (err) {
    args.walStop.abort(err);
    await args.walArchived.catch(() => undefined);
    throw err;
  }
  await args.walArchived;
  const files = writer.entries.filter((e) => e.type === 'file');
  // Field by field, in the order a person reading the sentinel expects.
  const sentinel: BackupSentinel = {
    format: SENTINEL_FORMAT,
    name: args.name,
    label: facts.label,
    walts_version: deps.version,
    system_identifier: facts.system_identifier,
    pg_version: facts.pg_version,
    pg_version_num: facts.pg_version_num,
    timeline: facts.timeline,
    start_lsn: facts.start_lsn,
    stop_lsn: facts.stop_lsn,
    start_wal_file: facts.start_wal_file,
    stop_wal_file: facts.stop_wal_file,
    start_time: facts.start_time,
    finish_time: facts.finish_time,
    wal_segment_size: facts.wal_segment_size,
    data_checksums: facts.data_checksums,
    from_standby: facts.from_standby,
    hostname: deps.host,
    data_directory: facts.data_directory,
    file_count: files.length,
    data_size: files.reduce((n, e) => n + e.size, 0),
    stored_size: volumes.reduce((n, v) => n + v.stored_size, 0) + manifest.stored_size,
    codecs: deps.codecs.writeChain.map((c) => c.name),
    volumes,
    manifest,
    tablespaces: facts.tablespaces,
    backup_label: facts.backup_label,
    tablespace_map: facts.tablespace_map,
  };
  await storeSentinel(deps, sentinel, args.signingKey, args.signal);
  return sentinel;
}
