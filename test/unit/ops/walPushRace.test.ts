/**
 * Two wal-push processes racing on one name in a directory store, interleaved deterministically:
 * writer A is paused at each step of its put (FsStorage hooks) while writer B runs to completion.
 * Exactly one exits 0, the other 3, and the store holds the winner's object and metadata.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createArchiveRecord } from '../../../src/archive/archive';
import { META } from '../../../src/archive/objectMeta';
import { exitCodeFor } from '../../../src/exitCodes';
import { walFetch } from '../../../src/ops/walFetch';
import { walPush } from '../../../src/ops/walPush';
import { FsStorage, type FsStorageHooks } from '../../../src/storage/fs';
import { testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const SEG = '000000010000000000000001';
const KEY = `walts_v1/wal/0000000100000000/${SEG}.lz4`;
const T = 60_000;

type Step = keyof FsStorageHooks;

/** A hook set that stops at `step` for KEY until `release` is called; `reached` resolves when it stops. */
function pauseAt(step: Step): { hooks: FsStorageHooks; reached: Promise<void>; release: () => void } {
  let onReached!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((r) => (onReached = r));
  const gate = new Promise<void>((r) => (release = r));
  const hooks: FsStorageHooks = {
    [step]: async (key: string) => {
      if (key !== KEY) return;
      onReached();
      await gate;
    },
  };
  return { hooks, reached, release };
}

function pgdata(content: Buffer): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'walts-race-pg-'));
  mkdirSync(join(dir, 'pg_wal'));
  writeFileSync(join(dir, 'pg_wal', SEG), content);
  return { dir, path: `pg_wal/${SEG}` };
}

async function push(store: FsStorage, content: Buffer): Promise<number> {
  const { dir, path } = pgdata(content);
  try {
    await walPush(testDeps(store), { path, cwd: dir });
    return 0;
  } catch (err) {
    return exitCodeFor('wal-push', err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Waits until the paused writer is at its pause point; fails (instead of hanging) if it ended first. */
async function atPause(reached: Promise<void>, pushing: Promise<number>): Promise<void> {
  await Promise.race([reached, pushing.then((code) => Promise.reject(new Error(`the writer ended (exit ${code}) before reaching its pause point`)))]);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('concurrent wal-push of different content to a directory store', () => {
  let root: string;
  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'walts-race-store-'));
    // What `walts init` writes: every command refuses a store without it.
    await createArchiveRecord(new FsStorage(root), { format: 1, created_at: '2026-11-21T11:00:00.000Z', created_by: 'test-host', walts_version: 'test', encryption: { method: 'none' } });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const a = fakeSegment(SEG, { seed: 'writer A' });
  const b = fakeSegment(SEG, { seed: 'writer B' });

  async function expectStoreHolds(winner: Buffer): Promise<void> {
    const reader = new FsStorage(root);
    const info = await reader.head(KEY);
    expect(info?.metadata[META.sha256]).toBe(sha(winner));
    const restore = mkdtempSync(join(tmpdir(), 'walts-race-restore-'));
    try {
      mkdirSync(join(restore, 'pg_wal'));
      const f = await walFetch(testDeps(reader), { name: SEG, dest: 'pg_wal/RECOVERYXLOG', cwd: restore });
      expect(f.digestVerified).toBe(true);
      expect(sha(readFileSync(join(restore, 'pg_wal/RECOVERYXLOG')))).toBe(sha(winner));
    } finally {
      rmSync(restore, { recursive: true, force: true });
    }
    // No temp files left behind by either writer.
    expect(readdirSync(join(root, 'walts_v1/wal/0000000100000000')).sort()).toEqual([`${SEG}.lz4`, `${SEG}.lz4.meta.json`]);
  }

  // Before its link A has published nothing, so B wins; from the link on, A has won.
  const cases: Array<[Step, 'A' | 'B']> = [
    ['afterMkdir', 'B'],
    ['beforePublish', 'B'],
    ['afterObject', 'A'],
    ['afterMeta', 'A'],
  ];
  it.each(cases)('A paused at %s: %s wins, the other exits 3', async (step, winner) => {
    const gate = pauseAt(step);
    const pushA = push(new FsStorage(root, gate.hooks), a);
    await atPause(gate.reached, pushA);
    const codeB = await push(new FsStorage(root), b);
    gate.release();
    const codeA = await pushA;
    expect({ A: codeA, B: codeB }).toEqual(winner === 'A' ? { A: 0, B: 3 } : { A: 3, B: 0 });
    await expectStoreHolds(winner === 'A' ? a : b);

    // Each writer's retry (PostgreSQL retries a failed archive_command) gives the same answers.
    expect(await push(new FsStorage(root), winner === 'A' ? a : b)).toBe(0);
    expect(await push(new FsStorage(root), winner === 'A' ? b : a)).toBe(3);
    await expectStoreHolds(winner === 'A' ? a : b);
  }, T);

  // Both writers paused: A at one step, then B at another (if B gets there); A is let go first, then B.
  const steps: Step[] = ['afterMkdir', 'beforePublish', 'afterObject', 'afterMeta'];
  const beforeLink = (st: Step): boolean => st === 'afterMkdir' || st === 'beforePublish';
  const pairs = steps.flatMap((sa) => steps.filter((sb) => beforeLink(sa) || beforeLink(sb)).map((sb) => [sa, sb] as [Step, Step]));
  it.each(pairs)('A paused at %s, B paused at %s: the first to link wins, the other exits 3', async (stepA, stepB) => {
    const gateA = pauseAt(stepA);
    const pushA = push(new FsStorage(root, gateA.hooks), a);
    await atPause(gateA.reached, pushA);
    const gateB = pauseAt(stepB);
    const pushB = push(new FsStorage(root, gateB.hooks), b);
    await Promise.race([gateB.reached, pushB]); // B may see A's object and stop before it writes anything
    gateA.release();
    const codeA = await pushA;
    gateB.release();
    const codeB = await pushB;
    const bLinkedFirst = beforeLink(stepA) && !beforeLink(stepB);
    expect({ A: codeA, B: codeB }).toEqual(bLinkedFirst ? { A: 3, B: 0 } : { A: 0, B: 3 });
    await expectStoreHolds(bLinkedFirst ? b : a);
  }, T);

  it('a writer frozen between publishing its object and its metadata (as after a crash) is repaired by the next push, never replaced', async () => {
    const gate = pauseAt('afterObject');
    void push(new FsStorage(root, gate.hooks), a); // never released: its temp files stay, like after SIGKILL
    await gate.reached;
    // A different file under that name is refused: the object may be acknowledged any moment.
    expect(await push(new FsStorage(root), b)).toBe(3);
    // The same file is recognised as archived, and the side file is put in place.
    expect(await push(new FsStorage(root), a)).toBe(0);
    const side = JSON.parse(readFileSync(join(root, 'walts_v1/wal/0000000100000000', `${SEG}.lz4.meta.json`), 'utf8')) as Record<string, string>;
    expect(side[META.sha256]).toBe(sha(a));
    gate.release();
  }, T);
});
