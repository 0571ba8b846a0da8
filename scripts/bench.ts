/**
 * `npm run bench`: walts beside pgBackRest and barman-cloud on the same data and the same S3 server,
 * with issue 8's goal beside every ratio. docs/performance.md describes the method; in short:
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
 *   pitr           one base backup of the cluster plus --replay-segments segments of pgbench WAL,
 *                  restored into fresh clusters that differ only in restore_command (cp from the
 *                  local archive, walts wal-fetch, pgBackRest async archive-get): start to promotion
 *   lag            (once, not per round) copies of the cluster archive through walts / pgBackRest
 *                  async while `pgbench -c 2` runs --load-seconds; `.ready` files sampled every 250 ms
 *
 * walts runs with its defaults (LZ4 set; look-ahead, prefetch and concurrency not set). pgBackRest
 * with compress-type=lz4 in sync mode and in async mode (process-max=2); barman-cloud uncompressed.
 * Peers are optional: when a peer's commands are absent from --peer-path (default PATH) and we are
 * root without --no-install, its Debian package is installed; otherwise its column says "missing".
 *
 *   node -r ./scripts/register-ts.js scripts/bench.ts [--rounds N] [--scale N] [--out FILE]
 *     [--no-install] [--no-pgp] [--only ROWS] [--peer-path PATH] [--load-seconds N]
 *     [--replay-segments N] [--lag-barman]
 *
 * Prints the markdown table and writes it to FILE (default bench-results.md). Uses dist/ through
 * bin/walts: run `npm run build` first. Not part of `npm test`.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { chownToPg, PG_OS_USER, trackClusters, type Cluster } from '../test/helpers/pg';
import { isRoot, runOk, WALTS_BIN } from '../test/helpers/run';
import { startS3rver, type S3rverHandle } from '../test/helpers/s3server';
import { waltsCommand } from '../test/helpers/stores';
import { lagCell, measureLag, type LagResult, type LagTool } from './bench/lag';
import { parseOptions, type RowId } from './bench/options';
import { aptInstall, BARMAN, detectPeer, PGBACKREST } from './bench/peers';
import { writePgbrConf } from './bench/pgbackrest';
import { timeReplay, type ReplayMethod, type ReplayResult } from './bench/pitr';
import { median, ok, out, timed, type Timed } from './bench/proc';
import { renderTable, timedRow, type TableRow } from './bench/table';

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

type TimedRowId = Exclude<RowId, 'lag' | 'pitr'>;
const TIMED_ROWS: Array<[TimedRowId, string]> = [
  ['push16', 'wal-push, 16 `.ready` segments as PostgreSQL calls it, total s'],
  ['push1', 'wal-push, one call, nothing else ready, s'],
  ['fetch16', 'wal-fetch, 16 segments in recovery order, total s'],
  ['fetch1', 'wal-fetch, one call, s'],
  ['backup', 'backup-push, pgbench PGDATA to S3, s'],
  ['restore', 'backup-fetch of the same, s'],
];

/** walts settings the bench must leave at their defaults (issue 8's speed work is measured as shipped). */
const WALTS_DEFAULTS_KEPT = ['WALTS_PUSH_LOOKAHEAD', 'WALTS_PREFETCH', 'WALTS_CONCURRENCY', 'WALTS_SPOOL_DIR'];

/** One way of running a tool: how to push/fetch one segment, take and restore a backup. */
interface Mode {
  tool: 'walts' | 'pgbackrest' | 'barman';
  label: string;
  /** Short name in the pgBackRest cell ("sync", "async, process-max=2"). */
  short: string;
  /** Called once per round before pushes: a fresh, empty place in the store. */
  prepare(round: string): Promise<void>;
  push(pgdata: string, name: string): Promise<Timed>;
  fetch(pgdata: string, name: string): Promise<Timed>;
  /** Clears local state in `pgdata` (or the tool's own) that would let a later step skip work (spools). */
  resetLocal?(pgdata: string): Promise<void>;
  backup?(): Promise<Timed>;
  restore?(dest: string): Promise<Timed>;
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const started = Date.now();
  const wants = (...rows: RowId[]) => rows.some((r) => o.only.has(r));
  const reg = trackClusters();
  let s3: S3rverHandle | undefined;
  let proxy: { port: number; stop(): Promise<void> } | undefined;
  const notes: string[] = [];
  try {
    const mayInstall = isRoot() && !o.noInstall;
    const install = (pkg: string) => {
      out(`  installing ${pkg} with apt-get ... `);
      const r = aptInstall(pkg);
      out(r.ok ? 'ok\n' : 'failed\n');
      return r;
    };
    const pgbrPeer = detectPeer(PGBACKREST, { pathEnv: o.peerPath, mayInstall, install });
    const barmanPeer = detectPeer(BARMAN, { pathEnv: o.peerPath, mayInstall, install });
    if (!pgbrPeer.present) notes.push(`pgBackRest: ${pgbrPeer.note}`);
    if (!barmanPeer.present) notes.push(`barman-cloud: ${barmanPeer.note}`);
    const pgbrBin = pgbrPeer.present ? join(pgbrPeer.dir, 'pgbackrest') : undefined;
    const barmanBin = barmanPeer.present ? (cmd: string) => join(barmanPeer.dir, cmd) : undefined;
    const peers = { pgbrMissing: !pgbrBin, barmanMissing: !barmanBin };
    const version = (cmd: string | undefined, args: string[]) => (cmd ? spawnSync(cmd, args, { encoding: 'utf8' }).stdout.trim().split('\n')[0] : 'missing');
    const versions = {
      node: process.version,
      postgres: spawnSync('/usr/lib/postgresql/15/bin/postgres', ['--version'], { encoding: 'utf8' }).stdout.trim(),
      pgbackrest: pgbrBin ? version(pgbrBin, ['version']) : 'pgBackRest missing',
      barman: barmanBin ? version(barmanBin('barman-cloud-wal-archive'), ['--version']) : 'barman-cloud missing',
    };
    out(`walts speed benchmark: ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${Object.values(versions).join(', ')}\n`);
    out(`  rows: ${[...o.only].join(', ')}\n`);
    for (const n of notes) out(`  NOTE ${n}\n`);

    const work = await reg.tempDir('bench', { forPostgres: true });
    s3 = await startS3rver('bench');
    proxy = await startTlsProxy(s3, work);
    out(`  s3rver ${s3.endpoint}, TLS proxy https://127.0.0.1:${proxy.port}\n`);
    const awsEnv = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' };
    /** walts' environment for one prefix: its defaults, plus LZ4 and (for the OpenPGP column) keys. */
    const waltsEnv = (prefix: string, keyEnv?: Record<string, string>): Record<string, string> => {
      const env: Record<string, string> = { ...awsEnv, WALTS_STORE: `s3://${s3!.bucket}/${prefix}`, WALTS_S3_ENDPOINT: s3!.endpoint, WALTS_S3_FORCE_PATH_STYLE: 'true', WALTS_COMPRESSION: 'lz4', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...keyEnv };
      for (const k of WALTS_DEFAULTS_KEPT) if (k in env) throw new Error(`bench bug: ${k} must stay at walts' default`);
      return env;
    };
    const pgbrRepo = { bucket: s3.bucket, proxyPort: proxy.port };

    // The source cluster: archives with cp; its WAL is the fixture, its PGDATA the backup source.
    const walDir = await reg.tempDir('wal-archive', { forPostgres: true });
    const c: Cluster = await reg.createCluster({ name: 'src', conf: { archive_mode: 'on', archive_command: `cp %p ${walDir}/%f`, max_wal_size: '1GB' } });
    await c.start();
    let t = Date.now();
    out(`  pgbench -i -s ${o.scale} (archive_command = cp) ... `);
    await c.pgbench(['-i', '-s', String(o.scale), '-q']);
    await c.switchWalAndWaitArchived(600_000);
    out(`${((Date.now() - t) / 1000).toFixed(0)} s\n`);
    const archived = async () => (await fsp.readdir(walDir)).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort();
    const dbSize = Number(await c.psql('select sum(pg_database_size(oid)) from pg_database'));

    /** A fake PGDATA: global/pg_control of the source, pg_wal/ with `names` (hard links to the archive) and their .ready files. */
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
    const pgp = o.noPgp ? undefined : await makeKeys(work);

    // walts: LZ4, its own prefix per round; without encryption (the ratio column) and, unless
    // --no-pgp, with OpenPGP (a key pair made for the run) beside it. --baseline BIN: another walts
    // build (e.g. main's) in the same rounds, for a before/after under the same machine load.
    const variants: Array<{ keyEnv?: Record<string, string>; bin: string; label: string; prefix: string }> = [{ bin: WALTS_BIN, label: 'walts', prefix: 'walts' }];
    if (pgp) variants.push({ keyEnv: pgp, bin: WALTS_BIN, label: 'walts + OpenPGP', prefix: 'walts-pgp' });
    if (o.baseline) variants.push({ bin: o.baseline, label: 'walts baseline', prefix: 'walts-baseline' });
    for (const { keyEnv, bin: WALTS, label, prefix } of variants) {
      let env: Record<string, string> = {};
      modes.push({
        tool: 'walts',
        label,
        short: '',
        async prepare(round) {
          env = waltsEnv(`${prefix}-${round}`, keyEnv);
          await ok(WALTS, ['init'], env);
        },
        // Look-ahead and prefetch state (WALTS_SPOOL_DIR unset: beside the WAL, in pg_wal).
        async resetLocal(pgdata) {
          // A prefetcher still filling the spool from the previous row is stopped first (SIGTERM).
          const pid = Number((await fsp.readFile(join(pgdata, 'pg_wal', 'walts_spool', 'fetch', 'prefetch.lock'), 'utf8').catch(() => '')).split('\n')[0]);
          if (pid > 0) try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
          await fsp.rm(join(pgdata, 'pg_wal', 'walts_spool'), { recursive: true, force: true, maxRetries: 5 });
        },
        push: (pgdata, n) => timed(WALTS, ['wal-push', `pg_wal/${n}`], env, pgdata),
        fetch: (pgdata, n) => timed(WALTS, ['wal-fetch', n, `pg_wal/${n}`], env, pgdata),
        // walts backup-push waits until the backup's WAL is in its store (the peers were told not to
        // check, or wait for the cp archive): for this one, the cluster archives into walts as well.
        async backup() {
          const vars = Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(' ');
          c.setConf({ archive_command: `cp %p ${walDir}/%f && env ${vars} '${WALTS}' wal-push %p` });
          await c.psql('select pg_reload_conf()');
          try {
            return await timed(WALTS, ['backup-push', c.dataDir, '--fast'], { ...env, ...c.pgEnv() });
          } finally {
            c.setConf({ archive_command: `cp %p ${walDir}/%f` });
            await c.psql('select pg_reload_conf()');
          }
        },
        restore: (dest) => timed(WALTS, ['backup-fetch', dest, 'LATEST'], env),
      });
    }

    // pgBackRest: sync and async, one stanza per round (repo1-path), LZ4.
    if (pgbrBin) {
      for (const async of [false, true]) {
        const spool = join(work, `pgbr-spool-${async ? 'async' : 'sync'}`);
        const conf = join(work, `pgbackrest-${async ? 'async' : 'sync'}.conf`);
        let repoPath = '';
        const base = () => [`--config=${conf}`, '--stanza=bench', `--repo1-path=${repoPath}`];
        writePgbrConf(conf, pgbrRepo, [
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
        ]);
        const short = async ? 'async, process-max=2' : 'sync';
        modes.push({
          tool: 'pgbackrest',
          label: `pgBackRest ${short}`,
          short,
          async prepare(round) {
            repoPath = `/pgbackrest-${async ? 'async' : 'sync'}-${round}`;
            await fsp.rm(spool, { recursive: true, force: true });
            await ok(pgbrBin, [...base(), 'stanza-create'], {});
          },
          async resetLocal() {
            await fsp.rm(spool, { recursive: true, force: true });
          },
          push: (pgdata, n) => timed(pgbrBin, [...base(), `--pg1-path=${pgdata}`, 'archive-push', `pg_wal/${n}`], {}, pgdata),
          fetch: (pgdata, n) => timed(pgbrBin, [...base(), `--pg1-path=${pgdata}`, 'archive-get', n, `pg_wal/${n}`], {}, pgdata),
          backup: () => timed(pgbrBin, [...base(), '--type=full', 'backup'], {}),
          restore: (dest: string) => timed(pgbrBin, [...base(), `--pg1-path=${dest}`, 'restore'], {}),
        });
      }
    }

    // barman-cloud: uncompressed, one server name per round.
    if (barmanBin) {
      let server = '';
      const url = `s3://${s3.bucket}/barman`;
      const common = () => ['--endpoint-url', s3!.endpoint, url, server];
      modes.push({
        tool: 'barman',
        label: 'barman-cloud',
        short: '',
        async prepare(round) {
          server = `bench-${round}`;
        },
        push: (pgdata, n) => timed(barmanBin('barman-cloud-wal-archive'), [...common(), `pg_wal/${n}`], awsEnv, pgdata),
        fetch: (pgdata, n) => timed(barmanBin('barman-cloud-wal-restore'), [...common(), n, `pg_wal/${n}`], awsEnv, pgdata),
        backup: () => timed(barmanBin('barman-cloud-backup'), ['-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', ...common()], awsEnv),
        async restore(dest) {
          const list = await ok(barmanBin('barman-cloud-backup-list'), ['--format', 'json', ...common()], awsEnv);
          const parsed = JSON.parse(list.output.slice(list.output.indexOf('{'))) as { backups_list: Array<{ backup_id: string }> };
          const id = parsed.backups_list[parsed.backups_list.length - 1]!.backup_id;
          return timed(barmanBin('barman-cloud-restore'), [...common(), id, dest], awsEnv);
        },
      });
    }

    // results[label][row] = seconds per round
    const results = new Map<string, Map<RowId, number[]>>();
    const failed = new Map<string, string>();
    const record = (label: string, row: RowId, s: number) => {
      const byRow = results.get(label) ?? new Map<RowId, number[]>();
      results.set(label, byRow);
      byRow.set(row, [...(byRow.get(row) ?? []), s]);
    };
    const must = (label: string, what: string, r: Timed) => {
      if (r.code !== 0) throw new Error(`${label} ${what} exited ${r.code}: ${r.output.trim().split('\n').slice(-5).join(' | ')}`);
      return r.seconds;
    };
    const fail = (label: string, err: unknown) => {
      const msg = (err as Error).message.split('\n').slice(0, 6).join(' ');
      failed.set(label, msg);
      out(`\n    ${label}: FAILED, left out of later rounds: ${msg}\n`);
    };

    // ---- the six timed rows ----------------------------------------------------------------------
    const walRows = wants('push16', 'push1', 'fetch16', 'fetch1');
    let fixture: string[] = [];
    let single = '';
    if (walRows) {
      // Enough real WAL for 16 + 1 segments: pgbench transactions until the archive holds them.
      for (let i = 0; i < 20 && (await archived()).length < 18; i++) {
        await c.pgbench(['-n', '-c', '2', '-j', '2', '-T', '5']);
        await c.switchWalAndWaitArchived(600_000);
      }
      const segs = await archived();
      if (segs.length < 17) throw new Error(`only ${segs.length} WAL segments archived; need 17`);
      fixture = segs.slice(0, 16);
      single = segs[16]!;
      out(`  fixture: 16 segments ${fixture[0]}..${fixture[15]}; database ${(dbSize / 1e6).toFixed(0)} MB\n`);
    }
    if (walRows || wants('backup', 'restore')) {
      for (let round = 1; round <= o.rounds; round++) {
        out(`  round ${round}/${o.rounds}\n`);
        for (const m of modes) {
          if (failed.has(m.label)) continue;
          try {
            const id = `r${round}-${Date.now()}`;
            // A fresh PGDATA per step: nothing a tool left behind (spool, a background child still
            // writing) can serve a later step.
            const step = (name: string) => join(work, `${name}-${m.tool}-${id}`);
            await m.prepare(id);
            const line: string[] = [];
            const last = (row: RowId) => `${row} ${results.get(m.label)!.get(row)!.at(-1)!.toFixed(3)}`;
            if (o.only.has('push16')) {
              // wal-push x16, as the archiver: oldest .ready first, one process each, rename to .done.
              const dir = step('push16');
              await fakePgdata(dir, fixture);
              await m.resetLocal?.(dir);
              let total = 0;
              for (const n of fixture) {
                total += must(m.label, `wal-push ${n}`, await m.push(dir, n));
                await markDone(dir, n);
              }
              record(m.label, 'push16', total);
              line.push(last('push16'));
            }
            if (!o.only.has('push16') && o.only.has('fetch16')) {
              // The fetch rows need the fixture in the store: pushed as above, not timed.
              const dir = step('seed');
              await fakePgdata(dir, fixture);
              for (const n of fixture) {
                must(m.label, `wal-push ${n}`, await m.push(dir, n));
                await markDone(dir, n);
              }
            }
            if (o.only.has('push1') || o.only.has('fetch1')) {
              // wal-push x1, nothing else ready (also what puts `single` into the store for fetch1).
              const dir = step('push1');
              await fakePgdata(dir, [single]);
              const r = must(m.label, 'wal-push (one)', await m.push(dir, single));
              if (o.only.has('push1')) {
                record(m.label, 'push1', r);
                line.push(last('push1'));
              }
            }
            if (o.only.has('fetch16')) {
              // wal-fetch x16 in recovery order, each checked against the original afterwards.
              const dir = step('fetch16');
              await fakePgdata(dir, []);
              await m.resetLocal?.(dir);
              let total = 0;
              for (const n of fixture) total += must(m.label, `wal-fetch ${n}`, await m.fetch(dir, n));
              for (const n of fixture) {
                if (!(await fsp.readFile(join(dir, 'pg_wal', n))).equals(await fsp.readFile(join(walDir, n)))) throw new Error(`${m.label}: fetched ${n} differs from the original`);
              }
              record(m.label, 'fetch16', total);
              line.push(last('fetch16'));
            }
            if (o.only.has('fetch1')) {
              const dir = step('fetch1');
              await fakePgdata(dir, []);
              await m.resetLocal?.(dir);
              record(m.label, 'fetch1', must(m.label, 'wal-fetch (one)', await m.fetch(dir, single)));
              if (!(await fsp.readFile(join(dir, 'pg_wal', single))).equals(await fsp.readFile(join(walDir, single)))) throw new Error(`${m.label}: fetched ${single} differs from the original`);
              line.push(last('fetch1'));
            }
            for (const name of ['push16', 'seed', 'push1', 'fetch16', 'fetch1']) await fsp.rm(step(name), { recursive: true, force: true });
            if (o.only.has('backup') && m.backup && m.restore) {
              record(m.label, 'backup', must(m.label, 'backup', await m.backup()));
              line.push(last('backup'));
              if (o.only.has('restore')) {
                const dest = join(work, `restore-${m.tool}`);
                await fsp.rm(dest, { recursive: true, force: true });
                await fsp.mkdir(dest, { mode: 0o700 });
                record(m.label, 'restore', must(m.label, 'restore', await m.restore(dest)));
                await fsp.rm(dest, { recursive: true, force: true });
                line.push(last('restore'));
              }
            }
            out(`    ${m.label.padEnd(32)} ${line.join(' ')}\n`);
          } catch (err) {
            fail(m.label, err);
          }
        }
      }
    }

    // ---- PITR replay: the same base and WAL, restore_command = cp / walts / pgBackRest ---------
    const replay = new Map<string, ReplayResult[]>();
    let replaySegments = 0;
    if (wants('pitr')) {
      out(`  PITR: base backup, then pgbench until ${o.replaySegments} segments are archived ... `);
      t = Date.now();
      const base = await reg.basebackup(c, { name: 'pitr-base', timeoutMs: 600_000 });
      const label = readFileSync(join(base.dataDir, 'backup_label'), 'utf8');
      const startSeg = /START WAL LOCATION: .*\(file ([0-9A-F]{24})\)/.exec(label)?.[1];
      if (!startSeg) throw new Error(`no START WAL LOCATION in backup_label:\n${label}`);
      const chain = async () => (await archived()).filter((n) => n >= startSeg);
      // A checkpoint before each 5 s of pgbench: first touches of pages log full-page images again,
      // so the WAL comes sooner on a slow machine (and replays like any pgbench WAL after a checkpoint).
      for (let i = 0; i < 200 && (await chain()).length < o.replaySegments; i++) {
        await c.psql('checkpoint');
        await c.pgbench(['-n', '-c', '2', '-j', '2', '-T', '5']);
      }
      await c.switchWalAndWaitArchived(600_000);
      const wal = await chain();
      replaySegments = wal.length;
      // cp's archive holds exactly the chain: the source keeps archiving (autovacuum, checkpoints),
      // and every method must replay the same WAL.
      const cpDir = await reg.tempDir('pitr-archive', { forPostgres: true });
      for (const n of wal) await fsp.link(join(walDir, n), join(cpDir, n));
      out(`${wal.length} segments ${wal[0]}..${wal.at(-1)}, ${((Date.now() - t) / 1000).toFixed(0)} s\n`);

      /** Puts the chain into a tool's store the way the archiver would (not timed). */
      const pushChain = async (label: string, push: (pgdata: string, n: string) => Promise<Timed>) => {
        const dir = join(work, 'pitr-push');
        for (let i = 0; i < wal.length; i += 16) {
          const batch = wal.slice(i, i + 16);
          await fakePgdata(dir, batch);
          for (const n of batch) {
            must(label, `wal-push ${n}`, await push(dir, n));
            await markDone(dir, n);
          }
        }
        await fsp.rm(dir, { recursive: true, force: true });
      };
      const methods: ReplayMethod[] = [{ label: 'cp', env: {}, restoreCommand: () => `cp ${cpDir}/%f %p` }];
      t = Date.now();
      const wEnv = waltsEnv(`walts-pitr-${Date.now()}`);
      await ok(WALTS_BIN, ['init'], wEnv);
      await pushChain('walts', (pgdata, n) => timed(WALTS_BIN, ['wal-push', `pg_wal/${n}`], wEnv, pgdata));
      methods.push({ label: 'walts', env: wEnv, restoreCommand: () => waltsCommand('wal-fetch %f %p') });
      // --baseline: the other build replays the same chain from the same store, in the same rounds.
      if (o.baseline) {
        const bin = o.baseline;
        methods.push({ label: 'walts baseline', env: wEnv, restoreCommand: () => `PATH='${dirname(process.execPath)}':"$PATH" '${bin}' wal-fetch %f %p` });
      }
      if (pgbrBin) {
        // Pushed as root with a sync config; fetched by the restored server (user postgres) in async
        // mode with its own lock and spool paths inside that cluster's directory.
        const conf = join(work, 'pgbackrest-pitr.conf');
        const repo = `/pgbackrest-pitr-${Date.now()}`;
        writePgbrConf(conf, pgbrRepo, [`lock-path=${join(work, 'pgbr-pitr-lock')}`]);
        const pg1 = [`--pg1-path=${c.dataDir}`, `--pg1-port=${c.port}`, `--pg1-socket-path=${c.socketDir}`, '--pg1-user=postgres'];
        await ok(pgbrBin, [`--config=${conf}`, '--stanza=bench', `--repo1-path=${repo}`, ...pg1, 'stanza-create'], {});
        await pushChain('pgBackRest', (pgdata, n) => timed(pgbrBin, [`--config=${conf}`, '--stanza=bench', `--repo1-path=${repo}`, `--pg1-path=${pgdata}`, 'archive-push', `pg_wal/${n}`], {}, pgdata));
        methods.push({
          label: 'pgBackRest',
          env: {},
          restoreCommand: (dataDir) => {
            const own = dirname(dataDir);
            return `${pgbrBin} --config=${conf} --stanza=bench --repo1-path=${repo} --pg1-path=${dataDir} --lock-path=${own}/pgbr-lock --spool-path=${own}/pgbr-spool --archive-async --process-max=2 archive-get %f "%p"`;
          },
        });
      }
      out(`  PITR: the chain pushed into ${methods.slice(1).map((m) => m.label).join(' and ')} (not timed), ${((Date.now() - t) / 1000).toFixed(0)} s\n`);
      for (let round = 1; round <= o.rounds; round++) {
        const line: string[] = [];
        for (const m of methods) {
          if (failed.has(`PITR ${m.label}`)) continue;
          try {
            const r = await timeReplay(reg, base.dataDir, m);
            const ref = replay.get('cp')?.[0];
            if (ref && (r.redoDone !== ref.redoDone || r.restored !== ref.restored)) {
              throw new Error(`replayed ${r.restored} segments to ${r.redoDone}, cp replayed ${ref.restored} to ${ref.redoDone}`);
            }
            replay.set(m.label, [...(replay.get(m.label) ?? []), r]);
            record(`PITR ${m.label}`, 'pitr', r.seconds);
            line.push(`${m.label} ${r.seconds.toFixed(2)} (${r.restored} restored, redo done at ${r.redoDone})`);
          } catch (err) {
            if (m.label === 'cp') throw err;
            fail(`PITR ${m.label}`, err);
          }
        }
        out(`    PITR round ${round}/${o.rounds}: ${line.join(', ')}\n`);
      }
      await base.destroy();
    }
    await c.stop();

    // ---- archiver lag under pgbench, once per tool, from copies of the (stopped) cluster ---------
    const lag = new Map<string, LagResult>();
    if (wants('lag')) {
      const tools: LagTool[] = [];
      const lEnv = waltsEnv(`walts-lag-${Date.now()}`);
      await ok(WALTS_BIN, ['init'], lEnv);
      tools.push({ label: 'walts', env: lEnv, archiveCommand: () => waltsCommand('wal-push %p') });
      if (pgbrBin) {
        const conf = join(work, 'pgbackrest-lag.conf');
        const repo = `/pgbackrest-lag-${Date.now()}`;
        writePgbrConf(conf, pgbrRepo, ['archive-async=y', 'process-max=2']);
        const own = (dataDir: string) => [`--config=${conf}`, '--stanza=bench', `--repo1-path=${repo}`, `--pg1-path=${dataDir}`, `--lock-path=${dirname(dataDir)}/pgbr-lock`];
        tools.push({
          label: 'pgBackRest async',
          env: {},
          archiveCommand: (dataDir) => `${pgbrBin} ${own(dataDir).join(' ')} --spool-path=${dirname(dataDir)}/pgbr-spool archive-push %p`,
          // As the server's user, so the lock and spool directories are its own.
          beforeLoad: async (lc) => {
            await runOk(pgbrBin, [...own(lc.dataDir), `--pg1-port=${lc.port}`, `--pg1-socket-path=${lc.socketDir}`, '--pg1-user=postgres', 'stanza-create'], { asUser: PG_OS_USER, cleanEnv: true });
          },
        });
      }
      if (barmanBin && o.lagBarman) {
        tools.push({ label: 'barman-cloud', env: awsEnv, archiveCommand: () => `${barmanBin('barman-cloud-wal-archive')} --endpoint-url ${s3!.endpoint} s3://${s3!.bucket}/barman-lag-${Date.now()} lag %p` });
      }
      for (const tool of tools) {
        out(`  lag: ${tool.label}, pgbench -c 2 -T ${o.loadSeconds} ... `);
        try {
          const r = await measureLag(reg, c.dataDir, tool, { loadSeconds: o.loadSeconds });
          lag.set(tool.label, r);
          out(`${lagCell(r)}; ${r.walMB.toFixed(0)} MB WAL\n`);
        } catch (err) {
          fail(`lag ${tool.label}`, err);
        }
      }
    }

    // ---- the table -------------------------------------------------------------------------------
    const med = (label: string, row: RowId) => {
      const xs = results.get(label)?.get(row);
      return xs && xs.length ? median(xs) : undefined;
    };
    const rows: TableRow[] = [];
    for (const [row, title] of TIMED_ROWS) {
      if (!o.only.has(row)) continue;
      const pgbr = new Map<string, number>();
      for (const m of modes.filter((x) => x.tool === 'pgbackrest')) {
        const s = med(m.label, row);
        if (s !== undefined) pgbr.set(m.short, s);
      }
      const work2 = row === 'backup' ? `backup-push, ${(dbSize / 1e6).toFixed(0)} MB pgbench PGDATA (scale ${o.scale}) to S3, s` : title;
      rows.push(timedRow(row, work2, { pgbr, barman: med('barman-cloud', row), walts: med('walts', row), pgp: med('walts + OpenPGP', row) }, peers, row === 'push1' || row === 'fetch1' ? 3 : 2));
    }
    if (wants('pitr')) {
      const cp = med('PITR cp', 'pitr');
      const w = med('PITR walts', 'pitr');
      const p = med('PITR pgBackRest', 'pitr');
      rows.push({
        id: 'pitr',
        work: `PITR replay of ${replaySegments} segments, start to promotion, s; reference: restore_command = cp from a local directory, ${cp?.toFixed(2) ?? '—'} s`,
        pgbr: p !== undefined ? `${p.toFixed(2)} (async archive-get)` : pgbrBin ? '—' : 'missing',
        barman: barmanBin ? 'not measured' : 'missing',
        walts: w?.toFixed(2) ?? '—',
        ratio: cp && w !== undefined ? w / cp : undefined,
        judged: cp && w !== undefined ? w / cp : undefined,
      });
    }
    if (wants('lag')) {
      const w = lag.get('walts');
      const p = lag.get('pgBackRest async');
      const b = lag.get('barman-cloud');
      rows.push({
        id: 'lag',
        work: `pgbench ${o.loadSeconds} s at full speed (-c 2), archive_command = the tool: segments waiting (\`.ready\`), sampled every 250 ms`,
        pgbr: p ? `${lagCell(p)} (async)` : pgbrBin ? '—' : 'missing',
        barman: b ? lagCell(b) : barmanBin ? 'not measured' : 'missing',
        walts: w ? lagCell(w) : '—',
        judged: w?.max,
      });
    }
    const tableText = renderTable(rows, !!pgp);
    const minutes = ((Date.now() - started) / 60_000).toFixed(1);
    const header =
      `Machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB; ${versions.node}, ${versions.postgres}, ` +
      `${versions.pgbackrest}, ${versions.barman}; ${new Date().toISOString()}; medians of ${o.rounds} rounds (the lag row: one run per tool), ` +
      `s3rver on 127.0.0.1 (pgBackRest through a local TLS proxy), walts LZ4 without encryption with its default look-ahead, prefetch and ` +
      `concurrency (and with OpenPGP in its own column), pgBackRest LZ4. Whole run: ${minutes} min.\n`;
    const extra = [...notes, ...(wants('lag') && !o.lagBarman ? ['barman-cloud is not run in the lag row (one process of about 1 s per segment; --lag-barman adds it)'] : []), ...[...failed].map(([l, msg]) => `${l} failed: ${msg}`)]
      .map((n) => `- ${n}\n`)
      .join('');
    const perMode = [...results]
      .map(([label, byRow]) => `- ${label}: ` + [...byRow].map(([row, xs]) => `${row} ${xs.map((x) => x.toFixed(3)).join('/')}`).join(', '))
      .join('\n');
    const lagDetail = [...lag.values()]
      .map((r) => `- lag ${r.label}: ${r.walMB.toFixed(0)} MB WAL, ${r.tps.toFixed(0)} tps; \`.ready\` every 250 ms: ${r.samples.join(' ')}`)
      .join('\n');
    const text = `${header}\n${tableText}\n${extra}\nAll rounds (seconds):\n\n${perMode}\n${lagDetail ? `${lagDetail}\n` : ''}`;
    out(`\n${text}`);
    writeFileSync(o.out, text);
    out(`\n  written to ${o.out} (${minutes} min)\n`);
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
