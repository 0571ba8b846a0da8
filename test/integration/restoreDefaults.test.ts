/**
 * Acceptance for "a restore is safe by default" with real PostgreSQL 15 and the walts binary
 * (issue 7, section 5):
 * - `backup-fetch DEST LATEST` with no option gives a copy that starts, recovers to the end of the
 *   archive (rows committed after the backup are there), promotes, and does not archive into its
 *   origin's archive (archive_mode = off is written; no new object reaches the store);
 * - backup-push refuses, before uploading anything, a server with archive_mode = off or without an
 *   archive_command (exit 2, one line), instead of uploading and waiting for WAL that never comes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { chownToPg, PG_OS_USER, trackClusters, type Cluster } from '../helpers/pg';
import { runWalts } from '../helpers/run';
import { startStore, waltsCommand, type TestStore } from '../helpers/stores';

/** Every file below `dir`, relative, sorted. */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

describe('a restore with defaults recovers to the end of the archive and does not archive into it (file store, encrypted)', () => {
  const reg = trackClusters();
  let keys: GpgKeys;
  let store: TestStore;
  let a: Cluster;
  let pushEnv: Record<string, string>;
  let restoreEnv: Record<string, string>;

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'defaults pass', algo: 'ed25519' });
    store = await startStore('file', reg, 'defaults');
    pushEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath };
    // The restore host holds the private key and the store: what it would archive with is this.
    restoreEnv = { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' };
    a = await reg.createCluster({ name: 'a', env: pushEnv, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    await a.psql('create table t (id int primary key)');
    await a.psql('insert into t select generate_series(1, 100)');
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
    await keys?.cleanup();
  });

  it('backup-push refuses a server without an archive_command before uploading anything (exit 2)', async () => {
    a.setConf({ archive_command: '' });
    await a.reload();
    try {
      const before = listFiles(store.dir);
      const push = await runWalts(['backup-push', a.dataDir, '--fast'], { ...pushEnv, ...a.pgEnv() }, { timeoutMs: 120_000, asUser: PG_OS_USER });
      const lines = push.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/archive_command \(and archive_library\) are empty on this server/);
      expect(push.code).toBe(2);
      expect(listFiles(store.dir)).toEqual(before);
    } finally {
      a.setConf({ archive_command: waltsCommand('wal-push %p') });
      await a.reload();
    }
  });

  it('backup-fetch DEST LATEST: the copy starts, replays to the end of the archive, promotes, and archives nothing (a signed backup, verified)', async () => {
    // The database host signs with its own key (it holds only the encryption public key); the restore host verifies.
    const keyDir = await reg.tempDir('signing', { forPostgres: true });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    writeFileSync(join(keyDir, 'signing.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(join(keyDir, 'verify.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    await chownToPg(keyDir, true);
    const push = await runWalts(['backup-push', a.dataDir, '--fast'], { ...pushEnv, ...a.pgEnv(), WALTS_BACKUP_SIGNING_KEY: join(keyDir, 'signing.key') }, { timeoutMs: 120_000, asUser: PG_OS_USER });
    expect(push.stderr).toContain('"backup-push done"');
    expect(push.code).toBe(0);
    expect(listFiles(store.dir).filter((f) => f.endsWith('/sentinel.json.sig'))).toHaveLength(1);
    restoreEnv = { ...restoreEnv, WALTS_BACKUP_VERIFY_KEY: join(keyDir, 'verify.pub') };
    // Committed after the backup: only the archive has these.
    await a.psql('insert into t select generate_series(101, 150)');
    await a.switchWalAndWaitArchived();
    await a.stop();

    const r = await reg.emptyCluster({ name: 'restored', env: restoreEnv });
    const fetch = await runWalts(['backup-fetch', r.dataDir, 'LATEST'], restoreEnv, { timeoutMs: 120_000 });
    expect(fetch.stderr).toContain('"backup-fetch done"');
    expect(fetch.stderr).toContain('"recovery":true');
    expect(fetch.code).toBe(0);
    const storeBefore = listFiles(store.dir);

    // As documented: start it. The harness only rebinds port and socket; the source's archive_mode=on
    // and archive_command (pointing at this very store) are kept.
    await r.prepareRestoredDataDir({ keepSourceSettings: true });
    await r.start();
    await r.waitForRecoveryEnd(120_000);
    expect(await r.psql('select count(*) || \',\' || max(id) from t')).toBe('150,150');
    expect(await r.psql('show archive_mode')).toBe('off');
    expect(await r.psql('select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)')).not.toBe('00000001'); // promoted
    // New WAL on the new timeline: with archiving on it would be pushed into the origin's store.
    await r.psql('insert into t values (151)');
    await r.psql('select pg_switch_wal()');
    await r.psql('checkpoint');
    expect(await r.psql('select archived_count || \',\' || failed_count from pg_stat_archiver')).toBe('0,0');
    await r.stop();
    expect(listFiles(store.dir)).toEqual(storeBefore);
  });
});

describe('backup-push refuses a server with archive_mode = off before uploading anything', () => {
  const reg = trackClusters();
  let store: TestStore;
  let c: Cluster;
  beforeAll(async () => {
    store = await startStore('file', reg, 'no-archive');
    c = await reg.createCluster({ name: 'no-archive', env: store.env, conf: { archive_mode: 'off' } });
    await c.start();
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
  });

  it('exit 2, one line naming archive_mode, nothing in the store', async () => {
    const before = listFiles(store.dir);
    const push = await runWalts(['backup-push', c.dataDir, '--fast'], { ...store.env, ...c.pgEnv() }, { timeoutMs: 120_000, asUser: PG_OS_USER });
    const lines = push.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/archive_mode is off on this server/);
    expect(push.code).toBe(2);
    expect(listFiles(store.dir)).toEqual(before);
  });
});
