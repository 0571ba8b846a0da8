/**
 * The Extractor against archives crafted with packTar (reliability.md rule 26, fault 35): a normal
 * restore, pg_control last, and every kind of malicious or damaged entry refused with IntegrityError
 * without writing anything outside the target directory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkManifest, Extractor } from '../../../src/backup/extract';
import { packTar, type TarInput } from '../../../src/backup/tar';
import type { ManifestEntry } from '../../../src/backup/volumes';
import { IntegrityError } from '../../../src/errors';

interface Item {
  path: string;
  type?: 'file' | 'directory' | 'symlink';
  mode?: number;
  content?: string | Buffer;
  link?: string;
}

const MTIME = 1_700_000_000;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const bytes = (c: string | Buffer | undefined) => (Buffer.isBuffer(c) ? c : Buffer.from(c ?? ''));
const typeOf = (i: Item) => i.type ?? 'file';

function manifest(items: readonly Item[], volume = 1): ManifestEntry[] {
  return items.map((i) => {
    const type = typeOf(i);
    const data = bytes(i.content);
    return {
      path: i.path,
      type,
      mode: i.mode ?? (type === 'directory' ? 0o700 : 0o600),
      size: type === 'file' ? data.length : 0,
      mtime: MTIME,
      ...(type === 'file' ? { sha256: sha(data) } : {}),
      ...(type === 'symlink' ? { link: i.link } : {}),
      volume,
    };
  });
}

/** A tar stream as VolumeWriter writes it (directories with a trailing '/'). */
async function* tar(items: readonly Item[]): AsyncGenerator<Buffer> {
  const inputs: TarInput[] = items.map((i) => {
    const type = typeOf(i);
    const data = bytes(i.content);
    return {
      header: {
        path: type === 'directory' ? `${i.path}/` : i.path,
        type,
        size: type === 'file' ? data.length : 0,
        mode: i.mode ?? (type === 'directory' ? 0o700 : 0o600),
        mtime: MTIME,
        ...(type === 'symlink' ? { linkname: i.link } : {}),
      },
      body: type === 'file' && data.length > 0 ? [data] : undefined,
    };
  });
  yield* packTar(inputs);
}

let root: string;
let dest: string;
let outside: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'walts-extract-'));
  dest = join(root, 'dest');
  outside = join(root, 'outside');
  await mkdir(dest, { mode: 0o700 });
  await mkdir(outside);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Everything below `dir`, as sorted relative paths (directories end with '/'). */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for (const name of (await readdir(d)).sort()) {
      const st = await lstat(join(d, name));
      const p = rel ? `${rel}/${name}` : name;
      out.push(st.isDirectory() ? `${p}/` : p);
      if (st.isDirectory()) await walk(join(d, name), p);
    }
  };
  await walk(dir, '');
  return out;
}

/** Nothing but `dest` and the (empty) `outside` directory exists in the test's root. */
async function expectNothingOutside(): Promise<void> {
  expect((await readdir(root)).sort()).toEqual(['dest', 'outside']);
  expect(await readdir(outside)).toEqual([]);
}

const mode = async (p: string) => (await lstat(p)).mode & 0o7777;

const NORMAL: Item[] = [
  { path: 'PG_VERSION', content: '15\n' },
  { path: 'base', type: 'directory' },
  { path: 'base/1', type: 'directory' },
  { path: 'base/1/1234', content: Buffer.alloc(20_000, 7) },
  { path: 'base/1/empty', content: '' },
  { path: 'global', type: 'directory' },
  { path: 'global/1262', content: 'pg_database' },
  { path: 'pg_wal', type: 'directory' },
  { path: 'pg_wal/archive_status', type: 'directory' },
  { path: 'global/pg_control', content: 'control file' },
];

describe('Extractor', () => {
  it('restores directories and files with PostgreSQL modes; pg_control only in finish()', async () => {
    const x = new Extractor(dest, manifest(NORMAL), new Map());
    await x.extractVolume(1, tar(NORMAL));
    // Before finish(): no pg_control (the restore cannot be started).
    await expect(stat(join(dest, 'global/pg_control'))).rejects.toMatchObject({ code: 'ENOENT' });
    await x.finish();

    expect(await tree(dest)).toEqual(['PG_VERSION', 'base/', 'base/1/', 'base/1/1234', 'base/1/empty', 'global/', 'global/1262', 'global/pg_control', 'pg_wal/', 'pg_wal/archive_status/']);
    expect(await readFile(join(dest, 'PG_VERSION'), 'utf8')).toBe('15\n');
    expect((await readFile(join(dest, 'base/1/1234'))).equals(Buffer.alloc(20_000, 7))).toBe(true);
    expect(await readFile(join(dest, 'base/1/empty'), 'utf8')).toBe('');
    expect(await readFile(join(dest, 'global/pg_control'), 'utf8')).toBe('control file');
    for (const d of ['base', 'base/1', 'global', 'pg_wal', 'pg_wal/archive_status']) expect(await mode(join(dest, d))).toBe(0o700);
    for (const f of ['PG_VERSION', 'base/1/1234', 'global/1262', 'global/pg_control']) expect(await mode(join(dest, f))).toBe(0o600);
    await expectNothingOutside();
  });

  it('writes a file that arrives in many chunks byte for byte (several positional writes in flight)', async () => {
    const big = randomBytes(3 * 1024 * 1024 + 12_345);
    const items: Item[] = [{ path: 'base', type: 'directory' }, { path: 'base/big', content: big }, { path: 'global', type: 'directory' }, { path: 'global/pg_control', content: 'control' }];
    // Re-chunk the archive into odd-sized pieces, so that file bodies arrive as many small views.
    async function* rechunked(): AsyncGenerator<Buffer> {
      const all: Buffer[] = [];
      for await (const c of tar(items)) all.push(c);
      const whole = Buffer.concat(all);
      for (let i = 0; i < whole.length; i += 7_001) yield Buffer.from(whole.subarray(i, i + 7_001));
    }
    const x = new Extractor(dest, manifest(items), new Map());
    await x.extractVolume(1, rechunked());
    await x.finish();
    expect((await readFile(join(dest, 'base/big'))).equals(big)).toBe(true);
  });

  it('maps stored modes to what PostgreSQL accepts: 0750/0640 with group access, else 0700/0600', async () => {
    const items: Item[] = [
      { path: 'grp', type: 'directory', mode: 0o750 },
      { path: 'grp/f', mode: 0o640 },
      { path: 'wide', type: 'directory', mode: 0o777 },
      { path: 'wide/f', mode: 0o666 },
      { path: 'exec', mode: 0o755 },
      { path: 'private', type: 'directory', mode: 0o711 },
      { path: 'private/f', mode: 0o604 },
    ];
    const x = new Extractor(dest, manifest(items), new Map());
    await x.extractVolume(1, tar(items));
    expect(await mode(join(dest, 'grp'))).toBe(0o750);
    expect(await mode(join(dest, 'grp/f'))).toBe(0o640);
    expect(await mode(join(dest, 'wide'))).toBe(0o750);
    expect(await mode(join(dest, 'wide/f'))).toBe(0o640);
    expect(await mode(join(dest, 'exec'))).toBe(0o640);
    expect(await mode(join(dest, 'private'))).toBe(0o700);
    expect(await mode(join(dest, 'private/f'))).toBe(0o600);
  });

  it('restores several volumes; each entry must be in its own volume', async () => {
    const v1: Item[] = [{ path: 'base', type: 'directory' }, { path: 'base/a', content: 'a' }, { path: 'global', type: 'directory' }];
    const v2: Item[] = [{ path: 'base/b', content: 'b' }, { path: 'global/pg_control', content: 'control' }];
    const x = new Extractor(dest, [...manifest(v1, 1), ...manifest(v2, 2)], new Map());
    // Volumes are extracted concurrently by backup-fetch (--parallel).
    await Promise.all([x.extractVolume(2, tar(v2)), x.extractVolume(1, tar(v1))]);
    await x.finish();
    expect(await tree(dest)).toEqual(['base/', 'base/a', 'base/b', 'global/', 'global/pg_control']);

    const again = join(root, 'dest2');
    await mkdir(again);
    const y = new Extractor(again, [...manifest(v1, 1), ...manifest(v2, 2)], new Map());
    await expect(y.extractVolume(1, tar([...v1, ...v2]))).rejects.toThrow(IntegrityError);
    await rm(again, { recursive: true });
  });

  describe('refuses unsafe or damaged archives', () => {
    const unsafeNames = ['../evil', '/etc/evil', 'a/../../evil', 'a/../evil', '..', '.', './', 'a\\..\\..\\evil'];
    it.each(unsafeNames)('entry name %j', async (name) => {
      const items: Item[] = [{ path: 'a', type: 'directory' }, { path: name, content: 'evil' }];
      // Even with the name in the manifest: the name itself is refused.
      const x = new Extractor(dest, manifest(items), new Map());
      const err = await x.extractVolume(1, tar(items)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as Error).message).toContain('unsafe entry name');
      await expectNothingOutside();
      await expect(stat('/etc/evil')).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await tree(dest)).toEqual(['a/']);
    });

    it('an absolute name pointing outside the target', async () => {
      const items: Item[] = [{ path: join(outside, 'evil'), content: 'evil' }];
      const x = new Extractor(dest, manifest(items), new Map());
      await expect(x.extractVolume(1, tar(items))).rejects.toThrow(IntegrityError);
      await expectNothingOutside();
      expect(await tree(dest)).toEqual([]);
    });

    it('an entry not in the manifest, or of another type than the manifest says', async () => {
      const listed: Item[] = [{ path: 'PG_VERSION', content: '15\n' }];
      const x = new Extractor(dest, manifest(listed), new Map());
      await expect(x.extractVolume(1, tar([...listed, { path: 'extra', content: 'x' }]))).rejects.toThrow(/extra is not in the backup manifest/);
      expect(await tree(dest)).toEqual(['PG_VERSION']);

      const dest2 = join(root, 'dest2');
      const y = new Extractor(dest2, manifest([{ path: 'thing', type: 'directory' }]), new Map());
      await expect(y.extractVolume(1, tar([{ path: 'thing', type: 'symlink', link: '/' }]))).rejects.toThrow(/thing is a symbolic link/);
      await expect(y.finish()).rejects.toThrow(IntegrityError); // 'thing' never arrived as a directory
      await expect(lstat(join(dest2, 'thing'))).rejects.toMatchObject({ code: 'ENOENT' });
      await rm(dest2, { recursive: true, force: true });
    });

    it('a file whose content does not match the manifest SHA-256, naming the file', async () => {
      const items: Item[] = [{ path: 'global', type: 'directory' }, { path: 'global/1262', content: 'original' }, { path: 'global/pg_control', content: 'control' }];
      const listed = manifest(items);
      const tampered = items.map((i) => (i.path === 'global/1262' ? { ...i, content: 'tampered' } : i)); // same size
      const x = new Extractor(dest, listed, new Map());
      const err = await x.extractVolume(1, tar(tampered)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as Error).message).toMatch(/^global\/1262: .*does not match the backup manifest/);
      await expect(stat(join(dest, 'global/pg_control'))).rejects.toMatchObject({ code: 'ENOENT' });
    });

    it('a file whose size differs from the manifest', async () => {
      const items: Item[] = [{ path: 'f', content: 'short' }];
      const x = new Extractor(dest, manifest([{ path: 'f', content: 'longer content' }]), new Map());
      await expect(x.extractVolume(1, tar(items))).rejects.toThrow(/^f: .*SHA-256 or size/);
    });

    it.each([
      ['pg_wal', '/elsewhere'],
      ['x', '/etc/passwd'],
      ['rel', '../outside'],
      ['pg_tblspc/16400', '/etc'],
    ])('a symlink entry %s -> %s, even listed in the manifest: refused, nothing created', async (path, link) => {
      const items: Item[] = [{ path: 'base', type: 'directory' }, { path, type: 'symlink', link }, { path: `${path}/x`, content: 'through the link' }];
      const x = new Extractor(dest, manifest(items), new Map());
      await expect(x.extractVolume(1, tar(items))).rejects.toThrow(new RegExp(`${path.replace('/', '\\/')} is a symbolic link .*walts restores no links from a backup`));
      await expectNothingOutside();
      expect(await tree(dest)).toEqual(['base/']);
    });

    it('checkManifest refuses links, unclean paths, duplicates, foreign tablespace entries and bad volumes before anything is written', () => {
      const ok = manifest([{ path: 'base', type: 'directory' }, { path: 'pg_tblspc', type: 'directory' }, { path: 'pg_tblspc/16400', type: 'directory' }, { path: 'pg_tblspc/16400/PG_15_1/f', content: 'x' }]);
      expect(() => checkManifest(ok, 1, new Set([16400]), 15)).not.toThrow();
      const bad: [ManifestEntry[], RegExp][] = [
        [manifest([{ path: 'x', type: 'symlink', link: '/etc/passwd' }]), /is a symbolic link/],
        [manifest([{ path: '../x', content: 'x' }]), /not a clean relative path/],
        [manifest([{ path: '/etc/x', content: 'x' }]), /not a clean relative path/],
        [manifest([{ path: 'a//b', content: 'x' }]), /not a clean relative path/],
        [manifest([{ path: 'f', content: 'x' }, { path: 'f', content: 'x' }]), /listed twice/],
        [manifest([{ path: 'pg_tblspc/99/PG_15_1/f', content: 'x' }]), /belongs to no tablespace/],
        [manifest([{ path: 'pg_tblspc/16400/authorized_keys', content: 'x' }]), /holds only its PG_15_\* directory/],
        [manifest([{ path: 'pg_tblspc/16400', content: 'x' }]), /holds only its PG_15_\* directory/],
        [[{ ...manifest([{ path: 'f', content: 'x' }])[0]!, type: 'hardlink' as 'file' }], /has type "hardlink"/],
        [manifest([{ path: 'f', content: 'x' }], 2), /names volume 2; the backup has 1/],
      ];
      for (const [entries, message] of bad) expect(() => checkManifest(entries, 1, new Set([16400]), 15)).toThrow(message);
    });

    it('a file below a symlink that already exists in the target is refused (no write through it)', async () => {
      // Not something the extractor ever creates before finish(), but the guard must hold.
      const { symlink } = await import('node:fs/promises');
      await symlink(outside, join(dest, 'planted'));
      const items: Item[] = [{ path: 'planted/x', content: 'evil' }];
      const x = new Extractor(dest, manifest(items), new Map());
      await expect(x.extractVolume(1, tar(items))).rejects.toThrow(/symlink; refusing to write through it/);
      await expectNothingOutside();

      // A directory entry at that path: refused before chmod/chown, which would follow the link.
      await chmod(outside, 0o755);
      const dirs: Item[] = [{ path: 'planted', type: 'directory', mode: 0o700 }];
      const y = new Extractor(dest, manifest(dirs), new Map());
      await expect(y.extractVolume(1, tar(dirs))).rejects.toThrow(IntegrityError);
      expect(await mode(outside)).toBe(0o755);
      await expectNothingOutside();
    });

    it('a manifest entry missing from the archive: finish() names it and leaves pg_control out', async () => {
      const items: Item[] = [{ path: 'global', type: 'directory' }, { path: 'global/pg_control', content: 'control' }, { path: 'base', type: 'directory' }];
      const x = new Extractor(dest, manifest([...items, { path: 'base/16384', content: 'lost' }]), new Map());
      await x.extractVolume(1, tar(items));
      const err = await x.finish().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as Error).message).toContain('base/16384');
      await expect(stat(join(dest, 'global/pg_control'))).rejects.toMatchObject({ code: 'ENOENT' });
    });

    it('a volume that is not in the manifest at all', async () => {
      const items: Item[] = [{ path: 'PG_VERSION', content: '15\n' }];
      const x = new Extractor(dest, manifest(items, 1), new Map());
      await expect(x.extractVolume(2, tar(items))).rejects.toThrow(/volume 2: PG_VERSION is not in the backup manifest/);
    });
  });

  it('restores a tablespace into its mapped directory and links pg_tblspc/<oid> to it in finish()', async () => {
    const spc = join(root, 'outside', 'spc16400'); // a separate place, as --tablespace would give
    const items: Item[] = [
      { path: 'pg_tblspc', type: 'directory' },
      { path: 'pg_tblspc/16400', type: 'directory' },
      { path: 'pg_tblspc/16400/PG_15_202209061', type: 'directory' },
      { path: 'pg_tblspc/16400/PG_15_202209061/16384', type: 'directory' },
      { path: 'pg_tblspc/16400/PG_15_202209061/16384/16401', content: 'tablespace data' },
      { path: 'global', type: 'directory' },
      { path: 'global/pg_control', content: 'control' },
    ];
    const x = new Extractor(dest, manifest(items), new Map([[16400, spc]]));
    await x.extractVolume(1, tar(items));
    expect(await readFile(join(spc, 'PG_15_202209061/16384/16401'), 'utf8')).toBe('tablespace data');
    expect(await mode(spc)).toBe(0o700);
    await expect(lstat(join(dest, 'pg_tblspc/16400'))).rejects.toMatchObject({ code: 'ENOENT' });
    await x.finish();
    expect(await readlink(join(dest, 'pg_tblspc/16400'))).toBe(spc);
    expect(await readFile(join(dest, 'pg_tblspc/16400/PG_15_202209061/16384/16401'), 'utf8')).toBe('tablespace data');
    expect(await tree(dest)).toEqual(['global/', 'global/pg_control', 'pg_tblspc/', 'pg_tblspc/16400']);
  });
});
