/**
 * The prefetcher and the spool rules in-process (memory store): the window, what it keeps and
 * removes, the end of the archive, the lock, and wal-fetch's Node path taking (or refusing) a spool
 * file. The sh path and real processes are in test/integration/prefetch.test.ts.
 */
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotFoundError } from '../../../src/errors';
import { fetchSpoolDir, formatRecord, readLock, takeLock, type SpoolIdentity } from '../../../src/ops/fetchSpool';
import { segmentProblem, walFetch } from '../../../src/ops/walFetch';
import { prefetchWindow, walPrefetch } from '../../../src/ops/walPrefetch';
import { walPush } from '../../../src/ops/walPush';
import { parseWalFileName } from '../../../src/postgres/walName';
import { MemoryStorage } from '../../../src/storage/memory';
import { testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const SEG_SIZE = 1024 * 1024;
const ID: SpoolIdentity = { store: 'file:///archive' };
const name = (n: number, tl = 1) => `${tl.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

function pgdata(): string {
  const dir = mkdtempSync(join(tmpdir(), 'walts-prefetch-'));
  mkdirSync(join(dir, 'pg_wal'));
  return dir;
}

async function archive(store: MemoryStorage, names: string[]): Promise<Map<string, Buffer>> {
  const deps = testDeps(store);
  const dir = pgdata();
  const content = new Map<string, Buffer>();
  for (const n of names) {
    const seg = fakeSegment(n, { segSize: SEG_SIZE });
    content.set(n, seg);
    writeFileSync(join(dir, 'pg_wal', n), seg);
    await walPush(deps, { path: `pg_wal/${n}`, cwd: dir });
  }
  return content;
}

describe('prefetchWindow', () => {
  it('is the next segments of the same timeline, across a log id boundary', () => {
    expect(prefetchWindow('0000000200000000000000FE', 16 * 1024 * 1024, 3)).toEqual(['0000000200000000000000FF', '000000020000000100000000', '000000020000000100000001']);
  });
});

describe('segmentProblem: the timeline in the header', () => {
  it('accepts a header of an earlier timeline (the first segment of a new timeline starts with the parent’s pages), refuses a later one', () => {
    const seg = fakeSegment(name(5, 1), { segSize: SEG_SIZE });
    expect(segmentProblem(parseWalFileName(name(5, 2))!, seg.length, seg)).toBeUndefined();
    const later = fakeSegment(name(5, 3), { segSize: SEG_SIZE });
    expect(segmentProblem(parseWalFileName(name(5, 2))!, later.length, later)).toMatch(/timeline 3, later than its name's \(2\)/);
  });
});

describe('walPrefetch', () => {
  it('downloads the window, verified, with records; stops at the end of the archive and remembers it; keeps only the window', async () => {
    const store = new MemoryStorage();
    const content = await archive(store, [1, 2, 3, 4].map((n) => name(n)));
    const dir = join(pgdata(), 'spool', 'fetch');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name(1, 1)), 'an older segment'); // outside the window: removed
    writeFileSync(join(dir, name(3, 2)), 'another timeline'); // outside the window: removed
    const r = await walPrefetch(testDeps(store), { after: name(1), segmentSize: SEG_SIZE, dir, depth: 5, concurrency: 2, identity: ID });
    expect(r.fetched.sort()).toEqual([name(2), name(3), name(4)]);
    expect(r.end).toBe(name(5));
    expect(readFileSync(join(dir, 'end'), 'utf8').trim()).toBe(name(5));
    for (const n of [2, 3, 4]) {
      expect(readFileSync(join(dir, name(n))).equals(content.get(name(n))!)).toBe(true);
      const [first, store2, endpoint] = readFileSync(join(dir, `${name(n)}.rec`), 'utf8').split('\n');
      const st = statSync(join(dir, name(n)), { bigint: true });
      expect(first).toMatch(new RegExp(`^walts-spool-1 ${st.dev} ${st.ino} ${SEG_SIZE} \\d+\\.\\d{9} \\d+\\.\\d{9} [0-9a-f]{64}$`));
      expect([store2, endpoint]).toEqual(['file:///archive', '']);
    }
    expect(readdirSync(dir).sort()).toEqual([name(2), `${name(2)}.rec`, name(3), `${name(3)}.rec`, name(4), `${name(4)}.rec`, 'end'].sort());
  });

  it('does nothing while another live prefetcher holds the spool; takes over the lock of a dead one', async () => {
    const store = new MemoryStorage();
    await archive(store, [name(2)]);
    const dir = join(pgdata(), 'fetch');
    mkdirSync(dir, { recursive: true });
    expect(await takeLock(dir, process.ppid, [])).toBe(true); // a live process that is not us
    const skipped = await walPrefetch(testDeps(store), { after: name(1), segmentSize: SEG_SIZE, dir, depth: 1, concurrency: 1, identity: ID, pid: 999_999_999 });
    expect(skipped.skipped).toMatch(/another prefetcher/);
    writeFileSync(join(dir, 'prefetch.lock'), '999999998\n'); // dead
    const r = await walPrefetch(testDeps(store), { after: name(1), segmentSize: SEG_SIZE, dir, depth: 1, concurrency: 1, identity: ID, pid: 999_999_999 });
    expect(r.fetched).toEqual([name(2)]);
    expect(await readLock(dir)).toBeUndefined(); // released
  });
});

describe('wal-fetch and the spool (Node path)', () => {
  const spoolFor = () => ({ dir: (dest: string) => fetchSpoolDir(undefined, dest), identity: ID });

  it('serves a spool file that is still the recorded one, and notes it', async () => {
    const store = new MemoryStorage();
    const content = await archive(store, [name(2)]);
    const restore = pgdata();
    const dir = join(restore, 'pg_wal', 'walts_spool', 'fetch');
    await walPrefetch(testDeps(store), { after: name(1), segmentSize: SEG_SIZE, dir, depth: 1, concurrency: 1, identity: ID });
    store.objects.clear(); // proof that the store is not asked
    const r = await walFetch(testDeps(store, { archive: false }), { name: name(2), dest: 'pg_wal/RECOVERYXLOG', cwd: restore, spool: spoolFor() });
    expect(r.source).toBe('spool');
    expect(readFileSync(join(restore, 'pg_wal', 'RECOVERYXLOG')).equals(content.get(name(2))!)).toBe(true);
    expect(readFileSync(join(dir, 'served.log'), 'utf8')).toBe(`${name(2)} node\n`);
    expect(existsSync(join(dir, `${name(2)}.rec`))).toBe(false);
  });

  it('never says "not found" from the spool, and removes a file whose record does not match', async () => {
    const store = new MemoryStorage();
    const restore = pgdata();
    const dir = join(restore, 'pg_wal', 'walts_spool', 'fetch');
    mkdirSync(dir, { recursive: true });
    const seg = fakeSegment(name(7), { segSize: SEG_SIZE });
    writeFileSync(join(dir, name(7)), seg);
    // A record for another store, otherwise right.
    writeFileSync(join(dir, `${name(7)}.rec`), formatRecord(statSync(join(dir, name(7)), { bigint: true }), '0'.repeat(64), { store: 'file:///other' }));
    const err = await walFetch(testDeps(store), { name: name(7), dest: 'pg_wal/RECOVERYXLOG', cwd: restore, spool: spoolFor() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError); // the store's answer
    expect(existsSync(join(dir, name(7)))).toBe(false);
    expect(existsSync(join(restore, 'pg_wal', 'RECOVERYXLOG'))).toBe(false);
  });
});
