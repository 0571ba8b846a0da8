/**
 * Memory benchmark for base backups: backup-push and backup-fetch of a ~1 GB cluster must stay under
 * 256 MiB peak RSS. It starts a throwaway PostgreSQL 15 cluster (test harness) that archives through
 * `walts wal-push %p` into a directory store (an embedded S3 server with --s3), encrypted with an OpenPGP key made for the run, fills it
 * with `pgbench -i -s N` (default 70, about 1.05 GB), then runs
 *
 *   walts backup-push <pgdata> --fast
 *   walts backup-push --remote --fast          (with --remote: over the replication protocol, TCP)
 *   walts backup-fetch <new dir> LATEST        (the remote backup when there is one)
 *
 * each as its own process under GNU time (`/usr/bin/time -f '%M %e'`; without it, by polling VmHWM in
 * /proc/<pid>/status), and prints sizes, wall time, throughput and peak RSS. Exits 1 if a command
 * fails or a peak RSS reaches the limit.
 *
 *   node -r ./scripts/register-ts.js scripts/bench-memory.ts [--scale N] [--s3] [--remote] [--random-mib M] [--limit-mib M] [--env K=V]... [--keep]
 *
 * --random-mib M adds M MiB of incompressible data (pgbench's tables compress about 9:1 with LZ4);
 * --env K=V passes extra environment to the measured walts processes (e.g. NODE_OPTIONS=...).
 *
 * Uses dist/ through bin/walts: run `npm run build` first. Needs PostgreSQL 15 (see test/helpers/pg.ts)
 * and about 4 GB free in the temp directory per 1 GB of database (cluster, archived WAL, backup, restore).
 */
import { accessSync, chmodSync, constants, promises as fsp, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { formatBytes, table } from '../src/cli/format';
import { chownToPg, trackClusters } from '../test/helpers/pg';
import { baseEnv, run, WALTS_BIN } from '../test/helpers/run';
import { initArchive, startStore, waltsCommand, type TestStore } from '../test/helpers/stores';

const GNU_TIME = '/usr/bin/time';
const out = (s: string) => process.stdout.write(s);

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

interface Measured {
  code: number | null;
  stderr: string;
  /** Peak resident set size of the walts process, bytes. */
  peakRss: number;
  seconds: number;
  how: string;
}

/** Runs `node bin/walts args` with exactly `env` and measures its peak RSS and wall time. */
async function measure(args: string[], env: Record<string, string>): Promise<Measured> {
  const fullEnv = { ...baseEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env, ...extraEnv() };
  const argv = [WALTS_BIN, ...args];
  if (hasGnuTime()) {
    const dir = await fsp.mkdtemp(join(tmpdir(), 'walts-bench-time-'));
    const file = join(dir, 'time');
    try {
      const r = await run(GNU_TIME, ['-f', '%M %e', '-o', file, ...argv], { env: fullEnv, cleanEnv: true, timeoutMs: 3_600_000 });
      const [kib, secs] = (await fsp.readFile(file, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
      return { code: r.code, stderr: r.stderr, peakRss: kib! * 1024, seconds: secs!, how: 'GNU time %M' };
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }
  return pollVmHwm(argv, fullEnv);
}

/** `--env K=V` (repeatable): extra environment for the measured walts processes (NODE_OPTIONS, MALLOC_*, ...). */
function extraEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  process.argv.forEach((a, i) => {
    const kv = a === '--env' ? process.argv[i + 1] : undefined;
    const eq = kv?.indexOf('=') ?? -1;
    if (kv && eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  });
  return env;
}

function hasGnuTime(): boolean {
  try {
    accessSync(GNU_TIME, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Without GNU time: the high-water mark the kernel keeps (VmHWM), read every 20 ms until exit. */
function pollVmHwm(argv: string[], env: Record<string, string>): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    let peak = 0;
    const poll = async () => {
      const status = await fsp.readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
      const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
      peak = Math.max(peak, kib * 1024);
    };
    const timer = setInterval(() => void poll(), 20);
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code, stderr: Buffer.concat(err).toString('utf8'), peakRss: peak, seconds: (Date.now() - started) / 1000, how: 'VmHWM polled every 20 ms' });
    });
  });
}

/** The fields of walts' `<command> done` log line. */
function doneLine(stderr: string, command: string): Record<string, unknown> {
  for (const line of stderr.split('\n').reverse()) {
    try {
      const j = JSON.parse(line) as Record<string, unknown>;
      if (j['msg'] === `${command} done`) return j;
    } catch {
      /* not a log line */
    }
  }
  throw new Error(`${command} printed no "done" line:\n${stderr.slice(-4000)}`);
}

async function main(): Promise<number> {
  const scale = option('scale', 70);
  const limitMiB = option('limit-mib', 256);
  const keep = process.argv.includes('--keep');
  const useS3 = process.argv.includes('--s3');
  const remote = process.argv.includes('--remote');
  const randomMiB = process.argv.includes('--random-mib') ? option('random-mib', 0) : 0;
  const reg = trackClusters();
  const stores: TestStore[] = [];
  const stop = () => {
    void reg.cleanupAll().then(async () => {
      for (const s of stores) await s.stop().catch(() => undefined);
      process.exit(130);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const store = await startStore(useS3 ? 's3' : 'file', reg, 'bench');
    stores.push(store);
    const dir = await reg.tempDir('keys', { forPostgres: true });
    const k = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'walts bench' }], passphrase: 'bench passphrase', format: 'armored' });
    const keys = { pub: join(dir, 'public.asc'), priv: join(dir, 'private.asc'), pass: join(dir, 'passphrase') };
    writeFileSync(keys.pub, k.publicKey);
    writeFileSync(keys.priv, k.privateKey);
    writeFileSync(keys.pass, 'bench passphrase');
    for (const f of Object.values(keys)) {
      chmodSync(f, 0o600);
      await chownToPg(f);
    }
    const pushEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.pub };
    await initArchive(pushEnv); // records that the archive is encrypted
    const fetchEnv = { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.priv, WALTS_PGP_PASSPHRASE_FILE: keys.pass };

    const extra = Object.entries(extraEnv()).map(([k, v]) => `${k}=${v}`).join(' ');
    out(`walts memory benchmark: pgbench scale ${scale}${randomMiB ? ` + ${randomMiB} MiB random` : ''}, ${useS3 ? 'S3 store (embedded s3rver)' : 'directory store'}, limit ${limitMiB} MiB peak RSS, node ${process.version}${extra ? `, walts run with ${extra}` : ''}\n`);
    const c = await reg.createCluster({ name: 'bench', env: pushEnv, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p'), max_wal_size: '1GB' } });
    await c.start();
    let t = Date.now();
    out(`  pgbench -i -s ${scale} ... `);
    await c.pgbench(['-i', '-s', String(scale), '-q']);
    out(`${((Date.now() - t) / 1000).toFixed(0)} s\n`);
    if (randomMiB > 0) {
      // Incompressible data (random bytea, stored raw in TOAST): LZ4 gains nothing, every byte is encrypted and stored.
      out(`  ${randomMiB} MiB of random bytea ... `);
      t = Date.now();
      await c.psql('create table bench_random (id int primary key, data bytea)');
      const rows = randomMiB * 128; // 8 KiB a row
      for (let first = 1; first <= rows; first += 8192) {
        const last = Math.min(rows, first + 8191);
        await c.psql(
          `insert into bench_random select g, (select string_agg(decode(md5(random()::text || g || i), 'hex'), ''::bytea) from generate_series(1, 512) i) from generate_series(${first}, ${last}) g`,
        );
      }
      out(`${((Date.now() - t) / 1000).toFixed(0)} s\n`);
    }
    out('  waiting for the archiver to catch up ... ');
    t = Date.now();
    await c.switchWalAndWaitArchived(1_800_000);
    out(`${((Date.now() - t) / 1000).toFixed(0)} s\n`);
    const dbSize = Number(await c.psql('select sum(pg_database_size(oid)) from pg_database'));

    out('  backup-push ... ');
    const push = await measure(['backup-push', c.dataDir, '--fast'], { ...pushEnv, ...c.pgEnv() });
    if (push.code !== 0) throw new Error(`backup-push failed (exit ${push.code}):\n${push.stderr.slice(-4000)}`);
    const pushed = doneLine(push.stderr, 'backup-push');
    out(`${push.seconds.toFixed(1)} s\n`);
    let pushRemote: Measured | undefined;
    let pushedRemote: Record<string, unknown> | undefined;
    if (remote) {
      // initdb's pg_hba.conf lets replication connections from 127.0.0.1 in (the harness' trust).
      out('  backup-push --remote ... ');
      pushRemote = await measure(['backup-push', '--remote', '--fast'], { ...pushEnv, PGHOST: '127.0.0.1', PGPORT: String(c.port), PGUSER: 'postgres', PGSSLMODE: 'disable' });
      if (pushRemote.code !== 0) throw new Error(`backup-push --remote failed (exit ${pushRemote.code}):\n${pushRemote.stderr.slice(-4000)}`);
      pushedRemote = doneLine(pushRemote.stderr, 'backup-push');
      out(`${pushRemote.seconds.toFixed(1)} s\n`);
    }

    const dest = join(await reg.baseDir(), 'restored');
    out('  backup-fetch ... ');
    const fetch = await measure(['backup-fetch', dest, 'LATEST'], fetchEnv);
    if (fetch.code !== 0) throw new Error(`backup-fetch failed (exit ${fetch.code}):\n${fetch.stderr.slice(-4000)}`);
    const fetched = doneLine(fetch.stderr, 'backup-fetch');
    out(`${fetch.seconds.toFixed(1)} s\n\n`);
    await c.stop();

    const bytesIn = Number(pushed['bytes_in']);
    const bytesOut = Number(pushed['bytes_out']);
    const restored = Number(fetched['bytes']);
    const mb = (n: number, s: number) => (n / 1e6 / s).toFixed(1);
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    out(`  database size (sum of pg_database_size): ${formatBytes(dbSize)} (${dbSize} bytes); ${pushed['files']} files in ${pushed['volumes']} volume(s), LZ4 + OpenPGP\n\n`);
    out(
      table([
        ['command', 'data', 'stored', 'wall s', 'MB/s', 'peak RSS MiB'],
        ['backup-push --fast', formatBytes(bytesIn), formatBytes(bytesOut), push.seconds.toFixed(1), mb(bytesIn, push.seconds), mib(push.peakRss)],
        ...(pushRemote && pushedRemote
          ? [['backup-push --remote --fast', formatBytes(Number(pushedRemote['bytes_in'])), formatBytes(Number(pushedRemote['bytes_out'])), pushRemote.seconds.toFixed(1), mb(Number(pushedRemote['bytes_in']), pushRemote.seconds), mib(pushRemote.peakRss)]]
          : []),
        ['backup-fetch LATEST', formatBytes(restored), formatBytes(bytesOut), fetch.seconds.toFixed(1), mb(restored, fetch.seconds), mib(fetch.peakRss)],
      ]).replace(/^(?=.)/gm, '  '),
    );
    out(`\n  peak RSS measured with ${push.how}; MB/s is plain data bytes (10^6) per wall-clock second\n`);
    const over = [push, fetch, ...(pushRemote ? [pushRemote] : [])].some((m) => m.peakRss >= limitMiB * 2 ** 20);
    out(over ? `  FAIL: a peak RSS reached ${limitMiB} MiB\n` : `  ok: every command stays under ${limitMiB} MiB\n`);
    return over ? 1 : 0;
  } catch (err) {
    out(`FAILED\n${(err as Error).stack ?? String(err)}\n`);
    reg.dumpLogs(30);
    return 1;
  } finally {
    if (keep) process.env['WALTS_TEST_KEEP'] = '1'; // servers are stopped, files kept (and their place printed)
    await reg.cleanupAll();
    for (const s of stores) await s.stop().catch(() => undefined);
  }
}

main().then((code) => {
  process.exitCode = code;
});
