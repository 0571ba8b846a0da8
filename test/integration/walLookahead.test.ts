/**
 * Look-ahead archiving and the wal-push fast path (docs/performance.md), through the real binary:
 * - PostgreSQL 15 archiving under pgbench load finds segments already in the store when it asks
 *   for them, on both stores, and the archive restores to the primary's exact state;
 * - a look-ahead upload killed with SIGKILL while in flight leaves no record, and the segment is
 *   pushed again: under real PostgreSQL on both stores (held in flight by a test-only preload,
 *   test/helpers/holdUpload.js) and through a hanging proxy in front of s3rver;
 * - a record is not honoured, by the sh front nor by Node, for a file whose bytes changed (mtime put
 *   back), for another store or endpoint, or for a file renamed into the name; the WALE_S3_PREFIX
 *   alias is honoured like WALTS_STORE.
 * The sh front is observed with a PATH that has `stat` but no `node`: exit 0 means it answered,
 * 127 ("node: not found") that it fell through to Node.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { trackClusters } from '../helpers/pg';
import { baseEnv, run, runWalts, WALTS_BIN } from '../helpers/run';
import { startS3rver, type S3rverHandle } from '../helpers/s3server';
import { initArchive, startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';
import { fakeSegment } from '../helpers/wal';

const STATE_SQL = `select (select count(*) from pgbench_accounts) || ',' || (select sum(abalance) from pgbench_accounts) || ',' || (select count(*) from pgbench_history)`;
const seg = (i: number) => `0000000100000000000000${i.toString(16).toUpperCase().padStart(2, '0')}`;
const NODE_JS = resolve(__dirname, '../../bin/walts.js');

/** Waits until every file is older than the records' freshness margin (a lower bound, not a timeout). */
async function settle(paths: string[]): Promise<void> {
  const newest = Math.max(...paths.map((p) => statSync(p).ctimeMs));
  while (Date.now() < newest + 300) await new Promise((r) => setTimeout(r, 50));
}

describe.each<StoreKind>(['file', 's3'])('look-ahead under real PostgreSQL 15 (%s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;

  beforeAll(async () => {
    store = await startStore(kind, reg);
    chmodSync(store.dir, 0o755); // the archive hook (run by PostgreSQL's user) looks into the store
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
  });

  it('pushes segments before PostgreSQL asks for them, and the archive restores exactly', async () => {
    // The hook notes, for each call, whether the object for %f was already in the store.
    const hook = await reg.tempDir('hook', { forPostgres: true });
    const calls = join(hook, 'calls.log');
    writeFileSync(
      join(hook, 'archive.sh'),
      `#!/bin/sh\nif [ -n "$(find '${store.dir}' -name "$1*" 2>/dev/null | head -n 1)" ]; then s=stored; else s=absent; fi\necho "$s $1" >> '${calls}'\n${waltsCommand('wal-push "$2"')}\n`,
      { mode: 0o755 },
    );
    const archiveCommand = `sh '${hook}/archive.sh' %f %p`;
    const a = await reg.createCluster({ name: 'a', conf: { archive_mode: 'on', archive_command: archiveCommand }, env: { ...store.env, WALTS_RETRY_DEADLINE: '20' } });
    await a.start();
    await a.pgbench(['-i', '-s', '4', '-q']);
    const b = await reg.basebackup(a, { name: 'b' });

    // Archiving paused (an empty archive_command keeps WAL and .ready files): segments pile up, as
    // when the store is slower than the load; then archiving resumes while the load goes on.
    a.setConf({ archive_command: '' });
    await a.reload();
    expect((await a.pgbench(['-c', '2', '-j', '2', '-T', '3', '-n'])).code).toBe(0);
    for (let i = 0; i < 8; i++) await a.psql(`update pgbench_branches set bbalance = bbalance + ${i}; select pg_switch_wal()`);
    a.setConf({ archive_command: archiveCommand });
    await a.reload();
    expect((await a.pgbench(['-c', '2', '-j', '2', '-T', '4', '-n'])).code).toBe(0);
    const state = await a.psql(STATE_SQL);
    const last = await a.switchWalAndWaitArchived(120_000);

    const [archived, failed] = (await a.psql("select archived_count || ',' || failed_count from pg_stat_archiver")).split(',').map(Number);
    expect(failed).toBe(0);
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    const ahead = lines.filter((l) => l.startsWith('stored '));
    expect(lines.length).toBe(archived);
    expect(ahead.length).toBeGreaterThanOrEqual(5);
    // Those calls were answered by the sh front: no Node, so no log line from walts for them.
    const pushLines = a.log().split('\n').filter((l) => l.includes('"wal-push done"'));
    expect(pushLines.length).toBeLessThan(archived ?? 0);
    const done = pushLines.map((l) => JSON.parse(l) as { wal: string; outcome: string; lookahead?: { recorded: string[] } });
    const recorded = new Set(done.flatMap((d) => d.lookahead?.recorded ?? []));
    // Each segment found in the store was pushed ahead and recorded (its call answered by the sh
    // front), or pushed ahead while too fresh to record: then its own call found it archived.
    for (const l of ahead) {
      const name = l.split(' ')[1] ?? '';
      expect(recorded.has(name) || done.some((d) => d.wal === name && d.outcome === 'already-archived')).toBe(true);
    }
    expect(recorded.size).toBeGreaterThanOrEqual(5);

    b.env = { ...store.env };
    await b.setRecovery({ restore_command: waltsCommand('wal-fetch %f %p') });
    await b.start();
    await b.waitForRecoveryEnd(180_000);
    expect(await b.psql(STATE_SQL)).toBe(state);
    expect(b.log()).toContain(`restored log file "${last}" from archive`);
    expect(b.log()).not.toMatch(/FATAL|PANIC/);
  });

  it('a look-ahead upload killed in flight by SIGKILL leaves no record; the segment is pushed again and the archive restores exactly', async () => {
    // The archive hook's first call runs walts with a preload (test/helpers/holdUpload.js) that holds
    // its first look-ahead upload in flight forever, kills walts at that moment and fails the call;
    // it notes whether a record or an object exists for the held segment, before PostgreSQL can call
    // again. Every later call is plain walts.
    // A store of its own: another cluster's WAL in the shared store would be refused (another system id).
    const own = await startStore(kind, reg, 'cluster-k');
    chmodSync(own.dir, 0o755);
    try {
      const hook = await reg.tempDir('hook-kill', { forPostgres: true });
      const calls = join(hook, 'calls.log');
      const marker = join(hook, 'held');
      const preload = resolve(__dirname, '../helpers/holdUpload.js');
      writeFileSync(
        join(hook, 'archive.sh'),
        [
          '#!/bin/sh',
          // Only a call with other segments waiting has look-ahead work (a reload is asynchronous: the
          // first calls may come before the pause took effect).
          `if [ ! -e '${hook}/tried' ] && [ "$(ls pg_wal/archive_status | grep -c '[.]ready$')" -ge 2 ]; then`,
          `  : > '${hook}/tried'`,
          `  HOLD_OWN="$1" HOLD_MARKER='${marker}' NODE_OPTIONS='--require ${preload}' ${waltsCommand('wal-push "$2"')} &`,
          '  pid=$!',
          `  while [ ! -s '${marker}' ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done`,
          '  kill -9 $pid 2>/dev/null; wait $pid; rc=$?',
          `  h=$(cat '${marker}' 2>/dev/null)`,
          '  if [ -n "$h" ] && [ -e "pg_wal/walts_spool/push/$h" ]; then r=recorded; else r=unrecorded; fi',
          `  if [ -n "$h" ] && [ -n "$(find '${own.dir}' -name "$h*" 2>/dev/null | head -n 1)" ]; then o=stored; else o=absent; fi`,
          `  echo "killed $1 held=$h $r $o rc=$rc" >> '${calls}'`,
          '  exit 1',
          'fi',
          `echo "push $1" >> '${calls}'`,
          waltsCommand('wal-push "$2"'),
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
      const archiveCommand = `sh '${hook}/archive.sh' %f %p`;
      const a = await reg.createCluster({ name: 'k', conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') }, env: { ...own.env, WALTS_RETRY_DEADLINE: '20' } });
      await a.start();
      await a.pgbench(['-i', '-s', '2', '-q']);
      const b = await reg.basebackup(a, { name: 'kb' });

      // Segments pile up with archiving paused, so the first call has look-ahead work; then the hook.
      a.setConf({ archive_command: '' });
      await a.reload();
      for (let i = 0; i < 4; i++) await a.psql(`update pgbench_branches set bbalance = bbalance + ${i}; select pg_switch_wal()`);
      a.setConf({ archive_command: archiveCommand });
      await a.reload();
      expect((await a.pgbench(['-c', '2', '-j', '2', '-T', '3', '-n'])).code).toBe(0);
      const state = await a.psql(STATE_SQL);
      const last = await a.switchWalAndWaitArchived(120_000);

      const lines = readFileSync(calls, 'utf8').trim().split('\n');
      const killed = (lines.find((l) => l.startsWith('killed ')) ?? 'none').split(' ');
      expect(killed[0]).toBe('killed');
      const held = killed[2]!.replace('held=', '');
      expect(held).toMatch(/^[0-9A-F]{24}$/);
      expect(held).not.toBe(killed[1]);
      expect(killed.slice(3, 5)).toEqual(['unrecorded', 'absent']); // nothing claims the killed upload
      expect(killed[5]).not.toBe('rc=0');
      // Pushed again afterwards (by a later call's look-ahead or its own call), and restorable.
      expect(execFileSync('find', [own.dir, '-name', `${held}*`], { encoding: 'utf8' }).trim()).not.toBe('');
      const [, failed] = (await a.psql("select archived_count || ',' || failed_count from pg_stat_archiver")).split(',').map(Number);
      expect(failed).toBe(1);

      b.env = { ...own.env };
      await b.setRecovery({ restore_command: waltsCommand('wal-fetch %f %p') });
      await b.start();
      await b.waitForRecoveryEnd(180_000);
      expect(await b.psql(STATE_SQL)).toBe(state);
      expect(b.log()).toContain(`restored log file "${held}" from archive`);
      expect(b.log()).toContain(`restored log file "${last}" from archive`);
      expect(b.log()).not.toMatch(/FATAL|PANIC/);
    } finally {
      await own.stop();
    }
  }, 600_000); // two clusters, pgbench and a restore: over 120 s on a loaded 2-core machine (seen in CI)
});

describe('look-ahead records (walts binary, s3rver behind a fault proxy, and a file store)', () => {
  const reg = trackClusters();
  let s3: S3rverHandle;
  let proxy: FaultProxy;
  let work: string;
  let shPath: string;
  let n = 0;

  beforeAll(async () => {
    s3 = await startS3rver();
    proxy = await startFaultProxy({ host: '127.0.0.1', port: s3.port });
    work = await reg.tempDir('work');
    // A PATH for the sh front with `stat` and nothing else: no node to fall through to.
    shPath = join(work, 'stat-only');
    mkdirSync(shPath);
    symlinkSync('/usr/bin/stat', join(shPath, 'stat'));
  });
  afterAll(async () => {
    await proxy?.stop();
    await s3?.stop();
    await reg.cleanupAll();
  });

  async function s3Env(): Promise<Record<string, string>> {
    const e = {
      WALTS_STORE: `s3://${s3.bucket}/lookahead-${++n}`,
      WALTS_S3_ENDPOINT: proxy.endpoint,
      WALTS_S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      WALTS_RETRY_DEADLINE: '5',
    };
    await initArchive(e);
    return e;
  }

  async function fileEnv(): Promise<Record<string, string>> {
    const dir = join(work, `store-${++n}`);
    mkdirSync(dir);
    const e = { WALTS_STORE: `file://${dir}` };
    await initArchive(e);
    return e;
  }

  /** A PGDATA whose pg_wal holds segments 1..count, all .ready, settled past the freshness margin. */
  async function pgdata(count: number): Promise<string> {
    const dir = join(work, `pgdata-${++n}`);
    mkdirSync(join(dir, 'pg_wal', 'archive_status'), { recursive: true });
    for (let i = 1; i <= count; i++) {
      writeFileSync(join(dir, 'pg_wal', seg(i)), fakeSegment(seg(i)));
      writeFileSync(join(dir, 'pg_wal', 'archive_status', `${seg(i)}.ready`), '');
    }
    await settle([1, 2, 3].slice(0, count).map((i) => join(dir, 'pg_wal', seg(i))));
    return dir;
  }

  const record = (dir: string, name: string) => join(dir, 'pg_wal', 'walts_spool', 'push', name);
  const push = (e: Record<string, string>, dir: string, name: string) => runWalts(['wal-push', `pg_wal/${name}`], e, { cwd: dir, timeoutMs: 60_000 });
  /** The sh front alone: 0 = answered from the record, 127 = fell through to (absent) node. */
  const shOnly = (e: Record<string, string>, dir: string, name: string) =>
    runWalts(['wal-push', `pg_wal/${name}`], { ...e, PATH: shPath }, { cwd: dir, cleanEnv: true, timeoutMs: 60_000 });
  /** Node alone, without the sh front. */
  const nodeOnly = (e: Record<string, string>, dir: string, name: string) =>
    run(process.execPath, [NODE_JS, 'wal-push', `pg_wal/${name}`], { env: { ...baseEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...e }, cleanEnv: true, cwd: dir, timeoutMs: 60_000 }).then(
      (r) => ({ ...r, outcome: outcomeOf(r.stderr) }),
    );
  const outcomeOf = (stderr: string) =>
    stderr
      .split('\n')
      .filter((l) => l.includes('"wal-push done"'))
      .map((l) => (JSON.parse(l) as { outcome: string }).outcome)[0];
  const puts = (e: Record<string, string>, name: string) =>
    proxy.requests.filter((r) => r.method === 'PUT' && r.url.includes(`/${e['WALTS_STORE']!.split('/').pop()}/`) && r.url.includes(name)).length;

  it('a look-ahead upload killed in flight leaves no record, and the file’s own call pushes it again', async () => {
    const e = await s3Env();
    const dir = await pgdata(3);
    proxy.inject({ kind: 'hang', method: 'PUT', pathIncludes: seg(3) });
    const child = spawn(WALTS_BIN, ['wal-push', `pg_wal/${seg(1)}`], {
      cwd: dir,
      env: { PATH: baseEnv().PATH, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...e, WALTS_IO_TIMEOUT: '600', WALTS_RETRY_DEADLINE: '600' },
      stdio: 'ignore',
    });
    let done = false;
    const exited = new Promise<string | null>((r) => child.once('exit', (_code, signal) => ((done = true), r(signal))));
    // The seam: the proxy holds seg 3's upload; seg 1 (the call's own) and seg 2 are acknowledged.
    while (!(puts(e, seg(3)) === 1 && existsSync(record(dir, seg(2)))) && !done) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    proxy.clear();
    expect(existsSync(record(dir, seg(3)))).toBe(false);
    expect((await shOnly(e, dir, seg(3))).code).toBe(127);

    const again = await push(e, dir, seg(3));
    expect(again.code).toBe(0);
    expect(outcomeOf(again.stderr)).toBe('uploaded');
    expect(puts(e, seg(3))).toBe(2);
    // seg 2 was acknowledged before the kill: its record is honoured, nothing uploaded again.
    expect((await shOnly(e, dir, seg(2))).code).toBe(0);
    expect(puts(e, seg(2))).toBe(1);
  });

  it('records are honoured by the sh front and by Node, also through the WALE_S3_PREFIX alias', async () => {
    const e = await fileEnv();
    const dir = await pgdata(3);
    expect((await push(e, dir, seg(1))).code).toBe(0);
    expect((await shOnly(e, dir, seg(2))).code).toBe(0);
    expect((await shOnly({ WALE_S3_PREFIX: e['WALTS_STORE']! }, dir, seg(2))).code).toBe(0);
    expect((await nodeOnly(e, dir, seg(2))).outcome).toBe('archived-ahead');
    expect((await nodeOnly({ WALE_S3_PREFIX: e['WALTS_STORE']! }, dir, seg(3))).outcome).toBe('archived-ahead');
    // Look-ahead off: records are neither honoured nor written.
    expect((await shOnly({ ...e, WALTS_PUSH_LOOKAHEAD: '0' }, dir, seg(2))).code).toBe(127);
  });

  it('with a store or endpoint named by another WAL-E/WAL-G variable, the sh front leaves the call to Node', async () => {
    // Node translates those names (src/config.ts FOREIGN_SETTINGS); the front cannot, and a record
    // written for "no endpoint" must not answer for a call whose WALE_S3_ENDPOINT names another one.
    const e = await fileEnv();
    const dir = await pgdata(3);
    expect((await push(e, dir, seg(1))).code).toBe(0);
    expect((await shOnly(e, dir, seg(2))).code).toBe(0);
    for (const extra of [{ WALE_S3_ENDPOINT: 'https+path://elsewhere:9000' } as Record<string, string>, { AWS_ENDPOINT: 'http://elsewhere:9000' }, { WALG_S3_PREFIX: 's3://other/p' }, { WALG_FILE_PREFIX: '/srv/other' }, { WALE_FILE_PREFIX: 'file:///srv/other' }]) {
      expect([extra, (await shOnly({ ...e, ...extra }, dir, seg(2))).code]).toEqual([extra, 127]);
    }
  });

  it('a record for a file whose bytes changed (mtime put back) is not honoured', async () => {
    const e = await s3Env();
    const dir = await pgdata(3);
    expect((await push(e, dir, seg(1))).code).toBe(0);
    const path = join(dir, 'pg_wal', seg(2));
    const mtime = statSync(path, { bigint: true }).mtimeNs;
    writeFileSync(path, fakeSegment(seg(2))); // same size, other bytes
    execFileSync('touch', ['-m', '-d', `@${mtime / 1_000_000_000n}.${(mtime % 1_000_000_000n).toString().padStart(9, '0')}`, path]);
    expect(statSync(path, { bigint: true }).mtimeNs).toBe(mtime);
    expect((await shOnly(e, dir, seg(2))).code).toBe(127);
    const r = await nodeOnly(e, dir, seg(2));
    expect(r.code).toBe(3); // the full push ran: different content is archived under that name
    expect(r.stderr).toContain('already archived with different content');
    expect(existsSync(record(dir, seg(2)))).toBe(false); // Node deleted the stale record
  });

  it('a record from another store or endpoint is not honoured', async () => {
    const e = await fileEnv();
    const other = await fileEnv();
    const dir = await pgdata(3);
    expect((await push(e, dir, seg(1))).code).toBe(0);
    expect((await shOnly(other, dir, seg(2))).code).toBe(127);
    expect((await shOnly({ ...e, WALTS_S3_ENDPOINT: 'http://127.0.0.1:9' }, dir, seg(2))).code).toBe(127);
    expect((await shOnly({ ...e, WALTS_STORE: `${e['WALTS_STORE']}/` }, dir, seg(2))).code).toBe(127);
    const r = await nodeOnly(other, dir, seg(2));
    expect(r.code).toBe(0);
    expect(r.outcome).toBe('uploaded'); // really pushed to the other store
    const s = await s3Env();
    expect((await push(s, dir, seg(3))).code).toBe(0);
    expect(existsSync(record(dir, seg(3)))).toBe(false); // seg 3's record (file store) was not honoured, and deleted
    expect(puts(s, seg(3))).toBe(1);
  });

  it('a record for a file renamed into the name (a recycled segment) is not honoured', async () => {
    const e = await fileEnv();
    const dir = await pgdata(3);
    expect((await push(e, dir, seg(1))).code).toBe(0);
    const path = join(dir, 'pg_wal', seg(2));
    execFileSync('cp', ['-p', path, path + '.copy']); // same bytes and mtime
    renameSync(path + '.copy', path); // same bytes, another inode
    expect((await shOnly(e, dir, seg(2))).code).toBe(127);
    expect((await nodeOnly(e, dir, seg(2))).outcome).toBe('already-archived');
    // Renamed away and back (same inode, new ctime): not honoured either.
    const p3 = join(dir, 'pg_wal', seg(3));
    renameSync(p3, p3 + '.away');
    renameSync(p3 + '.away', p3);
    expect((await shOnly(e, dir, seg(3))).code).toBe(127);
  });
});
