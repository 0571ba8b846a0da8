/**
 * The archive contract (DESIGN.md §6) exercised in-process against the memory store, where every
 * stored byte can be inspected: duplicates, conflicts, foreign clusters, incomplete objects,
 * name validation, and fetch verification.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLUSTER_KEY } from '../../../src/archive/layout';
import { META } from '../../../src/archive/objectMeta';
import { IntegrityError, NotFoundError, UsageError } from '../../../src/errors';
import { exitCodeFor } from '../../../src/exitCodes';
import { walFetch } from '../../../src/ops/walFetch';
import { walPush } from '../../../src/ops/walPush';
import { MemoryStorage } from '../../../src/storage/memory';
import type { Storage } from '../../../src/storage/storage';
import { countingStore, testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const SEG1 = '000000010000000000000001';
const SEG2 = '000000010000000000000002';
const KEY1 = `walts_v1/wal/0000000100000000/${SEG1}.lz4`;

function pgdata(): string {
  const dir = mkdtempSync(join(tmpdir(), 'walts-ops-'));
  mkdirSync(join(dir, 'pg_wal'));
  return dir;
}

function writeWal(dir: string, name: string, data: Buffer | string): string {
  writeFileSync(join(dir, 'pg_wal', name), data);
  return `pg_wal/${name}`;
}

const fetchArgs = (name: string, dest: string, cwd: string) => ({ name, dest, cwd });

describe('wal-push / wal-fetch contract (memory store)', () => {
  it('archives a segment with its digest and size, records the cluster, and fetches it back', async () => {
    const store = countingStore();
    const deps = testDeps(store);
    const dir = pgdata();
    const seg = fakeSegment(SEG1);
    const r = await walPush(deps, { path: writeWal(dir, SEG1, seg), cwd: dir });
    expect(r).toMatchObject({ outcome: 'uploaded', key: KEY1, plainBytes: seg.length });
    const stored = store.objects.get(KEY1);
    expect(stored?.metadata[META.size]).toBe(String(seg.length));
    expect(stored?.metadata[META.storedSize]).toBe(String(stored?.data.length));
    expect(stored?.metadata[META.systemId]).toBe('7301234567890123456');
    expect(JSON.parse(store.objects.get(CLUSTER_KEY)?.data.toString() ?? '{}')).toMatchObject({ system_identifier: '7301234567890123456', wal_segment_size: seg.length, pg_major: 15 });

    const restore = pgdata();
    const f = await walFetch(deps, fetchArgs(SEG1, 'pg_wal/RECOVERYXLOG', restore));
    expect(f.digestVerified).toBe(true);
    expect(readFileSync(join(restore, 'pg_wal/RECOVERYXLOG')).equals(seg)).toBe(true);
    expect(readdirSync(join(restore, 'pg_wal'))).toEqual(['RECOVERYXLOG']);
  });

  it('re-push of identical content succeeds without uploading', async () => {
    const store = countingStore();
    const deps = testDeps(store);
    const dir = pgdata();
    const p = writeWal(dir, SEG1, fakeSegment(SEG1));
    await walPush(deps, { path: p, cwd: dir });
    const putsBefore = store.puts.length;
    expect((await walPush(deps, { path: p, cwd: dir })).outcome).toBe('already-archived');
    expect(store.puts.length).toBe(putsBefore);
  });

  it('identical content is recognised under another codec chain (settings changed)', async () => {
    const store = countingStore();
    const dir = pgdata();
    const p = writeWal(dir, SEG1, fakeSegment(SEG1));
    await walPush(testDeps(store, { compression: 'none' }), { path: p, cwd: dir });
    const puts = store.puts.length;
    expect((await walPush(testDeps(store, { compression: 'lz4' }), { path: p, cwd: dir })).outcome).toBe('already-archived');
    expect(store.puts.length).toBe(puts);
    // and the lz4-configured fetcher finds the uncompressed object
    const restore = pgdata();
    await walFetch(testDeps(store), fetchArgs(SEG1, 'pg_wal/X', restore));
    expect(readFileSync(join(restore, 'pg_wal/X')).equals(readFileSync(join(dir, p)))).toBe(true);
  });

  it('different content under an archived name fails with exit 3 and overwrites nothing', async () => {
    const store = countingStore();
    const deps = testDeps(store);
    const dir = pgdata();
    await walPush(deps, { path: writeWal(dir, SEG1, fakeSegment(SEG1)), cwd: dir });
    const before = Buffer.from(store.objects.get(KEY1)?.data ?? []);
    const other = pgdata();
    const err = await walPush(deps, { path: writeWal(other, SEG1, fakeSegment(SEG1)), cwd: other }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/already archived with different content/);
    expect(exitCodeFor('wal-push', err)).toBe(3);
    expect(store.objects.get(KEY1)?.data.equals(before)).toBe(true);
  });

  it('never overwrites a .history file with different content', async () => {
    const store = countingStore();
    const deps = testDeps(store);
    const dir = pgdata();
    await walPush(deps, { path: writeWal(dir, '00000002.history', '1\t0/3000060\tno recovery target specified\n'), cwd: dir });
    const other = pgdata();
    const p = writeWal(other, '00000002.history', '1\t0/5000000\tno recovery target specified\n');
    await expect(walPush(deps, { path: p, cwd: other })).rejects.toBeInstanceOf(IntegrityError);
    expect(store.objects.get('walts_v1/wal/history/00000002.history.lz4')).toBeDefined();
  });

  it('refuses a segment of another cluster with exit 3', async () => {
    const store = countingStore();
    const deps = testDeps(store);
    const dir = pgdata();
    await walPush(deps, { path: writeWal(dir, SEG1, fakeSegment(SEG1)), cwd: dir });
    const p = writeWal(dir, SEG2, fakeSegment(SEG2, { sysid: 42n }));
    const err = await walPush(deps, { path: p, cwd: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toMatch(/belongs to database system 42/);
    expect(exitCodeFor('wal-push', err)).toBe(3);
    expect([...store.objects.keys()].some((k) => k.includes(SEG2))).toBe(false);
  });

  test.each([
    ['empty', Buffer.alloc(0)],
    ['truncated', fakeSegment(SEG1).subarray(0, 512 * 1024)],
    ['garbage of segment size', Buffer.alloc(1024 * 1024, 7)],
    ['segment of another position', fakeSegment(SEG2)],
  ])('refuses a %s file and uploads nothing', async (_what, data) => {
    const store = countingStore();
    const dir = pgdata();
    const err = await walPush(testDeps(store), { path: writeWal(dir, SEG1, data), cwd: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(store.puts).toEqual([]);
  });

  test.each(['../x', 'foo', '00000001000000000000000a', '000000010000000000000001.lz4'])('wal-push refuses the name %j with exit 2', async (name) => {
    const store = countingStore();
    const dir = pgdata();
    const err = await walPush(testDeps(store), { path: `pg_wal/${name}`, cwd: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(exitCodeFor('wal-push', err)).toBe(2);
    expect(store.puts).toEqual([]);
  });

  test.each(['../../etc/passwd', '../x', 'foo', '00000001000000000000000a'])('wal-fetch refuses the name %j with exit 2 and writes nothing', async (name) => {
    const restore = pgdata();
    const err = await walFetch(testDeps(new MemoryStorage()), fetchArgs(name, 'pg_wal/RECOVERYXLOG', restore)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(exitCodeFor('wal-fetch', err)).toBe(2);
    expect(readdirSync(join(restore, 'pg_wal'))).toEqual([]);
  });

  it('a missing file is "not found" (exit 1) and leaves nothing behind', async () => {
    const restore = pgdata();
    const err = await walFetch(testDeps(new MemoryStorage()), fetchArgs(SEG2, 'pg_wal/RECOVERYXLOG', restore)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(exitCodeFor('wal-fetch', err)).toBe(1);
    expect(readdirSync(join(restore, 'pg_wal'))).toEqual([]);
  });

  describe('incomplete objects (size differs from the size recorded with it)', () => {
    async function archivedThenTruncated(): Promise<{ store: MemoryStorage; dir: string; path: string }> {
      const store = new MemoryStorage();
      const dir = pgdata();
      const path = writeWal(dir, SEG1, fakeSegment(SEG1));
      await walPush(testDeps(store), { path, cwd: dir });
      const e = store.objects.get(KEY1);
      if (e) e.data = e.data.subarray(0, Math.floor(e.data.length / 2));
      return { store, dir, path };
    }

    it('are never served: fetch fails hard (not "not found") and writes nothing', async () => {
      const { store } = await archivedThenTruncated();
      const restore = pgdata();
      const err = await walFetch(testDeps(store), fetchArgs(SEG1, 'pg_wal/RECOVERYXLOG', restore)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect(exitCodeFor('wal-fetch', err)).toBe(255);
      expect(readdirSync(join(restore, 'pg_wal'))).toEqual([]);
    });

    it('are never taken as identical, and the next push replaces them', async () => {
      const { store, dir, path } = await archivedThenTruncated();
      const r = await walPush(testDeps(store), { path, cwd: dir });
      expect(r.outcome).toBe('uploaded');
      expect(r.replaced).toEqual([KEY1]);
      const restore = pgdata();
      await walFetch(testDeps(store), fetchArgs(SEG1, 'pg_wal/RECOVERYXLOG', restore));
      expect(readFileSync(join(restore, 'pg_wal/RECOVERYXLOG')).equals(readFileSync(join(dir, path)))).toBe(true);
    });
  });

  describe('objects without walts metadata are judged by their decoded content, never overwritten blindly', () => {
    async function stripped(content: Buffer): Promise<MemoryStorage> {
      const store = new MemoryStorage();
      const dir = pgdata();
      await walPush(testDeps(store), { path: writeWal(dir, SEG1, content), cwd: dir });
      const e = store.objects.get(KEY1);
      if (e) e.metadata = {}; // as if written by hand, or its metadata lost
      return store;
    }

    it('different content: refused with exit 3 and the object is kept', async () => {
      const store = await stripped(fakeSegment(SEG1, { seed: 'first' }));
      const before = Buffer.from(store.objects.get(KEY1)?.data ?? Buffer.alloc(0));
      const dir = pgdata();
      const err = await walPush(testDeps(store), { path: writeWal(dir, SEG1, fakeSegment(SEG1, { seed: 'second' })), cwd: dir }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect(exitCodeFor('wal-push', err)).toBe(3);
      expect(store.objects.get(KEY1)?.data.equals(before)).toBe(true);
    });

    it('identical content: archived already, nothing uploaded', async () => {
      const seg = fakeSegment(SEG1, { seed: 'same' });
      const store = await stripped(seg);
      const dir = pgdata();
      const r = await walPush(testDeps(store), { path: writeWal(dir, SEG1, seg), cwd: dir });
      expect(r.outcome).toBe('already-archived');
    });
  });

  it('a corrupted object fails hard and leaves no file at the destination', async () => {
    const store = new MemoryStorage();
    const dir = pgdata();
    await walPush(testDeps(store, { compression: 'none' }), { path: writeWal(dir, SEG1, fakeSegment(SEG1)), cwd: dir });
    const e = store.objects.get(`walts_v1/wal/0000000100000000/${SEG1}`);
    if (e) e.data.writeUInt8(e.data.readUInt8(100) ^ 0xff, 100);
    const restore = pgdata();
    const err = await walFetch(testDeps(store), fetchArgs(SEG1, 'pg_wal/RECOVERYXLOG', restore)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(existsSync(join(restore, 'pg_wal/RECOVERYXLOG'))).toBe(false);
    expect(readdirSync(join(restore, 'pg_wal'))).toEqual([]);
  });

  it('serves .partial only under its own name', async () => {
    const store: Storage = new MemoryStorage();
    const dir = pgdata();
    await walPush(testDeps(store), { path: writeWal(dir, `${SEG1}.partial`, fakeSegment(SEG1)), cwd: dir });
    const restore = pgdata();
    await expect(walFetch(testDeps(store), fetchArgs(SEG1, 'pg_wal/RECOVERYXLOG', restore))).rejects.toBeInstanceOf(NotFoundError);
    await walFetch(testDeps(store), fetchArgs(`${SEG1}.partial`, 'pg_wal/P', restore));
    expect(existsSync(join(restore, 'pg_wal/P'))).toBe(true);
  });

  it('handles non-default segment sizes', async () => {
    const store = new MemoryStorage();
    const dir = pgdata();
    const name = '000000010000000000000003';
    const seg = fakeSegment(name, { segSize: 2 * 1024 * 1024 });
    await walPush(testDeps(store), { path: writeWal(dir, name, seg), cwd: dir });
    const restore = pgdata();
    await walFetch(testDeps(store), fetchArgs(name, 'pg_wal/R', restore));
    expect(readFileSync(join(restore, 'pg_wal/R')).equals(seg)).toBe(true);
  });
});
