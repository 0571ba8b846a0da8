/**
 * docs/barman.md, run as it is written: a backup host that reaches PostgreSQL 15 only over TCP, as a
 * REPLICATION role with a SCRAM password from a .pgpass file (one `*` line for the replication and
 * the ordinary connections) and pg_monitor, archive_mode off; WAL through `walts wal-receive`, base
 * backups with `backup-push --remote`, into s3rver. Every walts command of the guide's table runs
 * here (the last test checks that the guide names no other), with the guide's options.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PG_OS_USER, trackClusters, chownToPg, type Cluster } from '../helpers/pg';
import { baseEnv, runWalts, WALTS_BIN, type RunResult } from '../helpers/run';
import { startStore, type TestStore } from '../helpers/stores';

jest.setTimeout(900_000);

const PASSWORD = 'guide:pass\\word';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `f` holds; the timeout is a safety net against a hung test, not a claim about speed. */
async function waitFor(what: string, f: () => Promise<boolean> | boolean, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('docs/barman.md: replacing a Barman server (real PostgreSQL 15 over TCP, s3rver)', () => {
  const reg = trackClusters();
  /** The walts commands run: subcommand and the options given. */
  const ran: Array<{ command: string; options: Set<string> }> = [];
  const record = (args: readonly string[]) => ran.push({ command: args[0]!, options: new Set(args.filter((a) => a.startsWith('--'))) });
  let store: TestStore;
  let db: Cluster;
  let env: Record<string, string>;
  let receiver: ChildProcess | undefined;
  let receiverLog = '';

  const walts = (args: string[], more: { env?: Record<string, string>; asUser?: string } = {}): Promise<RunResult> => {
    record(args);
    return runWalts(args, { ...env, ...more.env }, { timeoutMs: 600_000, ...(more.asUser ? { asUser: more.asUser } : {}) });
  };
  const ok = async (args: string[], more: { env?: Record<string, string>; asUser?: string } = {}): Promise<RunResult> => {
    const r = await walts(args, more);
    if (r.code !== 0) throw new Error(`walts ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    return r;
  };

  beforeAll(async () => {
    store = await startStore('s3', reg, 'db1', { init: false });
    db = await reg.createCluster({ name: 'db1', conf: { archive_mode: 'off', listen_addresses: '127.0.0.1' } });
    // The guide's pg_hba.conf lines (host instead of hostssl: no certificates in the test).
    const hba = path.join(db.dataDir, 'pg_hba.conf');
    fs.writeFileSync(hba, ['local all all trust', 'local replication all trust', 'host replication walts_backup 127.0.0.1/32 scram-sha-256', 'host postgres walts_backup 127.0.0.1/32 scram-sha-256', ''].join('\n'));
    await chownToPg(hba);
    await db.start();
    await db.psql(`create role walts_backup login replication password '${PASSWORD.replace(/'/g, "''")}'; grant pg_monitor to walts_backup`);
    const passFile = path.join(await reg.tempDir('backup-host-home'), '.pgpass');
    fs.writeFileSync(passFile, `127.0.0.1:${db.port}:*:walts_backup:${PASSWORD.replace(/([:\\])/g, '\\$1')}\n`, { mode: 0o600 });
    env = { ...store.env, PGHOST: '127.0.0.1', PGPORT: String(db.port), PGUSER: 'walts_backup', PGDATABASE: 'postgres', PGPASSFILE: passFile, PGSSLMODE: 'disable' };
  });

  afterAll(async () => {
    if (receiver && receiver.exitCode === null && receiver.signalCode === null) receiver.kill('SIGKILL');
    await reg.cleanupAll();
    await store.stop();
  });

  test('set-up, streaming, a remote backup, monitoring, a restore to a time, retention and a drill', async () => {
    await ok(['init']);

    // walts-receive.service: `walts wal-receive --slot walts --create-slot`.
    record(['wal-receive', '--slot', '--create-slot']);
    receiver = spawn(WALTS_BIN, ['wal-receive', '--slot', 'walts', '--create-slot'], { env: { ...baseEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    receiver.stderr!.on('data', (b: Buffer) => (receiverLog += b.toString()));
    await waitFor('the receiver streaming', () => receiverLog.includes('"msg":"wal-receive: streaming"') || receiver!.exitCode !== null);
    expect(receiver.exitCode).toBeNull();

    await db.pgbench(['-i', '-s', '1', '-q']);
    // The nightly backup, from the backup host (--fast only to keep the test short).
    const pushed = await ok(['backup-push', '--remote', '--fast']);
    const backup = /"backup":"(base_[0-9A-F]{24}_[0-9A-F]{8})"/.exec(pushed.stderr)![1]!;

    await db.psql('create table marks (id int primary key)');
    for (const id of [1, 2, 3]) await db.psql(`insert into marks values (${id})`);
    await sleep(1100);
    const target = await db.psql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    await sleep(1100);
    for (const id of [4, 5]) await db.psql(`insert into marks values (${id})`);
    // The segment with those commits completes; the receiver archives it (wal-fetch finds it).
    const segment = await db.psql('select pg_walfile_name(pg_current_wal_lsn())');
    await db.psql('select pg_switch_wal()');
    const probe = path.join(await reg.tempDir('probe'), 'segment');
    await waitFor(`${segment} archived by the receiver`, async () => (await walts(['wal-fetch', segment, probe])).code === 0);

    // Monitoring, as Barman's check/status/list-backup/show-backup/verify-backup and its exporter.
    expect((await ok(['backup-list'])).stdout).toContain(backup);
    expect(JSON.parse((await ok(['backup-show', 'LATEST', '--json'])).stdout)).toMatchObject({ name: backup });
    const check = await walts(['check']);
    expect({ code: check.code, out: check.stdout }).toEqual({ code: 0, out: expect.stringMatching(/wal-receive|receiver/) });
    const status = await ok(['status']);
    expect(status.stdout).toMatch(/slot walts:\s+connected \(walts_receive from 127\.0\.0\.1, streaming\)/);
    await ok(['verify']);
    const prom = path.join(await reg.tempDir('metrics'), 'walts.prom');
    await ok(['metrics', '--textfile', prom]);
    expect(fs.readFileSync(prom, 'utf8')).toMatch(/^walts_replication_slot_active\{database="[^"]*",slot="walts"\} 1$/m);

    // `walts backup-fetch /dest LATEST --target-time T`, on the host that runs the restored server.
    const r = await reg.emptyCluster({ name: 'restored', env: store.env });
    await ok(['backup-fetch', r.dataDir, 'LATEST', '--target-time', target, '--target-action', 'promote'], { env: store.env });
    await r.prepareRestoredDataDir({ keepSourceSettings: true, fixOwnership: true });
    await r.start();
    await r.waitForRecoveryEnd(180_000);
    expect(await r.psql("select string_agg(id::text, ',' order by id) from marks")).toBe('1,2,3');
    await r.stop();

    // Retention, as `retention_policy = RECOVERY WINDOW OF 7 DAYS` and `barman delete`: the backup stays.
    await ok(['delete', 'window', '7d']); // the dry run first
    await ok(['delete', 'window', '7d', '--confirm']);
    await ok(['delete', 'before', backup, '--confirm']);
    expect((await ok(['backup-list'])).stdout).toContain(backup);

    // The nightly restore drill (Barman: a `barman recover` into a scratch volume), as the postgres user.
    record(['restore-test', '--json']);
    const drill = await runWalts(['restore-test', '--json'], { ...store.env, PGUSER: 'postgres' }, { timeoutMs: 600_000, ...(PG_OS_USER ? { asUser: PG_OS_USER } : {}) });
    expect({ code: drill.code, stderr: drill.code === 0 ? '' : drill.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(drill.stdout)).toMatchObject({ backup, ok: true });

    receiver.kill('SIGTERM');
    await new Promise((resolve) => receiver!.once('exit', resolve));
  });

  test('the guide names no walts command (with its options) that no test runs', () => {
    const guide = fs.readFileSync(path.join(__dirname, '../../docs/barman.md'), 'utf8');
    // Run by another test: the command, and the test file that runs it.
    const elsewhere: Record<string, string> = { 'wal-receive --synchronous': 'walReceive.test.ts' };
    const shown: Array<{ command: string; options: string[] }> = [];
    for (const m of guide.matchAll(/`walts ([a-z-]+)((?: [^`]*)?)`/g)) shown.push({ command: m[1]!, options: [...(m[2] ?? '').matchAll(/ (--[a-z-]+)/g)].map((o) => o[1]!) });
    expect(shown.length).toBeGreaterThan(10);
    for (const { command, options } of shown) {
      const line = [command, ...options].join(' ');
      const other = elsewhere[line];
      if (other) {
        expect(fs.readFileSync(path.join(__dirname, other), 'utf8')).toContain(`'${options.at(-1)}'`);
        continue;
      }
      const here = ran.some((r) => r.command === command && options.every((o) => r.options.has(o)));
      expect({ line, ran: here }).toEqual({ line, ran: true });
    }
  });
});
