/**
 * backup-push --remote (issue 10, scope item 4) with real PostgreSQL 15 over TCP with TLS, as a
 * replication user whose SCRAM password comes from a .pgpass file (pg_hba.conf: a host replication
 * line, nothing else over TCP), archiving through walts wal-push into an encrypted directory store:
 * - a cluster with a tablespace, backed up both ways while it is written to; each backup restored
 *   with backup-fetch to the same target time: the same rows (the tablespace's table, pgbench's
 *   tables and the marks before the target), and nothing after it;
 * - the remote backup listed, shown and verified like the local one; its tablespace recorded by OID;
 * - memory: with a store slower than the server, the copy is held back at the socket: the stream
 *   never buffers more than its high-water mark plus one socket read, while the server sends
 *   hundreds of times that (a copy that buffered the archive would hold all of it);
 * - a failed upload ends the backup on the server (no walsender left, no base backup in progress)
 *   and leaves no sentinel;
 * - refused: a store that belongs to another cluster (exit 3), a server with archive_mode off and a
 *   data directory given with --remote (exit 2).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { backupPushRemote } from '../../src/ops/backupPushRemote';
import { FsStorage } from '../../src/storage/fs';
import type { PutOptions } from '../../src/storage/storage';
import { testDeps } from '../helpers/deps';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { chownToPg, trackClusters, type Cluster } from '../helpers/pg';
import { runOk, runWalts } from '../helpers/run';
import { startStore, waltsCommand, type TestStore } from '../helpers/stores';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PASSWORD = "b:ackup\\pa'ss";
const ROWS_SQL = [
  "select 'ts_rows ' || count(*) || ' ' || md5(string_agg(id || ':' || v, ',' order by id)) from ts_rows",
  "select 'accounts ' || count(*) || ' ' || sum(abalance) || ' ' || md5(string_agg(aid || ':' || abalance, ',' order by aid)) from pgbench_accounts",
  "select 'history ' || count(*) || ' ' || coalesce(sum(delta), 0) from pgbench_history",
  "select 'marks ' || coalesce(string_agg(id::text, ',' order by id), '') from marks",
].join(' union all ');

interface Sentinel {
  name: string;
  tablespaces: { oid: number; name: string; location: string }[];
  backup_label: string;
  tablespace_map: string | null;
  data_directory: string;
  file_count: number;
  volumes: unknown[];
}

describe('backup-push --remote: BASE_BACKUP over TCP + TLS with a .pgpass password, a cluster with a tablespace', () => {
  const reg = trackClusters();
  let keys: GpgKeys;
  let store: TestStore;
  let a: Cluster;
  let pushEnv: Record<string, string>;
  let restoreEnv: Record<string, string>;
  let replEnv: Record<string, string>;
  let tsDir: string;
  let tsOid: number;
  let remoteName = '';
  let localName = '';
  let target = '';

  const readSentinel = (name: string): Sentinel => JSON.parse(fs.readFileSync(join(store.dir, 'walts_v1/basebackups', name, 'sentinel.json'), 'utf8')) as Sentinel;

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'remote pass', algo: 'ed25519' });
    store = await startStore('file', reg, 'remote');
    pushEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath };
    restoreEnv = { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' };
    const certs = await reg.tempDir('certs', { forPostgres: true });
    await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.crt', '-subj', '/CN=localhost', '-days', '2'], { cwd: certs });
    for (const f of ['server.key', 'server.crt']) {
      await chownToPg(join(certs, f));
      fs.chmodSync(join(certs, f), 0o600);
    }
    tsDir = await reg.tempDir('ts-orig', { forPostgres: true });
    a = await reg.createCluster({
      name: 'a',
      dataChecksums: true,
      env: pushEnv,
      conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p'), ssl: 'on', ssl_cert_file: join(certs, 'server.crt'), ssl_key_file: join(certs, 'server.key') },
    });
    const hba = join(a.dataDir, 'pg_hba.conf');
    // The unix socket stays trust for the harness; over TCP only replication, with SCRAM.
    fs.writeFileSync(hba, 'local all all trust\nhostssl replication walts_backup 127.0.0.1/32 scram-sha-256\n');
    await chownToPg(hba);
    await a.start();
    await a.psql(`create role walts_backup login replication password '${PASSWORD.replace(/'/g, "''")}'`);
    await a.psql(`create tablespace fastspace location '${tsDir}'`);
    await a.psql('create table ts_rows tablespace fastspace as select g as id, md5(g::text) as v from generate_series(1, 20000) g');
    await a.psql('create index ts_rows_id on ts_rows (id) tablespace fastspace');
    tsOid = Number(await a.psql("select oid from pg_tablespace where spcname = 'fastspace'"));
    await a.pgbench(['-i', '-s', '2', '-q']);
    await a.psql('create table marks (id int primary key)');
    const dir = await reg.tempDir('pgpass');
    const passFile = join(dir, 'pgpass');
    fs.writeFileSync(passFile, `127.0.0.1:${a.port}:replication:walts_backup:${PASSWORD.replace(/([:\\])/g, '\\$1')}\n`, { mode: 0o600 });
    // No PGDATA anywhere: the backup host reaches the server over the network only.
    replEnv = { PGHOST: '127.0.0.1', PGPORT: String(a.port), PGUSER: 'walts_backup', PGPASSFILE: passFile, PGSSLMODE: 'require' };
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
    await keys?.cleanup();
  });

  it('takes a remote and a local backup while pgbench writes; both restore to a target time with the same rows', async () => {
    const bench = a.pgbench(['-c', '2', '-j', '2', '-T', '8', '-n']);
    await sleep(1000);
    const remote = await runWalts(['backup-push', '--remote', '--fast', '--volume-size', '4MiB'], { ...pushEnv, ...replEnv }, { timeoutMs: 180_000 });
    expect(remote.stderr).toContain('"backup-push done"');
    expect(remote.code).toBe(0);
    remoteName = /"backup":"(base_[0-9A-F]{24}_[0-9A-F]{8})"/.exec(remote.stderr)?.[1] ?? '';
    const local = await runWalts(['backup-push', a.dataDir, '--fast', '--volume-size', '4MiB'], { ...pushEnv, ...a.pgEnv() }, { timeoutMs: 180_000 });
    expect(local.code).toBe(0);
    localName = /"backup":"(base_[0-9A-F]{24}_[0-9A-F]{8})"/.exec(local.stderr)?.[1] ?? '';
    expect((await bench).code).toBe(0);
    expect(remoteName).not.toBe('');
    expect(localName).not.toBe(remoteName);

    const s = readSentinel(remoteName);
    expect(s.tablespaces).toEqual([{ oid: tsOid, name: String(tsOid), location: tsDir }]);
    expect(s.backup_label).toMatch(/^START WAL LOCATION: .*\nCHECKPOINT LOCATION: .*\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n/);
    expect(s.backup_label).toContain('LABEL: walts backup ');
    expect(s.tablespace_map).toBe(`${tsOid} ${tsDir}\n`);
    expect(s.volumes.length).toBeGreaterThan(1);
    const l = readSentinel(localName);
    // The same files either way (the server and walts leave out the same things), give or take what
    // pgbench changed between the two backups.
    expect(Math.abs(s.file_count - l.file_count)).toBeLessThanOrEqual(3);

    for (const id of [1, 2, 3]) await a.psql(`insert into marks (id) values (${id})`);
    await sleep(1100);
    target = await a.psql('select clock_timestamp()::text');
    await sleep(1100);
    for (const id of [4, 5]) await a.psql(`insert into marks (id) values (${id})`);
    await a.switchWalAndWaitArchived();

    const restoreTo = async (name: string, label: string): Promise<string> => {
      const r = await reg.emptyCluster({ name: label, env: restoreEnv });
      const ts = await reg.tempDir(`ts-${label}`, { forPostgres: true });
      fs.rmdirSync(ts);
      const fetch = await runWalts(['backup-fetch', r.dataDir, name, '--tablespace', `${tsOid}=${ts}`, '--target-time', target, '--target-action', 'promote'], restoreEnv, { timeoutMs: 180_000 });
      expect(fetch.stderr).toContain('"backup-fetch done"');
      expect(fetch.code).toBe(0);
      await chownToPg(ts);
      await r.prepareRestoredDataDir({ keepSourceSettings: true });
      r.setConf({ archive_mode: 'off', ssl: 'off' });
      await r.start();
      await r.waitForRecoveryEnd(120_000);
      expect(fs.readlinkSync(join(r.dataDir, 'pg_tblspc', String(tsOid)))).toBe(ts);
      expect(await r.psql("select pg_relation_filepath('ts_rows')")).toMatch(new RegExp(`^pg_tblspc/${tsOid}/PG_15_`));
      const rows = await r.psql(ROWS_SQL);
      const amcheck = await r.runBin('pg_amcheck', ['-h', r.socketDir, '-p', String(r.port), '-U', 'postgres', '--install-missing', '--all', '--heapallindexed']);
      expect(amcheck.stderr + amcheck.stdout).toBe('');
      await r.stop();
      return rows;
    };
    const fromRemote = await restoreTo(remoteName, 'from-remote');
    const fromLocal = await restoreTo(localName, 'from-local');
    expect(fromRemote).toContain('marks 1,2,3');
    expect(fromRemote).toMatch(/ts_rows 20000 [0-9a-f]{32}/);
    expect(fromRemote).toBe(fromLocal);
  });

  it('lists, shows and verifies the remote backup like the local one', async () => {
    const list = await runWalts(['backup-list', '--json'], restoreEnv);
    expect(list.code).toBe(0);
    const backups = JSON.parse(list.stdout) as { name: string; timeline: number; tablespaces: unknown[] }[];
    expect(backups.map((b) => b.name).sort()).toEqual([remoteName, localName].sort());
    const show = await runWalts(['backup-show', remoteName, '--json'], restoreEnv);
    expect(JSON.parse(show.stdout)).toMatchObject({ name: remoteName, timeline: 1, tablespaces: [{ oid: tsOid, location: tsDir }], pg_version: expect.stringMatching(/^15\./) });
    const verify = await runWalts(['verify', '--deep', '--json'], restoreEnv, { timeoutMs: 180_000 });
    expect(verify.code).toBe(0);
    expect(verify.stdout).toContain(remoteName);
  });

  it('holds memory to the stream bound when the store is slower than the server (in-process, a slowed store)', async () => {
    const storage = new FsStorage(store.dir);
    const put = storage.put.bind(storage);
    let slowed = 0;
    // Every volume's bytes pass a 1 ms pause per chunk on their way into the store: slower than the
    // local network, so the server has to be held back.
    storage.put = async (key: string, body: Buffer | Readable, options?: PutOptions) => {
      if (Buffer.isBuffer(body)) return put(key, body, options);
      const slow = new Transform({
        transform: (chunk: Buffer, _enc, cb) => {
          slowed += chunk.length;
          setTimeout(() => cb(null, chunk), 1);
        },
      });
      return put(key, body.pipe(slow), options);
    };
    const deps = testDeps(storage, { pgp: { publicKeyPath: keys.publicKeyPath } });
    const highWaterMark = 4;
    let stats: { maxBuffered: number; maxBufferedBytes: number; highWaterMark: number; messages: number } | undefined;
    let sent = 0;
    const b = await backupPushRemote(deps, {
      fast: true,
      volumeSize: 8 * 1024 * 1024,
      archiveTimeoutMs: 120_000,
      connection: { env: replEnv },
      highWaterMark,
      onStreamStats: (s) => (stats = s),
      onProgress: (done) => (sent = done),
    });
    expect(slowed).toBeGreaterThan(0);
    expect(b.data_size).toBeGreaterThan(30 * 1024 * 1024);
    expect(sent).toBeGreaterThan(30 * 1024 * 1024);
    expect(stats?.highWaterMark).toBe(highWaterMark);
    // It filled up (the consumer was slower, the socket was paused) and went no further than one
    // socket read (64 KiB) past the mark of 4 messages of at most 32 KiB: under 192 KiB buffered,
    // while the server sent over 30 MiB in thousands of messages.
    expect(stats!.maxBuffered).toBeGreaterThanOrEqual(highWaterMark);
    expect(stats!.messages).toBeGreaterThan(1000);
    expect(stats!.maxBufferedBytes).toBeLessThanOrEqual(highWaterMark * 32 * 1024 + 64 * 1024);
    const list = await runWalts(['backup-list', '--json'], restoreEnv);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((x) => x.name)).toContain(b.name);
  });

  it('a failed upload ends the backup on the server and leaves no sentinel (in-process, volume 2 refused)', async () => {
    const storage = new FsStorage(store.dir);
    const put = storage.put.bind(storage);
    const keysPut: string[] = [];
    storage.put = async (key: string, body: Buffer | Readable, options?: PutOptions) => {
      keysPut.push(key);
      if (/part_00002/.test(key)) throw new Error('volume 2 refused');
      return put(key, body, options);
    };
    const deps = testDeps(storage, { pgp: { publicKeyPath: keys.publicKeyPath } });
    const before = fs.readdirSync(join(store.dir, 'walts_v1/basebackups')).sort();
    await expect(backupPushRemote(deps, { fast: true, volumeSize: 1024 * 1024, archiveTimeoutMs: 60_000, connection: { env: replEnv } })).rejects.toThrow('volume 2 refused');
    const started = keysPut.find((k) => k.endsWith('/started.json'));
    expect(started).toBeDefined();
    const name = started!.split('/').at(-2)!;
    expect(fs.existsSync(join(store.dir, 'walts_v1/basebackups', name, 'sentinel.json'))).toBe(false);
    // The walsender is gone and no base backup runs on the server any more.
    const deadline = Date.now() + 30_000;
    while ((await a.psql("select count(*) from pg_stat_activity where backend_type = 'walsender' and usename = 'walts_backup'")) !== '0') {
      if (Date.now() > deadline) throw new Error('the walsender of the failed backup is still there');
      await sleep(100);
    }
    expect(await a.psql('select count(*) from pg_stat_progress_basebackup')).toBe('0');
    const list = await runWalts(['backup-list', '--json'], restoreEnv);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((x) => x.name)).not.toContain(name);
    expect(before).not.toContain(name);
  });

  it('refuses a store that belongs to another cluster (exit 3), and a data directory given with --remote (exit 2)', async () => {
    const other = await reg.createCluster({ name: 'other' });
    const otherStore = await startStore('file', reg, 'other-store');
    await other.start();
    // The other store learns its cluster from a first local backup's wal-push... record it by pushing a WAL file.
    const seg = fs.readdirSync(join(other.dataDir, 'pg_wal')).find((f) => /^[0-9A-F]{24}$/.test(f))!;
    const push = await runWalts(['wal-push', join(other.dataDir, 'pg_wal', seg)], otherStore.env);
    expect(push.code).toBe(0);
    const r = await runWalts(['backup-push', '--remote', '--fast'], { ...otherStore.env, ...replEnv }, { timeoutMs: 60_000 });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/belongs to system/);
    // The other cluster does not archive: refused before anything is uploaded (exit 2).
    const noArchive = await runWalts(['backup-push', '--remote'], { ...otherStore.env, PGHOST: '127.0.0.1', PGPORT: String(other.port), PGUSER: 'postgres', PGSSLMODE: 'disable' }, { timeoutMs: 60_000 });
    expect(noArchive.code).toBe(2);
    expect(noArchive.stderr).toMatch(/archive_mode is off/);
    const both = await runWalts(['backup-push', '--remote', a.dataDir], { ...pushEnv, ...replEnv });
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--remote takes no data directory/);
  });
});
