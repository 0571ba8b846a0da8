/**
 * The database side of a base backup: PostgreSQL's non-exclusive backup API, in one session.
 *
 *   const session = await connect({ application: 'walts backup-push' });
 *   try {
 *     const start = await startBackup(session, { label, fast });
 *     ... copy the data directory (the session must stay open: closing it aborts the backup) ...
 *     const stop = await stopBackup(session, { waitForArchive: false });
 *     ... store stop.backupLabel / stop.tablespaceMap, wait for WAL start.startWalFile..stop.stopWalFile ...
 *   } catch (e) {
 *     await abortBackup(session);
 *   }
 *
 * Versions: `pg_backup_start(label, fast)` / `pg_backup_stop(wait)` on 15+, `pg_start_backup(label, fast,
 * false)` / `pg_stop_backup(false, wait)` on 10-14, `pg_stop_backup(false)` on 9.6 (it cannot skip the
 * archive wait). Older servers are refused (no non-exclusive mode).
 *
 * Standby: backups from a server in recovery are allowed (PostgreSQL supports them); `inRecovery` is
 * recorded. There `pg_walfile_name()` is forbidden, so WAL file names are computed here from LSN,
 * timeline and segment size (backupLabel.ts): the start timeline is the one of the checkpoint (restart
 * point) pg_backup_start used, read from `pg_control_checkpoint()` right after it; the stop LSN and
 * timeline are the control file's minimum recovery point, read in the same statement as the stop. The
 * authoritative start values are those in backup_label, which stopBackup parses and returns (`label`).
 * A standby neither switches WAL segments at stop nor (unless archive_mode=always) waits for archiving:
 * the caller must wait for the primary to archive the stop segment.
 */
import { ConfigError, UnavailableError, UsageError, WaltsError, describeError } from '../errors';
import { BackupLabel, backupHistoryFileName, parseBackupLabel, startWalFileName, stopWalFileName } from './backupLabel';
import { PgQueryError, PgSession } from './client';
import { formatLsn, isValidSegmentSize, parseLsn } from './walName';

/** server_version_num of the oldest server with non-exclusive backups. */
export const MIN_SERVER_VERSION_NUM = 90600;
/** PostgreSQL refuses longer labels (MAXPGPATH). */
const MAX_LABEL_BYTES = 1024;

export interface BackupStartOptions {
  /** Text recorded as LABEL in backup_label: one line, at most 1024 bytes. */
  label: string;
  /** Immediate checkpoint (true) or a spread one that may take up to checkpoint_timeout * completion_target. */
  fast: boolean;
}

export interface BackupStart {
  readonly label: string;
  readonly fast: boolean;
  /** REDO point of the backup's checkpoint, `X/Y`: the first WAL byte recovery needs. */
  readonly startLsn: string;
  /** Timeline of that checkpoint. Provisional on a standby (see module doc); the label's is authoritative. */
  readonly timeline: number;
  /** WAL file holding startLsn (computed, not asked of pg_walfile_name(); see module doc). */
  readonly startWalFile: string;
  /** pg_control_system().system_identifier as decimal text (it does not fit a JS number). */
  readonly systemIdentifier: string;
  readonly pgVersionNum: number;
  /** `show server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`. */
  readonly pgVersion: string;
  /** Bytes (`show wal_segment_size` prints `16MB`; this is 16777216). */
  readonly walSegmentSize: number;
  /** `data_directory`; undefined when the role may not see it (not superuser nor pg_read_all_settings). */
  readonly dataDirectory: string | undefined;
  readonly blockSize: number;
  readonly dataChecksums: boolean;
  /** The server was in recovery (a standby) when the backup started. */
  readonly inRecovery: boolean;
  /** Server clock right after the backup started, ISO 8601 UTC (millisecond precision). */
  readonly startTime: string;
}

export interface BackupStopOptions {
  /**
   * Let the server wait until the last WAL segment (and the .backup history file) are archived before
   * it returns. Only a primary with archiving on waits (or a standby with archive_mode=always). It
   * waits forever if archiving is broken: pass timeoutMs, or pass false and check the store instead.
   */
  waitForArchive: boolean;
  /** Give up (cancel the stop) after this long; the error then says what pg_stat_archiver reports. */
  timeoutMs?: number;
}

export interface BackupStop {
  /** End of the backup-end record (primary) or the minimum recovery point (standby), `X/Y`. */
  readonly stopLsn: string;
  /** Timeline stopLsn is on. */
  readonly stopTimeline: number;
  /**
   * The last WAL file the backup needs: the one holding the byte *before* stopLsn (XLByteToPrevSeg),
   * so a stop LSN exactly on a segment boundary names the previous segment, as pg_walfile_name() does.
   */
  readonly stopWalFile: string;
  /** Server clock right after the stop, ISO 8601 UTC. */
  readonly stopTime: string;
  /** backup_label, byte for byte as the server would write it (server encoding). */
  readonly backupLabel: Buffer;
  /** tablespace_map byte for byte, undefined when there are no tablespaces (server returns ''). */
  readonly tablespaceMap: Buffer | undefined;
  /** backupLabel parsed: startLsn, startWalFile, startTimeline (authoritative), checkpointLsn, ... */
  readonly label: BackupLabel;
  readonly inRecovery: boolean;
  /** `<start segment>.<offset>.backup` the primary wrote to pg_wal (undefined on a standby: none is written). */
  readonly backupHistoryFile: string | undefined;
  readonly walSegmentSize: number;
}

/** pg_stat_archiver, for telling an operator why the backup's WAL is not arriving. */
export interface ArchiverStatus {
  /** `archive_mode` (off, on, always). */
  readonly archiveMode: string;
  /** Most recently archived file (not proof that everything before it was archived). */
  readonly lastArchivedWal: string | undefined;
  readonly lastArchivedTime: string | undefined;
  readonly lastFailedWal: string | undefined;
  readonly lastFailedTime: string | undefined;
  readonly archivedCount: number;
  readonly failedCount: number;
}

export interface AbortResult {
  /** True when the backend that ran the backup is confirmed gone (so PostgreSQL ended the backup). */
  readonly ended: boolean;
  readonly detail: string;
}

// ---------------------------------------------------------------------------------------------------

/**
 * Put the server in (non-exclusive) backup mode in this session. First disables statement_timeout,
 * idle_in_transaction_session_timeout and (14+) idle_session_timeout for the session, so server-wide
 * settings cannot kill a backup that copies for hours. If this throws after the server entered backup
 * mode, abortBackup() (or closing the session) ends it.
 */
export async function startBackup(session: PgSession, opts: BackupStartOptions): Promise<BackupStart> {
  const v = session.serverVersionNum;
  if (v < MIN_SERVER_VERSION_NUM) {
    throw new ConfigError(`PostgreSQL ${formatVersionNum(v)} is not supported: walts needs 9.6 or later (non-exclusive backups)`);
  }
  if (/[\r\n]/.test(opts.label) || Buffer.byteLength(opts.label) > MAX_LABEL_BYTES) {
    throw new UsageError(`backup label must be one line of at most ${MAX_LABEL_BYTES} bytes`);
  }

  await session.query(
    'SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0' + (v >= 140000 ? '; SET idle_session_timeout = 0' : ''),
  );

  const info = (
    await session.query<{
      version: string;
      seg_setting: string | null;
      seg_unit: string | null;
      block_size: number;
      data_checksums: string;
      data_directory: string | null;
      in_recovery: boolean;
      system_identifier: string;
    }>(
      `select current_setting('server_version') as version,
              (select setting from pg_settings where name = 'wal_segment_size') as seg_setting,
              (select unit from pg_settings where name = 'wal_segment_size') as seg_unit,
              current_setting('block_size')::int as block_size,
              current_setting('data_checksums') as data_checksums,
              (select setting from pg_settings where name = 'data_directory') as data_directory,
              pg_is_in_recovery() as in_recovery,
              (select system_identifier::text from pg_control_system()) as system_identifier`,
    )
  ).rows[0]!;
  const walSegmentSize = segmentSizeFrom(info.seg_setting, info.seg_unit);

  const startSql =
    v >= 150000
      ? 'select pg_backup_start($1, $2)::text as lsn, clock_timestamp() as t'
      : 'select pg_start_backup($1, $2, false)::text as lsn, clock_timestamp() as t';
  let started: { lsn: string; t: Date };
  try {
    started = (await session.query<{ lsn: string; t: Date }>(startSql, [opts.label, opts.fast])).rows[0]!;
  } catch (e) {
    throw backupCallError(e, session, v >= 150000 ? 'pg_backup_start' : 'pg_start_backup');
  }
  const startLsn = formatLsn(parseLsn(started.lsn));

  // The checkpoint (or, on a standby, restart point) pg_backup_start just used: its timeline is the
  // backup's start timeline. On a primary it cannot differ; on a standby a restart point on a newer
  // timeline could in theory land in between (then redo_lsn differs, and the label corrects it).
  const ckpt = (await session.query<{ timeline_id: number; redo: string }>('select timeline_id, redo_lsn::text as redo from pg_control_checkpoint()')).rows[0]!;
  const timeline = Number(ckpt.timeline_id);

  return {
    label: opts.label,
    fast: opts.fast,
    startLsn,
    timeline,
    startWalFile: startWalFileName(startLsn, timeline, walSegmentSize),
    systemIdentifier: info.system_identifier,
    pgVersionNum: v,
    pgVersion: info.version,
    walSegmentSize,
    dataDirectory: info.data_directory ?? undefined,
    blockSize: Number(info.block_size),
    dataChecksums: info.data_checksums === 'on',
    inRecovery: info.in_recovery,
    startTime: started.t.toISOString(),
  };
}

/**
 * End backup mode and get backup_label / tablespace_map. On a primary the server also switches to a
 * new WAL segment, so the stop segment gets archived without waiting for more writes.
 */
export async function stopBackup(session: PgSession, opts: BackupStopOptions): Promise<BackupStop> {
  const v = session.serverVersionNum;
  const seg = (await session.query<{ s: string | null; u: string | null }>("select setting as s, unit as u from pg_settings where name = 'wal_segment_size'")).rows[0];
  const walSegmentSize = segmentSizeFrom(seg?.s ?? null, seg?.u ?? null);

  const fn = v >= 150000 ? 'pg_backup_stop($1)' : v >= 100000 ? 'pg_stop_backup(false, $1)' : 'pg_stop_backup(false)';
  const params = v >= 100000 ? [opts.waitForArchive] : [];
  // Everything after FROM is evaluated once the stop has returned. The label is fetched as bytes in
  // the server encoding: what the server would have written to PGDATA, whatever the client encoding.
  const sql = `select s.lsn::text as lsn,
      convert_to(s.labelfile, current_setting('server_encoding')) as labelfile,
      convert_to(s.spcmapfile, current_setting('server_encoding')) as spcmapfile,
      clock_timestamp() as t,
      pg_is_in_recovery() as in_recovery,
      case when pg_is_in_recovery() then (select min_recovery_end_timeline from pg_control_recovery()) end as recovery_tli,
      case when pg_is_in_recovery() then null else ${v >= 100000 ? 'pg_walfile_name' : 'pg_xlogfile_name'}(s.lsn) end as walfile
    from ${fn} s`;
  const what = v >= 150000 ? 'pg_backup_stop' : 'pg_stop_backup';
  let row: { lsn: string; labelfile: Buffer | null; spcmapfile: Buffer | null; t: Date; in_recovery: boolean; recovery_tli: number | null; walfile: string | null };
  try {
    row = (await session.query<typeof row>(sql, params, { timeoutMs: opts.timeoutMs })).rows[0]!;
  } catch (e) {
    if (opts.timeoutMs && e instanceof UnavailableError && /did not finish within/.test(e.message)) {
      throw new UnavailableError(
        `${what} did not return within ${opts.timeoutMs} ms while waiting for WAL archiving and was cancelled; the backup is not usable` +
          `${await archiverDetail(session)}. Check archive_command and the server log`,
        { transient: false, cause: e },
      );
    }
    throw backupCallError(e, session, what);
  }
  if (!row.labelfile || row.labelfile.length === 0) throw new UnavailableError(`${what} returned no backup_label`, { transient: false });

  const stopLsn = formatLsn(parseLsn(row.lsn));
  const label = parseBackupLabel(row.labelfile.toString('utf8'), { walSegmentSize });
  let stopTimeline: number;
  let stopWalFile: string;
  if (row.in_recovery) {
    stopTimeline = row.recovery_tli ? Number(row.recovery_tli) : label.startTimeline;
    stopWalFile = stopWalFileName(stopLsn, stopTimeline, walSegmentSize);
  } else {
    stopWalFile = row.walfile!;
    stopTimeline = parseInt(stopWalFile.slice(0, 8), 16);
  }
  return {
    stopLsn,
    stopTimeline,
    stopWalFile,
    stopTime: row.t.toISOString(),
    backupLabel: Buffer.from(row.labelfile),
    tablespaceMap: row.spcmapfile && row.spcmapfile.length > 0 ? Buffer.from(row.spcmapfile) : undefined,
    label,
    inRecovery: row.in_recovery,
    backupHistoryFile: row.in_recovery ? undefined : backupHistoryFileName(label.startLsn, stopTimeline, walSegmentSize),
    walSegmentSize,
  };
}

/**
 * Best effort to end backup mode after a failure. PostgreSQL has no abort call for non-exclusive
 * backups: the backup ends when its session ends (the server logs "aborting backup due to backend
 * exiting before pg_backup_stop was called"). So: close the session, then, from a new session, wait
 * until its backend is gone from pg_stat_activity, terminating it if it lingers (e.g. the old
 * connection is stuck). Never throws.
 */
export async function abortBackup(session: PgSession, opts: { timeoutMs?: number } = {}): Promise<AbortResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const pid = session.backendPid;
  await session.close();
  let side: PgSession | undefined;
  try {
    side = await session.reconnect();
    const started = Date.now();
    let terminated = false;
    for (;;) {
      const n = (await side.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where pid = $1', [pid])).rows[0]!.n;
      if (n === 0) return { ended: true, detail: `backend ${pid} has exited${terminated ? ' (terminated)' : ''}` };
      const elapsed = Date.now() - started;
      if (elapsed >= timeoutMs) return { ended: false, detail: `backend ${pid} is still running after ${timeoutMs} ms` };
      if (!terminated && elapsed >= timeoutMs / 2) {
        await side.query('select pg_terminate_backend($1)', [pid]).catch(() => undefined);
        terminated = true;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    return { ended: false, detail: `could not confirm that backend ${pid} exited: ${describeError(e)}` };
  } finally {
    await side?.close();
  }
}

/** What pg_stat_archiver says (works on a standby too, for its own archiver). */
export async function walArchiverStatus(session: PgSession): Promise<ArchiverStatus> {
  const r = (
    await session.query<{
      archive_mode: string;
      last_archived_wal: string | null;
      last_archived_time: Date | null;
      last_failed_wal: string | null;
      last_failed_time: Date | null;
      archived_count: string;
      failed_count: string;
    }>(
      `select current_setting('archive_mode') as archive_mode, last_archived_wal, last_archived_time,
              last_failed_wal, last_failed_time, archived_count, failed_count
         from pg_stat_archiver`,
    )
  ).rows[0]!;
  return {
    archiveMode: r.archive_mode,
    lastArchivedWal: r.last_archived_wal ?? undefined,
    lastArchivedTime: r.last_archived_time?.toISOString(),
    lastFailedWal: r.last_failed_wal ?? undefined,
    lastFailedTime: r.last_failed_time?.toISOString(),
    archivedCount: Number(r.archived_count),
    failedCount: Number(r.failed_count),
  };
}

/** One line for error messages: `archive_mode=on, last archived X, last failed Y at T, N failures`. */
export function describeArchiverStatus(s: ArchiverStatus): string {
  const failed = s.lastFailedWal ? `last failed ${s.lastFailedWal}${s.lastFailedTime ? ` at ${s.lastFailedTime}` : ''}` : 'no failures recorded';
  return `archive_mode=${s.archiveMode}, last archived ${s.lastArchivedWal ?? 'none'}, ${failed}, ${s.failedCount} failed attempts`;
}

/**
 * A setting's value in bytes from pg_settings' setting and unit: wal_segment_size is `16777216` with
 * unit `B` on PG 11+, `2048` with unit `8kB` (XLOG_BLCKSZ units) on 9.6/10. `show` prints `16MB`.
 */
export function settingBytes(setting: string, unit: string | null): number {
  const n = Number(setting);
  if (!/^[0-9]+$/.test(setting.trim()) || !Number.isSafeInteger(n)) throw new RangeError(`not a byte count: ${JSON.stringify(setting)}`);
  if (unit === null || unit === '') return n;
  const m = /^([0-9]*)\s*(B|kB|MB|GB|TB)$/.exec(unit.trim());
  if (!m) throw new RangeError(`unknown unit ${JSON.stringify(unit)}`);
  const scale = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[m[2] as 'B' | 'kB' | 'MB' | 'GB' | 'TB'];
  return n * (m[1] ? Number(m[1]) : 1) * scale;
}

// ---------------------------------------------------------------------------------------------------

function segmentSizeFrom(setting: string | null, unit: string | null): number {
  let size = NaN;
  try {
    if (setting !== null) size = settingBytes(setting, unit);
  } catch {
    /* reported below */
  }
  if (!isValidSegmentSize(size)) {
    throw new UnavailableError(`server reports an unusable wal_segment_size (setting ${JSON.stringify(setting)}, unit ${JSON.stringify(unit)})`, {
      transient: false,
    });
  }
  return size;
}

function formatVersionNum(v: number): string {
  return v >= 100000 ? `${Math.floor(v / 10000)}.${v % 10000}` : `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}`;
}

/** Turn a failed backup call into an error an operator can act on. */
function backupCallError(e: unknown, session: PgSession, fn: string): WaltsError {
  if (e instanceof PgQueryError) {
    if (e.sqlState === '42501') {
      return new ConfigError(
        `PostgreSQL role ${session.target.user} may not call ${fn}: use a superuser, or GRANT EXECUTE ON FUNCTION ${fn} (and the stop function) to it (${e.message})`,
      );
    }
    if (e.sqlState === '55000' && /wal_level|WAL level/i.test(e.message)) {
      return new ConfigError(`${fn}: ${e.message}; set wal_level to replica or logical and restart the server`);
    }
    return new PgQueryError(`${fn} failed: ${e.message}`, e.sqlState, { cause: e });
  }
  if (e instanceof WaltsError) return e;
  return new UnavailableError(`${fn} failed: ${describeError(e)}`, { transient: true, cause: e });
}

async function archiverDetail(session: PgSession): Promise<string> {
  let side: PgSession | undefined;
  try {
    side = session.closed ? await session.reconnect() : session;
    return ` (pg_stat_archiver: ${describeArchiverStatus(await walArchiverStatus(side))})`;
  } catch {
    return '';
  } finally {
    if (side && side !== session) await side.close();
  }
}
