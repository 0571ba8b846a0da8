/**
 * The store and switch-wal items on a memory store: the probe goes in and is removed again; a
 * refused delete is a warning, or a failure for a retention host; the archive's owner is compared
 * with the server; and --switch-wal waits on the command's clock (a fake one here), never longer
 * than --timeout.
 */
import { CLUSTER_KEY, PROBE_PREFIX } from '../../../src/archive/layout';
import type { Config } from '../../../src/config';
import { ConfigError } from '../../../src/errors';
import { encodeProbe } from '../../../src/ops/check/keys';
import { checkArchive, probeStore } from '../../../src/ops/check/store';
import { switchWalAndWait } from '../../../src/ops/check/switchWal';
import type { PgSession } from '../../../src/postgres/client';
import { MemoryStorage } from '../../../src/storage/memory';
import { testDeps } from '../../helpers/deps';

const config = { compression: 'lz4', pgp: {} } as unknown as Config;

describe('store probe', () => {
  it('writes a probe under walts_v1/probe/ through the encode path, reads it back and removes it', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const items = await probeStore(deps, 'file', await encodeProbe(config, true, false, false), { forRetention: true });
    expect(items.map((i) => [i.name, i.status])).toEqual([
      ['store list', 'ok'],
      ['store put', 'ok'],
      ['store get', 'ok'],
      ['store delete', 'ok'],
    ]);
    expect(items[1]!.detail).toMatch(new RegExp(`^wrote ${PROBE_PREFIX}check_20261121T120000Z_test-host_[0-9a-f]{8}\\.lz4 `));
    expect([...storage.objects.keys()].filter((k) => k.startsWith(PROBE_PREFIX))).toEqual([]);
  });

  it('a refused delete is a warning naming the probe left behind, and a failure with --for-retention', async () => {
    const storage = new MemoryStorage();
    storage.delete = async () => {
      throw new ConfigError('s3://b/p: delete x: AccessDenied 403: access refused');
    };
    const deps = testDeps(storage);
    const probe = await encodeProbe(config, true, false, false);
    const archiving = (await probeStore(deps, 's3', probe, { forRetention: false })).at(-1)!;
    expect(archiving).toMatchObject({ name: 'store delete', status: 'warn' });
    expect(archiving.detail).toMatch(/AccessDenied 403.*the probe walts_v1\/probe\/check_\S+ is left behind/);
    const retention = (await probeStore(deps, 's3', probe, { forRetention: true })).at(-1)!;
    expect(retention).toMatchObject({ name: 'store delete', status: 'fail', fix: expect.stringMatching(/s3:DeleteObject/) });
  });

  it('fails get when the store does not keep the metadata walts records', async () => {
    const storage = new MemoryStorage();
    const put = storage.put.bind(storage);
    storage.put = (key, body, options) => put(key, body, { ...options, metadata: {} });
    const items = await probeStore(testDeps(storage), 's3', await encodeProbe(config, true, false, false), { forRetention: false });
    expect(items.find((i) => i.name === 'store get')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/without the metadata/) });
  });
});

describe('archive items', () => {
  const record = (sysid: string) => Buffer.from(JSON.stringify({ format: 1, system_identifier: sysid, wal_page_magic: 0xd110, wal_segment_size: 16 << 20, created_at: 'x', created_by: 'y' }));

  it('fails the cluster item when the archive belongs to another system', async () => {
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    storage.objects.set(CLUSTER_KEY, { data: record('7000000000000000001'), metadata: {}, lastModified: new Date() });
    const other = await checkArchive(deps, 'file', '7000000000000000002');
    expect(other.items.find((i) => i.name === 'cluster')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/separate WALTS_STORE prefix/) });
    const same = await checkArchive(deps, 'file', '7000000000000000001');
    expect(same.items.map((i) => i.status)).toEqual(['ok', 'ok', 'ok']);
  });

  it('fails the archive item where walts init was not run', async () => {
    const { items } = await checkArchive(testDeps(new MemoryStorage(), { archive: false }), 'file', undefined);
    expect(items.map((i) => [i.name, i.status])).toEqual([
      ['store', 'ok'],
      ['archive', 'fail'],
      ['cluster', 'ok'],
    ]);
  });
});

describe('--switch-wal', () => {
  const SEGMENT = '000000010000000000000003';
  function fakeSession(): PgSession & { queries: string[] } {
    const queries: string[] = [];
    return {
      queries,
      serverVersionNum: 150000,
      backendPid: 1,
      target: { host: '/tmp', port: 5432, user: 'postgres', database: 'postgres', ssl: false },
      closed: false,
      async query(sql: string) {
        queries.push(sql);
        if (sql.includes('pg_switch_wal')) return { rows: [{ name: SEGMENT }], rowCount: 1 } as never;
        if (sql.includes('pg_stat_archiver')) return { rows: [{ archive_mode: 'on', archived_count: '0', failed_count: '3', last_failed_wal: SEGMENT, last_failed_time: new Date('2026-11-21T12:00:00Z') }], rowCount: 1 } as never;
        return { rows: [{}], rowCount: 1 } as never;
      },
      cancel: async () => true,
      reconnect: async () => {
        throw new Error('not here');
      },
      close: async () => {},
    };
  }
  function fakeClock() {
    let now = 0;
    const sleeps: number[] = [];
    return { sleeps, now: () => now, sleep: async (ms: number) => void (sleeps.push(ms), (now += ms)) };
  }

  it('fails after exactly --timeout of (fake) time when the file never arrives, with what pg_stat_archiver says', async () => {
    const clock = fakeClock();
    const session = fakeSession();
    const item = await switchWalAndWait({ session, archiveMode: 'on', inRecovery: false }, new MemoryStorage(), { timeoutMs: 10_000, clock });
    expect(item.status).toBe('fail');
    expect(item.detail).toMatch(`${SEGMENT} did not reach the store within 10 s of pg_switch_wal() (archive_mode=on, last archived none, last failed ${SEGMENT}`);
    expect(clock.now()).toBe(10_000);
    expect(clock.sleeps.slice(0, 5)).toEqual([100, 200, 400, 800, 1600]);
    expect(Math.max(...clock.sleeps)).toBe(2000);
    expect(session.queries[0]).toMatch(/pg_create_restore_point/);
  });

  it('passes once the switched file is in the store, complete', async () => {
    const clock = fakeClock();
    const storage = new MemoryStorage();
    const deps = testDeps(storage);
    const sleep = clock.sleep;
    let polls = 0;
    clock.sleep = async (ms: number) => {
      await sleep(ms);
      if (++polls === 3) {
        // the archiver delivers the segment: as wal-push stores it (walts metadata, complete)
        const probe = await encodeProbe(config, true, false, false);
        await deps.storage.put(`walts_v1/wal/0000000100000000/${SEGMENT}.lz4`, probe.stored, { metadata: { 'walts-sha256': probe.plain.sha256, 'walts-size': String(probe.plain.size), 'walts-stored-size': String(probe.stored.length) } });
      }
    };
    const item = await switchWalAndWait({ session: fakeSession(), archiveMode: 'on', inRecovery: false }, storage, { timeoutMs: 60_000, clock });
    expect(item).toMatchObject({ status: 'ok', detail: `${SEGMENT} reached the store 0.7 s after pg_switch_wal()` });
  });

  it('is skipped where nothing would be archived or nothing can be switched', async () => {
    const clock = fakeClock();
    expect((await switchWalAndWait({ session: fakeSession(), archiveMode: 'off', inRecovery: false }, new MemoryStorage(), { timeoutMs: 1000, clock })).status).toBe('skip');
    expect((await switchWalAndWait({ session: fakeSession(), archiveMode: 'on', inRecovery: true }, new MemoryStorage(), { timeoutMs: 1000, clock })).status).toBe('skip');
  });
});

describe('PostgreSQL reachability', () => {
  const ctx = { readFile: () => '' };
  it('skips a server that is not there unless required; fails one that refuses the role', async () => {
    const { checkPostgres } = await import('../../../src/ops/check/postgres');
    const { UnavailableError } = await import('../../../src/errors');
    const absent = async () => {
      throw new UnavailableError('cannot connect to PostgreSQL at host=/x port=5432: no server socket', { transient: true });
    };
    const refused = async () => {
      throw new ConfigError('cannot connect to PostgreSQL at host=/x port=5432 user=bob database=bob: password authentication failed');
    };
    expect((await checkPostgres('auto', absent, ctx)).items).toMatchObject([{ name: 'postgres', status: 'skip' }]);
    expect((await checkPostgres('require', absent, ctx)).items).toMatchObject([{ name: 'postgres', status: 'fail' }]);
    expect((await checkPostgres('auto', refused, ctx)).items).toMatchObject([{ name: 'postgres', status: 'fail', fix: expect.stringMatching(/PGPASSWORD/) }]);
    expect((await checkPostgres('off', refused, ctx)).items).toMatchObject([{ name: 'postgres', status: 'skip' }]);
  });
});

describe('archive_mode off with a receiver (walts wal-receive) feeding the store', () => {
  /** A fake session answering the settings query and pg_replication_slots. */
  const session = (slots: Array<{ slot_name: string; active: boolean }>) =>
    ({
      serverVersionNum: 150010,
      target: { host: '127.0.0.1', port: 5432, user: 'walts_backup', database: 'postgres' },
      closed: false,
      async query(sql: string) {
        if (/pg_replication_slots/.test(sql)) return { rows: slots, rowCount: slots.length };
        if (/current_setting\('server_version'\)/.test(sql)) {
          const row = { version: '15.10', sysid: '7301234567890123456', recovery: false, wal_level: 'replica', archive_mode: 'off', archive_command: '(disabled)', archive_library: '', archive_timeout: '0' };
          return { rows: [row], rowCount: 1 };
        }
        if (/pg_file_settings/.test(sql)) return { rows: [], rowCount: 0 };
        if (/pg_stat_archiver/.test(sql)) return { rows: [{ archived_count: 0, failed_count: 0, last_archived_wal: null, last_archived_time: null, last_failed_wal: null, last_failed_time: null }], rowCount: 1 };
        throw new Error(`unexpected query ${sql}`);
      },
      async close() {},
    }) as unknown as import('../../../src/postgres/client').PgSession;
  const feeding = (slots: string[]) => async (systemId: string) => new Set(systemId === '7301234567890123456' ? slots : []);

  it('a connected receiver on a slot with its record in the store: archive_mode passes, the archiver items are skipped', async () => {
    const { checkPostgres } = await import('../../../src/ops/check/postgres');
    const r = await checkPostgres('require', async () => session([{ slot_name: 'walts', active: true }]), { readFile: () => '', feedingSlots: feeding(['walts']) });
    expect(r.items.find((i) => i.name === 'archive_mode')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/walts wal-receive on replication slot walts \(connected/) });
    expect(r.items.filter((i) => ['archive_command', 'archive_timeout', 'archiver'].includes(i.name)).map((i) => i.status)).toEqual(['skip', 'skip', 'skip']);
  });

  it('the receiver is not connected: a failure naming the slot and how to start it', async () => {
    const { checkPostgres } = await import('../../../src/ops/check/postgres');
    const r = await checkPostgres('require', async () => session([{ slot_name: 'walts', active: false }]), { readFile: () => '', feedingSlots: feeding(['walts']) });
    expect(r.items.find((i) => i.name === 'archive_mode')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/walts wal-receive --slot walts/) });
  });

  it('no receiver feeds the store (or another cluster\'s record): archive_mode off fails, naming both ways out', async () => {
    const { checkPostgres } = await import('../../../src/ops/check/postgres');
    for (const ctx of [{ readFile: () => '' }, { readFile: () => '', feedingSlots: feeding([]) }]) {
      const r = await checkPostgres('require', async () => session([{ slot_name: 'walts', active: true }]), ctx);
      expect(r.items.find((i) => i.name === 'archive_mode')).toMatchObject({ status: 'fail', detail: 'off: PostgreSQL archives nothing', fix: expect.stringMatching(/archive_mode = on.*walts wal-receive/) });
    }
  });
});
