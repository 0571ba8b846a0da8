/**
 * `npm run bench`: walts beside pgBackRest and barman-cloud on the same data and the same S3 server.
 *
 * It starts one s3rver on 127.0.0.1 (test harness) with a TLS-terminating proxy in front of it
 * (pgBackRest speaks S3 only over HTTPS; the certificate is self-signed, made at run time), one
 * throwaway PostgreSQL 15 cluster archiving with `cp` into a local directory, fills it with
 * `pgbench -i -s 20`, and keeps 16 real WAL segments from that archive as the fixture. Then, for each
 * tool, each in its own prefix, medians of N rounds (default 3):
 *
 *   wal-push x16   the 16 segments laid into a fake PGDATA's pg_wal with archive_status/*.ready files,
 *                  one process per segment in WAL order, cwd = PGDATA and %p = pg_wal/NAME, as the
 *                  archiver calls archive_command; a fresh prefix each round (nothing already there)
 *   wal-push x1    one segment, nothing else ready
 *   wal-fetch x16  the same 16 segments fetched in recovery order into a temp pg_wal (%f %p)
 *   wal-fetch x1   one segment
 *   backup-push    of the scale-20 cluster (running), to S3
 *   backup-fetch   of that backup into an empty directory
 *
 * Settings: walts with WALTS_COMPRESSION=lz4 and no encryption; pgBackRest with compress-type=lz4, in
 * sync mode (process-max=1) and in async mode (archive-async=y, spool-path, process-max=2, which also
 * parallelises its backup and restore), the faster of the two reported per row; barman-cloud
 * uncompressed (it has no LZ4; gzip/bzip2 would only be slower).
 * Peers are optional: when a peer's commands are absent and we are root, it is installed with
 * apt-get (Debian packages `pgbackrest`, `barman-cli-cloud`); otherwise its column says "missing".
 *
 *   node -r ./scripts/register-ts.js scripts/bench.ts [--rounds N] [--scale N] [--out FILE] [--no-install] [--no-pgp]
 *
 * Unless --no-pgp, walts runs a second time with OpenPGP on (its own column, not in the ratio).
 *
 * Prints the markdown table and writes it to FILE (default bench-results.md). Uses dist/ through
 * bin/walts: run `npm run build` first. Not part of `npm test`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { chownToPg, trackClusters, type Cluster } from '../test/helpers/pg';
import { baseEnv, isRoot, WALTS_BIN } from '../test/helpers/run';
import { startS3rver, type S3rverHandle } from '../test/helpers/s3server';

const out = (s: string) => process.stdout.write(s);

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} needs a positive whole number`);
  return v;
}
function stringOption(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : (process.argv[i + 1] ?? fallback);
}

interface Timed {
  code: number | null;
  seconds: number;
  output: string;
}

/** Runs one command with exactly `env` (on top of a minimal base) and times it, wall clock. */
function timed(cmd: string, args: string[], env: Record<string, string>, cwd?: string): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: { ...baseEnv(), ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => chunks.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code, seconds: Number(process.hrtime.bigint() - started) / 1e9, output: Buffer.concat(chunks).toString('utf8') });
    });
  });
}

async function ok(cmd: string, args: string[], env: Record<string, string>, cwd?: string): Promise<Timed> {
  const r = await timed(cmd, args, env, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.output.slice(-3000)}`);
  return r;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const have = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

/** Installs a peer's Debian package when its command is absent and we may (root, no --no-install). */
function ensurePeer(bin: string, pkg: string): string | undefined {
  if (have(bin)) return undefined;
  if (!isRoot() || process.argv.includes('--no-install')) return `${bin} not installed (Debian package ${pkg}); skipped`;
  out(`  installing ${pkg} with apt-get ... `);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { env, encoding: 'utf8' });
  if (r.status !== 0) {
    spawnSync('apt-get', ['update'], { env });
    r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { env, encoding: 'utf8' });
  }
  out(r.status === 0 && have(bin) ? 'ok\n' : 'failed\n');
  return have(bin) ? undefined : `${pkg} could not be installed (${(r.stderr || '').trim().split('\n').pop()}); skipped`;
}

/** HTTPS on a free 127.0.0.1 port, passing every request unchanged (Host header included) to s3rver. */
async function startTlsProxy(s3: S3rverHandle, dir: string): Promise<{ port: number; stop(): Promise<void> }> {
  const key = join(dir, 'proxy.key');
  const cert = join(dir, 'proxy.crt');
  await ok('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], {});
  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    const up = http.request({ host: '127.0.0.1', port: s3.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      res.statusCode = 502;
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { port, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** An OpenPGP key pair for the encrypted walts column, readable by the postgres user (archive_command). */
async function makeKeys(dir: string): Promise<Record<string, string>> {
  const openpgp = await import('openpgp');
  const k = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'walts bench' }], passphrase: 'bench passphrase', format: 'armored' });
  const files = { WALTS_PGP_PUBLIC_KEY: join(dir, 'public.asc'), WALTS_PGP_PRIVATE_KEY: join(dir, 'private.asc'), WALTS_PGP_PASSPHRASE_FILE: join(dir, 'passphrase') };
  writeFileSync(files.WALTS_PGP_PUBLIC_KEY, k.publicKey, { mode: 0o600 });
  writeFileSync(files.WALTS_PGP_PRIVATE_KEY, k.privateKey, { mode: 0o600 });
  writeFileSync(files.WALTS_PGP_PASSPHRASE_FILE, 'bench passphrase', { mode: 0o600 });
  for (const f of Object.values(files)) await chownToPg(f);
  return files;
}

type Row = 'push16' | 'push1' | 'fetch16' | 'fetch1' | 'backup' | 'restore';
const ROWS: Array<[Row, string]> = [
  ['push16', 'wal-push, 16 `.ready` segments as PostgreSQL calls it, total s'],
  ['push1', 'wal-push, one call, nothing else ready, s'],
  ['fetch16', 'wal-fetch, 16 segments in recovery order, total s'],
  ['fetch1', 'wal-fetch, one call, s'],
  ['backup', 'backup-push, pgbench PGDATA to S3, s'],
  ['restore', 'backup-fetch of the same, s'],
];

/** One way of running a tool: how to push/fetch one segment, take and restore a backup. */
interface Mode {
  tool: 'walts' | 'pgbackrest' | 'barman';
  label: string;
  /** Called once per round before pushes: a fresh, empty place in the store; returns its id. */
  prepare(round: string): Promise<void>;
  push(pgdata: string, name: string): Promise<Timed>;
  fetch(pgdata: string, name: string): Promise<Timed>;
  /** Clears local state that would let a later round skip work (spools). */
  resetLocal?(): Promise<void>;
  backup?(): Promise<Timed>;
  restore?(dest: string): Promise<Timed>;
}

async function main(): Promise<number> {
  const rounds = option('rounds', 3);
  const scale = option('scale', 20);
  const outFile = stringOption('out', 'bench-results.md');
  const reg = trackClusters();
  let s3: S3rverHandle | undefined;
  let proxy: { port: number; stop(): Promise<void> } | undefined;
  const notes: string[] = [];
  try {
    const pgbrMissing = ensurePeer('pgbackrest', 'pgbackrest');
    const barmanMissing = ensurePeer('barman-cloud-wal-archive', 'barman-cli-cloud');
    if (pgbrMissing) notes.push(`pgBackRest: ${pgbrMissing}`);
    if (barmanMissing) notes.push(`barman-cloud: ${barmanMissing}`);
    const version = (cmd: string, args: string[]) => (have(cmd) ? spawnSync(cmd, args, { encoding: 'utf8' }).stdout.trim().split('\n')[0] : 'missing');
    const versions = {
      node: process.version,
      postgres: spawnSync('/usr/lib/postgresql/15/bin/postgres', ['--version'], { encoding: 'utf8' }).stdout.trim(),
      pgbackrest: version('pgbackrest', ['version']),
      barman: version('barman-cloud-wal-archive', ['--version']),
    };
    out(`walts speed benchmark: ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${Object.values(versions).join(', ')}\n`);
    for (const n of notes) out(`  NOTE ${n}\n`);

    const work = await reg.tempDir('bench', { forPostgres: true });
    s3 = await startS3rver('bench');
    proxy = await startTlsProxy(s3, work);
    out(`  s3rver ${s3.endpoint}, TLS proxy https://127.0.0.1:${proxy.port}\n`);
    const awsEnv = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' };

    // The source cluster: archives with cp; its WAL is the fixture, its PGDATA the backup source.
    const walDir = await reg.tempDir('wal-archive', { forPostgres: true });
    const c: Cluster = await reg.createCluster({ name: 'src', conf: { archive_mode: 'on', archive_command: `cp %p ${walDir}/%f`, max_wal_size: '1GB' } });
    await c.start();
    let t = Date.now();
    out(`  pgbench -i -s ${scale} (archive_command = cp) ... `);
    await c.pgbench(['-i', '-s', String(scale), '-q']);
    await c.switchWalAndWaitArchived(600_000);
    out(`${((Date.now() - t) / 1000).toFixed(0)} s\n`);
    const archived = async () => (await fsp.readdir(walDir)).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort();
    // Enough real WAL for 16 + 1 segments: pgbench transactions until the archive holds them.
    for (let i = 0; i < 20 && (await archived()).length < 18; i++) {
      await c.pgbench(['-n', '-c', '2', '-j', '2', '-T', '5']);
      await c.switchWalAndWaitArchived(600_000);
    }
    const segs = await archived();
    if (segs.length < 17) throw new Error(`only ${segs.length} WAL segments archived; need 17`);
    const fixture = segs.slice(0, 16);
    const single = segs[16]!;
    const dbSize = Number(await c.psql('select sum(pg_database_size(oid)) from pg_database'));
    out(`  fixture: 16 segments ${fixture[0]}..${fixture[15]}; database ${(dbSize / 1e6).toFixed(0)} MB\n`);

    /** A fake PGDATA: global/pg_control of the source, pg_wal/ with `names` and their .ready files. */
    const fakePgdata = async (dir: string, names: string[]) => {
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.mkdir(join(dir, 'global'), { recursive: true });
      await fsp.mkdir(join(dir, 'pg_wal', 'archive_status'), { recursive: true });
      await fsp.copyFile(join(c.dataDir, 'global', 'pg_control'), join(dir, 'global', 'pg_control'));
      writeFileSync(join(dir, 'PG_VERSION'), '15\n');
      for (const n of names) {
        await fsp.copyFile(join(walDir, n), join(dir, 'pg_wal', n));
        writeFileSync(join(dir, 'pg_wal', 'archive_status', `${n}.ready`), '');
      }
    };
    /** What the archiver does after a successful archive_command. */
    const markDone = (dir: string, n: string) => fsp.rename(join(dir, 'pg_wal', 'archive_status', `${n}.ready`), join(dir, 'pg_wal', 'archive_status', `${n}.done`));

    const modes: Mode[] = [];

    // walts: LZ4, its own prefix per round; without encryption (the ratio column) and, unless
    // --no-pgp, with OpenPGP (a key pair made for the run) beside it.
    const pgp = process.argv.includes('--no-pgp') ? undefined : await makeKeys(work);
    for (const keyEnv of pgp ? [undefined, pgp] : [undefined]) {
      let env: Record<string, string> = {};
      modes.push({
        tool: 'walts',
        label: keyEnv ? 'walts + OpenPGP' : 'walts',
        async prepare(round) {
          env = { ...awsEnv, WALTS_STORE: `s3://${s3!.bucket}/walts${keyEnv ? '-pgp' : ''}-${round}`, WALTS_S3_ENDPOINT: s3!.endpoint, WALTS_S3_FORCE_PATH_STYLE: 'true', WALTS_COMPRESSION: 'lz4', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...keyEnv };
          await ok(WALTS_BIN, ['init'], env);
        },
        push: (pgdata, n) => timed(WALTS_BIN, ['wal-push', `pg_wal/${n}`], env, pgdata),
        fetch: (pgdata, n) => timed(WALTS_BIN, ['wal-fetch', n, `pg_wal/${n}`], env, pgdata),
        // walts backup-push waits until the backup's WAL is in its store (the peers were told not to
        // check, or wait for the cp archive): for this one, the cluster archives into walts as well.
        async backup() {
          const vars = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(' ');
          c.setConf({ archive_command: `cp %p ${walDir}/%f && env ${vars} '${WALTS_BIN}' wal-push %p` });
          await c.psql('select pg_reload_conf()');
          try {
            return await timed(WALTS_BIN, ['backup-push', c.dataDir, '--fast'], { ...env, ...c.pgEnv() });
          } finally {
            c.setConf({ archive_command: `cp %p ${walDir}/%f` });
            await c.psql('select pg_reload_conf()');
          }
        },
        restore: (dest) => timed(WALTS_BIN, ['backup-fetch', dest, 'LATEST'], env),
        // The prefetch spool (pg_wal/walts_spool): its prefetcher stopped (SIGTERM), then removed.
        resetLocal: async () => { const spool = join(work, 'fetch-pgdata', 'pg_wal', 'walts_spool'); const pid = Number((await fsp.readFile(join(spool, 'fetch', 'prefetch.lock'), 'utf8').catch(() => '')).split('\n')[0]); if (pid > 0) try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } await fsp.rm(spool, { recursive: true, force: true, maxRetries: 5 }); },
      });
    }

    // pgBackRest: sync and async, one stanza per round (repo1-path), LZ4.
    if (!pgbrMissing) {
      for (const async of [false, true]) {
        const spool = join(work, `pgbr-spool-${async ? 'async' : 'sync'}`);
        const conf = join(work, `pgbackrest-${async ? 'async' : 'sync'}.conf`);
        let repoPath = '';
        const base = () => [`--config=${conf}`, '--stanza=bench', `--repo1-path=${repoPath}`];
        const writeConf = () =>
          writeFileSync(
            conf,
            [
              '[global]',
              'repo1-type=s3',
              `repo1-s3-bucket=${s3!.bucket}`,
              'repo1-s3-region=us-east-1',
              'repo1-s3-endpoint=127.0.0.1',
              `repo1-storage-port=${proxy!.port}`,
              'repo1-storage-verify-tls=n',
              'repo1-s3-uri-style=path',
              'repo1-s3-key=S3RVER',
              'repo1-s3-key-secret=S3RVER',
              'compress-type=lz4',
              'log-level-console=warn',
              'log-level-file=off',
              'start-fast=y',
              'archive-check=n',
              `lock-path=${join(work, 'pgbr-lock')}`,
              `spool-path=${spool}`,
              // process-max also parallelises backup and restore in this configuration.
              ...(async ? ['archive-async=y', 'process-max=2'] : []),
              '',
              '[bench]',
              `pg1-path=${c.dataDir}`,
              `pg1-port=${c.port}`,
              `pg1-socket-path=${c.socketDir}`,
              'pg1-user=postgres',
              '',
            ].join('\n'),
          );
        writeConf();
        const pb = 'pgbackrest';
        modes.push({
          tool: 'pgbackrest',
          label: `pgBackRest ${async ? 'async, process-max=2' : 'sync'}`,
          async prepare(round) {
            repoPath = `/pgbackrest-${async ? 'async' : 'sync'}-${round}`;
            await fsp.rm(spool, { recursive: true, force: true });
            await ok(pb, [...base(), 'stanza-create'], {});
          },
          async resetLocal() {
            await fsp.rm(spool, { recursive: true, force: true });
          },
          push: (pgdata, n) => timed(pb, [...base(), `--pg1-path=${pgdata}`, 'archive-push', `pg_wal/${n}`], {}, pgdata),
          fetch: (pgdata, n) => timed(pb, [...base(), `--pg1-path=${pgdata}`, 'archive-get', n, `pg_wal/${n}`], {}, pgdata),
          backup: () => timed(pb, [...base(), '--type=full', 'backup'], {}),
          restore: (dest: string) => timed(pb, [...base(), `--pg1-path=${dest}`, 'restore'], {}),
        });
      }
    }

    // barman-cloud: uncompressed, one server name per round.
    if (!barmanMissing) {
      let server = '';
      const url = `s3://${s3.bucket}/barman`;
      const common = () => ['--endpoint-url', s3!.endpoint, url, server];
      modes.push({
        tool: 'barman',
        label: 'barman-cloud',
        async prepare(round) {
          server = `bench-${round}`;
        },
        push: (pgdata, n) => timed('barman-cloud-wal-archive', [...common(), `pg_wal/${n}`], awsEnv, pgdata),
        fetch: (pgdata, n) => timed('barman-cloud-wal-restore', [...common(), n, `pg_wal/${n}`], awsEnv, pgdata),
        backup: () => timed('barman-cloud-backup', ['-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', ...common()], awsEnv),
        async restore(dest) {
          const list = await ok('barman-cloud-backup-list', ['--format', 'json', ...common()], awsEnv);
          const parsed = JSON.parse(list.output.slice(list.output.indexOf('{'))) as { backups_list: Array<{ backup_id: string }> };
          const id = parsed.backups_list[parsed.backups_list.length - 1]!.backup_id;
          return timed('barman-cloud-restore', [...common(), id, dest], awsEnv);
        },
      });
    }

    // results[label][row] = seconds per round
    const results = new Map<string, Map<Row, number[]>>();
    const failed = new Map<string, string>();
    const record = (m: Mode, row: Row, s: number) => {
      const byRow = results.get(m.label) ?? new Map<Row, number[]>();
      results.set(m.label, byRow);
      byRow.set(row, [...(byRow.get(row) ?? []), s]);
    };
    const must = (m: Mode, what: string, r: Timed) => {
      if (r.code !== 0) throw new Error(`${m.label} ${what} exited ${r.code}: ${r.output.trim().split('\n').slice(-5).join(' | ')}`);
      return r.seconds;
    };

    const pushDir = join(work, 'push-pgdata');
    const fetchDir = join(work, 'fetch-pgdata');
    for (let round = 1; round <= rounds; round++) {
      out(`  round ${round}/${rounds}\n`);
      for (const m of modes) {
        if (failed.has(m.label)) continue;
        try {
          const id = `r${round}-${Date.now()}`;
          await m.prepare(id);
          await m.resetLocal?.();
          // wal-push x16, as the archiver: oldest .ready first, one process each, rename to .done.
          await fakePgdata(pushDir, fixture);
          let total = 0;
          for (const n of fixture) {
            total += must(m, `wal-push ${n}`, await m.push(pushDir, n));
            await markDone(pushDir, n);
          }
          record(m, 'push16', total);
          // wal-push x1, nothing else ready.
          await fakePgdata(pushDir, [single]);
          record(m, 'push1', must(m, 'wal-push (one)', await m.push(pushDir, single)));
          // wal-fetch x16 in recovery order, then one more on its own (fresh local state).
          await m.resetLocal?.();
          await fakePgdata(fetchDir, []);
          total = 0;
          for (const n of fixture) total += must(m, `wal-fetch ${n}`, await m.fetch(fetchDir, n));
          for (const n of fixture) {
            if (!(await fsp.readFile(join(fetchDir, 'pg_wal', n))).equals(await fsp.readFile(join(walDir, n)))) throw new Error(`${m.label}: fetched ${n} differs from the original`);
          }
          record(m, 'fetch16', total);
          await m.resetLocal?.();
          await fakePgdata(fetchDir, []);
          record(m, 'fetch1', must(m, 'wal-fetch (one)', await m.fetch(fetchDir, single)));
          const last = (row: Row) => results.get(m.label)!.get(row)!.at(-1)!.toFixed(3);
          out(`    ${m.label.padEnd(32)} push16 ${last('push16')} push1 ${last('push1')} fetch16 ${last('fetch16')} fetch1 ${last('fetch1')}`);
          if (m.backup && m.restore) {
            record(m, 'backup', must(m, 'backup', await m.backup()));
            const dest = join(work, `restore-${m.tool}`);
            await fsp.rm(dest, { recursive: true, force: true });
            await fsp.mkdir(dest, { mode: 0o700 });
            record(m, 'restore', must(m, 'restore', await m.restore(dest)));
            await fsp.rm(dest, { recursive: true, force: true });
            out(` backup ${last('backup')} restore ${last('restore')}`);
          }
          out('\n');
        } catch (err) {
          const msg = (err as Error).message.split('\n').slice(0, 6).join(' ');
          failed.set(m.label, msg);
          out(`\n    ${m.label}: FAILED, left out of later rounds: ${msg}\n`);
        }
      }
    }
    await c.stop();

    // The table: best pgBackRest mode per row, barman-cloud, walts, walts ÷ pgBackRest.
    const med = (label: string, row: Row) => {
      const xs = results.get(label)?.get(row);
      return xs && xs.length ? median(xs) : undefined;
    };
    const fmt = (s: number | undefined, row: Row) => (s === undefined ? '—' : s.toFixed(row === 'push1' || row === 'fetch1' ? 3 : 2));
    const lines = [
      `| work | pgBackRest (best mode) | barman-cloud | walts | walts ÷ pgBackRest |${pgp ? ' walts + OpenPGP |' : ''}`,
      `|---|---|---|---|---|${pgp ? '---|' : ''}`,
    ];
    for (const [row, title] of ROWS) {
      const pg = modes
        .filter((m) => m.tool === 'pgbackrest')
        .map((m) => ({ label: m.label, s: med(m.label, row) }))
        .filter((x) => x.s !== undefined)
        .sort((a, b) => a.s! - b.s!)[0];
      const w = med('walts', row);
      const b = med('barman-cloud', row);
      const pgCell = pg ? `${fmt(pg.s, row)} (${pg.label.replace('pgBackRest ', '')})` : pgbrMissing ? 'missing' : '—';
      const barmanCell = barmanMissing ? 'missing' : `${fmt(b, row)}${b !== undefined ? ' (uncompressed)' : ''}`;
      const ratio = pg && w !== undefined ? `${(w / pg.s!).toFixed(2)}×` : '—';
      const t2 = row === 'backup' ? `backup-push, ${(dbSize / 1e6).toFixed(0)} MB pgbench PGDATA (scale ${scale}) to S3, s` : title;
      lines.push(`| ${t2} | ${pgCell} | ${barmanCell} | ${fmt(w, row)} | ${ratio} |${pgp ? ` ${fmt(med('walts + OpenPGP', row), row)} |` : ''}`);
    }
    const tableText = lines.join('\n') + '\n';
    const header =
      `Machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB; ${versions.node}, ${versions.postgres}, ` +
      `${versions.pgbackrest}, ${versions.barman}; ${new Date().toISOString()}; medians of ${rounds} rounds, s3rver on 127.0.0.1 ` +
      `(pgBackRest through a local TLS proxy), walts LZ4 without encryption (and with OpenPGP in its own column), pgBackRest LZ4.\n`;
    const extra = [...notes, ...[...failed].map(([l, msg]) => `${l} failed: ${msg}`)].map((n) => `- ${n}\n`).join('');
    const perMode = [...results]
      .map(([label, rows]) => `- ${label}: ` + [...rows].map(([row, xs]) => `${row} ${xs.map((x) => x.toFixed(3)).join('/')}`).join(', '))
      .join('\n');
    const text = `${header}\n${tableText}\n${extra}\nAll rounds (seconds):\n\n${perMode}\n`;
    out(`\n${text}`);
    writeFileSync(outFile, text);
    out(`\n  written to ${outFile}\n`);
    return failed.size ? 1 : 0;
  } catch (err) {
    out(`FAILED\n${(err as Error).stack ?? String(err)}\n`);
    reg.dumpLogs(30);
    return 1;
  } finally {
    await proxy?.stop().catch(() => undefined);
    await reg.cleanupAll();
    await s3?.stop().catch(() => undefined);
  }
}

main().then((code) => {
  process.exitCode = code;
});
