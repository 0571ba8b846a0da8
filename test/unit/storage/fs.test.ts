import { mkdtemp, readdir, rm, writeFile, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { NotFoundError, ObjectExistsError } from '../../../src/errors';
import { FsStorage } from '../../../src/storage/fs';
import { readAll } from '../../../src/util/streams';
import { describeStorage, listKeys } from '../../contract/storage';

describeStorage('fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'walts-fs-'));
  return { storage: new FsStorage(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

/** Per test: a hanging write should fail its test quickly. */
const T = 30_000;

describe('FsStorage specifics', () => {
  let dir: string;
  let s: FsStorage;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'walts-fs-'));
    s = new FsStorage(dir);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function allFiles(root: string): Promise<string[]> {
    const entries = await readdir(root, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(root.length + 1)).sort();
  }

  it('leaves no temp files behind, also after a refused create', async () => {
    await s.put('a/b', Buffer.from('x'), { metadata: { m: '1' } });
    await s.put('a/c', Readable.from([Buffer.from('y')]));
    await expect(s.put('a/b', Buffer.from('z'), { ifAbsent: true, metadata: { m: '2' } })).rejects.toBeInstanceOf(ObjectExistsError);
    expect(await allFiles(dir)).toEqual(['a/b', 'a/b.meta.json', 'a/c']);
  }, T);

  it('treats a crash-left metadata file without object as absent, and the next put replaces it', async () => {
    await mkdir(join(dir, 'wal'), { recursive: true });
    await writeFile(join(dir, 'wal', 'seg.meta.json'), JSON.stringify({ sha256: 'stale' }));
    expect(await s.head('wal/seg')).toBeUndefined();
    await expect(s.get('wal/seg')).rejects.toBeInstanceOf(NotFoundError);
    expect(await listKeys(s, '')).toEqual([]);

    await s.put('wal/seg', Buffer.from('new'), { ifAbsent: true, metadata: { sha256: 'fresh' } });
    expect(await s.head('wal/seg')).toMatchObject({ size: 3, metadata: { sha256: 'fresh' } });

    // And without metadata, the stale side file goes instead of being attributed to the new object.
    await writeFile(join(dir, 'wal', 'other.meta.json'), JSON.stringify({ sha256: 'stale' }));
    await s.put('wal/other', Buffer.from('o'), { ifAbsent: true });
    expect((await s.head('wal/other'))?.metadata).toEqual({});
  }, T);

  it('reserves the metadata file name', async () => {
    await expect(s.put('x.meta.json', Buffer.from('x'))).rejects.toBeInstanceOf(RangeError);
    await s.put('x', Buffer.from('x'), { metadata: { a: 'b' } });
    expect(await listKeys(s, '')).toEqual(['x']);
    expect(JSON.parse(await readFile(join(dir, 'x.meta.json'), 'utf8'))).toEqual({ a: 'b' });
    expect((await readAll((await s.get('x')).body)).toString()).toBe('x');
  }, T);

  // An operator running walts as root must not lock the archiver (the store owner) out of the store.
  (process.getuid?.() === 0 ? it : it.skip)('run as root, gives what it creates to the owner of the store directory', async () => {
    const { chown, stat } = await import('node:fs/promises');
    await chown(dir, 65534, 65534);
    const owned = new FsStorage(dir);
    await owned.put('walts_v1/wal/0000000100000000/x', Buffer.from('x'), { metadata: { a: 'b' } });
    for (const p of ['walts_v1', 'walts_v1/wal', 'walts_v1/wal/0000000100000000', 'walts_v1/wal/0000000100000000/x', 'walts_v1/wal/0000000100000000/x.meta.json']) {
      expect({ p, uid: (await stat(join(dir, p))).uid }).toEqual({ p, uid: 65534 });
    }
  }, T);
});

describe('FsStorage: failures retrying cannot change', () => {
  afterEach(() => jest.restoreAllMocks());
  const fail = (code: string) => Object.assign(new Error(`${code}: injected, open`), { code, syscall: 'open' });

  it.each([
    ['EACCES', 'ConfigError', /permission denied \(EACCES\); check WALTS_STORE/, 2],
    ['EROFS', 'ConfigError', /read-only file system \(EROFS\)/, 2],
    ['ENOSPC', 'UnavailableError', /the store's disk is full \(ENOSPC\)/, 4],
  ])('%s is a %s, never transient', async (code, cls, message, exit) => {
    const { promises } = await import('node:fs');
    const { exitCodeFor } = await import('../../../src/exitCodes');
    const { isTransient } = await import('../../../src/errors');
    const dir = await mkdtemp(join(tmpdir(), 'walts-fs-'));
    try {
      const s = new FsStorage(dir);
      await s.put('k', Buffer.from('x'));
      jest.spyOn(promises, 'open').mockRejectedValueOnce(fail(code));
      const err = await s.get('k').catch((e: unknown) => e);
      expect((err as Error).name).toBe(cls);
      expect((err as Error).message).toMatch(message);
      expect(isTransient(err)).toBe(false);
      expect(exitCodeFor('wal-push', err)).toBe(exit);
      expect(exitCodeFor('wal-fetch', err)).toBe(255);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
