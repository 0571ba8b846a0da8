/**
 * The prefetcher alone (docs/performance.md, "Prefetcher throughput"): the WAL segments of a
 * directory (PF_SEGMENTS, default /tmp/prof/arch: real pgbench segments of one cluster) pushed
 * into s3rver, then one `walts wal-prefetch` (linger 0) after the first of them into an empty
 * spool, for each build given, the builds interleaved in every round so that the machine's load
 * falls on all of them alike. Prints per run: when each spool file's record was written (s after
 * the start, in name order), wall s, user+sys CPU s, minor page faults and max RSS (/usr/bin/time).
 * `--prof DIR` runs each prefetcher under `node --cpu-prof` (profiles in DIR/LABEL).
 *
 *   node -r ./scripts/register-ts.js scripts/bench-prefetcher.ts ROUNDS LABEL=CHECKOUT ... [--prof DIR]
 *
 * PF_ENV=NAME=VALUE,... adds settings (e.g. WALTS_CONCURRENCY=2).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { s3rverEnv, startS3rver } from '../test/helpers/s3server';

async function main(): Promise<void> {
  const rounds = Number(process.argv[2]);
  const builds = process.argv.slice(3).filter((a) => a.includes('=')).map((a) => a.split('=') as [string, string]);
  const profAt = process.argv.indexOf('--prof');
  const prof = profAt > 0 ? process.argv[profAt + 1] : undefined;
  const envExtra = (process.env.PF_ENV ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]);
  const segDir = process.env.PF_SEGMENTS ?? '/tmp/prof/arch';
  const s3 = await startS3rver('pfbench');
  const work = await fsp.mkdtemp('/tmp/pfbench-');
  try {
    const env = { ...process.env, ...s3rverEnv(s3, 'pfx'), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', WALTS_PUSH_LOOKAHEAD: '0', ...Object.fromEntries(envExtra) };
    const walts = join(builds[0]![1], 'bin', 'walts.js');
    execFileSync('node', [walts, 'init'], { env, stdio: 'inherit' });
    const src = join(work, 'src', 'pg_wal');
    await fsp.mkdir(src, { recursive: true });
    const names = readdirSync(segDir).sort();
    for (const n of names) {
      await fsp.copyFile(join(segDir, n), join(src, n));
      execFileSync('node', [walts, 'wal-push', join(src, n)], { env, cwd: join(work, 'src'), stdio: 'inherit' });
    }
    const results: Record<string, string[]> = {};
    for (let r = 0; r < rounds; r++) {
      for (const [label, dir] of builds) {
        const pgdata = join(work, 'dst');
        await fsp.rm(pgdata, { recursive: true, force: true });
        await fsp.mkdir(join(pgdata, 'pg_wal'), { recursive: true });
        const node = prof ? ['node', `--cpu-prof`, `--cpu-prof-dir=${prof}/${label}`] : ['node'];
        const t0 = Date.now();
        const res = spawnSync('/usr/bin/time', ['-f', '%e %U %S %R %M', ...node, join(dir, 'bin', 'walts.js'), 'wal-prefetch', names[0]!, join(pgdata, 'pg_wal', 'RECOVERYXLOG'), '--segment-size', '16777216', '--linger', '0'], { env, cwd: pgdata, encoding: 'utf8' });
        const [e, u, s, f, m] = res.stderr.trim().split('\n').pop()!.split(' ').map(Number);
        const got = readdirSync(join(pgdata, 'pg_wal', 'walts_spool', 'fetch')).filter((x) => /^[0-9A-F]{24}$/.test(x)).length;
        const fdir = join(pgdata, 'pg_wal', 'walts_spool', 'fetch');
        const ready = readdirSync(fdir).filter((x) => x.endsWith('.rec')).sort().map((x) => ((statSync(join(fdir, x)).mtimeMs - t0) / 1000).toFixed(2));
        const line = `ready ${ready.join(' ')} | ${e!.toFixed(2)}s cpu ${(u! + s!).toFixed(2)}s faults ${f} rss ${m}KB files ${got}`;
        (results[label] ??= []).push(line);
        process.stdout.write(`round ${r + 1} ${label}: ${line}${res.status !== 0 ? ` EXIT ${res.status} ${res.stdout} ${res.stderr}` : ''}\n`);
        if (got !== names.length - 1) process.stdout.write(`  log: ${readFileSync(join(pgdata, 'pg_wal', 'walts_spool', 'fetch', 'prefetch.log'), 'utf8').slice(-2000)}\n`);
      }
    }
  } finally {
    await s3.stop();
    await fsp.rm(work, { recursive: true, force: true });
  }
}
void main();
