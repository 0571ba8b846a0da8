/**
 * Acceptance for base backups under faults and odd layouts, with real PostgreSQL 15 and the walts
 * binary (issue 3):
 * - tablespaces: restored to a new place with --tablespace, and to the original path;
 * - a backup decoded by hand with the real gpg, lz4 and tar, every file checked against the manifest;
 * - backup-push killed (SIGKILL) or interrupted (SIGTERM) while a volume upload hangs: no backup is
 *   listed, the server's backup session ends, the next backup works;
 * - backup-fetch refusals (exit code, one-line message, nothing written) and a corrupted volume
 *   (exit 3, no global/pg_control).
 * One source cluster with a tablespace and a directory store (encrypted) serves most tests; the
 * interruption tests use a second cluster archiving to s3rver, with walts behind a fault proxy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { PG_OS_USER, trackClusters, type Cluster } from '../helpers/pg';
import { baseEnv, lz4Decompress, runOk, runWalts, WALTS_BIN } from '../helpers/run';
import { rawS3Client, startS3rver, type S3rverHandle } from '../helpers/s3server';
import { initArchive, startStore, waltsCommand, type TestStore } from '../helpers/stores';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

interface Sentinel {
  name: string;
  file_count: number;
  finish_time: string;
  volumes: Array<{ key: string; size: number; sha256: string; stored_size: number }>;
  manifest: { key: string; size: number; sha256: string };
  tablespaces: Array<{ oid: number; name: string; location: string }>;
  backup_label: string;
  tablespace_map: string | null;
}

interface ManifestEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  size: number;
  sha256?: string;
  volume: number;
}

const ROWS_SQL = "select count(*) || ',' || sum(id) || ',' || md5(string_agg(v, '' order by id)) from ts_rows";

describe('base backups with a tablespace: restore elsewhere and in place, by hand, refusals, damage (file store, encrypted)', () => {
  const reg = trackClusters();
  let keys: GpgKeys;
  let store: TestStore;
  let a: Cluster;
  let pushEnv: Record<string, string>;
  let restoreEnv: Record<string, string>;
  let tsDir: string;
  let tsOid: number;
  let expectedRows: string;
  let sentinel: Sentinel;

  const readSentinel = (name: string): Sentinel => JSON.parse(readFileSync(join(store.dir, 'walts_v1/basebackups', name, 'sentinel.json'), 'utf8')) as Sentinel;
  const fetch = (args: string[]) => runWalts(['backup-fetch', ...args], restoreEnv, { timeoutMs: 120_000 });
  const tablespaceMapLines = (dataDir: string) => readFileSync(join(dataDir, 'tablespace_map'), 'utf8').split('\n').filter((l) => l !== '');

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'faults pass', algo: 'ed25519' });
    store = await startStore('file', reg, 'faults');
    pushEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath };
    restoreEnv = { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' };
    tsDir = await reg.tempDir('ts-orig', { forPostgres: true });
    a = await reg.createCluster({ name: 'a', env: pushEnv, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    await a.psql(`create tablespace fastspace location '${tsDir}'`);
    await a.psql("create table ts_rows tablespace fastspace as select g as id, md5(g::text) as v from generate_series(1, 5000) g");
    await a.psql('create index ts_rows_id on ts_rows (id) tablespace fastspace');
    tsOid = Number(await a.psql("select oid from pg_tablespace where spcname = 'fastspace'"));
    expect(await a.psql("select pg_relation_filepath('ts_rows')")).toMatch(new RegExp(`^pg_tblspc/${tsOid}/PG_15_`));
    expectedRows = await a.psql(ROWS_SQL);
    expect(expectedRows).toMatch(/^5000,12502500,[0-9a-f]{32}$/);

    // As the cluster's OS user, as documented: a directory store's folders are private (0700) to
    // whoever creates them, and the archiver must still be able to write there.
    const push = await runWalts(['backup-push', a.dataDir, '--fast', '--volume-size', '4MiB'], { ...pushEnv, ...a.pgEnv() }, { timeoutMs: 60_000, asUser: PG_OS_USER });
    expect(push.stderr).toContain('"backup-push done"');
    expect(push.code).toBe(0);
    const name = /"backup":"(base_[0-9A-F]{24}_[0-9A-F]{8})"/.exec(push.stderr)?.[1] ?? '';
    sentinel = readSentinel(name);
    expect(sentinel.tablespaces).toEqual([{ oid: tsOid, name: 'fastspace', location: tsDir }]);
    expect(sentinel.volumes.length).toBeGreaterThan(1);
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
    await keys?.cleanup();
  });

  it('can be decoded by hand: gpg --decrypt | lz4 -d | tar -x, every file matching the manifest', async () => {
    const work = await reg.tempDir('by-hand');
    const out = join(work, 'extracted');
    mkdirSync(out);
    const decode = async (key: string, base: string): Promise<string> => {
      expect(key).toMatch(/\.lz4\.pgp$/);
      await keys.decrypt(join(store.dir, key), join(work, `${base}.lz4`));
      await lz4Decompress(join(work, `${base}.lz4`), join(work, base));
      return join(work, base);
    };

    for (const [i, v] of sentinel.volumes.entries()) {
      expect(v.key).toBe(`walts_v1/basebackups/${sentinel.name}/part_${String(i + 1).padStart(5, '0')}.tar.lz4.pgp`);
      const tar = await decode(v.key, `part_${i + 1}.tar`);
      const plain = readFileSync(tar);
      expect({ size: plain.length, sha256: sha256(plain) }).toEqual({ size: v.size, sha256: v.sha256 });
      await runOk('tar', ['-x', '--no-same-owner', '-f', tar, '-C', out]);
    }

    const manifestFile = await decode(sentinel.manifest.key, 'manifest.jsonl');
    const manifestText = readFileSync(manifestFile);
    expect(sha256(manifestText)).toBe(sentinel.manifest.sha256);
    const [headerLine, ...lines] = manifestText.toString('utf8').split('\n').filter((l) => l !== '');
    const header = JSON.parse(headerLine ?? '{}') as Record<string, unknown>;
    expect(header).toMatchObject({ backup: sentinel.name, entries: lines.length });
    const entries = lines.map((l) => JSON.parse(l) as ManifestEntry);
    const files = entries.filter((e) => e.type === 'file');
    expect(files).toHaveLength(sentinel.file_count);
    expect(files.map((e) => e.path)).toEqual(expect.arrayContaining(['global/pg_control', 'backup_label', 'tablespace_map', 'PG_VERSION']));
    expect(files.some((e) => e.path.startsWith(`pg_tblspc/${tsOid}/PG_15_`))).toBe(true);

    const mismatches: string[] = [];
    for (const e of files) {
      const p = join(out, e.path);
      if (!existsSync(p)) {
        mismatches.push(`${e.path}: missing`);
        continue;
      }
      const data = readFileSync(p);
      if (data.length !== e.size || sha256(data) !== e.sha256) mismatches.push(`${e.path}: content differs`);
      if ((statSync(p).mode & 0o777) !== (e.mode & 0o777)) mismatches.push(`${e.path}: mode ${statSync(p).mode.toString(8)} vs ${e.mode.toString(8)}`);
      if (e.volume < 1 || e.volume > sentinel.volumes.length) mismatches.push(`${e.path}: volume ${e.volume}`);
    }
    for (const e of entries.filter((x) => x.type === 'directory')) {
      if (!statSync(join(out, e.path), { throwIfNoEntry: false })?.isDirectory()) mismatches.push(`${e.path}: directory missing`);
    }
    expect(mismatches).toEqual([]);
    expect(readFileSync(join(out, 'backup_label'), 'utf8')).toBe(sentinel.backup_label);
    expect(readFileSync(join(out, 'tablespace_map'), 'utf8')).toBe(sentinel.tablespace_map);
  });

  describe('backup-fetch refuses, with one line on stderr, its exit code, and nothing written', () => {
    let work: string;
    beforeAll(async () => {
      work = await reg.tempDir('refusals');
    });
    /** stderr is exactly one log line (JSON); returns its message. */
    const oneLine = (stderr: string): string => {
      const lines = stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      const record = JSON.parse(lines[0] ?? '{}') as { msg?: string };
      expect(record.msg).toMatch(/^backup-fetch( failed)?: /);
      return record.msg ?? '';
    };

    it('a non-empty destination: exit 2, the directory unchanged', async () => {
      const dest = join(work, 'not-empty');
      mkdirSync(dest);
      writeFileSync(join(dest, 'keep.txt'), 'precious\n');
      const r = await fetch([dest, sentinel.name, '--tablespace', `fastspace=${join(work, 'ts-unused')}`]);
      expect(oneLine(r.stderr)).toMatch(/not empty; refusing to restore into it/);
      expect(r.code).toBe(2);
      expect(readdirSync(dest)).toEqual(['keep.txt']);
      expect(readFileSync(join(dest, 'keep.txt'), 'utf8')).toBe('precious\n');
      expect(existsSync(join(work, 'ts-unused'))).toBe(false);
    });

    it('an unknown (well-formed) backup name: exit 1, no destination created', async () => {
      const dest = join(work, 'unknown');
      const r = await fetch([dest, 'base_000000010000000000000009_00000028']);
      expect(oneLine(r.stderr)).toMatch(/backup base_000000010000000000000009_00000028 does not exist/);
      expect(r.code).toBe(1);
      expect(existsSync(dest)).toBe(false);
    });

    it('a --target-time before every backup finished: exit 2, no destination created', async () => {
      const before = new Date(Date.parse(sentinel.finish_time) - 3_600_000).toISOString().replace('T', ' ').replace('Z', '+00');
      for (const which of ['LATEST', sentinel.name]) {
        const dest = join(work, `too-early-${which}`);
        const r = await fetch([dest, which, '--target-time', before, '--target-action', 'promote']);
        expect(oneLine(r.stderr)).toMatch(/--target-time .* is before (the end of the oldest backup|backup base_\w+ finished)/);
        expect(r.code).toBe(2);
        expect(existsSync(dest)).toBe(false);
      }
    });

    it('a malformed name (../x): exit 2, no destination created', async () => {
      const dest = join(work, 'malformed');
      const r = await fetch([dest, '../x']);
      expect(oneLine(r.stderr)).toMatch(/"\.\.\/x" is not a backup name/);
      expect(r.code).toBe(2);
      expect(existsSync(dest)).toBe(false);
    });
  });

  it('a volume damaged in the store: exit 3 naming it, and the restore has no global/pg_control', async () => {
    const volume = sentinel.volumes[0]!;
    const path = join(store.dir, volume.key);
    const original = readFileSync(path);
    const damaged = Buffer.from(original);
    const mid = Math.floor(damaged.length / 2);
    damaged[mid] = damaged[mid]! ^ 0x5a;
    writeFileSync(path, damaged);
    try {
      const r = await reg.emptyCluster({ name: 'r-damaged', env: restoreEnv });
      const tsNew = await reg.tempDir('ts-damaged', { forPostgres: true });
      const f = await fetch([r.dataDir, sentinel.name, '--tablespace', `${tsOid}=${tsNew}`, '--target-immediate']);
      // The volume fails its LZ4/OpenPGP checks or a file its SHA-256; either way the message names the volume.
      expect(f.stderr).toContain('"error_kind":"integrity"');
      expect(f.stderr).toContain(`backup-fetch failed: ${volume.key}: `);
      expect(f.code).toBe(3);
      expect(existsSync(join(r.dataDir, 'global', 'pg_control'))).toBe(false);
      const control = await r.runBin('pg_controldata', ['-D', r.dataDir]);
      expect(control.code).not.toBe(0);
      expect(control.stderr).toMatch(/pg_control/);
    } finally {
      writeFileSync(path, original);
    }
  });

  it('restores a tablespace to a new directory with --tablespace NAME=DIR', async () => {
    const tsNew = await reg.tempDir('ts-new', { forPostgres: true });
    const r = await reg.emptyCluster({ name: 'r-moved', env: restoreEnv });
    const f = await fetch([r.dataDir, sentinel.name, '--tablespace', `fastspace=${tsNew}`, '--target-immediate', '--target-action', 'promote']);
    expect(f.stderr).toContain('"backup-fetch done"');
    expect(f.code).toBe(0);
    expect(readlinkSync(join(r.dataDir, 'pg_tblspc', String(tsOid)))).toBe(tsNew);
    expect(tablespaceMapLines(r.dataDir)).toEqual([`${tsOid} ${tsNew}`]);
    expect(readdirSync(tsNew).filter((n) => n.startsWith('PG_15_'))).toHaveLength(1);

    await r.prepareRestoredDataDir({ keepSourceSettings: true });
    r.setConf({ archive_mode: 'off' });
    await r.start();
    await r.waitForRecoveryEnd(60_000);
    expect(await r.psql(ROWS_SQL)).toBe(expectedRows);
    expect(await r.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'fastspace'")).toBe(tsNew);
    expect(readlinkSync(join(r.dataDir, 'pg_tblspc', String(tsOid)))).toBe(tsNew);
    await r.stop();
  });

  it('restores a tablespace to its original path when it is gone there, when the operator names it', async () => {
    await a.stop();
    renameSync(tsDir, `${tsDir}.moved-away`);
    const r = await reg.emptyCluster({ name: 'r-in-place', env: restoreEnv });
    // The recorded location alone is not enough: store metadata never chooses where files go.
    const refused = await fetch([r.dataDir, sentinel.name, '--target-immediate', '--target-action', 'promote']);
    expect(refused.stderr).toMatch(/give --tablespace fastspace=DIR \(recorded at /);
    expect(refused.code).toBe(3);
    expect(existsSync(tsDir)).toBe(false);
    const f = await fetch([r.dataDir, sentinel.name, '--tablespace', `fastspace=${tsDir}`, '--target-immediate', '--target-action', 'promote']);
    expect(f.stderr).toContain('"backup-fetch done"');
    expect(f.code).toBe(0);
    expect(readlinkSync(join(r.dataDir, 'pg_tblspc', String(tsOid)))).toBe(tsDir);
    expect(tablespaceMapLines(r.dataDir)).toEqual([`${tsOid} ${tsDir}`]);
    expect(readdirSync(tsDir).filter((n) => n.startsWith('PG_15_'))).toHaveLength(1);

    await r.prepareRestoredDataDir({ keepSourceSettings: true });
    r.setConf({ archive_mode: 'off' });
    await r.start();
    await r.waitForRecoveryEnd(60_000);
    expect(await r.psql(ROWS_SQL)).toBe(expectedRows);
    expect(await r.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'fastspace'")).toBe(tsDir);
    await r.stop();
  });
});

describe('backup-push interrupted while a volume upload hangs (s3rver behind a fault proxy, encrypted)', () => {
  const reg = trackClusters();
  let s3: S3rverHandle;
  let proxy: FaultProxy;
  let keys: GpgKeys;
  let b: Cluster;
  let pushEnv: Record<string, string>;
  const PREFIX = 'interrupted';

  beforeAll(async () => {
    s3 = await startS3rver();
    proxy = await startFaultProxy({ host: '127.0.0.1', port: s3.port });
    keys = await makeGpgKeys({ algo: 'ed25519' });
    const common = {
      WALTS_STORE: `s3://${s3.bucket}/${PREFIX}`,
      WALTS_S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_EC2_METADATA_DISABLED: 'true',
      WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath,
    };
    await initArchive({ ...common, WALTS_S3_ENDPOINT: s3.endpoint });
    // The archiver talks to s3rver directly; only backup-push goes through the proxy.
    b = await reg.createCluster({ name: 'b', env: { ...common, WALTS_S3_ENDPOINT: s3.endpoint }, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await b.start();
    await b.psql('create table t as select g from generate_series(1, 1000) g');
    pushEnv = { ...common, WALTS_S3_ENDPOINT: proxy.endpoint, WALTS_IO_TIMEOUT: '30', ...b.pgEnv() };
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await proxy?.stop();
    await s3?.stop();
    await keys?.cleanup();
  });

  /** The environment runWalts would build: ours minus WALTS_*, AWS_*, PG*, plus `extra`. */
  function waltsEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
    const inherited: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && !k.startsWith('WALTS_') && !k.startsWith('AWS_') && !k.startsWith('PG')) inherited[k] = v;
    }
    return { ...baseEnv(), ...inherited, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...extra };
  }

  /** Starts backup-push with the first volume's upload hung; resolves once that upload is stalled. */
  async function startStalledPush(): Promise<{ child: ChildProcess; stderr: () => string; exited: Promise<{ code: number | null; signal: string | null }> }> {
    proxy.inject({ kind: 'hang', method: 'PUT', pathIncludes: 'part_00001' });
    const seen = proxy.requests.length;
    const child = spawn(WALTS_BIN, ['backup-push', b.dataDir, '--fast', '--volume-size', '4MiB'], { env: waltsEnv(pushEnv), stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    let done = false;
    void exited.then(() => (done = true));
    try {
      await waitFor('the first volume upload', () => done || proxy.requests.slice(seen).some((q) => q.method === 'PUT' && q.url.includes('part_00001')), 30_000);
      expect(done).toBe(false);
      await sleep(1500);
      expect(done).toBe(false); // still stuck in the upload
    } catch (e) {
      child.kill('SIGKILL');
      throw new Error(`${(e as Error).message}\n--- walts stderr ---\n${err}`);
    }
    return { child, stderr: () => err, exited };
  }

  const waltsSessions = async () => Number(await b.psql("select count(*) from pg_stat_activity where application_name like 'walts%'"));
  const listed = async (): Promise<Array<{ name: string }>> => {
    const r = await runWalts(['backup-list', '--json'], pushEnv, { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as Array<{ name: string }>;
  };
  const sentinelExists = async (name: string): Promise<boolean> => {
    const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
    const client = rawS3Client(s3.endpoint);
    try {
      await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${PREFIX}/walts_v1/basebackups/${name}/sentinel.json` }));
      return true;
    } catch (e) {
      if ((e as { name?: string }).name === 'NotFound') return false;
      throw e;
    } finally {
      client.destroy();
    }
  };
  const backupNameIn = (stderr: string) => /"backup":"(base_[0-9A-F]{24}_[0-9A-F]{8})"/.exec(stderr)?.[1];
  const pushOk = async () => {
    const r = await runWalts(['backup-push', b.dataDir, '--fast', '--volume-size', '4MiB'], pushEnv, { timeoutMs: 120_000 });
    expect(r.stderr).toContain('"backup-push done"');
    expect(r.code).toBe(0);
    return backupNameIn(r.stderr) ?? '';
  };

  it('SIGKILL mid-upload: no backup listed, the backup session ends, the next backup-push succeeds', async () => {
    const p = await startStalledPush();
    const killed = backupNameIn(p.stderr());
    expect(killed).toBeDefined();
    expect(await waltsSessions()).toBe(1); // the backup session is open while the upload hangs
    p.child.kill('SIGKILL');
    expect(await p.exited).toEqual({ code: null, signal: 'SIGKILL' });
    proxy.clear();

    await waitFor('the killed backup session to end', async () => (await waltsSessions()) === 0, 10_000);
    expect(await sentinelExists(killed!)).toBe(false);
    expect(await listed()).toEqual([]);

    const next = await pushOk();
    expect(next).not.toBe(killed);
    expect((await listed()).map((x) => x.name)).toEqual([next]);
  });

  it('SIGTERM mid-upload: walts dies by SIGTERM, the server leaves backup mode, the next backup-push succeeds', async () => {
    const before = (await listed()).map((x) => x.name);
    const p = await startStalledPush();
    const interrupted = backupNameIn(p.stderr());
    expect(interrupted).toBeDefined();
    expect(await waltsSessions()).toBe(1);
    const sent = Date.now();
    p.child.kill('SIGTERM');
    const guard = setTimeout(() => p.child.kill('SIGKILL'), 30_000);
    const exit = await p.exited;
    clearTimeout(guard);
    expect(exit).toEqual({ code: null, signal: 'SIGTERM' });
    expect(Date.now() - sent).toBeLessThan(15_000);
    proxy.clear();

    await waitFor('the backup session to end', async () => (await waltsSessions()) === 0, 5_000);
    expect(await sentinelExists(interrupted!)).toBe(false);
    expect((await listed()).map((x) => x.name)).toEqual(before);

    const next = await pushOk();
    expect((await listed()).map((x) => x.name)).toEqual([...before, next]);
  });
});
