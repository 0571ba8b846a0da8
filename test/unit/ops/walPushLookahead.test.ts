/**
 * wal-push look-ahead in-process (memory store, injected clock): which files are pushed, that a
 * record is written only after the store acknowledged, only for settled files, never for failed
 * ones; that the call's answer depends only on its own file; the transfer bound; abort.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IntegrityError } from '../../../src/errors';
import { checkRecordSync } from '../../../src/ops/pushRecord';
import { archivedAhead, walPushWithLookahead, type LookaheadOptions } from '../../../src/ops/walPushLookahead';
import { walPush } from '../../../src/ops/walPush';
import type { Deps } from '../../../src/deps';
import { countingStore, testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const seg = (i: number) => `0000000100000000000000${i.toString(16).toUpperCase().padStart(2, '0')}`;
const STORE = { store: 'memory://test', endpoint: '' };
const options = (o: Partial<LookaheadOptions> = {}): LookaheadOptions => ({ lookahead: 16, concurrency: 4, store: STORE, ...o });

/** A PGDATA with segments 1..n in pg_wal, all marked .ready. */
function pgdata(n: number): { dir: string; wal: string; records: string } {
  const dir = mkdtempSync(join(tmpdir(), 'walts-lookahead-'));
  const wal = join(dir, 'pg_wal');
  mkdirSync(join(wal, 'archive_status'), { recursive: true });
  for (let i = 1; i <= n; i++) {
    writeFileSync(join(wal, seg(i)), fakeSegment(seg(i)));
    writeFileSync(join(wal, 'archive_status', `${seg(i)}.ready`), '');
  }
  return { dir, wal, records: join(wal, 'walts_spool', 'push') };
}

/** The clock a call reads before its first stat: well after the files were written (settled). */
const later = (deps: Deps): Deps => ({ ...deps, now: () => new Date(Date.now() + 60_000) });
const records = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

describe('wal-push look-ahead', () => {
  it('pushes the other ready segments in WAL order and records each after its acknowledgement', async () => {
    const store = countingStore();
    const { dir, records: rdir } = pgdata(6);
    const put = store.put.bind(store);
    const recordedAtPut: boolean[] = [];
    store.put = async (key, body, o) => {
      const name = /(\w{24})\.lz4$/.exec(key)?.[1];
      if (name) recordedAtPut.push(existsSync(join(rdir, name)));
      return put(key, body, o);
    };
    const r = await walPushWithLookahead(later(testDeps(store)), { path: `pg_wal/${seg(2)}`, cwd: dir }, options());
    expect(r).toMatchObject({ name: seg(2), outcome: 'uploaded' });
    expect(r.lookahead).toEqual({ recorded: [seg(1), seg(3), seg(4), seg(5), seg(6)], unrecorded: 0, failed: 0 });
    expect(store.puts.filter((k) => k.endsWith('.lz4'))[0]).toContain(seg(2)); // the call's own file first
    expect(recordedAtPut.every((x) => !x)).toBe(true);
    expect(records(rdir)).toEqual([seg(1), seg(3), seg(4), seg(5), seg(6)]);
    // What PostgreSQL's next call sees: answered from the record, nothing uploaded.
    expect(archivedAhead(`pg_wal/${seg(3)}`, dir, options())).toBe(true);
    expect(archivedAhead(`pg_wal/${seg(3)}`, dir, options({ lookahead: 0 }))).toBe(false);
  });

  it('takes at most WALTS_PUSH_LOOKAHEAD files, skips recorded ones, and keeps WALTS_CONCURRENCY transfers in flight at most', async () => {
    const store = countingStore();
    const { dir, records: rdir } = pgdata(12);
    let inFlight = 0;
    let most = 0;
    const put = store.put.bind(store);
    store.put = async (key, body, o) => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setImmediate(r));
      try {
        return await put(key, body, o);
      } finally {
        inFlight--;
      }
    };
    const deps = later(testDeps(store));
    const first = await walPushWithLookahead(deps, { path: `pg_wal/${seg(1)}`, cwd: dir }, options({ lookahead: 3, concurrency: 2 }));
    expect(first.lookahead?.recorded).toEqual([seg(2), seg(3), seg(4)]);
    expect(most).toBeLessThanOrEqual(2);
    const second = await walPushWithLookahead(deps, { path: `pg_wal/${seg(1)}`, cwd: dir }, options({ lookahead: 3, concurrency: 2 }));
    expect(second.lookahead?.recorded).toEqual([seg(5), seg(6), seg(7)]);
    expect(records(rdir)).toHaveLength(6);
  });

  it('writes no record for a file whose ctime is within the margin of the first stat (fresh files)', async () => {
    const store = countingStore();
    const { dir, records: rdir } = pgdata(3);
    // The clock read before the first stat is 50 ms after the oldest file's ctime: all are too fresh.
    const oldest = Math.min(...[1, 2, 3].map((i) => statSync(join(dir, 'pg_wal', seg(i))).ctimeMs));
    const deps = { ...testDeps(store), now: () => new Date(oldest + 50) };
    const r = await walPushWithLookahead(deps, { path: `pg_wal/${seg(1)}`, cwd: dir }, options());
    expect(r.lookahead).toEqual({ recorded: [], unrecorded: 2, failed: 0 });
    expect(records(rdir)).toEqual([]);
    expect(store.objects.has(`walts_v1/wal/0000000100000000/${seg(3)}.lz4`)).toBe(true); // pushed all the same
  });

  it('a look-ahead file that conflicts or fails leaves no record and does not change the answer', async () => {
    const store = countingStore();
    const deps = later(testDeps(store));
    const other = pgdata(3);
    await walPush(deps, { path: `pg_wal/${seg(2)}`, cwd: other.dir }); // different content under seg 2
    const { dir, records: rdir } = pgdata(4);
    const put = store.put.bind(store);
    store.put = async (key, body, o) => {
      if (key.includes(seg(3))) throw new Error('connection reset');
      return put(key, body, o);
    };
    const r = await walPushWithLookahead(deps, { path: `pg_wal/${seg(1)}`, cwd: dir }, options());
    expect(r).toMatchObject({ name: seg(1), outcome: 'uploaded' });
    expect(r.lookahead).toEqual({ recorded: [seg(4)], unrecorded: 0, failed: 2 });
    expect(records(rdir)).toEqual([seg(4)]);
  });

  it('the call fails when its own file fails, and then records nothing more', async () => {
    const store = countingStore();
    const deps = later(testDeps(store));
    await walPush(deps, { path: `pg_wal/${seg(1)}`, cwd: pgdata(1).dir });
    const { dir, records: rdir } = pgdata(3);
    await expect(walPushWithLookahead(deps, { path: `pg_wal/${seg(1)}`, cwd: dir }, options({ concurrency: 1 }))).rejects.toBeInstanceOf(IntegrityError);
    expect(records(rdir)).toEqual([]);
  });

  it('an abort (SIGTERM) during a look-ahead upload leaves no record for it; the own file is answered', async () => {
    const store = countingStore();
    const { dir, wal, records: rdir } = pgdata(3);
    const controller = new AbortController();
    const put = store.put.bind(store);
    store.put = async (key, body, o) => {
      if (!key.includes(seg(3))) return put(key, body, o);
      controller.abort(new Error('interrupted by SIGTERM'));
      await new Promise((r) => setImmediate(r));
      throw o?.signal?.reason ?? new Error('aborted');
    };
    const r = await walPushWithLookahead(later(testDeps(store)), { path: `pg_wal/${seg(1)}`, cwd: dir, signal: controller.signal }, options({ concurrency: 1 }));
    expect(r.name).toBe(seg(1));
    expect(records(rdir)).toEqual([seg(2)]);
    expect(checkRecordSync(rdir, seg(3), join(wal, seg(3)), STORE)).toBe('absent');
  });

  it('no archive_status, a non-segment file or WALTS_PUSH_LOOKAHEAD=0: just the one file', async () => {
    const store = countingStore();
    const deps = later(testDeps(store));
    const { dir, records: rdir } = pgdata(3);
    const r = await walPushWithLookahead(deps, { path: `pg_wal/${seg(1)}`, cwd: dir }, options({ lookahead: 0 }));
    expect(r.lookahead).toBeUndefined();
    expect(store.puts.filter((k) => k.endsWith('.lz4'))).toHaveLength(1);
    expect(records(rdir)).toEqual([]);
  });
});
