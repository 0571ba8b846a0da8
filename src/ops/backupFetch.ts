/**
 * backup-fetch: restores a base backup into a new data directory, verified file by file, and sets
 * it up to be safe to start: recovery from the archive (to its end, or to a target) and archiving
 * switched off, unless asked otherwise.
 *
 * Everything that can be checked is checked before anything is written: the options, the backup
 * (LATEST, a name, or the newest one that can reach --target-time), its tablespace records and its
 * whole manifest (untrusted input: see docs/security.md), the destination and the tablespace
 * directories. Only then is `<dest>` created.
 */
import { promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { findBackup, listBackups, mapLimit } from '../archive/catalog';
import { backupDir, backupKeys } from '../archive/layout';
import type { KeyObject } from 'node:crypto';
import { loadVerifyKey, verifySentinel } from '../backup/signature';
import { splitCodecSuffix } from '../codec/chain';
import { checkManifest, Extractor, localWrite } from '../backup/extract';
import { checkBackupReachesTime, checkRecoveryTarget, checkRestoreCommand, chooseForTargetTime, quote, recoverySettings, type RecoveryTarget } from '../backup/recovery';
import { parseSentinel, type BackupSentinel } from '../backup/sentinel';
import { planTablespaces } from '../backup/tablespaces';
import type { ManifestEntry } from '../backup/volumes';
import { openArchive } from '../archive/archive';
import type { Deps } from '../deps';
import { IntegrityError, NotFoundError, UsageError } from '../errors';
import { readAll } from '../util/streams';
import { readPart } from '../archive/parts';
import { checkTargetInArchive } from './restoreTarget';

/** What the restored copy does about archiving (pgBackRest's --archive-mode). */
export type ArchiveMode = 'off' | 'preserve';

export interface BackupFetchArgs {
  readonly dest: string;
  /** A backup name or LATEST. */
  readonly which: string;
  readonly target: RecoveryTarget;
  /** `--tablespace OID_OR_NAME=DIR` placements (every tablespace needs one). */
  readonly tablespaceMap: ReadonlyMap<string, string>;
  /** restore_command to write; undefined = files only (no recovery.signal, no restore_command). */
  readonly restoreCommand?: string;
  /** Default 'off': `archive_mode = off` is written so the copy never archives into its origin's archive. */
  readonly archiveMode?: ArchiveMode;
  readonly parallel: number;
  readonly signal?: AbortSignal;
  /** WALTS_BACKUP_VERIFY_KEY: accept only backups signed by its private half. */
  readonly verifyKeyPath?: string;
}

export interface BackupFetchResult {
  readonly backup: BackupSentinel;
  readonly dest: string;
  readonly files: number;
  readonly bytes: number;
  readonly recoveryConfigured: boolean;
  readonly archiveMode: ArchiveMode;
}

type Owner = { uid: number; gid: number } | undefined;

export async function backupFetch(deps: Deps, args: BackupFetchArgs): Promise<BackupFetchResult> {
  const archiveMode = args.archiveMode ?? 'off';
  const problems = checkRecoveryTarget(args.target);
  if (args.restoreCommand !== undefined) problems.push(...checkRestoreCommand(args.restoreCommand));
  if (problems.length > 0) throw new UsageError(problems);
  await openArchive(deps.storage, args.signal); // "no such backup" only inside an archive that exists
  const verifyKey = args.verifyKeyPath !== undefined ? loadVerifyKey(args.verifyKeyPath) : undefined;
  const chosen = await chooseBackup(deps, args);
  const backup = verifyKey ? await readSignedSentinel(deps, chosen.name, verifyKey, args.signal) : chosen;
  checkPartKeys(backup, args.which === 'LATEST' ? chosen.name : args.which);
  const dest = resolve(args.dest);
  const tablespaceDirs = planTablespaces(backup, args.tablespaceMap, dest);
  await checkEmptyTarget(dest, 'the destination');
  for (const dir of tablespaceDirs.values()) await checkEmptyTarget(dir, 'tablespace directory');
  const entries = await readManifest(deps, backup, new Set(tablespaceDirs.keys()), args.signal);
  if (args.restoreCommand !== undefined) await checkTargetInArchive(deps, backup, args.target, args.signal);

  if (archiveMode === 'preserve') {
    deps.log.warn(
      { archive_mode: 'preserve' },
      "archive_mode preserved: the restored server archives with the origin's archive_command, into the origin's archive unless its WALTS_STORE points at a new prefix; change that before it starts",
    );
  }
  // Nothing was written before this point.
  const owner = await ownerForRestore(dest);
  await localWrite(dest, async () => {
    await fsp.mkdir(dest, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await fsp.chmod(dest, 0o700);
    if (owner) await fsp.chown(dest, owner.uid, owner.gid);
  });
  const extractor = new Extractor(dest, entries, tablespaceDirs, owner);

  // The first failure stops the other volumes; it, not their cancellation, is what is reported.
  const stop = new AbortController();
  const signal = args.signal ? AbortSignal.any([args.signal, stop.signal]) : stop.signal;
  await mapLimit(backup.volumes, args.parallel, async (part, i) => {
    try {
      // Each volume decodes in a worker thread while this one parses, hashes and writes its files.
      await readPart(deps, part, signal, (plain) => extractor.extractVolume(i + 1, plain), { offload: true });
    } catch (err) {
      stop.abort();
      throw err;
    }
  });

  await localWrite(dest, async () => {
    await writeTablespaceMap(dest, tablespaceDirs, owner);
    await writeSettings(dest, args.restoreCommand, args.target, archiveMode, owner);
  });
  await extractor.finish(); // pg_control goes in place last
  const files = entries.filter((e) => e.type === 'file');
  return { backup, dest, files: files.length, bytes: files.reduce((n, e) => n + e.size, 0), recoveryConfigured: args.restoreCommand !== undefined, archiveMode };
}

async function chooseBackup(deps: Deps, args: BackupFetchArgs): Promise<BackupSentinel> {
  if (args.which === 'LATEST' && args.target.time !== undefined) return chooseForTargetTime(await listBackups(deps.storage, args.signal), args.target.time);
  const backup = await findBackup(deps.storage, args.which, args.signal);
  if (args.target.time !== undefined) checkBackupReachesTime(backup, args.target.time);
  return backup;
}

/**
 * Reads the sentinel again with its signature and verifies the exact bytes; what is restored is the
 * sentinel that was verified (not the one read before), so nothing can be swapped in between.
 */
async function readSignedSentinel(deps: Deps, name: string, key: KeyObject, signal?: AbortSignal): Promise<BackupSentinel> {
  const sentinelKey = backupKeys.sentinel(name);
  const bytes = await readAll((await deps.storage.get(sentinelKey, { signal })).body, 16 << 20);
  const signature = await deps.storage
    .get(backupKeys.signature(name), { signal })
    .then(async (o) => (await readAll(o.body, 64 << 10)).toString('utf8'))
    .catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
  verifySentinel(name, bytes, signature, key);
  return parseSentinel(bytes.toString('utf8'), sentinelKey);
}

/**
 * The sentinel names the objects to read: each must be this backup's own volume or manifest key
 * (`part_00001.tar.lz4.pgp`...), never a key elsewhere (a directory store would follow `..`).
 */
function checkPartKeys(backup: BackupSentinel, which: string): void {
  if (which !== 'LATEST' && backup.name !== which) throw new IntegrityError(`the sentinel of backup ${which} names another backup (${JSON.stringify(backup.name)}); refusing it`);
  const dir = `${backupDir(backup.name)}/`;
  const own = (key: unknown, base: string): boolean =>
    typeof key === 'string' && key.startsWith(dir) && !key.slice(dir.length).includes('/') && splitCodecSuffix(key.slice(dir.length)).base === base;
  const volumes = Array.isArray(backup.volumes) ? backup.volumes : [];
  if (volumes.length === 0) throw new IntegrityError(`backup ${backup.name}: its sentinel lists no volumes`);
  volumes.forEach((part, i) => {
    const base = `part_${String(i + 1).padStart(5, '0')}.tar`;
    if (!own(part?.key, base)) throw new IntegrityError(`backup ${backup.name}: volume ${i + 1} has the key ${JSON.stringify(part?.key)}, not ${dir}${base}<codecs>; refusing it`);
  });
  if (!own(backup.manifest?.key, 'manifest.jsonl')) throw new IntegrityError(`backup ${backup.name}: its manifest has the key ${JSON.stringify(backup.manifest?.key)}, not ${dir}manifest.jsonl<codecs>; refusing it`);
}

/** The destination (or a tablespace directory) must be absent, with an existing parent, or an empty directory. */
async function checkEmptyTarget(dir: string, what: string): Promise<void> {
  const st = await fsp.lstat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new UsageError(`${what} ${dir} cannot be used: ${err.code}`);
  });
  if (!st) {
    // Only DEST and the tablespace directories are created, never their parents.
    const parent = await fsp.stat(dirname(dir)).catch(() => undefined);
    if (!parent?.isDirectory()) throw new UsageError(`${what} ${dir} cannot be created: ${dirname(dir)} is not an existing directory`);
    return;
  }
  if (st.isSymbolicLink()) throw new UsageError(`${what} ${dir} is a symbolic link; give the directory it points to`);
  if (!st.isDirectory()) throw new UsageError(`${what} ${dir} exists and is not a directory`);
  const names = await fsp.readdir(dir).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`${what} ${dir} cannot be used: ${err.code}`);
  });
  if (names.includes('postmaster.pid')) throw new UsageError(`${what} ${dir} holds a running (or crashed) cluster; refusing to touch it`);
  if (names.length > 0) throw new UsageError(`${what} ${dir} is not empty; refusing to restore into it`);
}

/** Reads and checks the whole manifest (untrusted: see `checkManifest`) before anything is written. */
async function readManifest(deps: Deps, backup: BackupSentinel, tablespaceOids: ReadonlySet<number>, signal?: AbortSignal): Promise<ManifestEntry[]> {
  let text = '';
  await readPart(deps, backup.manifest, signal, async (plain) => {
    text = (await readAll(plain)).toString('utf8');
  });
  const lines = text.split('\n').filter((l) => l !== '');
  const entries = lines.slice(1).map((l, i) => {
    try {
      return JSON.parse(l) as ManifestEntry;
    } catch {
      throw new IntegrityError(`${backup.manifest.key}: line ${i + 2} is not JSON: the backup is damaged`);
    }
  });
  checkManifest(entries, backup.volumes.length, tablespaceOids, Math.floor(Number(backup.pg_version_num) / 10000));
  return entries;
}

/**
 * PostgreSQL recreates the tablespace links from `tablespace_map` when recovery starts, so the file
 * from the volume (untrusted) is replaced by one made from the validated directories: a forged map
 * cannot make the server create links of its own.
 */
async function writeTablespaceMap(dest: string, dirs: ReadonlyMap<number, string>, owner: Owner): Promise<void> {
  const path = join(dest, 'tablespace_map');
  if (dirs.size === 0) {
    await fsp.rm(path, { force: true });
    return;
  }
  const lines = [...dirs].map(([oid, dir]) => `${oid} ${dir.replace(/\\/g, '\\\\')}\n`);
  await fsp.rm(path, { force: true });
  await fsp.writeFile(path, lines.join(''), { mode: 0o600, flag: 'wx' });
  if (owner) await fsp.chown(path, owner.uid, owner.gid);
}

/**
 * Settings for the restored copy, appended to postgresql.auto.conf (read last, so they win):
 * `archive_mode = off` unless preserved, and with recovery, restore_command plus the target, and
 * recovery.signal.
 */
async function writeSettings(dest: string, restoreCommand: string | undefined, target: RecoveryTarget, archiveMode: ArchiveMode, owner: Owner): Promise<void> {
  const lines: string[] = [];
  if (archiveMode === 'off') lines.push(`# A restored copy must not archive into its origin's archive (backup-fetch --archive-mode=preserve keeps it)`, `archive_mode = ${quote('off')}`);
  if (restoreCommand !== undefined) lines.push('# Recovery from the archive', ...recoverySettings(restoreCommand, target));
  if (lines.length === 0) return;
  const auto = join(dest, 'postgresql.auto.conf');
  await fsp.appendFile(auto, `\n# Added by walts backup-fetch\n${lines.join('\n')}\n`, { mode: 0o600 });
  if (owner) await fsp.chown(auto, owner.uid, owner.gid);
  if (restoreCommand !== undefined) {
    const signalFile = join(dest, 'recovery.signal');
    await fsp.writeFile(signalFile, '', { mode: 0o600 });
    if (owner) await fsp.chown(signalFile, owner.uid, owner.gid);
  }
}

/**
 * Run as the database's OS user, restored files belong to it. Run as root, they are given to the
 * owner of the destination's parent directory (PostgreSQL refuses a data directory it does not own).
 */
async function ownerForRestore(dest: string): Promise<Owner> {
  if (process.getuid?.() !== 0) return undefined;
  const st = await fsp.stat(dirname(dest));
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}
