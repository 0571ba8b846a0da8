/**
 * walkDataDirectory against a fake data directory on disk: what a base backup holds, what it leaves
 * out (reliability.md rule 24), the order (global/pg_control last), tablespaces, and files that
 * vanish during the walk.
 */
import { chmod, mkdir, mkdtemp, rm, rmdir, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PG_CONTROL, walkDataDirectory, type WalkEntry, type WalkOptions } from '../../../src/backup/walk';

let root: string;
let pgdata: string;
let tsdir: string;

async function put(base: string, rel: string, content = 'x'): Promise<void> {
  await mkdir(dirname(join(base, rel)), { recursive: true });
  await writeFile(join(base, rel), content);
}

async function collect(gen: AsyncGenerator<WalkEntry>): Promise<WalkEntry[]> {
  const out: WalkEntry[] = [];
  for await (const e of gen) out.push(e);
  return out;
}

const describeEntry = (e: WalkEntry) => `${e.type === 'directory' ? 'd' : e.type === 'symlink' ? 'l' : 'f'} ${e.path}`;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'walts-walk-'));
  pgdata = join(root, 'data');
  tsdir = join(root, 'tblspc');
  await mkdir(pgdata, { mode: 0o700 });

  await put(pgdata, 'PG_VERSION', '15\n');
  await put(pgdata, 'global/pg_control', 'control');
  await put(pgdata, 'global/1262', 'pg_database');
  await put(pgdata, 'global/pg_internal.init');
  await put(pgdata, 'base/1/1234', 'heap');
  await put(pgdata, 'base/1/1234_fsm');
  // An unlogged relation: only its init fork belongs in a backup.
  for (const f of ['5000', '5000_init', '5000_fsm', '5000.1']) await put(pgdata, `base/1/${f}`);
  await put(pgdata, 'base/1/t3_999'); // temporary relation
  await put(pgdata, 'base/1/pg_internal.init');
  await put(pgdata, 'base/pgsql_tmp/pgsql_tmp123.0');
  await put(pgdata, 'pg_wal/000000010000000000000001');
  await put(pgdata, 'pg_wal/archive_status/000000010000000000000001.done');
  for (const d of ['pg_stat_tmp', 'pg_replslot/slot', 'pg_dynshmem', 'pg_serial', 'pg_snapshots']) await put(pgdata, `${d}/${d === 'pg_replslot/slot' ? 'state' : 'x'}`);
  await put(pgdata, 'pg_notify/0000');
  await put(pgdata, 'pg_subtrans/0000');
  for (const f of ['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'recovery.signal', 'standby.signal', 'current_logfiles.tmp', 'postgresql.auto.conf.tmp']) {
    await put(pgdata, f);
  }
  await put(pgdata, 'log/postgresql.log', 'log line\n');
  await mkdir(join(pgdata, 'pg_commit_ts'));
  await mkdir(join(pgdata, 'pg_tblspc'));
  // The tablespace: only this major version's subdirectory belongs to the cluster.
  await put(tsdir, 'PG_15_202209061/16384/16401', 'tablespace data');
  await put(tsdir, 'PG_14_202107181/16384/16401', 'another cluster');
  await symlink(tsdir, join(pgdata, 'pg_tblspc', '16400'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const options = (): WalkOptions => ({ tablespaces: new Map([[16400, tsdir]]), pgMajor: 15 });

describe('walkDataDirectory', () => {
  it('yields exactly what a base backup holds, in order, with pg_control last', async () => {
    const entries = await collect(walkDataDirectory(pgdata, options()));
    expect(entries.map(describeEntry)).toEqual([
      'f PG_VERSION',
      'd base',
      'd base/1',
      'f base/1/1234',
      'f base/1/1234_fsm',
      'f base/1/5000_init',
      'd global',
      'f global/1262',
      'd log',
      'f log/postgresql.log',
      'd pg_commit_ts',
      'd pg_dynshmem',
      'd pg_notify',
      'd pg_replslot',
      'd pg_serial',
      'd pg_snapshots',
      'd pg_stat_tmp',
      'd pg_subtrans',
      'd pg_tblspc',
      'd pg_tblspc/16400',
      'd pg_tblspc/16400/PG_15_202209061',
      'd pg_tblspc/16400/PG_15_202209061/16384',
      'f pg_tblspc/16400/PG_15_202209061/16384/16401',
      'd pg_wal',
      'd pg_wal/archive_status',
      `f ${PG_CONTROL}`,
    ]);
  });

  it('records where each entry is read from, its size and mode', async () => {
    await chmod(join(pgdata, 'PG_VERSION'), 0o640);
    const entries = await collect(walkDataDirectory(pgdata, options()));
    const byPath = new Map(entries.map((e) => [e.path, e]));
    expect(byPath.get('PG_VERSION')).toMatchObject({ source: join(pgdata, 'PG_VERSION'), type: 'file', size: 3, mode: 0o640 });
    expect(byPath.get('base')).toMatchObject({ type: 'directory', size: 0 });
    // Tablespace entries are read from the tablespace's own directory, stored as plain directories.
    expect(byPath.get('pg_tblspc/16400')).toMatchObject({ type: 'directory', source: tsdir });
    expect(byPath.get('pg_tblspc/16400/PG_15_202209061/16384/16401')).toMatchObject({ source: join(tsdir, 'PG_15_202209061/16384/16401'), size: 15 });
    expect(byPath.get(PG_CONTROL)).toMatchObject({ source: join(pgdata, PG_CONTROL), size: 7 });
    for (const e of entries) expect(Number.isInteger(e.mtime) && e.mtime > 0).toBe(true);
  });

  it('stores a linked pg_wal (initdb --waldir) as a directory holding only archive_status, a link to a file as the file, and leaves out a dangling link', async () => {
    const waldir = join(root, 'waldir');
    await rm(join(pgdata, 'pg_wal'), { recursive: true });
    await put(waldir, '000000010000000000000001');
    await put(waldir, 'archive_status/000000010000000000000001.ready');
    await symlink(waldir, join(pgdata, 'pg_wal'));
    await symlink('/nonexistent/target', join(pgdata, 'dangling'));
    await symlink('PG_VERSION', join(pgdata, 'version_link'));
    const skipped: string[] = [];
    const entries = await collect(walkDataDirectory(pgdata, { ...options(), onSkip: (path) => skipped.push(path) }));
    const paths = entries.map(describeEntry);
    expect(paths.filter((p) => p.includes('pg_wal'))).toEqual(['d pg_wal', 'd pg_wal/archive_status']);
    // A backup holds no links: a restore refuses them (docs/security.md).
    expect(entries.filter((e) => e.type === 'symlink')).toEqual([]);
    expect(entries.find((e) => e.path === 'dangling')).toBeUndefined();
    expect(skipped).toEqual(['dangling']);
    expect(entries.find((e) => e.path === 'version_link')).toMatchObject({ type: 'file', size: 3, source: join(pgdata, 'version_link') });
    expect(paths[paths.length - 1]).toBe(`f ${PG_CONTROL}`);
  });

  it('skips files and directories that vanish after their directory was listed', async () => {
    // The walk is lazy: base/1 was read with readdir before its first entry is yielded, so removing
    // names after that point is exactly "deleted between readdir and lstat" (and "between lstat and readdir"
    // for a directory that is yielded, then removed before the walk descends into it).
    await put(pgdata, 'base/1/9999');
    await put(pgdata, 'base/2/1');
    await put(pgdata, 'base/3/1');
    const seen: string[] = [];
    for await (const e of walkDataDirectory(pgdata, options())) {
      seen.push(describeEntry(e));
      if (e.path === 'base/1/1234') {
        await unlink(join(pgdata, 'base/1/1234_fsm'));
        await unlink(join(pgdata, 'base/1/9999'));
        await rm(join(pgdata, 'base/2'), { recursive: true });
      }
      if (e.path === 'base/3') {
        await unlink(join(pgdata, 'base/3/1'));
        await rmdir(join(pgdata, 'base/3'));
      }
    }
    expect(seen.filter((p) => p.includes(' base'))).toEqual(['d base', 'd base/1', 'f base/1/1234', 'f base/1/5000_init', 'd base/3']);
    expect(seen[seen.length - 1]).toBe(`f ${PG_CONTROL}`);
  });

  it('walks a tablespace link that is not a known tablespace as a directory, and yields no pg_control when it is gone', async () => {
    await unlink(join(pgdata, PG_CONTROL));
    const entries = await collect(walkDataDirectory(pgdata, { tablespaces: new Map(), pgMajor: 15 }));
    const paths = entries.map(describeEntry);
    expect(paths).not.toContain(`f ${PG_CONTROL}`);
    expect(paths).toContain('d pg_tblspc/16400');
    expect(entries.find((e) => e.path === 'pg_tblspc/16400')?.source).toBe(join(pgdata, 'pg_tblspc/16400'));
  });
});
