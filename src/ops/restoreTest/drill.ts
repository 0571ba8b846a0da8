/**
 * restore-test: the restore drill. Restores a backup into a scratch directory with backup-fetch
 * (every digest verified, recovery from the archive through walts wal-fetch, archive_mode = off),
 * starts PostgreSQL on it in isolation (server.ts), lets it replay to the end of the archive or to
 * --target-time and promote, proves where replay ended, runs the checks (checks.ts), stops the
 * server, cleans up unless --keep, and writes a drill record into the store (archive/drillRecord.ts)
 * whatever happened once the backup was chosen, for `status` and `metrics`.
 *
 * Target time: recovery_target_action = promote. PostgreSQL 13+ stops with a FATAL when WAL ends
 * before the target, so a promoted server has reached it (and its log must also say where it
 * stopped); the checks need a writable server (pg_amcheck --install-missing creates the amcheck
 * extension, an operator's SQL may create temporary tables) and --keep wants a cluster that starts
 * as a normal primary. With `pause` the server would sit read-only at the target instead.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { findBackup, listBackups } from '../../archive/catalog';
import { DRILL_FORMAT, writeDrillRecord, type DrillCheck, type DrillRecord } from '../../archive/drillRecord';
import { checkBackupReachesTime, checkRecoveryTarget, chooseForTargetTime, type RecoveryTarget } from '../../backup/recovery';
import type { BackupSentinel } from '../../backup/sentinel';
import type { Deps } from '../../deps';
import { DrillFailedError, ConfigError, CryptoError, describeError, IntegrityError, UnavailableError, UsageError, WaltsError } from '../../errors';
import { formatLsn, parseLsn, parseSegmentName, segmentStartLsn } from '../../postgres/walName';
import { parseHistory, type ChainCheck } from '../../retention/walChain';
import { backupFetch } from '../backupFetch';
import { processAlive, readLock } from '../fetchSpool';
import { archiveChain, compareWithArchiveEnd } from './archiveEnd';
import { queryEveryDatabase, runAmcheck, runChecksums, runSqlFile, type ClientTarget } from './checks';
import { findPgBinaries, type BinaryProbe, type PgBinaries } from './pgBinaries';
import { DrillServer, ServerExitedError, describeExit } from './server';
import { logTail, readLogFacts } from './serverLog';

export interface RestoreTestArgs {
  /** A backup name or LATEST. */
  readonly which: string;
  readonly targetTime?: string;
  readonly sqlFile?: string;
  /** The data directory to restore into (absent or empty); default a temporary directory. */
  readonly dest?: string;
  /** Leave the restored, promoted, stopped cluster in `dest`. */
  readonly keep: boolean;
  readonly pgBin?: string;
  /** Role the checks connect as (the copy's own roles; trust on the private socket). */
  readonly dbUser: string;
  /** Database the first query and --sql connect to. */
  readonly database: string;
  readonly amcheck: boolean;
  /** restore_command for the copy (walts wal-fetch with this walts' store and keys). */
  readonly restoreCommand: string;
  readonly verifyKeyPath?: string;
  readonly parallel: number;
  readonly signal?: AbortSignal;
  /** Progress for a person at a terminal (the log has the same steps). */
  readonly onStep?: (step: string) => void;
  /** Replay progress: bytes of WAL replayed since the backup's start, of about `total`. */
  readonly onReplay?: (done: number, total: number) => void;
  readonly probe?: BinaryProbe;
}

export interface RestoreTestResult {
  readonly record: DrillRecord;
  /** Where the record was written; undefined when the store refused it (see `failure`). */
  readonly recordKey?: string;
  /** The kept data directory (--keep). */
  readonly keptIn?: string;
  /** Why the drill failed (already in the record), or why its record could not be written. */
  readonly failure?: WaltsError;
}

/** PostgreSQL refuses to run as root, and a drill must not make root-owned data directories. */
export function refuseRoot(uid: number | undefined): void {
  if (uid === 0) {
    throw new UsageError('restore-test starts PostgreSQL, which refuses to run as root: run it as the database OS user, e.g. runuser -u postgres -- walts restore-test ...');
  }
}

/**
 * Checks made before anything is touched (exit 2, no record: no drill ran). Returns the resolved
 * destination, if any.
 */
export async function preflight(args: Pick<RestoreTestArgs, 'targetTime' | 'sqlFile' | 'dest' | 'keep'>): Promise<string | undefined> {
  const problems = checkRecoveryTarget({ time: args.targetTime });
  if (args.keep && args.dest === undefined) problems.push('--keep needs --dest DIR (a temporary directory is always removed)');
  if (args.sqlFile !== undefined) {
    await fsp.access(args.sqlFile, fsc.R_OK).catch(() => problems.push(`--sql ${args.sqlFile}: not a readable file`));
  }
  const dest = args.dest !== undefined ? resolve(args.dest) : undefined;
  if (dest !== undefined) {
    const names = await fsp.readdir(dest).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : err));
    if (names instanceof Error) problems.push(`--dest ${dest} cannot be used: ${names.code === 'ENOTDIR' ? 'not a directory' : names.code}`);
    else if (names && names.length > 0) problems.push(`--dest ${dest} is not empty; refusing to restore into it`);
    else if (!names && !(await fsp.stat(dirname(dest)).then((s) => s.isDirectory(), () => false))) problems.push(`--dest ${dest} cannot be created: ${dirname(dest)} is not an existing directory`);
  }
  if (problems.length > 0) throw new UsageError(problems);
  return dest;
}

/** Chooses the backup the way backup-fetch would, so the record can name it before anything runs. */
export async function chooseBackup(deps: Deps, which: string, targetTime: string | undefined, signal?: AbortSignal): Promise<BackupSentinel> {
  if (which === 'LATEST' && targetTime !== undefined) return chooseForTargetTime(await listBackups(deps.storage, signal), targetTime);
  const backup = await findBackup(deps.storage, which, signal);
  if (targetTime !== undefined) checkBackupReachesTime(backup, targetTime);
  return backup;
}

export async function restoreTest(deps: Deps, args: RestoreTestArgs): Promise<RestoreTestResult> {
  const dest = await preflight(args);
  const backup = await chooseBackup(deps, args.which, args.targetTime, args.signal);
  // From here on, whatever happens is a drill and is recorded.
  const drill = new Drill(deps, args, backup, dest);
  return drill.run();
}

class Drill {
  private readonly checks: DrillCheck[] = [];
  private failure: WaltsError | undefined;
  private readonly started: Date;
  private tablespaceParent: string | undefined;
  private reached: { lsn: string | null; timeline: number | null; time: string | null } = { lsn: null, timeline: null, time: null };
  private runDir: string | undefined;
  private dataDir: string | undefined;
  private createdDest = false;
  private server: DrillServer | undefined;
  private logFile: string | undefined;

  constructor(
    private readonly deps: Deps,
    private readonly args: RestoreTestArgs,
    private readonly backup: BackupSentinel,
    private readonly dest: string | undefined,
  ) {
    this.started = deps.now();
  }

  async run(): Promise<RestoreTestResult> {
    const log = this.deps.log.child({ backup: this.backup.name });
    try {
      await this.steps();
    } catch (err) {
      this.fail(err);
    } finally {
      await this.finish().catch((err: unknown) => this.fail(err));
    }
    const finished = this.deps.now();
    const record: DrillRecord = {
      format: DRILL_FORMAT,
      backup: this.backup.name,
      ok: this.failure === undefined,
      started_at: this.started.toISOString(),
      finished_at: finished.toISOString(),
      duration_seconds: Math.max(0, (finished.getTime() - this.started.getTime()) / 1000),
      target: this.args.targetTime !== undefined ? { kind: 'time', time: this.args.targetTime } : { kind: 'end' },
      reached_lsn: this.reached.lsn,
      reached_timeline: this.reached.timeline,
      reached_time: this.reached.time,
      checks: this.checks,
      error: this.failure ? this.failure.message : null,
      hostname: this.deps.host,
      walts_version: this.deps.version,
    };
    const keptIn = this.args.keep ? this.dataDir : undefined;
    try {
      // No signal: an interrupted drill is recorded too (the store calls have their own timeouts).
      const recordKey = await writeDrillRecord(this.deps.storage, record);
      log.info({ record: recordKey, ok: record.ok }, `drill recorded as ${record.ok ? 'passed' : 'FAILED'}`);
      return { record, recordKey, keptIn, failure: this.failure };
    } catch (err) {
      const why = `the drill ${record.ok ? 'passed' : 'failed'} but its record could not be written to the store: ${describeError(err)}`;
      log.error({ err: describeError(err) }, why);
      return { record, keptIn, failure: this.failure ?? new UnavailableError(why, { transient: false, cause: err }) };
    }
  }

  private step(what: string, fields: Record<string, unknown> = {}): void {
    this.deps.log.info({ backup: this.backup.name, ...fields }, `restore-test: ${what}`);
    this.args.onStep?.(what);
  }

  private check(c: DrillCheck): void {
    this.checks.push(c);
    const fields = { backup: this.backup.name, check: c.name, detail: c.detail };
    if (c.ok) this.deps.log.info(fields, `restore-test: ${c.name} ok`);
    else this.deps.log.error(fields, `restore-test: ${c.name} FAILED: ${c.detail}`);
  }

  /** Keeps the first failure (it is the cause; later ones are often its consequences). */
  private fail(err: unknown): void {
    if (this.args.signal?.aborted) {
      const reason: unknown = this.args.signal.reason ?? err;
      const why = reason instanceof Error ? reason.message : describeError(reason);
      if (!this.checks.some((c) => c.name === 'interrupted')) this.checks.push({ name: 'interrupted', ok: false, detail: why });
      this.failure ??= new DrillFailedError(`interrupted: ${why}`);
      return;
    }
    this.failure ??= err instanceof WaltsError ? err : new DrillFailedError(describeError(err), { cause: err });
  }

  private async steps(): Promise<void> {
    const { args, backup, deps } = this;
    const signal = args.signal;
    const major = Math.floor(Number(backup.pg_version_num) / 10000);
    const bin = await this.guard('postgres', () => findPgBinaries(major, args.pgBin, args.probe), (b: PgBinaries) => `${b.version} in ${b.dir}`);

    this.runDir = await fsp.mkdtemp(join(tmpdir(), 'walts-drill-'));
    this.dataDir = this.dest ?? join(this.runDir, 'data');
    this.createdDest = this.dest !== undefined && !(await fsp.stat(this.dest).then(() => true, () => false));
    const tablespaceMap = await this.tablespaceDirs();
    this.step(`fetching ${backup.name} into ${this.dataDir}`);
    const target: RecoveryTarget = args.targetTime !== undefined ? { time: args.targetTime, action: 'promote' } : {};
    await this.guard(
      'fetch',
      () => backupFetch(deps, { dest: this.dataDir!, which: backup.name, target, tablespaceMap, restoreCommand: args.restoreCommand, archiveMode: 'off', parallel: args.parallel, signal, verifyKeyPath: args.verifyKeyPath }),
      (r) => `${r.files} files, ${r.bytes} bytes, every digest verified`,
    );

    // Listed before the server starts: what replay must at least reach (archiveEnd.ts).
    const chain = await archiveChain(deps, backup, signal);
    this.logFile = join(this.runDir, 'postgres.log');
    this.step(`starting PostgreSQL ${major} on the restored copy (private socket, no TCP, archive_mode off)`);
    this.server = await DrillServer.start({ bin, dataDir: this.dataDir, runDir: this.runDir, logFile: this.logFile, dbUser: args.dbUser });
    this.step(`replaying WAL to ${args.targetTime !== undefined ? `--target-time ${args.targetTime}` : 'the end of the archive'}`);
    const startLsn = parseLsn(backup.start_lsn);
    const endLsn = chain.newest !== undefined ? segmentStartLsn(parseSegmentName(chain.newest, backup.wal_segment_size), backup.wal_segment_size) + BigInt(backup.wal_segment_size) : startLsn;
    let session;
    try {
      session = await this.server.waitForPromotion(args.database, {
        signal,
        onReplay: (lsn) => args.onReplay?.(Number(parseLsn(lsn) - startLsn), Number(endLsn - startLsn)),
      });
    } catch (err) {
      throw await this.serverFailure(err, chain);
    }
    const facts = readLogFacts(await this.readLog());
    this.check({ name: 'consistent', ok: true, detail: `consistent recovery state reached${facts.consistentAt ? ` at ${facts.consistentAt}` : ''}; recovery ended and the server promoted` });
    try {
      await this.readReached(session);
    } finally {
      await session.close();
    }
    this.checkReplay(chain, facts.targetStop);

    const client: ClientTarget = { server: this.server, user: args.dbUser, database: args.database };
    this.step('checking: a query in every database');
    this.soft(await queryEveryDatabase(this.server, args.database));
    if (args.sqlFile !== undefined) {
      this.step(`checking: ${args.sqlFile}`);
      this.soft(await runSqlFile(bin, resolve(args.sqlFile), client, signal));
    }
    if (args.amcheck) {
      this.step('checking: pg_amcheck --all');
      this.soft(await runAmcheck(bin, client, signal));
    }
    signal?.throwIfAborted();
    this.step('stopping the server');
    const stopped = await this.server.stop();
    this.check({ name: 'stop', ok: stopped.clean, detail: stopped.detail });
    if (!stopped.clean) throw new DrillFailedError(`stop: ${stopped.detail}`);
    this.step('checking: pg_checksums --check');
    this.soft(await runChecksums(bin, this.dataDir, backup.data_checksums === true, signal));
  }

  /** Runs a step that is a check: records it passed with `detail`, or failed with the error. */
  private async guard<T>(name: string, fn: () => Promise<T>, detail: (r: T) => string): Promise<T> {
    try {
      const r = await fn();
      this.check({ name, ok: true, detail: detail(r) });
      return r;
    } catch (err) {
      if (!this.args.signal?.aborted) this.check({ name, ok: false, detail: describeError(err) });
      throw err;
    }
  }

  /** A check whose failure fails the drill but lets the other checks run. */
  private soft(c: DrillCheck): void {
    this.check(c);
    if (!c.ok) this.fail(new DrillFailedError(`${c.name}: ${c.detail}`));
  }

  /**
   * The server died before promoting (or could not be reached). The log says why: a wal-fetch
   * failure (digest mismatch, store down: its kind decides the exit code), a missing segment
   * (PostgreSQL: WAL ends before the consistent point), a FATAL of its own.
   */
  private async serverFailure(err: unknown, chain: ChainCheck): Promise<unknown> {
    if (this.args.signal?.aborted) return err;
    const text = await this.readLog();
    const facts = readLogFacts(text);
    const where = err instanceof ServerExitedError ? describeExit(err.exit) : describeError(err);
    if (!(err instanceof ServerExitedError)) {
      // A role or database the copy does not have: the checks connect as --db-user (PGUSER, else the OS user).
      const e = err instanceof ConfigError ? new ConfigError(`${where} (restore-test connects as --db-user ${this.args.dbUser} to --database ${this.args.database})`) : err;
      this.check({ name: 'consistent', ok: false, detail: describeError(e) });
      return e;
    }
    this.deps.log.error({ server_log_tail: logTail(text) }, `restore-test: ${where} during recovery`);
    let message = `${where} during recovery`;
    let error: WaltsError;
    if (facts.walFetchError) {
      message += `: wal-fetch: ${facts.walFetchError.message}`;
      const k = facts.walFetchError.kind;
      error = k === 'integrity' ? new IntegrityError(message) : k === 'crypto' ? new CryptoError(message) : k === 'unavailable' ? new UnavailableError(message, { transient: false }) : new DrillFailedError(message);
    } else if (chain.missing.length > 0 && !facts.consistentAt) {
      message += `: ${facts.fatal ?? 'no FATAL logged'}; WAL missing from the archive: ${chain.missing.slice(0, 3).join(', ')}${chain.missing.length > 3 ? ` (+${chain.missing.length - 3})` : ''}`;
      error = new IntegrityError(message);
    } else {
      message += facts.fatal ? `: ${facts.fatal}` : ' (see the server log lines above)';
      error = new DrillFailedError(message);
    }
    this.check({ name: facts.consistentAt ? 'replay' : 'consistent', ok: false, detail: message });
    return error;
  }

  /** Where replay ended: the end of the last record replayed, and the timeline it was on. */
  private async readReached(session: Awaited<ReturnType<DrillServer['session']>>): Promise<void> {
    const r = await session.query<{ lsn: string | null; time: string | null; file: string }>(
      `select pg_last_wal_replay_lsn()::text as lsn,
              to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as time,
              pg_walfile_name(pg_current_wal_lsn()) as file`,
    );
    const row = r.rows[0];
    this.reached = { lsn: row?.lsn ? formatLsn(parseLsn(row.lsn)) : null, timeline: null, time: row?.time ?? null };
    // Promotion started a new timeline; its history file's last line names the timeline replayed.
    const newTimeline = row ? row.file.slice(0, 8) : undefined;
    if (newTimeline && this.dataDir) {
      const text = await fsp.readFile(join(this.dataDir, 'pg_wal', `${newTimeline}.history`), 'utf8').catch(() => undefined);
      const entries = text !== undefined ? parseHistory(text) : [];
      this.reached = { ...this.reached, timeline: entries[entries.length - 1]?.timeline ?? null };
    }
  }

  private checkReplay(chain: ChainCheck, targetStop: string | undefined): void {
    const { lsn, timeline, time } = this.reached;
    if (lsn === null || timeline === null) {
      this.check({ name: 'replay', ok: false, detail: `the promoted server does not tell where replay ended (lsn ${lsn}, timeline ${timeline})` });
      throw new DrillFailedError('replay: the promoted server does not tell where replay ended');
    }
    const at = time ? `, last commit replayed at ${time}` : '';
    if (this.args.targetTime !== undefined) {
      // PostgreSQL 13+ would have stopped with a FATAL had WAL ended first; its log names the stop.
      if (!targetStop) {
        this.check({ name: 'replay', ok: false, detail: `the server promoted at ${lsn} without logging that it reached --target-time ${this.args.targetTime}` });
        throw new DrillFailedError(`replay: no recovery stop at --target-time ${this.args.targetTime} in the server log`);
      }
      this.check({ name: 'replay', ok: true, detail: `reached --target-time ${this.args.targetTime}: ${targetStop}; replay ended at ${lsn} on timeline ${timeline}${at}` });
      return;
    }
    const end = compareWithArchiveEnd(chain, parseLsn(lsn), timeline, this.backup.wal_segment_size);
    this.check({ name: 'replay', ok: end.ok, detail: `${end.detail}${at}` });
    // Missing WAL is the archive's integrity (exit 3), like a failed digest.
    if (!end.ok) throw new IntegrityError(`replay: ${end.detail}`);
  }

  /** Tablespaces go beside the copy: `<dest>.tablespaces/<oid>`, or in the run directory. */
  private async tablespaceDirs(): Promise<Map<string, string>> {
    const map = new Map<string, string>();
    const list = Array.isArray(this.backup.tablespaces) ? this.backup.tablespaces : [];
    if (list.length === 0) return map;
    const parent = this.dest !== undefined ? `${this.dest}.tablespaces` : join(this.runDir!, 'tablespaces');
    await fsp.mkdir(parent, { recursive: true, mode: 0o700 });
    this.tablespaceParent = parent;
    for (const t of list) if (t && Number.isSafeInteger(t.oid)) map.set(String(t.oid), join(parent, String(t.oid)));
    return map;
  }

  private async readLog(): Promise<string> {
    return this.logFile ? fsp.readFile(this.logFile, 'utf8').catch(() => '') : '';
  }

  /** Stop the server if it still runs, remove the copy unless --keep, remove the run directory. */
  private async finish(): Promise<void> {
    if (this.server?.running) {
      const stopped = await this.server.stop(60_000);
      this.deps.log.info({ detail: stopped.detail }, 'restore-test: server stopped');
    }
    if (this.args.keep && this.dataDir && this.logFile) {
      // The server log goes with the kept copy, beside PostgreSQL's own log directory.
      await fsp.mkdir(join(this.dataDir, 'log'), { recursive: true, mode: 0o700 }).catch(() => undefined);
      await fsp.copyFile(this.logFile, join(this.dataDir, 'log', 'walts-restore-test.log')).catch(() => undefined);
    }
    // The copy's last restore_command (walts wal-fetch) may have left a prefetcher behind, which
    // writes into the copy's spool until it lingers out: stop it first, or it races the removal.
    if (this.dataDir) await stopPrefetcher(join(this.dataDir, 'pg_wal', 'walts_spool', 'fetch'));
    if (!this.args.keep && this.dest !== undefined) {
      if (this.createdDest) await fsp.rm(this.dest, { recursive: true, force: true, maxRetries: 5 });
      else for (const name of await fsp.readdir(this.dest).catch(() => [])) await fsp.rm(join(this.dest, name), { recursive: true, force: true, maxRetries: 5 });
      if (this.tablespaceParent) await fsp.rm(this.tablespaceParent, { recursive: true, force: true });
    }
    if (this.runDir) await fsp.rm(this.runDir, { recursive: true, force: true });
    if (this.args.keep && this.dataDir) this.step(`kept the restored cluster (stopped) in ${this.dataDir}`);
  }
}

/** Stops the prefetcher holding the lock of spool `dir` (if one runs) and waits until it is gone (at most 10 s). */
async function stopPrefetcher(dir: string): Promise<void> {
  const holder = await readLock(dir);
  if (!holder || !processAlive(holder.pid) || holder.pid === process.pid) return;
  try {
    process.kill(holder.pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let waited = 0; waited < 10_000 && processAlive(holder.pid); waited += 50) await new Promise((r) => setTimeout(r, 50));
}
