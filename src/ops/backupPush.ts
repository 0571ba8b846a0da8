/**
 * backup-push: a non-exclusive base backup of a running cluster (reliability.md rules 20-25, 30).
 *
 *   1. connect (libpq conventions), check the data directory and the store's owner;
 *   2. pg_backup_start; write the in-progress marker `started.json`;
 *   3. stream PGDATA and tablespaces as tar volumes (global/pg_control last);
 *   4. pg_backup_stop; add backup_label and tablespace_map as the last entries; upload the manifest;
 *   5. wait until every WAL file from the start to the stop segment is in the store;
 *   6. write the sentinel: only now does the backup exist.
 * Any failure or interruption ends backup mode (closing the session aborts a non-exclusive backup)
 * and leaves no sentinel, so no half backup is ever listed.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { checkWriteEncryption, openArchive } from '../archive/archive';
import { backupKeys, backupName } from '../archive/layout';
import { feedingSlots } from '../archive/receivedPartials';
import type { TablespaceInfo, BackupSentinel } from '../backup/sentinel';
import { loadSigningKey } from '../backup/signature';
import { VolumeWriter } from '../backup/volumes';
import { PG_CONTROL, walkDataDirectory } from '../backup/walk';
import type { Deps } from '../deps';
import { IntegrityError, UsageError } from '../errors';
import { abortBackup, describeArchiverStatus, startBackup, stopBackup, walArchiverStatus } from '../postgres/backupApi';
import { connect, type PgConnectOptions, type PgSession } from '../postgres/client';
import { parseLsn } from '../postgres/walName';
import type { Storage } from '../storage/storage';
import { commitBackup, waitForWal } from './backupCommit';

/**
 * Volumes in flight at most, whatever WALTS_CONCURRENCY says: each holds a worker thread, its
 * batches and its upload's parts (about 30 MiB RSS measured), and on a scale-20 cluster split into
 * 64 MiB volumes 3-4 in flight went past the 256 MiB budget (255-259 MiB) without being faster than
 * 2 on two cores (docs/performance.md).
 */
export const MAX_VOLUMES_IN_FLIGHT = 2;

export interface BackupPushArgs {
  readonly pgdata: string;
  readonly fast: boolean;
  /** Tar bytes per volume before a new one starts. */
  readonly volumeSize: number;
  /** How long to wait for the backup's WAL to reach the store. */
  readonly archiveTimeoutMs: number;
  readonly connection: PgConnectOptions;
  readonly signal?: AbortSignal;
  /** Progress: plain bytes so far and the expected total (database sizes), for a TTY. */
  readonly onProgress?: (done: number, total: number) => void;
  readonly sleep?: (ms: number) => Promise<void>;
  /** WALTS_BACKUP_SIGNING_KEY: sign the sentinel (docs/security.md). */
  readonly signingKeyPath?: string;
  /** Volumes read, encoded and uploaded at once (WALTS_CONCURRENCY, at most MAX_VOLUMES_IN_FLIGHT; default 1). */
  readonly concurrency?: number;
}

export async function backupPush(deps: Deps, args: BackupPushArgs): Promise<BackupSentinel> {
  const { storage, codecs, log } = deps;
  // Before anything else touches the server or the store: only into an archive that exists, and
  // never plaintext into an encrypted one.
  const archive = await openArchive(storage, args.signal);
  checkWriteEncryption(archive, codecs.writeChain.some((c) => c.name === 'pgp'), storage);
  const pgdata = await checkDataDirectory(args.pgdata);
  const signingKey = args.signingKeyPath !== undefined ? loadSigningKey(args.signingKeyPath) : undefined;
  const session = await connect(args.connection);
  let writer: VolumeWriter | undefined;
  try {
    await checkSameServer(session, pgdata);
    const walSource = await checkArchiving(session, storage, { signal: args.signal });
    if (walSource.kind === 'receiver') log.info({ slot: walSource.slot }, `archive_mode is off: the WAL of this backup reaches the store through the receiver on replication slot ${walSource.slot} (active, and its record receive/${walSource.slot}/receiver.json names this cluster)`);
    const record = archive.cluster;
    const tablespaces = await listTablespaces(session);
    const total = Number((await session.query<{ total: string }>('select sum(pg_database_size(oid))::text as total from pg_database')).rows[0]?.total ?? 0);

    log.info({ fast: args.fast }, args.fast ? 'starting backup: immediate checkpoint' : 'starting backup: waiting for a spread checkpoint (up to checkpoint_timeout × checkpoint_completion_target; --fast for an immediate one)');
    const start = await startBackup(session, { label: `walts backup ${deps.now().toISOString()}`, fast: args.fast });
    if (record && record.system_identifier !== start.systemIdentifier) {
      throw new IntegrityError(`this server is database system ${start.systemIdentifier}, but the store belongs to system ${record.system_identifier}; use a separate WALTS_STORE prefix per cluster`);
    }
    const name = backupName(start.startWalFile, Number(parseLsn(start.startLsn) % BigInt(start.walSegmentSize)));
    log.info({ backup: name, start_lsn: start.startLsn, fast: args.fast }, 'backup started');
    await storage.put(
      backupKeys.started(name),
      Buffer.from(JSON.stringify({ name, start_lsn: start.startLsn, start_wal_file: start.startWalFile, timeline: start.timeline, start_time: start.startTime, hostname: deps.host, walts_version: deps.version }) + '\n'),
      { signal: args.signal },
    );

    let done = 0;
    writer = new VolumeWriter({
      storage,
      codecs,
      keyFor: (i) => backupKeys.volume(name, i, codecs.writeSuffix),
      volumeSize: args.volumeSize,
      concurrency: Math.min(args.concurrency ?? 1, MAX_VOLUMES_IN_FLIGHT),
      signal: args.signal,
      onBytes: (n) => args.onProgress?.((done += n), total),
    });
    const spcMap = new Map(tablespaces.map((t) => [t.oid, t.location]));
    for await (const entry of walkDataDirectory(pgdata, {
      tablespaces: spcMap,
      pgMajor: Math.floor(start.pgVersionNum / 10000),
      onSkip: (path, why) => log.warn({ path }, `left out of the backup: ${path} is ${why}`),
    })) {
      args.signal?.throwIfAborted();
      await writer.add({
        path: entry.path,
        type: entry.type,
        mode: entry.mode,
        mtime: entry.mtime,
        size: entry.size,
        source: entry.type === 'file' ? entry.source : undefined,
        linkname: entry.linkTarget,
        // global/pg_control is read after every other file, whichever volume holds them.
        last: entry.path === PG_CONTROL,
      });
    }
    // Every file is copied (and its volume stored) before the backup ends on the server.
    await writer.settle();

    const stop = await stopBackup(session, { waitForArchive: false });
    // The last WAL segment is archived while the last volume and the manifest are uploaded; the
    // sentinel still waits for both.
    const walStop = new AbortController();
    const walSignal = args.signal ? AbortSignal.any([args.signal, walStop.signal]) : walStop.signal;
    const archiverStatus = walSource.kind === 'archive_command' ? async () => describeArchiverStatus(await walArchiverStatus(session)) : undefined;
    const feeder = walSource.kind === 'receiver' ? `is \`walts wal-receive --slot ${walSource.slot}\` running and archiving?` : undefined;
    const walArchived = waitForWal(deps, archiverStatus, stop.label.startWalFile, stop.stopWalFile, start.walSegmentSize, { ...args, signal: walSignal, ...(feeder ? { feeder } : {}) });
    // The commit point, after every part and every WAL file it needs (backupCommit.ts).
    const now = Math.floor(Date.now() / 1000);
    return await commitBackup(deps, {
      name,
      writer,
      addLast: async () => {
        await writer!.add({ path: 'backup_label', type: 'file', data: stop.backupLabel, mode: 0o600, mtime: now });
        if (stop.tablespaceMap) await writer!.add({ path: 'tablespace_map', type: 'file', data: stop.tablespaceMap, mode: 0o600, mtime: now });
      },
      walArchived,
      walStop,
      signingKey,
      signal: args.signal,
      facts: {
        label: start.label,
        system_identifier: start.systemIdentifier,
        pg_version: start.pgVersion,
        pg_version_num: start.pgVersionNum,
        timeline: stop.label.startTimeline,
        start_lsn: start.startLsn,
        stop_lsn: stop.stopLsn,
        start_wal_file: stop.label.startWalFile,
        stop_wal_file: stop.stopWalFile,
        start_time: start.startTime,
        finish_time: stop.stopTime,
        wal_segment_size: start.walSegmentSize,
        data_checksums: start.dataChecksums,
        from_standby: start.inRecovery,
        data_directory: pgdata,
        tablespaces,
        backup_label: stop.backupLabel.toString('utf8'),
        tablespace_map: stop.tablespaceMap ? stop.tablespaceMap.toString('utf8') : null,
      },
    });
  } catch (err) {
    await writer?.abort(err as Error);
    await abortBackup(session).catch(() => undefined);
    throw err;
  } finally {
    await session.close().catch(() => undefined);
  }
}

async function checkDataDirectory(pgdata: string): Promise<string> {
  const real = await fsp.realpath(pgdata).catch(() => {
    throw new UsageError(`${pgdata} does not exist`);
  });
  for (const f of ['PG_VERSION', 'global/pg_control']) {
    await fsp.access(join(real, f)).catch(() => {
      throw new UsageError(`${pgdata} is not a PostgreSQL data directory (no ${f})`);
    });
  }
  return real;
}

/** The connection must lead to the server running on `pgdata`, or the files and the WAL would not match. */
async function checkSameServer(session: PgSession, pgdata: string): Promise<void> {
  const dir = (await session.query<{ d: string }>('select current_setting($1) as d', ['data_directory'])).rows[0]?.d ?? '';
  const real = await fsp.realpath(dir).catch(() => dir);
  if (real !== pgdata) {
    throw new UsageError(`the server reached through PGHOST/PGPORT runs on ${dir}, not on ${pgdata}; point the connection at the cluster being backed up`);
  }
}

/** How the WAL this backup needs reaches the store. */
export type WalSource = { readonly kind: 'archive_command' } | { readonly kind: 'receiver'; readonly slot: string };

/**
 * A backup is restorable only with the WAL from its start to its end archived, so a server that
 * feeds no WAL to the store is refused before anything is uploaded (exit 2) instead of after waiting
 * for WAL that never comes. Two sources count: archive_command (or archive_library), or, with
 * archiving off, `walts wal-receive` streaming into this store: an active physical replication slot
 * on this server whose receiver record `receive/<slot>/receiver.json` names this server's system
 * identifier (receivedPartials.ts feedingSlots). The record is the proof that the receiver on that
 * slot writes into THIS archive, and it stays there between segments, so an idle server needs no
 * WAL written to show it; the receiver archives complete segments like wal-push, so the wait for
 * the backup's WAL is the same for both.
 */
export async function checkArchiving(session: Pick<PgSession, 'query'>, storage: Storage, opts: { signal?: AbortSignal } = {}): Promise<WalSource> {
  const { signal } = opts;
  const r = await session.query<{ mode: string | null; command: string | null; library: string | null }>(
    "select current_setting('archive_mode', true) as mode, current_setting('archive_command', true) as command, current_setting('archive_library', true) as library",
  );
  const { mode, command, library } = r.rows[0] ?? { mode: null, command: null, library: null };
  if (archivingProblem(mode, command, library) === undefined) return { kind: 'archive_command' };
  const slots = await session.query<{ slot_name: string }>("select slot_name from pg_replication_slots where slot_type = 'physical' and active order by slot_name");
  const active = slots.rows.map((s) => s.slot_name);
  if (active.length > 0) {
    const systemId = (await session.query<{ id: string }>('select system_identifier::text as id from pg_control_system()')).rows[0]?.id ?? '';
    const feeding = await feedingSlots(storage, systemId, signal);
    const fed = active.find((s) => feeding.has(s));
    if (fed !== undefined) return { kind: 'receiver', slot: fed };
  }
  const why = mode === 'off' || mode === null ? 'archive_mode is off on this server' : `archive_mode is ${mode} but archive_command (and archive_library) are empty on this server`;
  const receiverState =
    active.length === 0
      ? 'no physical replication slot is active'
      : `no active physical slot (${active.join(', ')}) has a receiver record of this cluster (receive/<slot>/receiver.json) in ${storage.description} (\`walts wal-receive\` writes it when it starts streaming)`;
  throw new UsageError(
    `${why}, and ${receiverState}, so the WAL this backup needs would never reach the store. Either set archive_mode = on and archive_command = 'walts wal-push %p' (changing archive_mode needs a restart), or run \`walts wal-receive --slot NAME\` into this store (docs/streaming.md)`,
  );
}

/**
 * Why WAL would not reach the store with these settings, or undefined. `command`/`library` undefined:
 * not visible to this role (only archive_mode is checked then).
 */
export function archivingProblem(mode: string | null, command: string | null | undefined, library: string | null | undefined): string | undefined {
  const hint = "set archive_mode = on and archive_command = 'walts wal-push %p' (changing archive_mode needs a restart)";
  if (mode === 'off' || mode === null) return `archive_mode is off on this server, so the WAL this backup needs would never reach the store: ${hint}`;
  if (command === undefined || library === undefined) return undefined;
  const hasCommand = command !== null && command.trim() !== '' && command !== '(disabled)';
  const hasLibrary = library !== null && library.trim() !== '';
  if (!hasCommand && !hasLibrary) return `archive_mode is ${mode} but archive_command (and archive_library) are empty on this server, so WAL is not archived: ${hint}`;
  return undefined;
}

async function listTablespaces(session: PgSession): Promise<TablespaceInfo[]> {
  const r = await session.query<{ oid: string; name: string; location: string }>(
    "select oid::text as oid, spcname as name, pg_tablespace_location(oid) as location from pg_tablespace where spcname not in ('pg_default', 'pg_global') order by oid",
  );
  return r.rows.filter((t) => t.location !== '').map((t) => ({ oid: Number(t.oid), name: t.name, location: t.location }));
}
