/**
 * Asking a live prefetcher (issue 8; docs/performance.md "Asking the prefetcher"), with real
 * PostgreSQL 15, bin/walts (the sh front, run by dash where it is /bin/sh) and both stores:
 * - a "not found" answered through the prefetcher is the store's fresh answer: the file archived
 *   after an earlier "not found" is then served, through the same prefetcher;
 * - a prefetcher of another store never answers for this one (its "not found" would end recovery);
 * - planted answer files (stale, foreign) are never honoured, and a prefetcher that dies while a
 *   call waits for it sends that call to Node, which answers properly;
 * - a point-in-time restore's end-of-recovery calls (the segment after the last one, the history
 *   probe at promotion) are answered by the prefetcher, and the restore is the same.
 * Deterministic: the tests wait for files and processes, never for a time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { trackClusters, type Cluster } from '../helpers/pg';
import { alive, nextSegmentName, scratchPgdata, waitUntil } from '../helpers/prefetch';
import { baseEnv, runWalts, WALTS_BIN } from '../helpers/run';
import { startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';

const SEG = 16 * 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const next = nextSegmentName;

const lines = (file: string): string[] => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

describe.each<StoreKind>(['file', 's3'])('asking the prefetcher (%s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let other: TestStore;
  let env: Record<string, string>;
  let a: Cluster;
  let base = '';
  let n = 0;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    store = await startStore(kind, reg, 'ask');
    other = await startStore(kind, reg, 'ask-other');
    base = await reg.baseDir();
    env = { ...store.env, WALTS_RETRY_DEADLINE: '20' };
    a = await reg.createCluster({ name: 'a', env, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    await a.psql('create table marker (id int primary key, tag text)');
    expect((await runWalts(['backup-push', a.dataDir, '--fast'], { ...env, ...a.pgEnv() }, { timeoutMs: 180_000 })).code).toBe(0);
    for (let i = 0; i < 3; i++) await a.psql(`insert into marker values (${i}, 'x'); select pg_switch_wal()`);
    await a.switchWalAndWaitArchived(120_000);
  }, 600_000);
  afterAll(async () => {
    for (const c of children) if (c.pid && alive(c.pid)) c.kill('SIGKILL');
    await a?.stop();
    await reg.cleanupAll();
    await other?.stop();
    await store?.stop();
  });

  const scratch = () => scratchPgdata(join(base, `ask-${kind}-${++n}`), a.dataDir);
  const fetch = (s: { dir: string; dest: string }, name: string, extra: Record<string, string> = {}) => {
    rmSync(s.dest, { force: true });
    return runWalts(['wal-fetch', name, 'pg_wal/RECOVERYXLOG'], { ...env, ...extra }, { cwd: s.dir, timeoutMs: 180_000 });
  };
  /** A prefetcher as wal-fetch starts one, lingering for the test's length; resolves once it answers. */
  async function prefetcher(s: { dir: string; spool: string }, after: string, storeEnv: Record<string, string> = env): Promise<number> {
    const child = spawn(WALTS_BIN, ['wal-prefetch', after, 'pg_wal/RECOVERYXLOG', '--segment-size', String(SEG), '--linger', '600'], {
      cwd: s.dir,
      env: { ...baseEnv(), ...storeEnv },
      stdio: 'ignore',
      detached: true,
    });
    children.push(child);
    const pid = child.pid!;
    // Its window done (the lock lists no names any more) and its request directory there.
    await waitUntil('the prefetcher to finish its window', () => {
      const lock = existsSync(join(s.spool, 'prefetch.lock')) ? readFileSync(join(s.spool, 'prefetch.lock'), 'utf8') : '';
      return lock === `${pid}\n` && existsSync(join(s.spool, 'ask'));
    });
    return pid;
  }
  async function stop(pid: number): Promise<void> {
    process.kill(pid, 'SIGTERM');
    await waitUntil('the prefetcher to exit', () => !alive(pid));
  }
  /** The archive's last segment now, and the one after it (not archived yet). */
  async function archivedEnd(): Promise<{ last: string; after: string }> {
    const last = await a.switchWalAndWaitArchived(120_000);
    return { last, after: next(last) };
  }

  it('a "not found" through the prefetcher is the store’s fresh answer: archived afterwards, the file is then served by the same prefetcher', async () => {
    const s = scratch();
    const { last, after } = await archivedEnd();
    const pid = await prefetcher(s, last);
    let r = await fetch(s, after);
    expect(r.code).toBe(1);
    expect(existsSync(s.dest)).toBe(false);
    expect(lines(join(s.spool, 'asked.log'))).toEqual([`${after} absent`]);
    expect(r.stderr).toBe(''); // answered by sh: Node (which logs a line) did not run
    // The history probe PostgreSQL makes at promotion: the store's "not found" too.
    r = await fetch(s, '00000002.history');
    expect(r.code).toBe(1);
    expect(lines(join(s.spool, 'asked.log'))).toContain('00000002.history absent');

    // Now the archive grows: the same prefetcher asks the store again, and serves it.
    await a.psql("insert into marker values (100, 'later')");
    const grown = await a.switchWalAndWaitArchived(120_000);
    expect(grown >= after).toBe(true);
    r = await fetch(s, after);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(lines(join(s.spool, 'served.log'))).toContain(`${after} ask`);
    const direct = scratch();
    expect((await fetch(direct, after, { WALTS_PREFETCH: '0' })).code).toBe(0);
    expect(sha(readFileSync(s.dest))).toBe(sha(readFileSync(direct.dest)));
    expect(alive(pid)).toBe(true);
    await stop(pid);
  }, 600_000);

  it('a prefetcher of another store does not answer for this one; planted and foreign answers are never honoured', async () => {
    const s = scratch();
    const { last } = await archivedEnd();
    // A prefetcher on the same spool serving another (empty) archive: it would say "not found".
    const pid = await prefetcher(s, last, { ...other.env, WALTS_RETRY_DEADLINE: '20' });
    // Planted: answers saying "absent" for `last`, in request directories the call did not make.
    const ask = join(s.spool, 'ask');
    for (const nonce of ['q.AAAAAAAAAA', 'q.BBBBBBBBBB']) {
      mkdirSync(join(ask, nonce));
      writeFileSync(join(ask, nonce, 'answer'), `walts-answer-1 absent ${nonce}\n${last}\n${env.WALTS_STORE}\n${env.WALTS_S3_ENDPOINT ?? ''}\n`);
    }
    const r = await fetch(s, last);
    expect(r.code).toBe(0); // Node asked this store
    expect(r.stderr).toContain('"source":"store"');
    expect(lines(join(s.spool, 'asked.log'))).toEqual([]);
    await stop(pid);
  }, 600_000);

  it('a "prefetcher" that never answers, or dies while a call waits for it, sends the call to Node', async () => {
    const s = scratch();
    const { last } = await archivedEnd();
    mkdirSync(join(s.spool, 'ask'), { recursive: true });
    // A live process that is not a prefetcher holds the lock: nothing will answer.
    const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
    children.push(sleeper);
    writeFileSync(join(s.spool, 'prefetch.lock'), `${sleeper.pid}\n`);
    const waiting = fetch(s, last, { WALTS_PREFETCH: '16' });
    // The call has written its request and waits; the "prefetcher" dies.
    await waitUntil('the request', () => readdirSync(join(s.spool, 'ask')).some((f) => f.endsWith('.ask')));
    sleeper.kill('SIGKILL');
    const r = await waiting;
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('"source":"store"');
    // And one that stays alive but silent: the bounded wait, then Node.
    const silent = spawn('sleep', ['600'], { stdio: 'ignore' });
    children.push(silent);
    rmSync(join(s.spool, 'prefetch.lock'), { force: true });
    writeFileSync(join(s.spool, 'prefetch.lock'), `${silent.pid}\n`);
    const r2 = await fetch(s, last);
    expect(r2.code).toBe(0);
    expect(r2.stderr).toContain('"source":"store"');
    silent.kill('SIGKILL');
  }, 600_000);

  it('a point-in-time restore: the calls at the end of recovery are answered by the prefetcher, and the restore is complete', async () => {
    await a.psql("insert into marker values (200, 'last')");
    const last = await a.switchWalAndWaitArchived(120_000);
    const r1 = await reg.emptyCluster({ name: `r-${kind}`, env });
    expect((await runWalts(['backup-fetch', r1.dataDir, 'LATEST'], env, { timeoutMs: 180_000 })).code).toBe(0);
    await r1.prepareRestoredDataDir({ keepSourceSettings: true });
    await r1.start();
    await r1.waitForRecoveryEnd(300_000);
    expect(await r1.psql('select count(*) from marker where id = 200')).toBe('1');
    const spool = join(r1.dataDir, 'pg_wal', 'walts_spool', 'fetch');
    const asked = lines(join(spool, 'asked.log'));
    // The segment after the archive's last one, answered "not found" by the prefetcher.
    expect(asked.some((l) => l.startsWith(next(last).slice(0, 8)) && l.endsWith(' absent') && l.slice(0, 24) > last)).toBe(true);
    expect(r1.log()).not.toMatch(/FATAL|PANIC/);
    await r1.stop();
  }, 900_000);
});
