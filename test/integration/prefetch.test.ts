/**
 * Acceptance for prefetch during recovery and the wal-fetch fast path (issue 8, scope 2), with real
 * PostgreSQL 15, the walts binary (bin/walts: the sh front, then Node) and both stores:
 * - point-in-time restores (backup-fetch, then recovery with walts wal-fetch as restore_command, WAL
 *   from pgbench) complete with prefetch on, and the spool really served files (served.log);
 * - a restore following a promoted timeline never gets a spool file of the other timeline, and a
 *   crafted spool file under another timeline's name is not served;
 * - a spool file rewritten in place (even with its mtime put back) is caught on the sh path and on
 *   the Node path, and fetched again from the store; a record naming another store is not honoured;
 * - a prefetcher killed mid-download (a GET held by the fault proxy) leaves nothing servable, and its
 *   stale lock is taken over;
 * - past the end of the archive: exit 1, and no prefetcher started per call.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatRecord } from '../../src/ops/fetchSpool';
import { parseSegmentName, segmentName } from '../../src/postgres/walName';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { trackClusters, type Cluster } from '../helpers/pg';
import { alive, nextSegmentName, scratchPgdata, waitUntil } from '../helpers/prefetch';
import { run, runWalts } from '../helpers/run';
import { startStore, type StoreKind, type TestStore } from '../helpers/stores';

const SEG = 16 * 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const next = nextSegmentName;

function lockPid(spool: string): number | undefined {
  try {
    return Number(readFileSync(join(spool, 'prefetch.lock'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
}

/** Until no prefetcher works on this spool. */
const prefetcherDone = (spool: string) => waitUntil(`the prefetcher of ${spool} to finish`, () => {
  const pid = lockPid(spool);
  return pid === undefined || !alive(pid);
});

const served = (spool: string): string[] => {
  try {
    return readFileSync(join(spool, 'served.log'), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

describe.each<StoreKind>(['file', 's3'])('prefetch during recovery (%s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let proxy: FaultProxy | undefined;
  let env: Record<string, string>;
  let a: Cluster;
  /** TL1 segments archived after the backup, in order. */
  const segs: string[] = [];
  let switchLsn = '';
  let n = 0;
  let base = '';

  beforeAll(async () => {
    store = await startStore(kind, reg, 'prefetch');
    base = await reg.baseDir();
    env = { ...store.env, WALTS_RETRY_DEADLINE: '20' };
    if (kind === 's3') {
      proxy = await startFaultProxy({ host: '127.0.0.1', port: store.s3!.port });
      env.WALTS_S3_ENDPOINT = proxy.endpoint;
    }
    const { waltsCommand } = await import('../helpers/stores');
    a = await reg.createCluster({ name: 'a', env, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    await a.psql('create table marker (id int primary key, tag text)');
    const push = await runWalts(['backup-push', a.dataDir, '--fast'], { ...env, ...a.pgEnv() }, { timeoutMs: 180_000 });
    expect(push.code).toBe(0);
    const first = await a.psql('select pg_walfile_name(pg_current_wal_lsn())');
    await a.pgbench(['-i', '-s', '3', '-q']);
    await a.psql("insert into marker values (1, 'before')");
    switchLsn = await a.psql('select pg_current_wal_lsn()');
    await a.psql('select pg_switch_wal()');
    // Timeline 1 goes on after the point the second timeline will branch at.
    await a.pgbench(['-c', '2', '-t', '300', '-n']);
    await a.psql("insert into marker values (2, 'tl1-after')");
    for (let i = 0; i < 6; i++) await a.psql(`insert into marker values (${10 + i}, 'tl1-after'); select pg_switch_wal()`);
    const last = await a.switchWalAndWaitArchived(120_000);
    for (let s = first; s <= last; s = next(s)) segs.push(s);
    await a.stop();
  }, 600_000);
  afterAll(async () => {
    await reg.cleanupAll();
    await proxy?.stop();
    await store?.stop();
  });

  const scratch = () => scratchPgdata(join(base, `scratch-${kind}-${++n}`), a.dataDir);
  /** restore_command as PostgreSQL runs it: %p removed first, cwd = PGDATA. */
  const fetch = (s: { dir: string; dest: string }, name: string, extra: Record<string, string> = {}) => {
    rmSync(s.dest, { force: true });
    return runWalts(['wal-fetch', name, 'pg_wal/RECOVERYXLOG'], { ...env, ...extra }, { cwd: s.dir, timeoutMs: 180_000 });
  };
  /** The archived content of `name`, fetched without any spool. */
  async function fromStore(name: string): Promise<Buffer> {
    const s = scratch();
    const r = await fetch(s, name, { WALTS_PREFETCH: '0' });
    expect(r.code).toBe(0);
    return readFileSync(s.dest);
  }
  /** Serves segs[i] through Node and waits for the prefetcher it starts to fill the spool. */
  async function primed(i = 1): Promise<{ dir: string; dest: string; spool: string }> {
    const s = scratch();
    const r = await fetch(s, segs[i]!);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('"prefetch":"started"');
    await prefetcherDone(s.spool);
    return s;
  }
  /** Rewrites bytes inside a spool file and puts its mtime back (ns precision) as utimes can. */
  async function corrupt(file: string): Promise<void> {
    const mtime = (await run('stat', ['-c', '%.9Y', file])).stdout.trim();
    const buf = readFileSync(file);
    buf.write('corrupted by the test', 100_000);
    writeFileSync(file, buf);
    expect((await run('touch', ['-m', '-d', `@${mtime}`, file])).code).toBe(0);
    expect((await run('stat', ['-c', '%.9Y', file])).stdout.trim()).toBe(mtime);
  }

  it('point-in-time restores with walts wal-fetch complete with prefetch on, the spool serves files, and a restore following the promoted timeline never gets the other timeline’s files', async () => {
    // 1. Back to the switch point, promoted: timeline 2, archived into the same store.
    const r1 = await reg.emptyCluster({ name: 'r1', env });
    const f1 = await runWalts(['backup-fetch', r1.dataDir, 'LATEST', '--target-lsn', switchLsn, '--target-action', 'promote', '--archive-mode', 'preserve'], env, { timeoutMs: 180_000 });
    expect(f1.code).toBe(0);
    await r1.prepareRestoredDataDir({ keepSourceSettings: true });
    await r1.start();
    await r1.waitForRecoveryEnd(300_000);
    expect(await r1.psql("select string_agg(tag, ',' order by id) from marker")).toBe('before');
    await r1.psql("insert into marker values (3, 'tl2')");
    const tl2Last = await r1.switchWalAndWaitArchived(120_000);
    expect(tl2Last.slice(0, 8)).toBe('00000002');
    const r1Spool = join(r1.dataDir, 'pg_wal', 'walts_spool', 'fetch');
    expect(served(r1Spool).filter((l) => l.endsWith(' sh')).length).toBeGreaterThan(0);
    await r1.stop();

    // 2. Latest timeline: PostgreSQL wants timeline 1's names before the branch point and timeline
    // 2's after it, while the prefetcher fetched timeline 1's going on (they exist in the store).
    const r2 = await reg.emptyCluster({ name: 'r2', env });
    const f2 = await runWalts(['backup-fetch', r2.dataDir, 'LATEST'], env, { timeoutMs: 180_000 });
    expect(f2.code).toBe(0);
    await r2.prepareRestoredDataDir({ keepSourceSettings: true });
    await r2.start();
    await r2.waitForRecoveryEnd(300_000);
    expect(await r2.psql("select string_agg(tag, ',' order by id) from marker")).toBe('before,tl2');
    const spool = join(r2.dataDir, 'pg_wal', 'walts_spool', 'fetch');
    const lines = served(spool);
    // Counted from the spool's own evidence, not from timing: the sh path served segments.
    expect(lines.filter((l) => l.endsWith(' sh')).length).toBeGreaterThan(0);
    const history = readFileSync(join(r2.dataDir, 'pg_wal', '00000002.history'), 'utf8');
    const switchSeg = Number(BigInt(`0x${history.split('\t')[1]!.split('/')[0]}`) * 2n ** 32n / BigInt(SEG) + BigInt(`0x${history.split('\t')[1]!.split('/')[1]}`) / BigInt(SEG));
    for (const l of lines) {
      const id = parseSegmentName(l.slice(0, 24));
      // Served from timeline 1 only before the branch segment; from 2 only from it on.
      expect(id.timeline === 1 ? id.segNo < switchSeg : id.segNo >= switchSeg).toBe(true);
    }
    // Every segment PostgreSQL restored, whoever served it, was the archived one: it replayed to the end.
    expect(r2.log()).not.toMatch(/FATAL|PANIC/);
    await r2.stop();
  }, 900_000);

  it('a spool file rewritten in place (mtime put back) is not served by the sh path: fetched again from the store', async () => {
    const s = await primed(1);
    const name = segs[2]!;
    expect(existsSync(join(s.spool, `${name}.rec`))).toBe(true);
    const good = await fromStore(name);
    await corrupt(join(s.spool, name));
    const r = await fetch(s, name);
    expect(r.code).toBe(0);
    expect(sha(readFileSync(s.dest))).toBe(sha(good));
    expect(r.stderr).toContain('"source":"store"');
    expect(served(s.spool)).not.toContain(`${name} sh`);
    await prefetcherDone(s.spool);
  }, 600_000);

  it('the Node path (WALTS_CONFIG) catches a rewritten spool file, also when its record was rewritten to match, and serves a good one', async () => {
    const s = await primed(1);
    const config = join(s.dir, 'walts.env');
    writeFileSync(config, Object.entries(env).filter(([k]) => k.startsWith('WALTS_')).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 });
    const viaConfig = (name: string) => (rmSync(s.dest, { force: true }), runWalts(['wal-fetch', name, 'pg_wal/RECOVERYXLOG'], { ...Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('WALTS_'))), WALTS_CONFIG: config }, { cwd: s.dir, timeoutMs: 180_000 }));

    // Rewritten, mtime put back: the ctime differs from the record.
    const bad1 = segs[2]!;
    const good1 = await fromStore(bad1);
    await corrupt(join(s.spool, bad1));
    let r = await viaConfig(bad1);
    expect(r.code).toBe(0);
    expect(sha(readFileSync(s.dest))).toBe(sha(good1));
    expect(r.stderr).toContain('"source":"store"');
    expect(r.stderr).toContain('removed a spool file that cannot be served');
    await prefetcherDone(s.spool);

    // Rewritten, and a record written to match its new stat (but with the old digest): only the
    // digest tells, and the Node path reads the file again.
    const bad2 = segs[4]!;
    const good2 = await fromStore(bad2);
    const file = join(s.spool, bad2);
    const digest = readFileSync(`${file}.rec`, 'utf8').split('\n')[0]!.split(' ')[6]!;
    const buf = readFileSync(file);
    buf.write('corrupted by the test', 200_000);
    writeFileSync(file, buf);
    writeFileSync(`${file}.rec`, formatRecord(statSync(file, { bigint: true }), digest, { store: env.WALTS_STORE!, endpoint: env.WALTS_S3_ENDPOINT }));
    r = await viaConfig(bad2);
    expect(r.code).toBe(0);
    expect(sha(readFileSync(s.dest))).toBe(sha(good2));
    expect(r.stderr).toContain('content does not match the recorded SHA-256');
    await prefetcherDone(s.spool);

    // An intact one is served from the spool by Node.
    const ok = segs[5]!;
    expect(existsSync(join(s.spool, `${ok}.rec`))).toBe(true);
    r = await viaConfig(ok);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('"source":"spool"');
    expect(sha(readFileSync(s.dest))).toBe(sha(await fromStore(ok)));
    expect(served(s.spool)).toContain(`${ok} node`);
  }, 600_000);

  it('a spool file under another timeline’s name is not served (copied or renamed with its record); "not found" still comes from the store', async () => {
    const s = await primed(1);
    const tl1 = segs[2]!;
    const copied = `00000009${tl1.slice(8)}`;
    const renamed = `00000008${segs[3]!.slice(8)}`;
    // cp -p keeps the mtime; the record copied verbatim (right store, right digest, same words).
    expect((await run('cp', ['-p', join(s.spool, tl1), join(s.spool, copied)])).code).toBe(0);
    copyFileSync(join(s.spool, `${tl1}.rec`), join(s.spool, `${copied}.rec`));
    expect((await run('mv', [join(s.spool, segs[3]!), join(s.spool, renamed)])).code).toBe(0);
    expect((await run('mv', [join(s.spool, `${segs[3]!}.rec`), join(s.spool, `${renamed}.rec`)])).code).toBe(0);
    for (const name of [copied, renamed]) {
      const r = await fetch(s, name);
      expect(r.code).toBe(1); // the store has no timeline 8 or 9: only it may say so
      expect(existsSync(s.dest)).toBe(false);
      expect(served(s.spool).some((l) => l.startsWith(name))).toBe(false);
      expect(existsSync(join(s.spool, name))).toBe(false); // removed by the Node path
    }
  }, 600_000);

  it('a record naming another store is not honoured', async () => {
    const s = await primed(1);
    const name = segs[3]!;
    const file = join(s.spool, name);
    // Another archive's file for the same name, recorded consistently but for another store.
    copyFileSync(join(s.spool, segs[4]!), file);
    writeFileSync(`${file}.rec`, formatRecord(statSync(file, { bigint: true }), sha(readFileSync(file)), { store: 'file:///elsewhere/archive', endpoint: env.WALTS_S3_ENDPOINT }));
    const r = await fetch(s, name);
    expect(r.code).toBe(0);
    expect(sha(readFileSync(s.dest))).toBe(sha(await fromStore(name)));
    expect(r.stderr).toContain('recorded for another store');
    expect(served(s.spool).some((l) => l.startsWith(name))).toBe(false);
  }, 600_000);

  it('past the end of the archive: exit 1, quietly, and no prefetcher started per call', async () => {
    const s = scratch();
    expect((await fetch(s, segs[segs.length - 2]!)).code).toBe(0);
    await prefetcherDone(s.spool);
    // The prefetcher met the end of the archive (a's shutdown may have archived one more segment).
    const end = readFileSync(join(s.spool, 'end'), 'utf8').trim();
    expect(end > segs[segs.length - 2]!).toBe(true);
    const last = segmentName({ timeline: 1, segNo: parseSegmentName(end).segNo - 1 });
    // The last one comes from the spool (sh); the end is known, so no refill starts.
    let r = await fetch(s, last);
    expect(r.code).toBe(0);
    expect(served(s.spool)).toContain(`${last} sh`);
    expect(existsSync(join(s.spool, 'prefetch.lock'))).toBe(false);
    for (let i = 0; i < 3; i++) {
      r = await fetch(s, end);
      expect(r.code).toBe(1);
      expect(existsSync(s.dest)).toBe(false);
      // A start takes the lock before the caller exits: none is there.
      expect(existsSync(join(s.spool, 'prefetch.lock'))).toBe(false);
      expect(r.stderr).not.toMatch(/"level":"(warn|error)"/);
    }
    const starts = () => readFileSync(join(s.spool, 'prefetch.log'), 'utf8').split('\n').filter((l) => l.includes('"cmd":"wal-prefetch"')).length;
    const before = starts();
    // Without the remembered end (a first poll), one early prefetcher may start and is stopped;
    // the answer is remembered, and the polls after it start nothing.
    rmSync(join(s.spool, 'end'));
    const debug = { WALTS_LOG_LEVEL: 'debug' };
    r = await fetch(s, end, debug);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('started the prefetcher before the download');
    expect(readFileSync(join(s.spool, 'end'), 'utf8').trim()).toBe(end);
    await prefetcherDone(s.spool);
    for (let i = 0; i < 2; i++) {
      r = await fetch(s, end, debug);
      expect(r.code).toBe(1);
      expect(r.stderr).not.toContain('started the prefetcher');
      expect(existsSync(join(s.spool, 'prefetch.lock'))).toBe(false);
    }
    expect(starts()).toBeLessThanOrEqual(before + 1);
  }, 600_000);

  (kind === 's3' ? it : it.skip)('a prefetcher killed mid-download leaves nothing servable; its stale lock is taken over', async () => {
    const s = scratch();
    const held = segs[2]!;
    proxy!.inject({ kind: 'stall-response', bytes: 64 * 1024, method: 'GET', pathIncludes: held });
    expect((await fetch(s, segs[1]!)).code).toBe(0);
    // The held download is under way (its temp file exists: the answer's head and first bytes came);
    // the others complete around it.
    await waitUntil('the held download', () => existsSync(s.spool) && readdirSync(s.spool).some((f) => f.startsWith(`.${held}.walts-`) || f === held));
    await waitUntil('the rest of the window', () => existsSync(join(s.spool, `${segs[6]!}.rec`)));
    const pid = lockPid(s.spool)!;
    expect(alive(pid)).toBe(true);
    process.kill(pid, 'SIGKILL');
    await waitUntil('the prefetcher to die', () => !alive(pid));
    proxy!.clear();
    expect(existsSync(join(s.spool, held))).toBe(false);
    expect(existsSync(join(s.spool, `${held}.rec`))).toBe(false);
    const r = await fetch(s, held);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('"source":"store"');
    expect(sha(readFileSync(s.dest))).toBe(sha(await fromStore(held)));
    // The dead prefetcher's lock did not stop a new one: it fetches past the old window.
    expect(r.stderr).toContain('"prefetch":"started"');
    await prefetcherDone(s.spool);
    expect(existsSync(join(s.spool, `${next(held, 16)}.rec`)) || readFileSync(join(s.spool, 'end'), 'utf8').trim() <= next(held, 16)).toBe(true);
    expect(readdirSync(s.spool).filter((f) => f.includes('.walts-'))).toEqual([]);
  }, 600_000);
});
