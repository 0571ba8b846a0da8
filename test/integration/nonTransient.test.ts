/**
 * Errors that retrying cannot change end the command at once, with the documented code and one line
 * (issue 7): a full disk at wal-fetch's destination, a directory store walts may not read or write.
 * The measure is the number of attempts (no "retrying" line), not the time taken.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PG_OS_USER, trackClusters } from '../helpers/pg';
import { isRoot, runOk, runWalts } from '../helpers/run';
import { startStore, type TestStore } from '../helpers/stores';
import { fakeSegment } from '../helpers/wal';

const SEG1 = '000000010000000000000001';
const reg = trackClusters();
let store: TestStore;

beforeAll(async () => {
  store = await startStore('file', reg, 'non-transient');
});
afterAll(async () => {
  await store?.stop();
  await reg.cleanupAll();
});

/** walts' JSON log lines on stderr. */
const logLines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string });

async function pgdataWith(name: string, data: Buffer): Promise<string> {
  const dir = await reg.tempDir('pgdata', { forPostgres: true });
  mkdirSync(join(dir, 'pg_wal'), { recursive: true });
  writeFileSync(join(dir, 'pg_wal', name), data);
  if (isRoot()) await runOk('chown', ['-R', `${PG_OS_USER}:`, dir]);
  return dir;
}

const env = (extra: Record<string, string> = {}) => ({ ...store.env, WALTS_RETRY_DEADLINE: '30', ...extra });

(isRoot() ? it : it.skip)('wal-fetch into a full disk: the hard-error code at once, says the disk is full, leaves nothing (tmpfs, root only)', async () => {
  const src = await pgdataWith(SEG1, fakeSegment(SEG1));
  expect((await runWalts(['wal-push', `pg_wal/${SEG1}`], env(), { cwd: src, timeoutMs: 60_000 })).code).toBe(0);
  const small = await reg.tempDir('small-disk');
  await runOk('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', small]);
  try {
    const r = await runWalts(['wal-fetch', SEG1, join(small, 'RECOVERYXLOG')], env(), { timeoutMs: 120_000 });
    expect(r.code).toBe(255);
    const lines = logLines(r.stderr);
    expect(lines).toHaveLength(1); // the failure line, no "retrying" before it
    expect(lines[0]!.msg).toMatch(/the disk is full \(ENOSPC\)/);
    expect(readdirSync(small)).toEqual([]);
  } finally {
    await runOk('umount', [small]);
  }
});

it('a directory store walts may not read: wal-push exits 2 and wal-fetch its hard-error code, at once, one line each', async () => {
  const src = await pgdataWith(SEG1, fakeSegment(SEG1));
  const denied = await reg.tempDir('denied-store', { forPostgres: true });
  mkdirSync(join(denied, 'walts_v1'), { recursive: true });
  // As root the store belongs to root and walts runs as the postgres user; otherwise mode 000 does it.
  if (isRoot()) chownSync(denied, 0, 0);
  chmodSync(denied, isRoot() ? 0o700 : 0o000);
  try {
    const e = env({ WALTS_STORE: `file://${denied}` });
    const push = await runWalts(['wal-push', `pg_wal/${SEG1}`], e, { cwd: src, timeoutMs: 60_000, asUser: PG_OS_USER });
    expect(push.code).toBe(2);
    expect(logLines(push.stderr)).toHaveLength(1);
    expect(push.stderr).toMatch(/permission denied \(EACCES\)/);
    const dest = join(src, 'pg_wal', 'RECOVERYXLOG');
    const fetch = await runWalts(['wal-fetch', SEG1, dest], e, { timeoutMs: 60_000, asUser: PG_OS_USER });
    expect(fetch.code).toBe(255);
    expect(logLines(fetch.stderr)).toHaveLength(1);
    expect(fetch.stderr).toMatch(/permission denied \(EACCES\)/);
    expect(existsSync(dest)).toBe(false);
  } finally {
    chmodSync(denied, 0o700);
  }
});
