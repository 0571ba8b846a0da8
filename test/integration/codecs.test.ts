/**
 * Compression choices against real PostgreSQL 15 (issue 11): LZ4 keeps archiving and restoring when
 * the `lz4` native module cannot load (install scripts skipped, or a Node.js upgrade without
 * `npm rebuild`): the JavaScript block coder takes over, and the objects stay what `lz4 -d` reads.
 * WALTS_COMPRESSION=zstd writes `.zst` objects that stock `zstd -d` reads, and an archive that
 * changed from LZ4 to zstd midway restores through both. On a Node.js without zstd in node:zlib
 * (before 22.15), writing zstd and reading a `.zst` object are configuration errors naming the
 * version, never integrity errors.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { zstdAvailable } from '../../src/codec/zstd';
import { trackClusters } from '../helpers/pg';
import { runOk, runWalts } from '../helpers/run';
import { startStore, waltsCommand, type TestStore } from '../helpers/stores';

const BROKEN_LZ4 = resolve(__dirname, '../helpers/broken-lz4.js');
const STATE_SQL = `select (select count(*) from pgbench_accounts) || ',' || (select sum(abalance) from pgbench_accounts) || ',' || (select count(*) from marker)`;
const WAL_DIR = 'walts_v1/wal/0000000100000000';

describe('codecs with real PostgreSQL 15 (file store)', () => {
  const reg = trackClusters();
  let store: TestStore;
  let stores = 0;

  beforeEach(async () => {
    store = await startStore('file', reg, `codecs-${++stores}`); // an archive of its own per test
  });
  afterEach(async () => {
    await store?.stop();
  });
  afterAll(async () => reg.cleanupAll());

  /** The stored WAL segment objects, by name with suffix. */
  const storedSegments = (): string[] => (existsSync(join(store.dir, WAL_DIR)) ? readdirSync(join(store.dir, WAL_DIR)).filter((f) => /^[0-9A-F]{24}\./.test(f) && !f.endsWith('.meta.json')) : []);

  it('with the lz4 native module unloadable, archives and restores LZ4 through the JavaScript coder; lz4 -t accepts every object', async () => {
    const broken = { NODE_OPTIONS: `--require ${BROKEN_LZ4}` };
    const a = await reg.createCluster({ name: 'jslz4', conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') }, env: { ...store.env, ...broken, WALTS_RETRY_DEADLINE: '20' } });
    await a.start();
    await a.pgbench(['-i', '-s', '1', '-q']);
    await a.psql('create table marker (id int primary key)');
    const b = await reg.basebackup(a, { name: 'jslz4-copy' });
    await a.psql('insert into marker select generate_series(1, 500)');
    await a.pgbench(['-c', '2', '-T', '3', '-n']);
    const state = await a.psql(STATE_SQL);
    const last = await a.switchWalAndWaitArchived();
    expect(await a.psql('select failed_count from pg_stat_archiver')).toBe('0');
    // The JavaScript coder was used (the native one cannot load here), silently: nothing on stderr.
    expect(a.log()).not.toMatch(/ERR_DLOPEN|NODE_MODULE_VERSION|self-register/);
    const objects = storedSegments();
    expect(objects).toContain(`${last}.lz4`);
    for (const o of objects) {
      expect(o).toMatch(/\.lz4$/);
      await runOk('lz4', ['-t', '-q', join(store.dir, WAL_DIR, o)]);
    }

    b.env = { ...store.env, ...broken };
    await b.setRecovery({ restore_command: waltsCommand('wal-fetch %f %p') });
    await b.start();
    await b.waitForRecoveryEnd(120_000);
    expect(await b.psql(STATE_SQL)).toBe(state);
    expect(b.log()).toContain(`restored log file "${last}" from archive`);
  });

  (zstdAvailable() ? it : it.skip)('WALTS_COMPRESSION=zstd: archives .zst objects that zstd -d decodes; an archive switched from LZ4 to zstd midway restores', async () => {
    const a = await reg.createCluster({ name: 'zstd', conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') }, env: { ...store.env, WALTS_RETRY_DEADLINE: '20' } });
    await a.start();
    await a.pgbench(['-i', '-s', '1', '-q']);
    await a.psql('create table marker (id int primary key)');
    const b = await reg.basebackup(a, { name: 'zstd-copy' });
    await a.psql('insert into marker select generate_series(1, 300)');
    const lastLz4 = await a.switchWalAndWaitArchived();
    expect(storedSegments()).toContain(`${lastLz4}.lz4`);

    // From here on PostgreSQL archives with zstd: the archive now holds both kinds.
    await a.psql(`alter system set archive_command = ${quote(`WALTS_COMPRESSION=zstd ${waltsCommand('wal-push %p')}`)}`);
    await a.psql('select pg_reload_conf()');
    await a.psql('insert into marker select generate_series(301, 600)');
    await a.pgbench(['-c', '2', '-T', '3', '-n']);
    const state = await a.psql(STATE_SQL);
    const last = await a.switchWalAndWaitArchived();
    expect(await a.psql('select failed_count from pg_stat_archiver')).toBe('0');
    const objects = storedSegments();
    expect(objects).toContain(`${lastLz4}.lz4`);
    expect(objects).toContain(`${last}.zst`);

    // By hand, with the stock tool: the stored object is a zstd frame of the segment walts restores.
    const work = await reg.tempDir('zstd-work');
    await runOk('zstd', ['-d', '-q', '-f', join(store.dir, WAL_DIR, `${last}.zst`), '-o', join(work, 'by-hand')]);
    const fetched = await runWalts(['wal-fetch', last, join(work, 'by-walts')], store.env);
    expect(fetched.code).toBe(0);
    expect(readFileSync(join(work, 'by-hand')).equals(readFileSync(join(work, 'by-walts')))).toBe(true);

    b.env = { ...store.env };
    await b.setRecovery({ restore_command: waltsCommand('wal-fetch %f %p') });
    await b.start();
    await b.waitForRecoveryEnd(120_000);
    expect(await b.psql(STATE_SQL)).toBe(state);
    const log = b.log();
    expect(log).toContain(`restored log file "${lastLz4}" from archive`);
    expect(log).toContain(`restored log file "${last}" from archive`);
  });

  (zstdAvailable() ? it.skip : it)(`without zstd in node:zlib (Node.js ${process.version}): writing zstd and reading .zst are configuration errors naming Node.js 22.15`, async () => {
    const work = await reg.tempDir('nozstd-work');
    const seg = '000000010000000000000001';
    const cluster = await reg.createCluster({ name: 'nozstd' }); // a real, initdb-written segment
    mkdirSync(join(work, 'pg_wal'), { recursive: true });
    writeFileSync(join(work, 'pg_wal', seg), readFileSync(join(cluster.dataDir, 'pg_wal', seg)));
    const push = await runWalts(['wal-push', `pg_wal/${seg}`], { ...store.env, WALTS_COMPRESSION: 'zstd' }, { cwd: work });
    expect(push.code).toBe(2);
    expect(push.stderr).toMatch(/Node\.js 22\.15\.0 or later/);
    expect(storedSegments()).toEqual([]);

    // A .zst object made by hand (as a newer walts writes it): reading it says what is needed.
    await runOk('zstd', ['-q', '-f', join(work, 'pg_wal', seg), '-o', join(work, 'seg.zst')]);
    mkdirSync(join(store.dir, WAL_DIR), { recursive: true });
    writeFileSync(join(store.dir, WAL_DIR, `${seg}.zst`), readFileSync(join(work, 'seg.zst')));
    const fetch = await runWalts(['wal-fetch', seg, join(work, 'out')], store.env);
    expect(fetch.code).toBe(255); // a hard error: PostgreSQL stops instead of ending recovery
    expect(fetch.stderr).toMatch(/reading a \.zst object needs Zstandard.*Node\.js 22\.15\.0 or later/);
    expect(fetch.stderr).not.toMatch(/integrity|corrupt/i);
  });
});

function quote(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
