/**
 * Issue 10's RPO acceptance, end to end with the real commands and PostgreSQL 15 over TCP with a
 * SCRAM password from a .pgpass file: `walts wal-receive` feeds the archive, archive_mode is off,
 * backup-push takes a backup (accepted because the receiver feeds the store), a row is committed and
 * the primary is SIGKILLed at once; a restore from the archive alone (backup-fetch, wal-fetch as
 * restore_command serving the received partial) has the row. The same with archive_command alone
 * (no receiver) loses it: why streaming exists.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chownToPg, trackClusters, type Cluster } from '../helpers/pg';
import { baseEnv, runWalts, WALTS_BIN } from '../helpers/run';
import { startStore, waltsCommand, type TestStore } from '../helpers/stores';

const reg = trackClusters();
const PASSWORD = 'rpo-secret';
const children: ChildProcess[] = [];
let passFile: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
jest.setTimeout(900_000);

async function waitFor(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function cluster(name: string, env: Record<string, string>, conf: Record<string, string>): Promise<Cluster> {
  const pg = await reg.createCluster({ name, env, conf });
  const hba = path.join(pg.dataDir, 'pg_hba.conf');
  fs.writeFileSync(hba, 'local all all trust\nlocal replication all trust\nhost replication walrecv 127.0.0.1/32 scram-sha-256\n');
  await chownToPg(hba);
  await pg.start();
  await pg.psql(`create role walrecv login replication password '${PASSWORD}'`);
  fs.appendFileSync(passFile, `127.0.0.1:${pg.port}:replication:walrecv:${PASSWORD}\n`, { mode: 0o600 });
  await pg.psql('create table marks (id int primary key)');
  return pg;
}

/** Kills the postmaster without a shutdown: nothing more reaches the archive from it. */
function killPrimary(pg: Cluster): void {
  process.kill(Number(fs.readFileSync(path.join(pg.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGKILL');
}

async function restoreMarks(store: TestStore, name: string): Promise<{ marks: string; log: string }> {
  const r = await reg.emptyCluster({ name, env: store.env });
  const fetch = await runWalts(['backup-fetch', r.dataDir, 'LATEST'], store.env, { timeoutMs: 180_000 });
  if (fetch.code !== 0) throw new Error(`backup-fetch failed (${fetch.code}): ${fetch.stderr}`);
  await r.prepareRestoredDataDir({ keepSourceSettings: true });
  r.setConf({ archive_mode: 'off' });
  await r.start();
  await r.waitForRecoveryEnd(180_000);
  const marks = await r.psql("select coalesce(string_agg(id::text, ',' order by id), '') from marks");
  const log = r.log();
  await r.destroy();
  return { marks, log };
}

beforeAll(async () => {
  passFile = path.join(await reg.tempDir('pgpass'), 'pgpass');
  fs.writeFileSync(passFile, '', { mode: 0o600 });
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await reg.cleanupAll();
});

describe('RPO: a primary killed right after a commit, restored from the archive alone', () => {
  test('with wal-receive and archive_mode off: the commit is restored (it is only in the received partial)', async () => {
    const store = await startStore('file', reg, 'rpo-receive');
    const pg = await cluster('rpo_receive', store.env, { archive_mode: 'off' });
    const recvEnv = { ...store.env, PGHOST: '127.0.0.1', PGPORT: String(pg.port), PGUSER: 'walrecv', PGPASSFILE: passFile, PGSSLMODE: 'disable' };
    const child = spawn(WALTS_BIN, ['wal-receive', '--slot', 'walts', '--create-slot', '--flush-interval', '0.2'], { env: { ...baseEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...recvEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let log = '';
    child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    await waitFor('streaming', () => log.includes('"msg":"wal-receive: streaming"') || child.exitCode !== null);
    expect(child.exitCode).toBeNull();

    const push = await runWalts(['backup-push', pg.dataDir, '--fast', '--archive-timeout', '120'], { ...store.env, ...pg.pgEnv() }, { timeoutMs: 240_000 });
    expect(push.stderr).toContain('through the receiver on replication slot walts');
    expect(push.code).toBe(0);

    await pg.psql('insert into marks values (1)');
    const commitEnd = await pg.psql('select pg_current_wal_flush_lsn()');
    // The receiver reports flush only for what the store holds: once it passed the commit, it is there.
    await waitFor('the commit in the store', async () => (await pg.psql(`select count(*) from pg_stat_replication where application_name = 'walts_receive' and flush_lsn >= '${commitEnd}'`)) === '1');
    killPrimary(pg);
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));

    const restored = await restoreMarks(store, 'rpo-receive-restored');
    expect(restored.marks).toBe('1');
    expect(restored.log).toContain('"source":"received"');
  });

  test('with archive_command alone: the same commit is lost (it never left the dead primary)', async () => {
    const store = await startStore('file', reg, 'rpo-archive');
    const pg = await cluster('rpo_archive', store.env, { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') });
    const push = await runWalts(['backup-push', pg.dataDir, '--fast'], { ...store.env, ...pg.pgEnv() }, { timeoutMs: 240_000 });
    expect(push.code).toBe(0);
    await pg.psql('insert into marks values (1)');
    killPrimary(pg);
    expect((await restoreMarks(store, 'rpo-archive-restored')).marks).toBe('');
  });
});
