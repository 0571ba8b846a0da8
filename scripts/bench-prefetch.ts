/**
 * Prefetch measured (docs/performance.md, "Prefetch during recovery and the wal-fetch fast path"):
 * 1. 16 wal-fetch calls in recovery order into an empty pg_wal, as `npm run bench` makes them, with
 *    WALTS_PREFETCH=0 (before) and the default (after), interleaved over --rounds rounds so that the
 *    load of the shared machine falls on both alike; spool and prefetcher cleared between runs;
 * 2. a PITR replay with walts as restore_command against the same replay with `cp` from a local
 *    directory.
 *
 *   node -r ./scripts/register-ts.js scripts/bench-prefetch.ts [--rounds N] [--scale N] [--segments N] [--variant PATH]
 *
 * One source cluster archives every segment twice (cp into a directory, walts wal-push into s3rver);
 * a base copy is taken before a pgbench load; each mode then restores a fresh copy of it and
 * replays the whole load. The time is PostgreSQL's own "redo done ... elapsed" (replay including
 * every restore_command wait), plus the wall time from start to the end of recovery. Modes: cp,
 * walts with WALTS_PREFETCH=0 (every call starts Node and downloads), walts with prefetch (the
 * default), and --variant PATH: another bin/walts front to compare (e.g. one without refill).
 */
import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chownToPg, trackClusters, type Cluster } from '../test/helpers/pg';
import { runOk, WALTS_BIN } from '../test/helpers/run';
import { s3rverEnv, startS3rver } from '../test/helpers/s3server';

/** Running and not a zombie (nothing may reap orphans in a container). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? dflt) : dflt;
};

async function main(): Promise<void> {
  const scale = Number(arg('scale', '12'));
  const want = Number(arg('segments', '20'));
  const variant = arg('variant', '');
  const reg = trackClusters();
  const s3 = await startS3rver('replay');
  try {
    const env = { ...s3rverEnv(s3, 'replay'), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    await runOk(WALTS_BIN, ['init'], { env });
    const walDir = await reg.tempDir('wal-cp', { forPostgres: true });
    const vars = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(' ');
    const src = await reg.createCluster({ name: 'src', conf: { archive_mode: 'on', archive_command: `cp %p ${walDir}/%f && env ${vars} '${WALTS_BIN}' wal-push %p`, max_wal_size: '1GB' } });
    await src.start();
    // The base copy first: the WAL to replay is pgbench's initialisation and load after it.
    const base = await reg.basebackup(src, { name: 'base' });
    const first = await src.psql('select pg_walfile_name(pg_current_wal_lsn())');
    await src.pgbench(['-i', '-s', String(scale), '-q']);
    let last = await src.switchWalAndWaitArchived(600_000);
    while (parseInt(last.slice(16), 16) - parseInt(first.slice(16), 16) < want) {
      await src.pgbench(['-n', '-c', '2', '-j', '2', '-t', '2000']);
      last = await src.switchWalAndWaitArchived(600_000);
    }
    const count = parseInt(last.slice(16), 16) - parseInt(first.slice(16), 16) + 1;
    await src.stop();
    process.stdout.write(`replay of ${count} segments (${first}..${last}), pgbench scale ${scale}\n`);

    // 1. wal-fetch x16.
    const rounds = Number(arg('rounds', '3'));
    const fixture: string[] = [];
    for (let i = 0; i < 16; i++) fixture.push(first.slice(0, 16) + (parseInt(first.slice(16), 16) + i).toString(16).toUpperCase().padStart(8, '0'));
    const fetchDir = join(await reg.tempDir('fetch16'), 'pgdata');
    const times: Record<string, number[]> = { before: [], after: [] };
    for (let r = 0; r < rounds; r++) {
      for (const which of ['before', 'after'] as const) {
        await fsp.rm(fetchDir, { recursive: true, force: true });
        await fsp.mkdir(join(fetchDir, 'pg_wal'), { recursive: true });
        const e = { ...env, ...(which === 'before' ? { WALTS_PREFETCH: '0' } : {}) };
        const t0 = process.hrtime.bigint();
        for (const n of fixture) await runOk(WALTS_BIN, ['wal-fetch', n, `pg_wal/${n}`], { env: e, cwd: fetchDir });
        times[which]!.push(Number(process.hrtime.bigint() - t0) / 1e9);
        // Let the last prefetcher finish before the next run (it is not part of the 16 calls).
        const lock = join(fetchDir, 'pg_wal', 'walts_spool', 'fetch', 'prefetch.lock');
        for (let i = 0; i < 600; i++) {
          const pid = Number((await fsp.readFile(lock, 'utf8').catch(() => '')).split('\n')[0]);
          if (!(pid > 0) || !alive(pid)) break;
          await new Promise((res) => setTimeout(res, 100));
        }
      }
    }
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    process.stdout.write(`wal-fetch x16 in recovery order (s3rver), ${rounds} rounds: WALTS_PREFETCH=0 ${times.before!.map((x) => x.toFixed(2)).join('/')} (median ${med(times.before!).toFixed(2)} s), prefetch ${times.after!.map((x) => x.toFixed(2)).join('/')} (median ${med(times.after!).toFixed(2)} s)\n`);
    if (process.argv.includes('--fetch-only')) return;

    // 2. PITR replay.
    const modes: Array<{ label: string; restore: string; env?: Record<string, string> }> = [
      { label: 'cp from a local directory', restore: `cp ${walDir}/%f %p` },
      { label: 'walts, WALTS_PREFETCH=0', restore: `'${WALTS_BIN}' wal-fetch %f %p`, env: { ...env, WALTS_PREFETCH: '0' } },
      { label: 'walts, prefetch (default 16)', restore: `'${WALTS_BIN}' wal-fetch %f %p`, env },
    ];
    if (variant) modes.push({ label: `walts, prefetch, ${variant}`, restore: `'${variant}' wal-fetch %f %p`, env });
    for (const m of modes) {
      const c: Cluster = await reg.emptyCluster({ name: `r-${modes.indexOf(m)}`, env: m.env });
      await fsp.mkdir(c.dataDir, { recursive: true, mode: 0o700 });
      await runOk('cp', ['-a', `${base.dataDir}/.`, c.dataDir]);
      await chownToPg(c.dataDir, true);
      await c.prepareRestoredDataDir();
      await c.setRecovery({ restore_command: `PATH='${require('node:path').dirname(process.execPath)}':"$PATH" ${m.restore}`, recovery_target_action: 'promote' });
      const started = Date.now();
      await c.start();
      await c.waitForRecoveryEnd(900_000);
      const wall = (Date.now() - started) / 1000;
      const elapsed = /redo done at .* elapsed: ([\d.]+) s/.exec(c.log())?.[1] ?? '?';
      const spool = join(c.dataDir, 'pg_wal', 'walts_spool', 'fetch', 'served.log');
      const served = (await fsp.readFile(spool, 'utf8').catch(() => '')).split('\n').filter((l) => l.endsWith(' sh')).length;
      process.stdout.write(`  ${m.label.padEnd(40)} redo ${elapsed} s, start to end of recovery ${wall.toFixed(2)} s, served by sh ${served}\n`);
      await c.stop();
    }
  } finally {
    await reg.cleanupAll();
    await s3.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
