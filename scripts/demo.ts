/**
 * `npm run demo`: walts end to end on this machine, with no configuration. It starts a throwaway
 * PostgreSQL 15 cluster that archives through `walts wal-push %p` into an embedded store (a temp
 * directory, or an embedded S3 server with --s3), encrypted with an OpenPGP key made for the demo;
 * copies the cluster with pg_basebackup (no WAL), writes under load, then starts the copy with
 * `restore_command = 'walts wal-fetch %f %p'` and shows that it recovered exactly the same data.
 * Everything is removed afterwards (set WALTS_DEMO_KEEP=1 to keep it).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { loadConfig } from '../src/config';
import { openStorage } from '../src/storage/open';
import { chownToPg, trackClusters, type Cluster } from '../test/helpers/pg';
import { startStore, waltsCommand } from '../test/helpers/stores';

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
  const store = await startStore(useS3 ? 's3' : 'file', reg, 'demo');
  try {
    out(`walts demo: continuous archiving and restore with real PostgreSQL 15\n`);
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

    const primary = await step(`primary cluster with archive_command = 'walts wal-push %p'`, async () => {
      const c = await reg.createCluster({ name: 'primary', dataChecksums: true, env: archiveEnv, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
      await c.start();
      return c;
    });
    await step('pgbench -i -s 10 (1 million accounts)', () => primary.pgbench(['-i', '-s', '10', '-q']));
    await primary.psql('create table demo_marker (id int primary key, note text, at timestamptz default clock_timestamp())');
    const copy = await step('copy of the primary with pg_basebackup -X none (no WAL: it must come from the archive)', () => reg.basebackup(primary, { name: 'restored' }));
    const bench = await step('pgbench for 8 seconds, 4 clients, while PostgreSQL archives through walts', () => primary.pgbench(['-c', '4', '-j', '2', '-T', '8', '-n']), (r) => /number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1] + ' transactions');
    if (bench.code !== 0) throw new Error(`pgbench failed: ${bench.stderr}`);
    await primary.psql(`insert into demo_marker (id, note) select g, 'written after the copy was made' from generate_series(1, 1000) g`);
    const expected = await snapshot(primary);
    const archiver = await step('switch to a new WAL segment and wait until it is archived', async () => {
      await primary.switchWalAndWaitArchived();
      return primary.psql(`select archived_count || ' segments archived, ' || failed_count || ' failed' from pg_stat_archiver`);
    }, (s) => s);
    await primary.stop();

    await copy.setRecovery({ restore_command: waltsCommand('wal-fetch %f %p') });
    copy.env = restoreEnv;
    await step(`start the copy with restore_command = 'walts wal-fetch %f %p' and replay the archive`, async () => {
      await copy.start();
      await copy.waitForRecoveryEnd(300_000);
    });
    const restored = await snapshot(copy);
    const fetched = copy.log().split('\n').filter((l) => l.includes('"wal-fetch done"')).length;

    out(`\n  ${'table'.padEnd(18)} ${'primary'.padEnd(30)} ${'restored'.padEnd(30)}\n`);
    let same = true;
    for (const t of TABLES) {
      const ok = expected[t] === restored[t];
      same &&= ok;
      out(`  ${t.padEnd(18)} ${String(expected[t]).padEnd(30)} ${String(restored[t]).padEnd(30)} ${ok ? 'same' : 'DIFFERENT'}\n`);
    }

    const config = loadConfig({ env: store.env, readFile: () => ({ text: '', mode: 0o600 }) });
    const storage = openStorage(config.store);
    let objects = 0;
    let stored = 0;
    for await (const o of storage.list('walts_v1/wal/')) {
      objects++;
      stored += o.size;
    }
    await storage.close();
    out(`\n  archive: ${objects} WAL objects, ${(stored / 2 ** 20).toFixed(1)} MiB stored (LZ4 + OpenPGP); primary: ${archiver}; restore fetched ${fetched} files\n`);
    out(same ? '  result: the restored cluster holds exactly the primary’s data.\n' : '  result: MISMATCH between primary and restored cluster.\n');
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
