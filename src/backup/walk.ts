/**
 * Walks a running cluster's data directory (and its tablespaces) in the order a base backup stores
 * it, leaving out what PostgreSQL's documentation says a base backup must not contain (the lists of
 * `basebackup.c` / "Backing Up the Data Directory"). `global/pg_control` comes last, so a copy that
 * holds it holds everything copied before it.
 *
 * Files appear, change and vanish while the server runs: that is normal (WAL replay repairs it).
 * A name listed by readdir that is gone by the time it is examined is skipped.
 */
import { promises as fsp, type Stats } from 'node:fs';
import { join } from 'node:path';

export interface WalkEntry {
  /** Path in the backup, relative, '/'-separated, no trailing slash. */
  readonly path: string;
  /** Where it is read from now. */
  readonly source: string;
  readonly type: 'file' | 'directory' | 'symlink';
  readonly mode: number;
  readonly size: number;
  readonly mtime: number;
  readonly linkTarget?: string;
}

export const PG_CONTROL = 'global/pg_control';

/** Directories kept (empty) but whose contents are never copied. */
const EXCLUDED_CONTENTS = new Set(['pg_wal', 'pg_stat_tmp', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']);
/** pg_wal/archive_status is recreated empty, as pg_basebackup does. */
const KEEP_EMPTY = new Set(['pg_wal/archive_status']);
/** Files never copied, anywhere they are named (top level unless noted). */
const EXCLUDED_FILES = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
  'backup_label', // left by an exclusive backup; ours comes from pg_backup_stop
  'tablespace_map',
  'backup_manifest',
  'recovery.signal', // a restore of this backup decides for itself whether to recover
  'standby.signal',
]);
const TEMP_RELATION_RE = /^t\d+_\d+/;
const RELATION_FILE_RE = /^(\d+)(_(?:fsm|vm|init))?(?:\.\d+)?$/;

export interface WalkOptions {
  /** OID → directory, for each tablespace link in pg_tblspc. */
  readonly tablespaces: ReadonlyMap<number, string>;
  /** Only this version's subdirectory of a tablespace belongs to the cluster (`PG_15_...`). */
  readonly pgMajor: number;
  /** Told about entries left out that an operator may miss (a dangling symlink). */
  readonly onSkip?: (path: string, why: string) => void;
}

export async function* walkDataDirectory(pgdata: string, options: WalkOptions): AsyncGenerator<WalkEntry> {
  yield* walkDir(pgdata, '', options, true);
  const control = await entryFor(join(pgdata, PG_CONTROL), PG_CONTROL);
  if (control) yield control;
}

async function* walkDir(dir: string, rel: string, options: WalkOptions, topLevel: boolean): AsyncGenerator<WalkEntry> {
  const names = await readdirSorted(dir);
  const unlogged = unloggedRelations(names);
  for (const name of names) {
    const path = rel ? `${rel}/${name}` : name;
    if (path === PG_CONTROL) continue; // copied last
    if (excluded(name, path, topLevel, unlogged)) continue;
    const tablespaceOid = rel === 'pg_tblspc' ? Number(name) : NaN;
    if (Number.isInteger(tablespaceOid) && options.tablespaces.has(tablespaceOid)) {
      yield* walkTablespace(path, options.tablespaces.get(tablespaceOid) as string, options);
      continue;
    }
    const entry = await entryFor(join(dir, name), path, options.onSkip);
    if (!entry) continue;
    yield entry;
    if (entry.type === 'directory' && !EXCLUDED_CONTENTS.has(path) && !KEEP_EMPTY.has(path)) {
      yield* walkDir(join(dir, name), path, options, false);
    } else if (path === 'pg_wal') {
      const status = await entryFor(join(dir, name, 'archive_status'), 'pg_wal/archive_status');
      if (status?.type === 'directory') yield status;
    }
  }
}

/** A tablespace is stored under `pg_tblspc/<oid>/` as plain directories; restore recreates the link. */
async function* walkTablespace(path: string, location: string, options: WalkOptions): AsyncGenerator<WalkEntry> {
  const root = await entryFor(location, path);
  if (!root || root.type !== 'directory') return;
  yield { ...root, type: 'directory' };
  const names = await readdirSorted(location);
  for (const name of names.filter((n) => n.startsWith(`PG_${options.pgMajor}_`))) {
    const entry = await entryFor(join(location, name), `${path}/${name}`);
    if (entry?.type !== 'directory') continue;
    yield entry;
    yield* walkDir(join(location, name), `${path}/${name}`, options, false);
  }
}

function excluded(name: string, path: string, topLevel: boolean, unlogged: ReadonlySet<string>): boolean {
  if (topLevel && EXCLUDED_FILES.has(name)) return true;
  if (name.startsWith('pg_internal.init')) return true; // relcache init files, rebuilt at start
  if (name.startsWith('pgsql_tmp')) return true; // temporary files and directories
  if (TEMP_RELATION_RE.test(name) && !path.startsWith('global/')) return true;
  const rel = RELATION_FILE_RE.exec(name);
  // Unlogged relations are reset from their init fork at the end of recovery: only the init fork is kept.
  return rel !== null && rel[1] !== undefined && unlogged.has(rel[1]) && rel[2] !== '_init';
}

/** Relfilenodes in a directory that have an init fork (`<n>_init`): the unlogged ones. */
function unloggedRelations(names: readonly string[]): Set<string> {
  const set = new Set<string>();
  for (const n of names) {
    const m = /^(\d+)_init$/.exec(n);
    if (m?.[1]) set.add(m[1]);
  }
  return set;
}

async function entryFor(source: string, path: string, onSkip?: (path: string, why: string) => void): Promise<WalkEntry | undefined> {
  let st: Stats;
  try {
    st = await fsp.lstat(source);
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
  const base = { path, source, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
  if (st.isDirectory()) return { ...base, type: 'directory', size: 0 };
  if (st.isFile()) return { ...base, type: 'file', size: st.size };
  if (st.isSymbolicLink()) {
    // pg_wal (initdb --waldir), a log directory or a certificate may be links. A backup holds no
    // links (a restore refuses them: docs/security.md): a link to a directory is stored as that
    // directory (its contents follow the usual rules), a link to a file as that file, as
    // pgBackRest restores them by default. A dangling link (or one to a socket...) is left out.
    const target = await fsp.stat(source).catch(() => undefined);
    if (target?.isDirectory()) return { ...base, type: 'directory', size: 0, mode: target.mode & 0o7777 };
    if (target?.isFile()) return { ...base, type: 'file', size: target.size, mode: target.mode & 0o7777, mtime: Math.floor(target.mtimeMs / 1000) };
    onSkip?.(path, `a symbolic link to ${await fsp.readlink(source).catch(() => '?')}, which is not a file or directory`);
    return undefined;
  }
  return undefined; // sockets, FIFOs, devices have no place in a backup
}

/** Sorted names in a directory; none when the directory vanished meanwhile. */
async function readdirSorted(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).sort();
  } catch (err) {
    if (isGone(err)) return [];
    throw err;
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
