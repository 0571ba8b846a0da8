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
    // The side file is plain JSON: the caller's keys plus the binding to its object.
    expect(JSON.parse(await readFile(join(dir, 'x.meta.json'), 'utf8'))).toEqual({
      a: 'b',
      'fs-object-size': '1',
      'fs-object-sha256': '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881',
      'fs-object-ino': expect.stringMatching(/^\d+$/),
    });
    expect((await s.head('x'))?.metadata).toEqual({ a: 'b' });
    expect((await readAll((await s.get('x')).body)).toString()).toBe('x');
  }, T);

  it('delete removes the folders it leaves empty, up to but never the store root', async () => {
    await s.put('walts_v1/wal/0000000100000000/seg1', Buffer.from('1'), { metadata: { a: '1' } });
    await s.put('walts_v1/wal/0000000100000000/seg2', Buffer.from('2'));
    await s.put('walts_v1/keep', Buffer.from('k'));
    await s.delete(['walts_v1/wal/0000000100000000/seg1']);
    expect(await readdir(join(dir, 'walts_v1/wal/0000000100000000'))).toEqual(['seg2']);
    await s.delete(['walts_v1/wal/0000000100000000/seg2']);
    expect(await readdir(join(dir, 'walts_v1'))).toEqual(['keep']);
    await s.delete(['walts_v1/keep', 'walts_v1/missing/x']);
    expect(await readdir(dir)).toEqual([]);
    expect((await import('node:fs')).existsSync(dir)).toBe(true);
  }, T);

  it('a put whose folder is pruned by a concurrent delete recreates it and goes on', async () => {
    await s.put('d/e/old', Buffer.from('o'));
    let reached!: () => void;
    let release!: () => void;
    const atMkdir = new Promise<void>((r) => (reached = r));
    const gate = new Promise<void>((r) => (release = r));
    let paused = false;
    const writer = new FsStorage(dir, {
      afterMkdir: async () => {
        if (paused) return; // only the first attempt is held
        paused = true;
        reached();
        await gate;
      },
    });
    const put = writer.put('d/e/new', Buffer.from('n'), { ifAbsent: true, metadata: { v: '1' } });
    await atMkdir;
    await s.delete(['d/e/old']); // the folder is empty now (the writer has not created its temp file yet)
    expect((await import('node:fs')).existsSync(join(dir, 'd'))).toBe(false);
    release();
    await put;
    expect(await listKeys(s, '')).toEqual(['d/e/new']);
    expect((await s.head('d/e/new'))?.metadata).toEqual({ v: '1' });
  }, T);

  it('ignores a side file that does not belong to the object (left by another writer)', async () => {
    await s.put('w/seg', Buffer.from('mine'), { ifAbsent: true, metadata: { who: 'me' } });
    const foreign = join(dir, 'w', 'other');
    await s.put('w/other', Buffer.from('them'), { metadata: { who: 'them' } }); // same size, another file
    const { rename } = await import('node:fs/promises');
    await rename(foreign + '.meta.json', join(dir, 'w', 'seg.meta.json'));
    expect((await s.head('w/seg'))?.metadata).toEqual({});
    expect((await s.get('w/seg')).metadata).toEqual({});
  }, T);

  it('after the store is copied (new inodes), side files still match their objects by content', async () => {
    await s.put('c/seg', Buffer.from('content'), { metadata: { v: '1' } });
    const copy = await mkdtemp(join(tmpdir(), 'walts-fs-copy-'));
    try {
      const { cp } = await import('node:fs/promises');
      await cp(dir, copy, { recursive: true });
      expect((await new FsStorage(copy).head('c/seg'))?.metadata).toEqual({ v: '1' });
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
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

describe('FsStorage never creates its root, and a missing root is never "not found"', () => {
  let parent: string;
  let root: string;
  let s: FsStorage;
  beforeEach(async () => {
    parent = await mkdtemp(join(tmpdir(), 'walts-fs-noroot-'));
    root = join(parent, 'mnt');
    s = new FsStorage(root);
  });
  afterEach(() => rm(parent, { recursive: true, force: true }));



  it('get, head and list of a missing root fail (not NotFoundError, not empty)', async () => {
    const e = await s.get('walts_v1/archive.json').catch((err: unknown) => err);
    expect(e).not.toBeInstanceOf(NotFoundError);
    expect(e).toMatchObject({ name: 'UnavailableError', transient: false });
    expect((e as Error).message).toContain('does not exist');
    await expect(s.head('walts_v1/archive.json')).rejects.toMatchObject({ name: 'UnavailableError' });
    await expect(listKeys(s, 'walts_v1/')).rejects.toMatchObject({ name: 'UnavailableError' });
    await expect(listKeys(s, '')).rejects.toMatchObject({ name: 'UnavailableError' });

  });

  it('put into a missing root fails and creates nothing (the root included)', async () => {
    await expect(s.put('walts_v1/wal/x', Buffer.from('x'))).rejects.toMatchObject({ name: 'UnavailableError', transient: false });
    expect(await readdir(parent)).toEqual([]);
  });

  it('a root that is a file is refused the same way', async () => {
    await writeFile(root, 'not a directory');
    await expect(s.get('a/b')).rejects.toMatchObject({ name: 'UnavailableError', transient: false });
  });

  it('creates folders below an existing root, and answers "not found" inside it', async () => {
    await mkdir(root);
    await s.put('walts_v1/wal/0000000100000000/x', Buffer.from('x'));
    expect(await readFile(join(root, 'walts_v1/wal/0000000100000000/x'), 'utf8')).toBe('x');
    await expect(s.get('walts_v1/nope')).rejects.toBeInstanceOf(NotFoundError);
    expect(await s.head('walts_v1/nope')).toBeUndefined();
    expect(await listKeys(s, 'other/')).toEqual([]);
  });
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
