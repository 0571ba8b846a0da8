/**
 * Safe extraction of backup volumes into a new data directory (reliability.md rule 26, fault 35).
 * Everything in a volume may have been written by someone with write access to the store, so:
 *
 * - every name passes `safeRelativePath` and must be in the manifest for that volume (checked as a
 *   whole by `checkManifest` before anything is written);
 * - a volume holds files and directories only: symlink and hard-link entries are refused. The only
 *   links after a restore are the tablespace links walts makes itself, from validated directories;
 * - files are created with O_EXCL | O_NOFOLLOW and checked against the manifest's SHA-256 and size;
 * - `pg_tblspc/<oid>/...` goes to the tablespace's validated directory, by explicit mapping; the link
 *   `pg_tblspc/<oid>` is made last, so no write ever passes through it;
 * - modes are what PostgreSQL accepts: 0700/0600, or 0750/0640 when the cluster used group access;
 * - `global/pg_control` is written under a temporary name and put in place by `finish()`, last, so a
 *   restore that did not finish cannot be started;
 * - a full disk is reported as such (exit 4), not as damage.
 */
import { constants, promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { IntegrityError, UnavailableError } from '../errors';
import { parseTar, safeRelativePath } from './tar';
import type { ManifestEntry } from './volumes';
import { PG_CONTROL } from './walk';

const PENDING_CONTROL = `${PG_CONTROL}.walts-restore`;
/** Positional writes of one file outstanding at once (see writeFile). */
const WRITES_IN_FLIGHT = 2;
const TABLESPACE_PATH_RE = /^pg_tblspc\/(\d+)(?:\/(.*))?$/;

export class Extractor {
  /** Manifest entries not yet seen, by volume then path. */
  readonly #expected = new Map<number, Map<string, ManifestEntry>>();
  readonly #owner?: { uid: number; gid: number };

  constructor(
    private readonly dest: string,
    entries: readonly ManifestEntry[],
    /** Tablespace OID → directory to restore it into (validated by the caller). */
    private readonly tablespaceDirs: ReadonlyMap<number, string>,
    owner?: { uid: number; gid: number },
  ) {
    for (const e of entries) {
      let m = this.#expected.get(e.volume);
      if (!m) this.#expected.set(e.volume, (m = new Map()));
      m.set(e.path, e);
    }
    this.#owner = owner;
  }

  /** Extracts one volume's tar stream (already decrypted and decompressed). */
  async extractVolume(volume: number, tar: AsyncIterable<Buffer>): Promise<void> {
    const expected = this.#expected.get(volume) ?? new Map<string, ManifestEntry>();
    for await (const { header, body } of parseTar(tar)) {
      const path = safeRelativePath(header.path);
      if (!path) throw new IntegrityError(`volume ${volume}: refusing unsafe entry name ${JSON.stringify(header.path)}`);
      if (header.type === 'symlink') {
        throw new IntegrityError(`volume ${volume}: ${path} is a symbolic link (to ${JSON.stringify(header.linkname ?? '')}); walts restores no links from a backup`);
      }
      const entry = expected.get(path);
      if (!entry || entry.type !== header.type) throw new IntegrityError(`volume ${volume}: ${path} is not in the backup manifest (or has another type)`);
      expected.delete(path);
      await localWrite(this.rootOf(path), async () => {
        if (header.type === 'directory') await this.mkdir(this.target(path), entry.mode);
        else await this.writeFile(path, entry, body);
      });
    }
  }

  /** Checks that every manifest entry arrived, creates the tablespace links, and puts pg_control in place. */
  async finish(): Promise<void> {
    const missing = [...this.#expected.values()].flatMap((m) => [...m.keys()]);
    if (missing.length > 0) throw new IntegrityError(`the backup's volumes lack ${missing.length} file(s) listed in its manifest, e.g. ${missing.slice(0, 3).join(', ')}`);
    await localWrite(this.dest, async () => {
      for (const [oid, dir] of this.tablespaceDirs) {
        const link = join(this.dest, 'pg_tblspc', String(oid));
        await this.mkdir(dirname(link), 0o700, true);
        await fsp.symlink(dir, link);
        if (this.#owner) await fsp.lchown(link, this.#owner.uid, this.#owner.gid);
      }
      await fsp.rename(join(this.dest, PENDING_CONTROL), join(this.dest, PG_CONTROL));
    });
  }

  /** The directory a path is restored below (named when its disk is full). */
  private rootOf(path: string): string {
    const m = TABLESPACE_PATH_RE.exec(path);
    return (m && this.tablespaceDirs.get(Number(m[1]))) || this.dest;
  }

  /** Where a backup path goes: into a tablespace directory or below the data directory. */
  private target(path: string): string {
    const m = TABLESPACE_PATH_RE.exec(path);
    if (m) {
      const dir = this.tablespaceDirs.get(Number(m[1]));
      // checkManifest refuses these up front; this is the second line of defence.
      if (!dir) throw new IntegrityError(`${path}: belongs to no tablespace recorded in the backup`);
      return m[2] ? join(dir, m[2]) : dir;
    }
    return join(this.dest, path === PG_CONTROL ? PENDING_CONTROL : path);
  }

  private async writeFile(path: string, entry: ManifestEntry, body: AsyncIterable<Buffer>): Promise<void> {
    const out = this.target(path);
    await this.mkdir(dirname(out), 0o700, true);
    const handle = await fsp.open(out, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, fileMode(entry.mode));
    const hash = createHash('sha256');
    let size = 0;
    // Up to WRITES_IN_FLIGHT positional writes at once: while the kernel copies one chunk into the
    // page cache (in libuv's thread pool), this thread hashes the next. Serial awaited writes left
    // the thread idle for each write (about 0.3 s of a 336 MB restore on ext4). The chunks are
    // not reused by their producer (the tar parser hands out views of fresh decoded buffers).
    const inFlight = new Set<Promise<unknown>>();
    let failed: unknown;
    try {
      for await (const chunk of body) {
        hash.update(chunk);
        const write: Promise<unknown> = handle.write(chunk, 0, chunk.length, size).then(
          (r) => (inFlight.delete(write), r),
          (err: unknown) => {
            inFlight.delete(write);
            failed ??= err;
          },
        );
        inFlight.add(write);
        size += chunk.length;
        if (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight);
        if (failed !== undefined) throw failed;
      }
      await Promise.all(inFlight);
      if (failed !== undefined) throw failed;
      if (this.#owner) await handle.chown(this.#owner.uid, this.#owner.gid);
    } finally {
      await Promise.all(inFlight);
      await handle.close();
    }
    if (size !== entry.size || hash.digest('hex') !== entry.sha256) {
      throw new IntegrityError(`${path}: restored content does not match the backup manifest (SHA-256 or size differs): the backup is damaged`);
    }
  }

  private async mkdir(dir: string, mode: number, parentsOnly = false): Promise<void> {
    const created = await fsp.mkdir(dir, { recursive: true, mode: dirMode(mode) });
    // Everything under the target is created by this extractor: a symlink here would be an escape.
    // Checked before chmod/chown, which would follow it.
    if ((await fsp.lstat(dir)).isSymbolicLink()) throw new IntegrityError(`${dir} is a symlink; refusing to write through it`);
    if (!parentsOnly || created) {
      await fsp.chmod(dir, dirMode(mode));
      if (this.#owner) await fsp.chown(dir, this.#owner.uid, this.#owner.gid);
    }
  }
}

/**
 * Checks a backup's manifest before anything is written: every path is a clean relative path, every
 * entry a file or a directory, nothing listed twice, every volume number one the backup has, and
 * everything under `pg_tblspc/` belongs to a recorded tablespace (`pg_tblspc/<oid>` and its
 * `PG_<major>_*` directory, as backup-push stores them). Throws IntegrityError naming the entry.
 */
export function checkManifest(entries: readonly ManifestEntry[], volumes: number, tablespaceOids: ReadonlySet<number>, pgMajor: number): void {
  const seen = new Set<string>();
  for (const e of entries) {
    const what = `manifest entry ${JSON.stringify(e?.path)}`;
    if (typeof e !== 'object' || e === null || typeof e.path !== 'string' || safeRelativePath(e.path) !== e.path) {
      throw new IntegrityError(`${what}: not a clean relative path (absolute, '..', empty or odd characters); refusing the backup`);
    }
    if (e.type === ('symlink' as string)) throw new IntegrityError(`${what} is a symbolic link (to ${JSON.stringify(e.link ?? '')}); walts restores no links from a backup`);
    if (e.type !== 'file' && e.type !== 'directory') throw new IntegrityError(`${what} has type ${JSON.stringify(e.type)}; a backup holds only files and directories`);
    if (!Number.isSafeInteger(e.volume) || e.volume < 1 || e.volume > volumes) throw new IntegrityError(`${what} names volume ${JSON.stringify(e.volume)}; the backup has ${volumes}`);
    if (e.type === 'file' && (!Number.isSafeInteger(e.size) || e.size < 0 || typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256))) {
      throw new IntegrityError(`${what} has no valid size and SHA-256`);
    }
    if (!Number.isSafeInteger(e.mode)) throw new IntegrityError(`${what} has no valid mode`);
    if (seen.has(e.path)) throw new IntegrityError(`${what} is listed twice`);
    seen.add(e.path);
    const m = TABLESPACE_PATH_RE.exec(e.path);
    if (m) {
      if (!tablespaceOids.has(Number(m[1])) || String(Number(m[1])) !== m[1]) throw new IntegrityError(`${what} belongs to no tablespace recorded in the backup`);
      const first = m[2]?.split('/')[0];
      if (m[2] === undefined ? e.type !== 'directory' : !first?.startsWith(`PG_${pgMajor}_`)) {
        throw new IntegrityError(`${what}: a tablespace holds only its PG_${pgMajor}_* directory`);
      }
    }
  }
}

/**
 * Runs a write below the restore target, turning local file system failures into what they mean for
 * the operator: a full disk (or quota) is "disk full at DEST", exit 4; anything else that is not a
 * walts error is reported with its code, also exit 4 (the machine, not the backup, failed), except
 * collisions between entries, which only a crafted backup has (exit 3).
 */
export async function localWrite<T>(dest: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new UnavailableError(`disk full at ${dest} (${code}): free space or restore elsewhere`, { transient: false, cause: err });
    // Entries that collide (a file where a directory is needed, a name used twice): a crafted backup.
    if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ELOOP') {
      throw new IntegrityError(`the backup's entries collide below ${dest}: ${(err as Error).message}`, { cause: err });
    }
    if (typeof code === 'string' && code.startsWith('E')) {
      throw new UnavailableError(`cannot write below ${dest}: ${(err as Error).message}`, { transient: false, cause: err });
    }
    throw err;
  }
}

/** PostgreSQL accepts 0700, or 0750 with group access (initdb --allow-group-access). */
function dirMode(stored: number): number {
  return (stored & 0o050) === 0o050 ? 0o750 : 0o700;
}

function fileMode(stored: number): number {
  return (stored & 0o040) === 0o040 ? 0o640 : 0o600;
}
