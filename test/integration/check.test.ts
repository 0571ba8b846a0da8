/**
 * `walts check` against real parts: PostgreSQL 15 archiving through walts, both store kinds (a
 * directory and s3rver, with the fault proxy for refused credentials and a put-only policy), keys
 * made by the real gpg, a walts process whose lz4 native module cannot load, and zstd configured. Each failure must
 * be named, with its item, in the report, and make the exit status non-zero.
 */
import { chmod } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { makeGpgKeys, makeSignOnlyPublicKey, type GpgKeys } from '../helpers/gpg';
import { PG_OS_USER, trackClusters, type Cluster } from '../helpers/pg';
import { runWalts, type RunResult } from '../helpers/run';
import { zstdAvailable } from '../../src/codec/zstd';
import { initArchive, startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';

interface Item {
  name: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  detail: string;
  fix?: string;
}
interface Report {
  ok: boolean;
  failed: string[];
  warnings: string[];
  checks: Item[];
}

const BROKEN_LZ4 = resolve(__dirname, '../helpers/broken-lz4.js');

async function check(args: string[], env: Record<string, string>, asUser = PG_OS_USER): Promise<{ r: RunResult; report: Report; item: (name: string) => Item }> {
  const r = await runWalts(['check', '--json', ...args], env, { timeoutMs: 300_000, asUser });
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new Error(`walts check printed no JSON report (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  const item = (name: string) => {
    const found = report.checks.find((c) => c.name === name);
    if (!found) throw new Error(`no item ${name} in ${JSON.stringify(report.checks.map((c) => c.name))}`);
    return found;
  };
  return { r, report, item };
}

describe.each<StoreKind>(['file', 's3'])('walts check (%s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let keys: GpgKeys;
  let pg: Cluster;
  let env: Record<string, string>;

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'correct horse', algo: 'ed25519' });
    store = await startStore(kind, reg, 'check', { init: { WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath } });
    const serverEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath, WALTS_RETRY_DEADLINE: '30' };
    pg = await reg.createCluster({ name: `check-${kind}`, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p'), archive_timeout: '60' }, env: serverEnv });
    await pg.start();
    await pg.switchWalAndWaitArchived(120_000); // the first push records the cluster in the store
    env = { ...serverEnv, ...pg.pgEnv(), WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' };
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
    await keys?.cleanup();
  });

  it('passes on a good setup, archiving proven end to end with --switch-wal', async () => {
    const { r, report, item } = await check(['--switch-wal', '--timeout', '240', '--for-retention'], env);
    expect(report.failed).toEqual([]);
    expect(r.code).toBe(0);
    for (const name of ['configuration', 'codec lz4', 'codec openpgp', 'postgres', 'wal_level', 'archive_mode', 'archive_command', 'archive_timeout', 'archiver', 'store', 'archive', 'public key', 'private key', 'store list', 'store put', 'store get', 'store delete', 'switch-wal']) {
      expect([name, item(name).status]).toEqual([name, 'ok']);
    }
    expect(item('cluster').detail).toMatch(/: this server$/);
    expect(item('private key').detail).toMatch(/decrypts what WALTS_PGP_PUBLIC_KEY encrypts/);
    expect(item('store put').detail).toMatch(/walts_v1\/probe\/check_.*\.lz4\.pgp/);
    expect(item('switch-wal').detail).toMatch(/^[0-9A-F]{24} reached the store/);

    const nagios = await runWalts(['check', '--nagios'], env, { timeoutMs: 300_000, asUser: PG_OS_USER });
    expect(nagios.stdout).toMatch(/^WALTS OK - \d+ checks passed\n$/);
    expect(nagios.code).toBe(0);
  });

  it('fails naming the store when the bucket or directory does not exist', async () => {
    const wrong = kind === 's3' ? { WALTS_STORE: 's3://no-such-bucket/check' } : { WALTS_STORE: `file://${store.dir}-missing` };
    const { r, report, item } = await check(['--no-pg'], { ...env, ...wrong });
    expect(r.code).toBe(3);
    expect(report.failed).toEqual(['store']);
    expect(item('store').detail).toMatch(kind === 's3' ? /NoSuchBucket/ : /does not exist/);
    expect(item('store').fix).toMatch(kind === 's3' ? /create the bucket/ : /mount the share or create the directory/);
    expect(item('store probe').status).toBe('skip');
  });

  it('fails naming the archive on a store where walts init was not run', async () => {
    const other = kind === 's3' ? { WALTS_STORE: `${store.env['WALTS_STORE']}-uninitialised` } : { WALTS_STORE: `file://${await reg.tempDir('store-uninit', { forPostgres: true })}` };
    const { r, report, item } = await check(['--no-pg'], { ...env, ...other });
    expect(r.code).toBe(3);
    expect(report.failed).toEqual(['archive']);
    expect(item('archive').fix).toMatch(/run walts init/);
  });

  it('fails naming the public key when it cannot encrypt (a sign-only key made by gpg)', async () => {
    const signOnly = await makeSignOnlyPublicKey();
    try {
      const { r, report, item } = await check(['--no-pg'], { ...env, WALTS_PGP_PUBLIC_KEY: signOnly.publicKeyPath });
      expect(r.code).toBe(3);
      expect(report.failed).toEqual(['public key']);
      expect(item('public key').detail).toMatch(/cannot encrypt/);
      // The store items still ran, with a probe the store can take.
      expect(item('store put').status).toBe('ok');
      const nagios = await runWalts(['check', '--nagios', '--no-pg'], { ...env, WALTS_PGP_PUBLIC_KEY: signOnly.publicKeyPath }, { timeoutMs: 300_000, asUser: PG_OS_USER });
      expect(nagios.stdout).toBe('WALTS CRITICAL - 1 check failed: public key\n');
      expect(nagios.code).toBe(2);
    } finally {
      await signOnly.cleanup();
    }
  });

  it('warns naming the lz4 native module when it cannot load, with the rebuild fix, and LZ4 still works (JavaScript coder)', async () => {
    const { r, report, item } = await check(['--no-pg'], { ...env, NODE_OPTIONS: `--require ${BROKEN_LZ4}` }, undefined);
    expect(report.failed).toEqual([]);
    expect(r.code).toBe(0);
    expect(report.warnings).toEqual(['codec lz4']);
    expect(item('codec lz4').detail).toMatch(/JavaScript block coder.*NODE_MODULE_VERSION/);
    expect(item('codec lz4').fix).toMatch(/npm rebuild lz4/);
    // The probe still goes to the store LZ4-compressed, and is read back.
    expect(item('store put').detail).toMatch(/\.lz4\.pgp/);
    expect(item('store get').status).toBe('ok');
  });

  it('WALTS_COMPRESSION=zstd: the zstd item fails naming the Node.js version needed where node:zlib has no zstd, else passes', async () => {
    const { report, item } = await check(['--no-pg'], { ...env, WALTS_COMPRESSION: 'zstd' }, undefined);
    if (zstdAvailable()) {
      expect(item('codec zstd').status).toBe('ok');
      expect(item('store put').detail).toMatch(/\.zst\.pgp/);
    } else {
      expect(report.failed).toEqual(['codec zstd']);
      expect(item('codec zstd').detail).toMatch(/Node\.js 22\.15\.0 or later/);
      expect(item('codec zstd').fix).toMatch(/upgrade Node\.js to 22\.15\.0 or later, or set WALTS_COMPRESSION=lz4/);
    }
  });

  if (kind === 's3') {
    describe('through the fault proxy', () => {
      let proxy: FaultProxy;
      beforeAll(async () => {
        proxy = await startFaultProxy({ host: '127.0.0.1', port: store.s3!.port });
      });
      afterEach(() => proxy.clear());
      afterAll(() => proxy?.stop());

      it('fails naming the store when every request is refused with 403 (bad credentials)', async () => {
        proxy.inject({ kind: 'status', status: 403, times: 1000 });
        const { r, report, item } = await check(['--no-pg'], { ...env, WALTS_S3_ENDPOINT: proxy.endpoint });
        expect(r.code).toBe(3);
        expect(report.failed).toEqual(['store']);
        expect(item('store').detail).toMatch(/AccessDenied 403: access refused/);
        expect(item('store').fix).toMatch(/credentials/);
      });

      it('a store that refuses delete (put-only policy) is a warning, and a failure with --for-retention', async () => {
        const proxied = { ...env, WALTS_S3_ENDPOINT: proxy.endpoint };
        proxy.inject({ kind: 'status', status: 403, method: 'POST', pathIncludes: '?delete', times: 1000 });
        const archiving = await check(['--no-pg'], proxied);
        expect(archiving.report.failed).toEqual([]);
        expect(archiving.report.warnings).toEqual(['store delete']);
        expect(archiving.item('store delete').detail).toMatch(/access refused.*the probe walts_v1\/probe\/check_\S+ is left behind/);
        expect(archiving.r.code).toBe(0);

        const retention = await check(['--no-pg', '--for-retention'], proxied);
        expect(retention.report.failed).toEqual(['store delete']);
        expect(retention.item('store delete').fix).toMatch(/s3:DeleteObject/);
        expect(retention.r.code).toBe(3);
      });
    });
  } else {
    it('fails naming store put when the directory is read-only for the user', async () => {
      const root = join(store.dir, 'walts_v1');
      await chmod(root, 0o555);
      try {
        const { r, report, item } = await check(['--no-pg'], env);
        expect(r.code).toBe(3);
        expect(report.failed).toEqual(['store put']);
        expect(item('store put').detail).toMatch(/permission denied/);
        expect(item('store list').status).toBe('ok');
      } finally {
        await chmod(root, 0o700);
      }
    });
  }
});

describe('walts check: PostgreSQL settings and configuration', () => {
  const reg = trackClusters();
  let store: TestStore;
  beforeAll(async () => {
    store = await startStore('file', reg, 'check-pg');
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
  });

  it('fails naming archive_mode off, an archive_command that does not call walts, and a store of another cluster', async () => {
    const pg = await reg.createCluster({ name: 'check-off', conf: { archive_mode: 'off', archive_command: '/bin/true' } });
    await pg.start();
    const env = { ...store.env, ...pg.pgEnv() };
    const { r, report, item } = await check(['--pg'], env);
    expect(r.code).toBe(3);
    expect(report.failed).toEqual(['archive_mode', 'archive_command']);
    expect(item('archive_mode').fix).toMatch(/archive_mode = on/);
    expect(item('archive_command').detail).toMatch(/runs true, not walts wal-push/);
    expect(item('archive_timeout').status).toBe('warn'); // 0 by default
    const nagios = await runWalts(['check', '--nagios'], env, { timeoutMs: 300_000, asUser: PG_OS_USER });
    expect(nagios.stdout).toBe('WALTS CRITICAL - 2 checks failed: archive_mode, archive_command\n');
    expect(nagios.code).toBe(2);

    // A store claimed by another cluster (walts init --pgdata of a second initdb) is named as such.
    const other = await reg.createCluster({ name: 'check-other' });
    const claimed = await startStore('file', reg, 'check-claimed');
    await initArchive(claimed.env, ['--pgdata', other.dataDir]);
    const mismatch = await check(['--pg'], { ...claimed.env, ...pg.pgEnv() });
    expect(mismatch.report.failed).toEqual(['archive_mode', 'archive_command', 'cluster']);
    expect(mismatch.item('cluster').detail).toMatch(/^the store belongs to database system \d+ \(PostgreSQL 15\), this server is system \d+: wal-push would refuse every segment$/);
  });

  it('fails naming the private key when it is not the secret half of the public key', async () => {
    const [pair, other] = [await makeGpgKeys({ algo: 'ed25519' }), await makeGpgKeys({ algo: 'ed25519', fresh: true })];
    try {
      const env = { ...store.env, WALTS_PGP_PUBLIC_KEY: pair.publicKeyPath, WALTS_PGP_PRIVATE_KEY: other.privateKeyPath };
      const { r, report, item } = await check(['--no-pg'], env);
      expect(r.code).toBe(3);
      expect(report.failed).toEqual(['private key']);
      expect(item('private key').detail).toMatch(/cannot decrypt what WALTS_PGP_PUBLIC_KEY encrypts/);
      const right = await check(['--no-pg'], { ...env, WALTS_PGP_PRIVATE_KEY: pair.privateKeyPath });
      expect(right.report.failed).toEqual([]);
      expect(right.item('public key').status).toBe('warn'); // not recorded in archive.json: the archive was made unencrypted
    } finally {
      await pair.cleanup();
      await other.cleanup();
    }
  });

  it('reports a configuration error as the failed configuration item listing every problem, not a crash', async () => {
    const { r, report, item } = await check(['--no-pg'], { WALTS_STOR: store.env['WALTS_STORE']!, WALTS_COMPRESSION: 'zip' });
    expect(r.code).toBe(3);
    expect(report.failed).toEqual(['configuration']);
    expect(item('configuration').detail).toMatch(/WALTS_STOR .*did you mean WALTS_STORE\?/);
    expect(item('configuration').detail).toMatch(/WALTS_STORE is not set/);
    expect(item('configuration').detail).toMatch(/WALTS_COMPRESSION must be lz4, zstd or none/);
    expect(item('codec lz4').status).toBe('ok'); // the rest still ran
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
  });
});
