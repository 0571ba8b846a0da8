/**
 * backup-fetch: restores a base backup into a new data directory, verified file by file, and
 * optionally prepares point-in-time recovery. Everything that can be checked before touching
 * `<dest>` is checked first: the options, the backup (LATEST, a name, or the newest one that can
 * reach --target-time), the destination and the tablespace directories.
 */
import { promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { findBackup, listBackups, mapLimit } from '../archive/catalog';
import { Extractor } from '../backup/extract';
import { checkBackupReachesTime, checkRecoveryTarget, chooseForTargetTime, recoverySettings, type RecoveryTarget } from '../backup/recovery';
import type { BackupSentinel } from '../backup/sentinel';
import type { ManifestEntry } from '../backup/volumes';
import { openArchive } from '../archive/archive';
import type { Deps } from '../deps';
import { UsageError } from '../errors';
import { readAll } from '../util/streams';
import { readPart } from '../archive/parts';

export interface BackupFetchArgs {
  readonly dest: string;
  /** A backup name or LATEST. */
  readonly which: string;
  readonly target: RecoveryTarget;
  /** `--tablespace OID_OR_NAME=DIR` remappings. */
  readonly tablespaceMap: ReadonlyMap<string, string>;
  /** restore_command to write; recovery is configured when this is set. */
  readonly restoreCommand?: string;
  readonly parallel: number;
  readonly signal?: AbortSignal;
}

export interface BackupFetchResult {
  readonly backup: BackupSentinel;
  readonly dest: string;
  readonly files: number;
  readonly bytes: number;
  readonly recoveryConfigured: boolean;
}

export async function backupFetch(deps: Deps, args: BackupFetchArgs): Promise<BackupFetchResult> {
  const problems = checkRecoveryTarget(args.target);
  if (problems.length > 0) throw new UsageError(problems);
  await openArchive(deps.storage, args.signal); // "no such backup" only inside an archive that exists
  const backup = await chooseBackup(deps, args);
  const dest = resolve(args.dest);
  const tablespaceDirs = resolveTablespaces(backup, args.tablespaceMap);
  await checkEmptyTarget(dest, 'the destination');
  for (const dir of tablespaceDirs.values()) await checkEmptyTarget(dir, 'tablespace directory');

  const entries = await readManifest(deps, backup, args.signal);
  await fsp.mkdir(dest, { recursive: true, mode: 0o700 });
  await fsp.chmod(dest, 0o700);
  const owner = await ownerForRestore(dest);
  if (owner) await fsp.chown(dest, owner.uid, owner.gid);
  const extractor = new Extractor(dest, entries, tablespaceDirs, owner);

  await mapLimit(backup.volumes, args.parallel, async (part, i) => {
    await readPart(deps, part, args.signal, (plain) => extractor.extractVolume(i + 1, plain));
  });

  if (backup.tablespace_map && tablespaceDirs.size > 0) await rewriteTablespaceMap(dest, tablespaceDirs);
  const recoveryConfigured = args.restoreCommand !== undefined;
  if (args.restoreCommand !== undefined) await writeRecovery(dest, args.restoreCommand, args.target, owner);
  await extractor.finish(); // pg_control goes in place last
  const files = entries.filter((e) => e.type === 'file');
  return { backup, dest, files: files.length, bytes: files.reduce((n, e) => n + e.size, 0), recoveryConfigured };
}

async function chooseBackup(deps: Deps, args: BackupFetchArgs): Promise<BackupSentinel> {
  if (args.which === 'LATEST' && args.target.time !== undefined) return chooseForTargetTime(await listBackups(deps.storage, args.signal), args.target.time);
  const backup = await findBackup(deps.storage, args.which, args.signal);
  if (args.target.time !== undefined) checkBackupReachesTime(backup, args.target.time);
  return backup;
}

function resolveTablespaces(backup: BackupSentinel, remap: ReadonlyMap<string, string>): Map<number, string> {
  const dirs = new Map<number, string>();
  const unknown = new Set(remap.keys());
  for (const t of backup.tablespaces) {
    const dir = remap.get(String(t.oid)) ?? remap.get(t.name) ?? t.location;
    unknown.delete(String(t.oid));
    unknown.delete(t.name);
    dirs.set(t.oid, resolve(dir));
  }
  if (unknown.size > 0) {
    const known = backup.tablespaces.map((t) => `${t.name} (${t.oid})`).join(', ') || 'none';
    throw new UsageError(`--tablespace ${[...unknown].join(', ')}: no such tablespace in backup ${backup.name} (it has: ${known})`);
  }
  return dirs;
}

async function checkEmptyTarget(dir: string, what: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new UsageError(`${what} ${dir} cannot be used: ${code}`);
  }
  if (names.includes('postmaster.pid')) throw new UsageError(`${what} ${dir} holds a running (or crashed) cluster; refusing to touch it`);
  if (names.length > 0) throw new UsageError(`${what} ${dir} is not empty; refusing to restore into it`);
}

async function readManifest(deps: Deps, backup: BackupSentinel, signal?: AbortSignal): Promise<ManifestEntry[]> {
  let text = '';
  await readPart(deps, backup.manifest, signal, async (plain) => {
    text = (await readAll(plain)).toString('utf8');
  });
  const lines = text.split('\n').filter((l) => l !== '');
  return lines.slice(1).map((l) => JSON.parse(l) as ManifestEntry);
}

/** PostgreSQL recreates tablespace links from tablespace_map at recovery start: it must name the new places. */
async function rewriteTablespaceMap(dest: string, dirs: ReadonlyMap<number, string>): Promise<void> {
  const path = join(dest, 'tablespace_map');
  const lines = (await fsp.readFile(path, 'utf8')).split('\n');
  const out = lines.map((line) => {
    const m = /^(\d+) /.exec(line);
    const dir = m ? dirs.get(Number(m[1])) : undefined;
    return m && dir ? `${m[1]} ${dir.replace(/\\/g, '\\\\')}` : line;
  });
  await fsp.writeFile(path, out.join('\n'));
}

async function writeRecovery(dest: string, restoreCommand: string, target: RecoveryTarget, owner?: { uid: number; gid: number }): Promise<void> {
  const auto = join(dest, 'postgresql.auto.conf');
  const settings = recoverySettings(restoreCommand, target);
  await fsp.appendFile(auto, `\n# Added by walts backup-fetch: recovery from the archive\n${settings.join('\n')}\n`, { mode: 0o600 });
  await fsp.writeFile(join(dest, 'recovery.signal'), '', { mode: 0o600 });
  if (owner) {
    await fsp.chown(auto, owner.uid, owner.gid);
    await fsp.chown(join(dest, 'recovery.signal'), owner.uid, owner.gid);
  }
}

/**
 * Run as the database's OS user, restored files belong to it. Run as root, they are given to the
 * owner of the destination's parent directory (PostgreSQL refuses a data directory it does not own).
 */
async function ownerForRestore(dest: string): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const st = await fsp.stat(dirname(dest));
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

