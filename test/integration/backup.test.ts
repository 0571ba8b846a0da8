/**
 * Acceptance for base backups and point-in-time restore (issue 3), with real PostgreSQL 15, the
 * walts binary, a directory store and s3rver, encrypted:
 * - backup while pgbench runs; restore LATEST to a target time between inserts; exactly the rows
 *   committed before the target; pg_checksums and pg_amcheck clean;
 * - backup-list / backup-show output.
 */
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { trackClusters, type Cluster } from '../helpers/pg';
import { runWalts } from '../helpers/run';
import { startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each<StoreKind>(['file', 's3'])('backup-push and point-in-time backup-fetch (%s store, encrypted)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let keys: GpgKeys;
  let a: Cluster;
  let pushEnv: Record<string, string>;
  let restoreEnv: Record<string, string>;

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'pitr pass', algo: 'ed25519' });
    store = await startStore(kind, reg, 'pitr');
    pushEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath };
    restoreEnv = { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' };
    a = await reg.createCluster({ name: 'a', dataChecksums: true, env: pushEnv, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    await a.pgbench(['-i', '-s', '3', '-q']);
    await a.psql('create table marks (id int primary key, at timestamptz not null default clock_timestamp())');
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
    await keys?.cleanup();
  });

  it('restores LATEST to a time between two inserts with exactly the rows committed before it', async () => {
    // A backup taken while pgbench writes.
    const bench = a.pgbench(['-c', '2', '-j', '2', '-T', '6', '-n']);
    await sleep(1000);
    const push = await runWalts(['backup-push', a.dataDir, '--fast', '--volume-size', '8MiB'], { ...pushEnv, ...a.pgEnv() }, { timeoutMs: 120_000 });
    expect(push.stderr).toContain('"backup-push done"');
    expect(push.code).toBe(0);
    expect((await bench).code).toBe(0);

    const list = await runWalts(['backup-list', '--json'], restoreEnv);
    expect(list.code).toBe(0);
    const backups = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
    expect(backups).toHaveLength(1);
    expect(backups[0]).toMatchObject({ timeline: 1, pg_version: expect.stringMatching(/^15\./) });
    expect(Number(backups[0]?.['data_size'])).toBeGreaterThan(30 * 1024 * 1024);

    // Rows 1-3 before the target, 4-5 after it.
    for (const id of [1, 2, 3]) await a.psql(`insert into marks (id) values (${id})`);
    await sleep(1100);
    const target = await a.psql('select clock_timestamp()::text');
    await sleep(1100);
    for (const id of [4, 5]) await a.psql(`insert into marks (id) values (${id})`);
    await a.switchWalAndWaitArchived();

    const r = await reg.emptyCluster({ name: 'restored', env: restoreEnv });
    const fetch = await runWalts(['backup-fetch', r.dataDir, 'LATEST', '--target-time', target, '--target-action', 'promote'], restoreEnv, { timeoutMs: 120_000 });
    expect(fetch.stderr).toContain('"backup-fetch done"');
    expect(fetch.code).toBe(0);
    await r.prepareRestoredDataDir({ keepSourceSettings: true });
    r.setConf({ archive_mode: 'off' });
    await r.start();
    await r.waitForRecoveryEnd(120_000);
    expect(await r.psql("select string_agg(id::text, ',' order by id) from marks")).toBe('1,2,3');
    expect(r.log()).toMatch(/recovery stopping before commit of transaction \d+, time/);

    const amcheck = await r.runBin('pg_amcheck', ['-h', r.socketDir, '-p', String(r.port), '-U', 'postgres', '--install-missing', '--all', '--heapallindexed']);
    expect(amcheck.stderr + amcheck.stdout).toBe('');
    expect(amcheck.code).toBe(0);
    await r.stop();
    const checksums = await r.runBin('pg_checksums', ['--check', '-D', r.dataDir]);
    expect(checksums.stdout).toContain('Bad checksums:  0');
    expect(checksums.code).toBe(0);
  });

  it('shows a backup in readable and JSON form', async () => {
    const table = await runWalts(['backup-list'], restoreEnv);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^name\s+finished\s+duration\s+data\s+stored\s+start_lsn/);
    const name = lines[lines.length - 1]?.split(' ')[0] ?? '';
    expect(name).toMatch(/^base_[0-9A-F]{24}_[0-9A-F]{8}$/);
    const show = await runWalts(['backup-show', 'LATEST', '--json'], restoreEnv);
    expect(JSON.parse(show.stdout)).toMatchObject({ name, timeline: 1, wal_start: expect.stringMatching(/^[0-9A-F]{24}$/) });
  });
});
