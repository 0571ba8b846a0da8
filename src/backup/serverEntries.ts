/**
 * The entries of a base backup taken with BASE_BACKUP, from the server's tar archives, in the form the
 * local walk gives them (PGDATA-relative paths; a tablespace under `pg_tblspc/<oid>/` as plain
 * directories), for the one volume writer. What the server sends is untrusted input, read with the one
 * tar reader (`parseTar`), and checked before it reaches a volume:
 *
 * - every name must pass `safeRelativePath` (no absolute path, no `..`, no NUL or backslash);
 * - no links at all: asked for a tablespace_map, PostgreSQL sends none (a walts backup holds none, and
 *   a restore refuses them), so a link is refused wherever it points;
 * - a tablespace archive holds only its `PG_<major>_*` directory; the data directory archive holds
 *   nothing below `pg_tblspc/` (the tablespaces arrive as their own archives);
 * - `backup_label` and `tablespace_map` (small, at most 1 MiB) are kept in memory for the sentinel.
 * File bodies stream through unbuffered: each is read by the volume before the next header is parsed.
 */
import { IntegrityError, ProtocolError } from '../errors';
import type { ServerArchive } from '../postgres/replication/baseBackupStream';
import { parseTar, safeRelativePath } from './tar';
import type { VolumeEntry } from './volumes';

/** backup_label and tablespace_map larger than this are not PostgreSQL's. */
const MAX_LABEL_FILE = 1 << 20;

export interface ServerEntriesOptions {
  /** Tablespace location on the server → OID, from BASE_BACKUP's tablespace list. */
  readonly tablespaces: ReadonlyMap<string, number>;
  readonly pgMajor: number;
  /** mtime of the `pg_tblspc/<oid>` directory entries walts adds. */
  readonly now: number;
}

/** What the data directory's archive said about the backup, filled in as the entries pass. */
export interface ServerLabelFiles {
  backupLabel?: Buffer;
  tablespaceMap?: Buffer;
}

export async function* serverEntries(archives: AsyncIterable<ServerArchive>, options: ServerEntriesOptions, label: ServerLabelFiles): AsyncGenerator<VolumeEntry, void, undefined> {
  const seen = new Set<number | 'base'>();
  for await (const archive of archives) {
    const oid = archive.location === '' ? undefined : options.tablespaces.get(archive.location);
    if (archive.location !== '' && oid === undefined) throw new ProtocolError(`BASE_BACKUP: archive ${JSON.stringify(archive.name)} is for ${JSON.stringify(archive.location)}, which is not in the tablespace list`);
    const expectedName = oid === undefined ? 'base.tar' : `${oid}.tar`;
    if (archive.name !== expectedName) throw new ProtocolError(`BASE_BACKUP: archive ${JSON.stringify(archive.name)} (expected ${expectedName}): walts asks for plain tar archives`);
    if (seen.has(oid ?? 'base')) throw new ProtocolError(`BASE_BACKUP: archive ${archive.name} sent twice`);
    seen.add(oid ?? 'base');
    const prefix = oid === undefined ? '' : `pg_tblspc/${oid}/`;
    if (oid !== undefined) yield { path: `pg_tblspc/${oid}`, type: 'directory', mode: 0o700, mtime: options.now };
    for await (const { header, body } of parseTar(archive.data)) {
      const name = safeRelativePath(header.path);
      const what = `${archive.name}: entry ${JSON.stringify(header.path)}`;
      if (!name) throw new IntegrityError(`${what}: refusing an unsafe name (absolute, '..', empty or odd characters)`);
      if (header.type === 'symlink') throw new IntegrityError(`${what} is a symbolic link (to ${JSON.stringify(header.linkname ?? '')}); a walts backup holds no links`);
      if (oid !== undefined && !name.startsWith(`PG_${options.pgMajor}_`)) throw new IntegrityError(`${what}: a tablespace archive holds only its PG_${options.pgMajor}_* directory`);
      if (oid === undefined && name.startsWith('pg_tblspc/')) throw new IntegrityError(`${what}: tablespaces arrive as their own archives, not inside the data directory's`);
      const path = prefix + name;
      if (header.type === 'directory') {
        yield { path, type: 'directory', mode: header.mode, mtime: header.mtime };
      } else if (oid === undefined && (name === 'backup_label' || name === 'tablespace_map')) {
        if (header.size > MAX_LABEL_FILE) throw new IntegrityError(`${what}: ${header.size} bytes is not a ${name}`);
        const parts: Buffer[] = [];
        for await (const chunk of body) parts.push(chunk);
        const data = Buffer.concat(parts);
        if (name === 'backup_label') label.backupLabel = data;
        else label.tablespaceMap = data;
        yield { path, type: 'file', mode: header.mode, mtime: header.mtime, data };
      } else {
        yield { path, type: 'file', mode: header.mode, mtime: header.mtime, size: header.size, body };
      }
    }
  }
  if (!seen.has('base')) throw new ProtocolError("BASE_BACKUP: the data directory's archive never came");
}
