/**
 * Safe extraction of backup volumes into a new data directory (reliability.md rule 26, fault 35).
 *
 * - every name passes `safeRelativePath` and must be in the manifest for that volume;
 * - files are created with O_EXCL | O_NOFOLLOW and checked against the manifest's SHA-256 and size;
 * - symlinks are created only after every file is written, so no write can pass through one;
 * - `pg_tblspc/<oid>/...` goes to the tablespace's (possibly remapped) directory, by explicit mapping;
 * - modes are what PostgreSQL accepts: 0700/0600, or 0750/0640 when the cluster used group access;
 * - `global/pg_control` is written under a temporary name and put in place by `finish()`, last, so a
 *   restore that did not finish cannot be started.
 */
import { constants, promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { IntegrityError } from '../errors';
import { parseTar, safeRelativePath } from './tar';
import type { ManifestEntry } from './volumes';
import { PG_CONTROL } from './walk';

const PENDING_CONTROL = `${PG_CONTROL}.walts-restore`;

export class Extractor {
  /** Manifest entries not yet seen, by volume then path. */
  readonly #expected = new Map<number, Map<string, ManifestEntry>>();
  readonly #links: { path: string; target: string }[] = [];
  readonly #owner?: { uid: number; gid: number };

  constructor(
    private readonly dest: string,
    entries: readonly ManifestEntry[],
    /** Tablespace OID → directory to restore it into. */
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
      const entry = expected.get(path);
      if (!entry || entry.type !== header.type) throw new IntegrityError(`volume ${volume}: ${path} is not in the backup manifest (or has another type)`);
      expected.delete(path);
      if (header.type === 'directory') {
        await this.mkdir(this.target(path), entry.mode);
      } else if (header.type === 'symlink') {
        this.#links.push({ path, target: header.linkname ?? '' });
      } else {
        await this.writeFile(path, entry, body);
      }
    }
  }

  /** Checks that every manifest entry arrived, creates links, and puts pg_control in place. */
  async finish(): Promise<void> {
    const missing = [...this.#expected.values()].flatMap((m) => [...m.keys()]);
    if (missing.length > 0) throw new IntegrityError(`the backup's volumes lack ${missing.length} file(s) listed in its manifest, e.g. ${missing.slice(0, 3).join(', ')}`);
    for (const link of this.#links) {
      await fsp.symlink(link.target, this.target(link.path)).catch((err: NodeJS.ErrnoException) => {
        // Only a crafted archive has a symlink where it also put a directory or file (e.g. `link` then `link/x`).
        if (err.code === 'EEXIST') throw new IntegrityError(`${link.path}: the backup holds a symlink at a path that other entries already use; refusing it`);
        throw err;
      });
    }
    for (const [oid, dir] of this.tablespaceDirs) await fsp.symlink(dir, join(this.dest, 'pg_tblspc', String(oid)));
    await fsp.rename(join(this.dest, PENDING_CONTROL), join(this.dest, PG_CONTROL));
  }

  /** Where a backup path goes: into a tablespace directory or below the data directory. */
  private target(path: string): string {
    const m = /^pg_tblspc\/(\d+)(?:\/(.*))?$/.exec(path);
    const dir = m ? this.tablespaceDirs.get(Number(m[1])) : undefined;
    if (m && dir) return m[2] ? join(dir, m[2]) : dir;
    return join(this.dest, path === PG_CONTROL ? PENDING_CONTROL : path);
  }

  private async writeFile(path: string, entry: ManifestEntry, body: AsyncIterable<Buffer>): Promise<void> {
    const out = this.target(path);
    await this.mkdir(dirname(out), 0o700, true);
    const handle = await fsp.open(out, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, fileMode(entry.mode));
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of body) {
        hash.update(chunk);
        size += chunk.length;
        await handle.write(chunk);
      }
      if (this.#owner) await handle.chown(this.#owner.uid, this.#owner.gid);
    } finally {
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

/** PostgreSQL accepts 0700, or 0750 with group access (initdb --allow-group-access). */
function dirMode(stored: number): number {
  return (stored & 0o050) === 0o050 ? 0o750 : 0o700;
}

function fileMode(stored: number): number {
  return (stored & 0o040) === 0o040 ? 0o640 : 0o600;
}
