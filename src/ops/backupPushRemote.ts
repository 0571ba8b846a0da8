/**
 * backup-push --remote: a base backup taken over the replication protocol (BASE_BACKUP), from a host
 * that cannot see PGDATA, as Barman's `backup_method = postgres` and pg_basebackup do. It is stored
 * exactly as a local backup-push stores one (same volumes, manifest, WAL wait and sentinel), so every
 * other command treats both alike:
 *
 *   1. connect as a replication client (libpq conventions, replication=true); IDENTIFY_SYSTEM and the
 *      store's owner; SHOW the settings the sentinel records and the archiving preflight needs;
 *   2. BASE_BACKUP: its start position names the backup; write the in-progress marker `started.json`;
 *   3. the server's tar archives (tablespaces first, the data directory last, with backup_label and
 *      tablespace_map from the server) become entries of the one volume writer, streamed: the socket
 *      is paused while the volumes are slower than the network;
 *   4. the end position; the manifest; wait until every WAL file from the start to the stop segment
 *      is in the store; the sentinel, last.
 * A failure or an interruption closes the connection, which ends the backup on the server; no
 * sentinel is written, so no half backup is ever listed.
 */
import { checkWriteEncryption, openArchive } from '../archive/archive';
import { backupKeys, backupName } from '../archive/layout';
import { feedingSlots } from '../archive/receivedPartials';
import type { BackupSentinel, TablespaceInfo } from '../backup/sentinel';
import { serverEntries, type ServerLabelFiles } from '../backup/serverEntries';
import { loadSigningKey } from '../backup/signature';
import { VolumeWriter } from '../backup/volumes';
import type { Deps } from '../deps';
import { IntegrityError, ProtocolError, UsageError } from '../errors';
import { parseBackupLabel, startWalFileName, stopWalFileName } from '../postgres/backupLabel';
import type { PgConnectOptions } from '../postgres/client';
import type { BackupPosition } from '../postgres/replication/baseBackup';
import { showBytes } from '../postgres/replication/commands';
import { type BaseBackupStream, serverArchives, type ServerArchive } from '../postgres/replication/baseBackupStream';
import { ReplicationConnection } from '../postgres/replication/connection';
import type { Storage } from '../storage/storage';
import { formatLsn, isValidSegmentSize } from '../postgres/walName';
import { archivingProblem, MAX_VOLUMES_IN_FLIGHT } from './backupPush';
import { commitBackup, waitForWal } from './backupCommit';

export interface BackupPushRemoteArgs {
  readonly fast: boolean;
  /** Tar bytes per volume before a new one starts. */
  readonly volumeSize: number;
  /** How long to wait for the backup's WAL to reach the store. */
  readonly archiveTimeoutMs: number;
  readonly connection: Omit<PgConnectOptions, 'replication'>;
  readonly signal?: AbortSignal;
  /** Progress: bytes the server has sent and its estimate of the total. */
  readonly onProgress?: (done: number, total: number) => void;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly signingKeyPath?: string;
  readonly concurrency?: number;
  /** Copy messages buffered before the socket is paused (BaseBackupStream; tests lower it). */
  readonly highWaterMark?: number;
  /** Told the stream's largest buffer once the copy is over (tests of the memory bound). */
  readonly onStreamStats?: (stats: { maxBuffered: number; maxBufferedBytes: number; highWaterMark: number; messages: number }) => void;
}

/** What SHOW tells about the server. */
interface ServerFacts {
  readonly walSegmentSize: number;
  readonly pgVersion: string;
  readonly pgVersionNum: number;
  readonly dataChecksums: boolean;
  readonly dataDirectory: string | undefined;
}

export async function backupPushRemote(deps: Deps, args: BackupPushRemoteArgs): Promise<BackupSentinel> {
  const { storage, codecs, log } = deps;
  const archive = await openArchive(storage, args.signal);
  checkWriteEncryption(archive, codecs.writeChain.some((c) => c.name === 'pgp'), storage);
  const signingKey = args.signingKeyPath !== undefined ? loadSigningKey(args.signingKeyPath) : undefined;
  const conn = await ReplicationConnection.open({ application: 'walts backup-push', ...args.connection });
  let writer: VolumeWriter | undefined;
  let copy: BaseBackupStream | undefined;
  try {
    const identity = await conn.identifySystem();
    const record = archive.cluster;
    if (record && record.system_identifier !== identity.systemId) {
      throw new IntegrityError(`this server is database system ${identity.systemId}, but the store belongs to system ${record.system_identifier}; use a separate WALTS_STORE prefix per cluster`);
    }
    const facts = await serverFacts(conn);
    if (facts.pgVersionNum < 150000) throw new UsageError(`backup-push --remote needs PostgreSQL 15 or later (BASE_BACKUP with options in parentheses); the server is ${facts.pgVersion}`);
    const mode = (await conn.show('archive_mode')) ?? null;
    const problem = archivingProblem(mode, await conn.show('archive_command'), await conn.show('archive_library'));
    const receiver = problem ? await receiverSlot(conn, storage, identity.systemId, args.signal) : undefined;
    if (problem && receiver === undefined) {
      throw new UsageError(`${problem}; or run \`walts wal-receive --slot NAME\` into this store (no physical slot of this server has a receiver record of this cluster, receive/<slot>/receiver.json, in ${storage.description})`);
    }
    if (receiver !== undefined) log.info({ slot: receiver }, `archive_mode is off: the WAL of this backup reaches the store through the receiver on replication slot ${receiver} (a slot of this server, and its record receive/${receiver}/receiver.json names this cluster)`);

    const label = `walts backup ${deps.now().toISOString()}`;
    log.info({ fast: args.fast, remote: true }, args.fast ? 'starting backup: immediate checkpoint' : 'starting backup: waiting for a spread checkpoint (up to checkpoint_timeout × checkpoint_completion_target; --fast for an immediate one)');
    const begun = await conn.baseBackup({ label, fast: args.fast, ...(args.highWaterMark !== undefined ? { highWaterMark: args.highWaterMark } : {}) });
    copy = begun.stream;
    const segSize = BigInt(facts.walSegmentSize);
    const startLsn = formatLsn(begun.start.lsn);
    const startWalFile = startWalFileName(begun.start.lsn, begun.start.timeline, facts.walSegmentSize);
    const name = backupName(startWalFile, Number(begun.start.lsn % segSize));
    const startedAt = deps.now();
    log.info({ backup: name, start_lsn: startLsn, fast: args.fast, remote: true }, 'backup started');
    await storage.put(
      backupKeys.started(name),
      Buffer.from(JSON.stringify({ name, start_lsn: startLsn, start_wal_file: startWalFile, timeline: begun.start.timeline, start_time: startedAt.toISOString(), hostname: deps.host, walts_version: deps.version }) + '\n'),
      { signal: args.signal },
    );

    const tablespaces: TablespaceInfo[] = begun.tablespaces
      .filter((t) => t.oid !== undefined)
      // A replication connection cannot read pg_tablespace, so the name recorded is the OID (which
      // backup-fetch --tablespace accepts as well as a name).
      .map((t) => ({ oid: t.oid!, name: String(t.oid), location: t.location! }));
    const total = begun.tablespaces.reduce((n, t) => n + (t.sizeBytes ?? 0), 0);
    writer = new VolumeWriter({
      storage,
      codecs,
      keyFor: (i) => backupKeys.volume(name, i, codecs.writeSuffix),
      volumeSize: args.volumeSize,
      concurrency: Math.min(args.concurrency ?? 1, MAX_VOLUMES_IN_FLIGHT),
      signal: args.signal,
    });
    const labelFiles: ServerLabelFiles = {};
    let end: BackupPosition | undefined;
    const archives = serverArchives(begun.stream, (bytes) => args.onProgress?.(bytes, Math.max(total, bytes)));
    const tracked = async function* (): AsyncGenerator<ServerArchive, void, undefined> {
      end = yield* archives;
    };
    const entries = serverEntries(tracked(), { tablespaces: new Map(tablespaces.map((t) => [t.location, t.oid])), pgMajor: Math.floor(facts.pgVersionNum / 10000), now: Math.floor(startedAt.getTime() / 1000) }, labelFiles);
    const onAbort = () => begun.stream.destroy(args.signal?.reason as Error);
    args.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const entry of entries) {
        args.signal?.throwIfAborted();
        await writer.add(entry);
      }
    } finally {
      args.signal?.removeEventListener('abort', onAbort);
    }
    args.onStreamStats?.({ maxBuffered: begun.stream.maxBuffered, maxBufferedBytes: begun.stream.maxBufferedBytes, highWaterMark: begun.stream.readableHighWaterMark, messages: begun.stream.messages });
    if (!end) throw new ProtocolError('BASE_BACKUP ended without its end position');
    if (!labelFiles.backupLabel) throw new ProtocolError('BASE_BACKUP: the data directory archive has no backup_label');
    const backupLabel = labelFiles.backupLabel.toString('utf8');
    const parsed = parseBackupLabel(backupLabel, { walSegmentSize: facts.walSegmentSize });
    if (parsed.startLsn !== startLsn || parsed.startTimeline !== begun.start.timeline) {
      throw new IntegrityError(`BASE_BACKUP: backup_label starts at ${parsed.startLsn} on timeline ${parsed.startTimeline}, the server said ${startLsn} on ${begun.start.timeline}`);
    }
    if (end.lsn < begun.start.lsn) throw new ProtocolError(`BASE_BACKUP: the end ${formatLsn(end.lsn)} precedes the start ${startLsn}`);
    const stopLsn = formatLsn(end.lsn);
    const stopWalFile = stopWalFileName(end.lsn, end.timeline, facts.walSegmentSize);
    const finishedAt = deps.now();
    log.info({ backup: name, stop_lsn: stopLsn }, 'backup copied; waiting for its WAL in the store');

    // The last segment is archived while the last volume and the manifest are uploaded.
    const walStop = new AbortController();
    const walSignal = args.signal ? AbortSignal.any([args.signal, walStop.signal]) : walStop.signal;
    const walArchived = waitForWal(deps, undefined, parsed.startWalFile, stopWalFile, facts.walSegmentSize, {
      archiveTimeoutMs: args.archiveTimeoutMs,
      signal: walSignal,
      ...(args.sleep ? { sleep: args.sleep } : {}),
      ...(receiver !== undefined ? { feeder: `is \`walts wal-receive --slot ${receiver}\` running and archiving?` } : {}),
    });
    // The commit point, after every part and every WAL file it needs (backupCommit.ts).
    return await commitBackup(deps, {
      name,
      writer,
      walArchived,
      walStop,
      signingKey,
      signal: args.signal,
      facts: {
        label,
        system_identifier: identity.systemId,
        pg_version: facts.pgVersion,
        pg_version_num: facts.pgVersionNum,
        timeline: parsed.startTimeline,
        start_lsn: startLsn,
        stop_lsn: stopLsn,
        start_wal_file: parsed.startWalFile,
        stop_wal_file: stopWalFile,
        // The server's clock for the start (backup_label); the end position carries no time, so the
        // finish is this host's clock when the server had ended the backup (keep clocks in sync: NTP).
        start_time: parsed.startTimeIso ?? startedAt.toISOString(),
        finish_time: finishedAt.toISOString(),
        wal_segment_size: facts.walSegmentSize,
        data_checksums: facts.dataChecksums,
        from_standby: parsed.fromStandby,
        data_directory: facts.dataDirectory ?? '',
        tablespaces,
        backup_label: backupLabel,
        tablespace_map: labelFiles.tablespaceMap ? labelFiles.tablespaceMap.toString('utf8') : null,
      },
    });
  } catch (err) {
    // A stream left paused would keep the server's data (and its answer to Terminate) unread.
    copy?.destroy();
    await writer?.abort(err as Error);
    throw err;
  } finally {
    // Closing the walsender session ends a backup still running on the server.
    await conn.close();
  }
}

async function serverFacts(conn: ReplicationConnection): Promise<ServerFacts> {
  const segText = await conn.show('wal_segment_size');
  const walSegmentSize = segText === undefined ? NaN : showBytes(segText);
  if (!isValidSegmentSize(walSegmentSize)) throw new ProtocolError(`the server reports an unusable wal_segment_size ${JSON.stringify(segText)}`);
  const pgVersion = (await conn.show('server_version')) ?? '';
  const pgVersionNum = Number(await conn.show('server_version_num'));
  if (!Number.isSafeInteger(pgVersionNum) || pgVersionNum <= 0) throw new ProtocolError('the server reports no server_version_num');
  return { walSegmentSize, pgVersion, pgVersionNum, dataChecksums: (await conn.show('data_checksums')) === 'on', dataDirectory: await conn.show('data_directory') };
}

/**
 * With archiving off, the receiver that feeds this store: a slot whose receiver record names this
 * server's system identifier (receivedPartials.ts feedingSlots; the record stays between segments,
 * so an idle server needs nothing written first) and that READ_REPLICATION_SLOT shows as a physical
 * slot of this server. Over the replication
 * protocol walts cannot see whether the slot is active (pg_replication_slots needs SQL), so a stopped
 * receiver shows as the wait for the backup's WAL timing out, with a message that names it.
 */
async function receiverSlot(conn: ReplicationConnection, storage: Storage, systemId: string, signal?: AbortSignal): Promise<string | undefined> {
  for (const slot of [...(await feedingSlots(storage, systemId, signal))].sort()) {
    if ((await conn.readReplicationSlot(slot))?.type === 'physical') return slot;
  }
  return undefined;
}
