/**
 * Self-test of the integration-test harness (test/helpers/{pg,gpg,run}.ts), and living documentation
 * of how it is used. It runs as root here: PostgreSQL binaries then run as the `postgres` OS user.
 *
 * What it proves:
 *  - a real PG15 cluster (data checksums on) starts on its own port/socket; psql and pgbench work;
 *  - variables in `cluster.env` reach archive_command (and nothing leaks from the test's process.env);
 *  - archive_command runs as postgres and can write to a registry.tempDir(..., { forPostgres: true });
 *  - basebackup() (-X none) + restore_command from that archive recovers the data on a second cluster;
 *  - destroy/cleanupAll stop the servers and remove the dirs;
 *  - gpg keys: gpg encrypt -> gpg decrypt round trip, key files readable by postgres, no agent left.
 */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { makeGpgKeys } from '../helpers/gpg';
import { Cluster, PG_OS_USER, createCluster, pgAvailable, trackClusters } from '../helpers/pg';
import { REPO_ROOT, isRoot, lookupUser, run, runOk } from '../helpers/run';

const timings: string[] = [];
afterAll(() => {
  // eslint-disable-next-line no-console
  console.log(`harness timings (${isRoot() ? 'as root, servers as postgres' : 'non-root'}):\n  ${timings.join('\n  ')}`);
});

async function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const r = await f();
  timings.push(`${label}: ${Date.now() - t0} ms`);
  return r;
}

function processesMentioning(s: string): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(s)) out.push(`${pid}: ${cmd}`);
    } catch {
      /* exited */
    }
  }
  return out;
}

describe('run helper', () => {
  test('never throws on failure, and kills on timeout', async () => {
    const r = await run('sh', ['-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toMatchObject({ code: 3, signal: null, stdout: 'out\n', stderr: 'err\n', timedOut: false });
    const t = await run('sh', ['-c', 'sleep 30'], { timeoutMs: 300 });
    expect(t.timedOut).toBe(true);
    expect(t.signal).toBe('SIGKILL');
    expect(t.durationMs).toBeLessThan(5000);
    const i = await run('cat', [], { input: 'stdin data' });
    expect(i.stdout).toBe('stdin data');
  });

  test('asUser runs as that user (when root) with exactly the given env', async () => {
    process.env.WALTS_TEST_SHOULD_NOT_LEAK = 'leaked';
    try {
      const r = await runOk('sh', ['-c', 'echo "$(id -un) $X ${WALTS_TEST_SHOULD_NOT_LEAK:-none} $HOME"'], {
        asUser: 'postgres',
        cleanEnv: true,
        env: { X: 'a b=c' },
        cwd: '/',
      });
      const me = isRoot() ? 'postgres' : (await runOk('id', ['-un'])).stdout.trim();
      const home = isRoot() ? lookupUser('postgres').home : process.env.HOME;
      expect(r.stdout.trim()).toBe(`${me} a b=c none ${home}`);
    } finally {
      delete process.env.WALTS_TEST_SHOULD_NOT_LEAK;
    }
  });
});

describe('PostgreSQL cluster harness', () => {
  const pg = trackClusters();
  afterAll(async () => {
    await timed('cleanupAll', () => pg.cleanupAll());
  });

  test('PostgreSQL 15 is installed (integration tests fail loudly, never skip, without it)', () => {
    expect(pgAvailable()).toBe(true);
  });

  test("the server's OS user can run node code from this checkout (what archive_command will do)", async () => {
    const r = await run(process.execPath, ['-e', 'console.log(require.resolve("pg", { paths: [process.argv[1]] }))', REPO_ROOT], {
      asUser: PG_OS_USER,
      cleanEnv: true,
      cwd: '/',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(path.join(REPO_ROOT, 'node_modules'));
  });

  let src: Cluster;
  let archiveDir: string;
  let markerFile: string;
  const marker = `marker-${randomBytes(6).toString('hex')}`;

  test('create + start a checksummed cluster; psql, pgbench, pg_stat_archiver', async () => {
    src = await timed('createCluster (initdb, checksums)', () => pg.createCluster({ name: 'src', dataChecksums: true }));
    await timed('start', () => src.start());
    expect(src.isRunning()).toBe(true);
    expect(await src.psql('select 1')).toBe('1');
    expect(await src.psql('show data_checksums')).toBe('on');
    expect(await src.psql('show port')).toBe(String(src.port));
    expect(await src.psql('show unix_socket_directories')).toBe(src.socketDir);
    expect(await src.psql('show fsync')).toBe('off');
    // The server runs as postgres when we are root.
    const owner = fs.statSync(src.dataDir).uid;
    expect(owner).toBe(isRoot() ? lookupUser('postgres').uid : process.getuid!());
    expect(fs.statSync(src.dataDir).mode & 0o777).toBe(0o700);

    await timed('pgbench -i -s 1', () => src.pgbench(['-i', '-s', '1', '-q']));
    expect(await src.psql('select count(*) from pgbench_accounts')).toBe('100000');
    expect(await src.psql('select count(*) from pg_stat_archiver')).toBe('1');
    // psql errors surface as exceptions; psqlRun lets a test assert on them.
    await expect(src.psql('select * from no_such_table')).rejects.toThrow(/no_such_table/);
    const bad = await src.psqlRun('select 1/0');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/division by zero/);
    expect(src.log()).toMatch(/database system is ready to accept connections/);
  });

  test('cluster.env reaches archive_command (and process.env does not)', async () => {
    archiveDir = await pg.tempDir('archive', { forPostgres: true });
    const markerDir = await pg.tempDir('marker', { forPostgres: true });
    markerFile = path.join(markerDir, 'marker.txt');
    process.env.WALTS_TEST_SHOULD_NOT_LEAK = 'leaked';
    try {
      src.env = { WALTS_TEST_MARKER: marker, WALTS_TEST_SPACES: 'a b' };
      src.setConf({
        archive_mode: 'on',
        // %p/%f are expanded by PostgreSQL; $VARS by /bin/sh from the server's environment.
        archive_command:
          `echo "$WALTS_TEST_MARKER|$WALTS_TEST_SPACES|\${WALTS_TEST_SHOULD_NOT_LEAK:-none}|$(id -un)" >> '${markerFile}'` +
          ` && test ! -f '${archiveDir}/%f' && cp %p '${archiveDir}/%f'`,
      });
      await timed('restart (archive_mode on)', () => src.restart());
    } finally {
      delete process.env.WALTS_TEST_SHOULD_NOT_LEAK;
    }
    const seg = await timed('switch WAL + wait archived', () => src.switchWalAndWaitArchived());
    expect(fs.existsSync(path.join(archiveDir, seg))).toBe(true);
    const user = PG_OS_USER ?? (await runOk('id', ['-un'])).stdout.trim();
    const lines = fs.readFileSync(markerFile, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toBe(`${marker}|a b|none|${user}`);
    expect(await src.psql('select failed_count from pg_stat_archiver')).toBe('0');
  });

  test('basebackup (-X none) restores from the archive on a second cluster', async () => {
    await src.psql("create table t(x text); insert into t values ('after-backup-start')");
    const copy = await timed('basebackup -X none', () => pg.basebackup(src, { name: 'copy' }));
    expect(copy.port).not.toBe(src.port);
    expect(copy.socketDir).not.toBe(src.socketDir);
    expect(copy.isRunning()).toBe(false);
    expect(fs.existsSync(path.join(copy.dataDir, 'backup_label'))).toBe(true);
    // No WAL came with the backup: recovery has to use the archive.
    expect(fs.readdirSync(path.join(copy.dataDir, 'pg_wal')).filter((f) => /^[0-9A-F]{24}$/.test(f))).toEqual([]);
    // Source-only settings were stripped; the copy has its own port/socket.
    const conf = copy.getConf();
    expect(conf.archive_command).toBeUndefined();
    expect(conf.archive_mode).toBeUndefined();
    expect(conf.port).toBe(String(copy.port));
    expect(conf.unix_socket_directories).toBe(copy.socketDir);
    expect(copy.getConf().fsync).toBe('off');

    // Write more after the backup and archive it, then restore it all.
    await src.psql("insert into t values ('after-backup-end')");
    await src.switchWalAndWaitArchived();
    await copy.setRecovery({ restore_command: `cp '${archiveDir}/%f' %p`, recovery_target_action: 'promote' });
    await timed('start restored copy', () => copy.start());
    await timed('waitForRecoveryEnd', () => copy.waitForRecoveryEnd(60_000));
    expect(await copy.psql('select count(*) from pgbench_accounts')).toBe('100000');
    expect(await copy.psql('select string_agg(x, \',\' order by x) from t')).toBe('after-backup-end,after-backup-start');
    expect(copy.log()).toMatch(/restored log file "[0-9A-F]{24}" from archive/);
    expect(copy.log()).toMatch(/archive recovery complete/);
    // Both servers run side by side.
    expect(src.isRunning() && copy.isRunning()).toBe(true);

    await timed('stop (fast)', () => copy.stop());
    expect(copy.isRunning()).toBe(false);
    await copy.destroy();
    expect(fs.existsSync(copy.dir)).toBe(false);
  });

  test('destroy stops the server and removes its files', async () => {
    const pid = src.postmasterPid();
    expect(pid).toBeDefined();
    await timed('destroy (stop + rm)', () => src.destroy());
    expect(fs.existsSync(src.dir)).toBe(false);
    // The postmaster is gone (or a zombie waiting for PID 1 to reap it: pg_ctl daemonizes it).
    let state = '';
    try {
      state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.slice(0, 1);
    } catch {
      state = 'gone';
    }
    expect(['gone', 'Z']).toContain(state);
  });

  test('start() failures carry the server log; start() survives losing a port race', async () => {
    const bad = await pg.createCluster({ name: 'bad', conf: { shared_buffers: 'nonsense' } });
    await expect(bad.start({ timeoutSec: 10 })).rejects.toThrow(/invalid value for parameter "shared_buffers"/);
    expect(bad.isRunning()).toBe(false);

    const race = await pg.createCluster({ name: 'race' });
    const oldPort = race.port;
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(oldPort, '127.0.0.1', resolve));
    try {
      await race.start();
    } finally {
      blocker.close();
    }
    expect(race.port).not.toBe(oldPort);
    expect(await race.psql('show port')).toBe(String(race.port));
    expect(race.log()).toMatch(/could not bind IPv4 address "127.0.0.1": Address already in use/);
    const reaper = processesMentioning('walts-test-reaper').filter((p) => p.includes(race.dataDir));
    expect(reaper).toHaveLength(1); // the watchdog that would stop it if this process died
    await race.destroy();
    expect(processesMentioning('walts-test-reaper').filter((p) => p.includes(race.dataDir))).toEqual([]);
  });

  test('a small cluster with custom WAL segment size, standalone (own temp base dir)', async () => {
    const c = await createCluster({ name: 'small', walSegSizeMb: 1, conf: { work_mem: '8MB' } });
    try {
      await c.start();
      expect(await c.psql('show wal_segment_size')).toBe('1MB');
      expect(await c.psql('show data_checksums')).toBe('off');
      expect(await c.psql('show work_mem')).toBe('8MB');
    } finally {
      await c.destroy();
    }
    expect(fs.existsSync(path.dirname(c.dir))).toBe(false);
  });
});

describe('gpg harness', () => {
  test.each([
    ['rsa3072', 'correct horse'],
    ['ed25519', undefined],
  ] as const)('%s keys (passphrase: %s): gpg encrypt -> gpg decrypt round trip', async (algo, passphrase) => {
    const keys = await timed(`makeGpgKeys ${algo}`, () => makeGpgKeys({ algo, passphrase }));
    try {
      expect(keys.fingerprint).toMatch(/^[0-9A-F]{40}$/);
      expect(fs.readFileSync(keys.publicKeyPath, 'utf8')).toMatch(/BEGIN PGP PUBLIC KEY BLOCK/);
      expect(fs.readFileSync(keys.privateKeyPath, 'utf8')).toMatch(/BEGIN PGP PRIVATE KEY BLOCK/);
      expect(fs.statSync(keys.privateKeyPath).mode & 0o777).toBe(0o600);
      expect(fs.statSync(keys.home).mode & 0o777).toBe(0o700);
      if (passphrase) expect(fs.readFileSync(keys.passphraseFile!, 'utf8')).toBe(passphrase);
      else expect(keys.passphraseFile).toBeUndefined();
      if (isRoot()) {
        // walts runs as postgres inside archive_command/restore_command and must read these.
        const r = await run('cat', [keys.publicKeyPath, keys.privateKeyPath], { asUser: 'postgres', cleanEnv: true, cwd: '/' });
        expect(r.code).toBe(0);
      }

      const dir = path.dirname(keys.home);
      const plain = path.join(dir, 'plain.bin');
      const data = Buffer.concat([randomBytes(512 * 1024), Buffer.alloc(512 * 1024, 7)]);
      fs.writeFileSync(plain, data);
      await timed(`gpg encrypt 1 MiB ${algo}`, () => keys.encrypt(plain, path.join(dir, 'enc.gpg')));
      const enc = fs.readFileSync(path.join(dir, 'enc.gpg'));
      expect(enc.includes(data.subarray(0, 64))).toBe(false);
      await timed(`gpg decrypt 1 MiB ${algo}`, () => keys.decrypt(path.join(dir, 'enc.gpg'), path.join(dir, 'dec.bin')));
      expect(fs.readFileSync(path.join(dir, 'dec.bin')).equals(data)).toBe(true);
      const viaBuf = await keys.decryptRun(enc);
      expect(viaBuf.code).toBe(0);
      expect(viaBuf.stdoutBuf.equals(data)).toBe(true);
      // Garbage does not decrypt.
      expect((await keys.decryptRun(Buffer.from('not pgp'))).code).not.toBe(0);
    } finally {
      await keys.cleanup();
    }
    expect(fs.existsSync(keys.home)).toBe(false);
    expect(processesMentioning(keys.home).filter((p) => p.includes('gpg-agent'))).toEqual([]);
  });

  test('fresh keys differ from the cached pair; a different key cannot decrypt', async () => {
    const a = await makeGpgKeys({ algo: 'ed25519' });
    const b = await makeGpgKeys({ algo: 'ed25519', fresh: true });
    try {
      expect(b.fingerprint).not.toBe(a.fingerprint);
      const plain = path.join(path.dirname(a.home), 'p');
      fs.writeFileSync(plain, 'hello');
      await a.encrypt(plain, `${plain}.gpg`);
      const r = await b.decryptRun(fs.readFileSync(`${plain}.gpg`));
      expect(r.code).not.toBe(0);
    } finally {
      await a.cleanup();
      await b.cleanup();
    }
  });
});
