/**
 * wal-fetch and a receiver's partial segment (walFetchPartial.ts), in-process on the memory store:
 * served only when the complete segment is not archived, only for segment names, only when asked
 * for; the longest one that verifies wins across slots; torn, mismatching and foreign ones are
 * skipped; what is served is the received bytes padded with zeros to the segment size. And the
 * prefetcher never spools one, and never answers "absent" for a segment a receiver holds in part.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readClusterRecord } from '../../../src/archive/cluster';
import { NotFoundError } from '../../../src/errors';
import { verifyStreamed } from '../../../src/ops/verifyStreamed';
import type { SpoolIdentity } from '../../../src/ops/fetchSpool';
import { walFetch } from '../../../src/ops/walFetch';
import { walPrefetch } from '../../../src/ops/walPrefetch';
import { walPush } from '../../../src/ops/walPush';
import { MemoryStorage } from '../../../src/storage/memory';
import { testDeps } from '../../helpers/deps';
import { writeReceivedPartial } from '../../helpers/receivedPartial';
import { fakeSegment } from '../../helpers/wal';

const SEG_SIZE = 1024 * 1024;
const ID: SpoolIdentity = { store: 'file:///archive' };
const name = (n: number) => `0000000100000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

function pgdata(): string {
  const dir = mkdtempSync(join(tmpdir(), 'walts-partial-'));
  mkdirSync(join(dir, 'pg_wal'));
  return dir;
}

async function push(store: MemoryStorage, n: string): Promise<Buffer> {
  const dir = pgdata();
  const seg = fakeSegment(n, { segSize: SEG_SIZE });
  writeFileSync(join(dir, 'pg_wal', n), seg);
  await walPush(testDeps(store), { path: `pg_wal/${n}`, cwd: dir });
  return seg;
}

/** A store with segment 1 archived (so the cluster is known) and the full content of segment 2. */
async function setup(): Promise<{ store: MemoryStorage; seg2: Buffer; dir: string }> {
  const store = new MemoryStorage();
  await push(store, name(1));
  return { store, seg2: fakeSegment(name(2), { segSize: SEG_SIZE, seed: 'two' }), dir: pgdata() };
}

const fetch2 = (store: MemoryStorage, dir: string, receivedPartials = true, wal = name(2)) =>
  walFetch(testDeps(store), { name: wal, dest: 'pg_wal/RECOVERYXLOG', cwd: dir, receivedPartials });

function expectPadded(file: string, received: Buffer): void {
  const got = readFileSync(file);
  expect(got.length).toBe(SEG_SIZE);
  expect(got.subarray(0, received.length).equals(received)).toBe(true);
  expect(got.subarray(received.length).every((b) => b === 0)).toBe(true);
}

describe('wal-fetch serves a received partial', () => {
  it('the longest that verifies over all slots, padded with zeros to the segment size', async () => {
    const { store, seg2, dir } = await setup();
    const deps = testDeps(store);
    await writeReceivedPartial(deps, 'slot_a', name(2), seg2.subarray(0, 300_000));
    await writeReceivedPartial(deps, 'slot_b', name(2), seg2.subarray(0, 500_000));
    await writeReceivedPartial(deps, 'slot_c', name(3), fakeSegment(name(3), { segSize: SEG_SIZE }).subarray(0, 900_000)); // another segment
    const r = await fetch2(store, dir);
    expect(r.source).toBe('received');
    expect(r.partial).toMatchObject({ slot: 'slot_b', receivedBytes: 500_000, segmentSize: SEG_SIZE, endLsn: `0/${(2 * SEG_SIZE + 500_000).toString(16).toUpperCase()}` });
    expect(r.plainBytes).toBe(SEG_SIZE);
    expectPadded(join(dir, 'pg_wal', 'RECOVERYXLOG'), seg2.subarray(0, 500_000));
    expect(readdirSync(join(dir, 'pg_wal')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('skips a torn one and one whose content does not match its record, for the next that verifies', async () => {
    const { store, seg2, dir } = await setup();
    const deps = testDeps(store);
    await writeReceivedPartial(deps, 'torn', name(2), seg2.subarray(0, 800_000), { tornAt: 100 });
    await writeReceivedPartial(deps, 'lying', name(2), seg2.subarray(0, 700_000), { recordSha256: 'ab'.repeat(32) });
    await writeReceivedPartial(deps, 'good', name(2), seg2.subarray(0, 200_000));
    const r = await fetch2(store, dir);
    expect(r.partial?.slot).toBe('good');
    expectPadded(join(dir, 'pg_wal', 'RECOVERYXLOG'), seg2.subarray(0, 200_000));
  });

  it('skips bytes that are not the start of the segment asked for, or of another cluster', async () => {
    const { store, dir } = await setup();
    const deps = testDeps(store);
    await writeReceivedPartial(deps, 'shifted', name(2), fakeSegment(name(5), { segSize: SEG_SIZE }).subarray(0, 400_000));
    await writeReceivedPartial(deps, 'foreign', name(2), fakeSegment(name(2), { segSize: SEG_SIZE, sysid: 42n }).subarray(0, 400_000));
    await expect(fetch2(store, dir)).rejects.toBeInstanceOf(NotFoundError);
    expect(existsSync(join(dir, 'pg_wal', 'RECOVERYXLOG'))).toBe(false);
  });

  it('only when the complete segment is absent, only for segment names, only when on', async () => {
    const { store, seg2, dir } = await setup();
    const deps = testDeps(store);
    await writeReceivedPartial(deps, 'slot_a', name(2), seg2.subarray(0, 300_000));
    await expect(fetch2(store, dir, false)).rejects.toBeInstanceOf(NotFoundError); // WALTS_FETCH_PARTIAL=off
    await expect(fetch2(store, dir, true, '00000002.history')).rejects.toBeInstanceOf(NotFoundError);
    await expect(fetch2(store, dir, true, `${name(2)}.partial`)).rejects.toBeInstanceOf(NotFoundError);
    await expect(fetch2(store, dir, true, `${name(2)}.00000028.backup`)).rejects.toBeInstanceOf(NotFoundError);
    expect(existsSync(join(dir, 'pg_wal', 'RECOVERYXLOG'))).toBe(false);
    // Once the complete segment is archived, that is what is served.
    const dir2 = pgdata();
    writeFileSync(join(dir2, 'pg_wal', name(2)), seg2);
    await walPush(deps, { path: `pg_wal/${name(2)}`, cwd: dir2 });
    const r = await fetch2(store, dir);
    expect(r.source).toBe('store');
    expect(readFileSync(join(dir, 'pg_wal', 'RECOVERYXLOG')).equals(seg2)).toBe(true);
  });

  it('with no partial that verifies, the answer stays "not found"', async () => {
    const { store, seg2, dir } = await setup();
    await writeReceivedPartial(testDeps(store), 'torn', name(2), seg2.subarray(0, 800_000), { tornAt: 10 });
    await expect(fetch2(store, dir)).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('the prefetcher and received partials', () => {
  it('never spools a partial, and answers "other" (not "absent") for a segment a receiver holds in part', async () => {
    const { store, seg2 } = await setup();
    await writeReceivedPartial(testDeps(store), 'slot_a', name(2), seg2.subarray(0, 300_000));
    const dir = join(mkdtempSync(join(tmpdir(), 'walts-partial-spool-')), 'fetch');
    const stop = new AbortController();
    const running = walPrefetch(testDeps(store), { after: name(1), segmentSize: SEG_SIZE, dir, depth: 2, concurrency: 1, identity: ID, lingerMs: 600_000, signal: stop.signal, receivedPartials: true });
    while (!existsSync(join(dir, 'end')) || !existsSync(join(dir, 'ask'))) await new Promise((r) => setTimeout(r, 10));
    expect(readFileSync(join(dir, 'end'), 'utf8').trim()).toBe(name(2));
    const ask = async (wal: string, nonce: string): Promise<string> => {
      mkdirSync(join(dir, 'ask', nonce));
      writeFileSync(join(dir, 'ask', `${nonce}.ask`), `walts-ask-1 ${process.pid}\n${wal}\n${ID.store}\n\nend\n`);
      const answer = join(dir, 'ask', nonce, 'answer');
      while (!existsSync(answer)) await new Promise((r) => setTimeout(r, 10));
      return readFileSync(answer, 'utf8').split(' ')[1]!;
    };
    expect(await ask(name(2), 'q.PARTIAL001')).toBe('other');
    expect(await ask(name(3), 'q.NOTHING001')).toBe('absent');
    stop.abort();
    await running;
    expect(readdirSync(dir).filter((f) => f.startsWith('0000'))).toEqual([]);
  });
});

describe('verify: how far streamed WAL reaches', () => {
  it('the newest partial per slot with bytes and end LSN; a torn one and (deep) a mismatching one are problems', async () => {
    const { store, seg2 } = await setup();
    const deps = testDeps(store);
    await writeReceivedPartial(deps, 'a', name(1), fakeSegment(name(1), { segSize: SEG_SIZE }).subarray(0, 1000)); // older: not reported
    await writeReceivedPartial(deps, 'a', name(2), seg2.subarray(0, 300_000));
    await writeReceivedPartial(deps, 'b', name(2), seg2.subarray(0, 200_000), { tornAt: 50 });
    await writeReceivedPartial(deps, 'c', name(2), seg2.subarray(0, 100_000), { recordSha256: 'cd'.repeat(32) });
    const cluster = await readClusterRecord(store);
    const opts = { deep: false, segmentSize: SEG_SIZE, cluster, nowMs: Date.now(), archived: new Set([name(1)]) };
    const shallow = await verifyStreamed(deps, opts);
    expect(shallow.map((s) => [s.slot, s.segment, s.bytes, s.end_lsn, s.complete_archived, s.problem === undefined])).toEqual([
      ['a', name(2), 300_000, `0/${(2 * SEG_SIZE + 300_000).toString(16).toUpperCase()}`, false, true],
      ['b', name(2), undefined, undefined, false, false],
      ['c', name(2), 100_000, `0/${(2 * SEG_SIZE + 100_000).toString(16).toUpperCase()}`, false, true],
    ]);
    const deep = await verifyStreamed(deps, { ...opts, deep: true });
    expect(deep.map((s) => s.problem === undefined)).toEqual([true, false, false]);
    expect(deep[2]!.problem).toMatch(/does not match the recorded SHA-256/);
  });
});
