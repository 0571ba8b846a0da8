/**
 * Where a restore puts a backup's tablespaces. The locations in a backup's sentinel are untrusted
 * input (anyone with write access to the store can change them), so a backup never chooses on its
 * own where walts writes: every tablespace needs `--tablespace NAME_OR_OID=DIR` from the operator
 * (the recorded path, given back, restores it in place). Pure: the file system checks (absent or
 * empty, parent exists) are made by backup-fetch.
 */
import { posix } from 'node:path';
import { IntegrityError, UsageError } from '../errors';
import type { BackupSentinel } from './sentinel';

/**
 * OID → directory for each tablespace of `backup`, from the operator's `--tablespace` options.
 * Throws IntegrityError for malformed tablespace records (exit 3) and for a tablespace the operator
 * did not place, UsageError for an option that names no tablespace or a directory that cannot be used.
 */
export function planTablespaces(backup: BackupSentinel, remap: ReadonlyMap<string, string>, dest: string): Map<number, string> {
  const records = Array.isArray(backup.tablespaces) ? backup.tablespaces : [];
  if (!Array.isArray(backup.tablespaces)) throw new IntegrityError(`backup ${backup.name}: its tablespace list is malformed`);
  const dirs = new Map<number, string>();
  const unknown = new Set(remap.keys());
  const unplaced: string[] = [];
  for (const t of records) {
    if (typeof t !== 'object' || t === null || !Number.isSafeInteger(t.oid) || t.oid <= 0 || typeof t.name !== 'string' || typeof t.location !== 'string') {
      throw new IntegrityError(`backup ${backup.name}: a tablespace record is malformed (${JSON.stringify(t)})`);
    }
    if (dirs.has(t.oid)) throw new IntegrityError(`backup ${backup.name}: tablespace ${t.oid} is recorded twice`);
    const dir = remap.get(String(t.oid)) ?? remap.get(t.name);
    unknown.delete(String(t.oid));
    unknown.delete(t.name);
    if (dir === undefined) {
      unplaced.push(`--tablespace ${/^[A-Za-z0-9_]+$/.test(t.name) ? t.name : t.oid}=DIR (recorded at ${JSON.stringify(t.location)})`);
      continue;
    }
    dirs.set(t.oid, dir);
  }
  if (unknown.size > 0) {
    const known = records.map((t) => `${t.name} (${t.oid})`).join(', ') || 'none';
    throw new UsageError(`--tablespace ${[...unknown].join(', ')}: no such tablespace in backup ${backup.name} (it has: ${known})`);
  }
  if (unplaced.length > 0) {
    throw new IntegrityError(
      `backup ${backup.name} has tablespaces outside the data directory, and a backup's metadata does not choose where walts writes (anyone who can write to the store could change it): give ${unplaced.join(', ')}; the recorded path restores it in place`,
    );
  }
  const problems: string[] = [];
  const all = [...dirs.entries()];
  for (const [oid, dir] of all) {
    const what = `--tablespace for ${oid}: ${JSON.stringify(dir)}`;
    if (!isCleanAbsolute(dir)) problems.push(`${what} must be an absolute, normalised path (no '..', '.', '//', trailing '/') without control characters`);
    else if (overlaps(dir, dest)) problems.push(`${what} overlaps the destination ${dest}`);
    for (const [other, otherDir] of all) if (other > oid && overlaps(dir, otherDir)) problems.push(`${what} overlaps the directory of tablespace ${other} (${otherDir})`);
  }
  if (problems.length > 0) throw new UsageError(problems);
  return dirs;
}

/** Absolute, normalised, not the root, no control characters (tablespace_map is line-based). */
export function isCleanAbsolute(p: string): boolean {
  return p.startsWith('/') && p !== '/' && posix.normalize(p) === p && !p.endsWith('/') && !/[\x00-\x1f\x7f]/.test(p);
}

/** One is the other or inside it. */
export function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}
