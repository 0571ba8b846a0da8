/**
 * `npm run demo`: walts end to end on this machine, with no configuration. It starts a throwaway
 * PostgreSQL 15 cluster that archives through `walts wal-push %p` into an embedded store (a temp
 * directory, or an embedded S3 server with --s3), encrypted with an OpenPGP key made for the demo;
 * takes a base backup with `walts backup-push` while pgbench writes, notes a target time, writes
 * more, restores with `walts backup-fetch LATEST --target-time ...` into a new directory, starts it
 * (it replays WAL through `walts wal-fetch %f %p`), and shows that it holds exactly the data the
 * primary had at the target. Everything is removed afterwards (WALTS_DEMO_KEEP=1 keeps it).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { loadConfig } from '../src/config';
import { openStorage } from '../src/storage/open';
import { chownToPg, trackClusters, type Cluster } from '../test/helpers/pg';
import { initArchive, startStore, waltsCommand } from '../test/helpers/stores';
import { runWalts } from '../test/helpers/run';
import { formatBytes } from '../src/cli/format';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const useS3 = process.argv.includes('--s3');
const out = (s: string) => process.stdout.write(s);

async function step<T>(title: string, fn: () => Promise<T>, detail?: (r: T) => string): Promise<T> {
  out(`  ${title} ... `);
  const t = Date.now();
  const r = await fn();
  out(`ok${detail ? `, ${detail(r)}` : ''} (${((Date.now() - t) / 1000).toFixed(1)} s)\n`);
  return r;
}

const TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history', 'demo_marker'];
const snapshot = async (c: Cluster) => {
  const rows: Record<string, string> = {};
  for (const t of TABLES) rows[t] = await c.psql(`select count(*) || ' rows, md5 ' || left(md5(coalesce(string_agg(x::text, ',' order by x::text), '')), 10) from ${t} x`);
  return rows;
};

async function main(): Promise<number> {
  const reg = trackClusters();
  // Created below with `walts init`, as an operator would, once the public key exists.
  const store = await startStore(useS3 ? 's3' : 'file', reg, 'demo', { init: false });
  try {
    out(`walts demo: base backup and point-in-time restore with real PostgreSQL 15\n`);
    out(`  store: ${store.env['WALTS_STORE']}${useS3 ? ` (embedded S3 server at ${store.env['WALTS_S3_ENDPOINT']})` : ''}\n`);

    const keys = await step('OpenPGP key pair for this demo (walts encrypts with the public key only)', async () => {
      const dir = await reg.tempDir('keys', { forPostgres: true });
      const k = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'walts demo' }], passphrase: 'demo passphrase', format: 'armored' });
      const files = { pub: join(dir, 'public.asc'), priv: join(dir, 'private.asc'), pass: join(dir, 'passphrase') };
      writeFileSync(files.pub, k.publicKey);
      writeFileSync(files.priv, k.privateKey, { mode: 0o600 });
      writeFileSync(files.pass, 'demo passphrase', { mode: 0o600 });
      for (const f of Object.values(files)) {
        chmodSync(f, 0o600);
        await chownToPg(f);
      }
      return files;
    });
    const archiveEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.pub };
    const restoreEnv = { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.priv, WALTS_PGP_PASSPHRASE_FILE: keys.pass };

    await step('walts init: create the archive, recorded as encrypted', () => initArchive(archiveEnv), (text) => text.trim().replace(/^walts: /, ''));

    const primary = await step(`primary cluster with archive_command = 'walts wal-push %p'`, async () => {
      const c = await reg.createCluster({ name: 'primary', dataChecksums: true, env: archiveEnv, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
      await c.start();
      return c;
    });
    await step('pgbench -i -s 10 (1 million accounts)', () => primary.pgbench(['-i', '-s', '10', '-q']));
    await primary.psql('create table demo_marker (id int primary key, note text, at timestamptz default clock_timestamp())');

    const backup = await step('walts backup-push while pgbench writes for 8 seconds', async () => {
      const bench = primary.pgbench(['-c', '4', '-j', '2', '-T', '8', '-n']);
      await sleep(1000);
      const push = await runWalts(['backup-push', primary.dataDir, '--fast'], { ...archiveEnv, ...primary.pgEnv() }, { timeoutMs: 600_000 });
      if (push.code !== 0) throw new Error(`backup-push failed (exit ${push.code}): ${push.stderr}`);
      const b = await bench;
      if (b.code !== 0) throw new Error(`pgbench failed: ${b.stderr}`);
      return JSON.parse(push.stderr.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    }, (b) => `${String(b['backup'])}, ${formatBytes(Number(b['bytes_in']))} stored as ${formatBytes(Number(b['bytes_out']))}`);

    const { expected, target } = await step('500 marker rows, then note the target time', async () => {
      await primary.psql(`insert into demo_marker (id, note) select g, 'before the target' from generate_series(1, 500) g`);
      const rows = await snapshot(primary);
      const t = await primary.psql('select clock_timestamp()::text');
      await sleep(1000);
      return { expected: rows, target: t };
    }, (r) => r.target);
    await step('more writes after the target: pgbench for 3 seconds and 500 more marker rows', async () => {
      await primary.pgbench(['-c', '2', '-T', '3', '-n']);
      await primary.psql(`insert into demo_marker (id, note) select g, 'after the target' from generate_series(501, 1000) g`);
      await primary.switchWalAndWaitArchived();
    });
    const latest = await snapshot(primary);
    const archiver = await primary.psql(`select archived_count || ' WAL files archived, ' || failed_count || ' failed' from pg_stat_archiver`);
    await primary.stop();

    const copy = await reg.emptyCluster({ name: 'restored', env: restoreEnv });
    await step(`walts backup-fetch LATEST --target-time '${target}' into a new directory`, async () => {
      const fetch = await runWalts(['backup-fetch', copy.dataDir, 'LATEST', '--target-time', target, '--target-action', 'promote'], restoreEnv, { timeoutMs: 600_000 });
      if (fetch.code !== 0) throw new Error(`backup-fetch failed (exit ${fetch.code}): ${fetch.stderr}`);
    });
    await copy.prepareRestoredDataDir({ keepSourceSettings: true });
    copy.setConf({ archive_mode: 'off' });
    await step(`start it: PostgreSQL replays WAL through 'walts wal-fetch %f %p' up to the target`, async () => {
      await copy.start();
      await copy.waitForRecoveryEnd(300_000);
    });
    const restored = await snapshot(copy);
    const fetched = copy.log().split('\n').filter((l) => l.includes('"wal-fetch done"')).length;

    out(`\n  ${'table'.padEnd(18)} ${'primary at target'.padEnd(28)} ${'restored'.padEnd(28)} ${'same'.padEnd(5)} primary now\n`);
    let same = true;
    for (const t of TABLES) {
      const ok = expected[t] === restored[t];
      same &&= ok;
      out(`  ${t.padEnd(18)} ${String(expected[t]).padEnd(28)} ${String(restored[t]).padEnd(28)} ${(ok ? 'yes' : 'NO').padEnd(5)} ${latest[t]}\n`);
    }

    const config = loadConfig({ env: store.env, readFile: () => ({ text: '', mode: 0o600 }) });
    const storage = openStorage(config.store);
    let objects = 0;
    let stored = 0;
    for await (const o of storage.list('walts_v1/')) {
      objects++;
      stored += o.size;
    }
    await storage.close();
    out(`\n  store: ${objects} objects, ${formatBytes(stored)} (LZ4 + OpenPGP); primary: ${archiver}; the restore fetched ${fetched} WAL files\n`);
    out(same ? '  result: the restored cluster holds exactly what the primary held at the target time.\n' : '  result: MISMATCH between the primary at the target and the restored cluster.\n');
    return same ? 0 : 1;
  } catch (err) {
    out(`FAILED\n${(err as Error).stack ?? String(err)}\n`);
    reg.dumpLogs(30);
    return 1;
  } finally {
    if (process.env['WALTS_DEMO_KEEP']) out(`  kept: ${await reg.baseDir()}\n`);
    await reg.cleanupAll();
    await store.stop();
  }
}

main().then((code) => {
  process.exitCode = code;
});
