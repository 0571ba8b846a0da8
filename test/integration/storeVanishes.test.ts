/**
 * Acceptance (issue 7 §1): a real PostgreSQL 15 recovery whose directory store disappears in the
 * middle of replay (an NFS share unmounted, here: the directory renamed away) must stop, not promote
 * at the last segment it got; every commit after that point would otherwise be lost on a new
 * timeline. Once the store is back and the server started again, recovery completes with every row.
 *
 * Deterministic: a restore_command wrapper renames the store away the first time PostgreSQL asks for
 * a chosen segment, then runs `walts wal-fetch` as usual. No sleeps stand in for synchronisation.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chownToPg, trackClusters } from '../helpers/pg';
import { initArchive, waltsCommand } from '../helpers/stores';

const ROWS_PER_SEGMENT = 1000;
const SEGMENTS = 6;
/** Index (0-based) of the segment whose fetch makes the store disappear. */
const VANISH_INDEX = 2;

describe('a directory store that disappears during recovery (real PostgreSQL 15)', () => {
  const reg = trackClusters();
  afterAll(() => reg.cleanupAll());

  it('stops recovery instead of promoting, and completes with every row once the store is back', async () => {
    // The store sits in a directory the postgres user owns, so that the wrapper can rename it away.
    const base = await reg.tempDir('vanish', { forPostgres: true });
    const storeDir = join(base, 'store');
    const mark = join(base, 'vanished');
    mkdirSync(storeDir);
    await chownToPg(storeDir);
    const env = { WALTS_STORE: `file://${storeDir}` };
    await initArchive(env);

    const a = await reg.createCluster({ name: 'origin', conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') }, env });
    await a.start();
    await a.psql('create table t (id int primary key)');
    const b = await reg.basebackup(a, { name: 'copy' });
    const segments: string[] = [];
    for (let i = 0; i < SEGMENTS; i++) {
      await a.psql(`insert into t select generate_series(${i * ROWS_PER_SEGMENT + 1}, ${(i + 1) * ROWS_PER_SEGMENT})`);
      segments.push(await a.switchWalAndWaitArchived());
    }
    await a.stop();
    const vanishAt = segments[VANISH_INDEX]!;

    const wrapper = join(base, 'restore.sh');
    writeFileSync(
      wrapper,
      [
        '#!/bin/sh',
        '# The store disappears the first time PostgreSQL asks for $VANISH_AT, as an unmounted share would.',
        'if [ "$1" = "$VANISH_AT" ] && [ ! -e "$VANISH_MARK" ]; then',
        '  : > "$VANISH_MARK"',
        '  mv "$STORE_DIR" "$STORE_DIR.away"',
        'fi',
        // (not `exec`: the command starts with a PATH=... assignment, which exec would take for a program)
        `${waltsCommand('wal-fetch "$1" "$2"')}`,
        '',
      ].join('\n'),
    );
    chmodSync(wrapper, 0o755);
    await chownToPg(wrapper);
    b.env = { ...env, WALTS_RETRY_DEADLINE: '2', VANISH_AT: vanishAt, VANISH_MARK: mark, STORE_DIR: storeDir };
    await b.setRecovery({ restore_command: `'${wrapper}' %f %p` });

    // First start: recovery reaches the vanishing point, wal-fetch fails hard, the server stops.
    await b.start({ wait: false });
    await waitFor(() => /database system is shut down/.test(b.log()) && !b.isRunning(), 120_000, () => b.logTail(60));
    expect(existsSync(mark)).toBe(true);
    const log = b.log();
    expect(log).toMatch(/the store directory .* does not exist/);
    // With prefetch on (the default), segments already in the spool are still served after the store
    // went away (they were verified when it was there); recovery stops hard at the first one that
    // has to come from the store: vanishAt or a later one, never "not found", never a promotion.
    const failedAt = /could not restore file "([0-9A-F]{24})" from archive: child process exited with exit code 255/.exec(log)?.[1];
    expect(failedAt !== undefined && failedAt >= vanishAt).toBe(true);
    expect(log).toMatch(/shutting down due to startup process failure|aborting startup due to startup process failure/);
    expect(log).not.toMatch(/selected new timeline ID|archive recovery complete/);
    expect(log).not.toContain(`restored log file "${failedAt}"`);
    expect(log).toContain(`restored log file "${segments[VANISH_INDEX - 1]}" from archive`);
    expect(readdirSync(join(b.dataDir, 'pg_wal')).filter((f) => f.endsWith('.history'))).toEqual([]);
    const control = await b.controlData();
    expect(control['Database cluster state']).not.toBe('in production');
    expect(control["Latest checkpoint's TimeLineID"]).toBe('1');

    // The share is back: recovery resumes where it stopped and replays to the end of the archive.
    renameSync(`${storeDir}.away`, storeDir);
    await b.start();
    await b.waitForRecoveryEnd(180_000);
    expect(await b.psql('select count(*) || \',\' || max(id) from t')).toBe(`${SEGMENTS * ROWS_PER_SEGMENT},${SEGMENTS * ROWS_PER_SEGMENT}`);
    expect(b.log()).toContain(`restored log file "${segments[SEGMENTS - 1]}" from archive`);
  }, 900_000);
});

/** Polls a condition (never a fixed sleep standing in for an event); fails with context after `timeoutMs`. */
async function waitFor(cond: () => boolean, timeoutMs: number, context: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms\n${context()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
