/**
 * `walts status` facts from a memory store with an injected clock: backups, newest WAL, the
 * point-in-time-recovery window (gaps, timeline switches, unreadable history) and restore drills.
 */
import pino from 'pino';
import { CLUSTER_KEY, backupKeys, receivedPartialKey, walKey } from '../../../src/archive/layout';
import { writeDrillRecord, type DrillRecord } from '../../../src/archive/drillRecord';
import type { BackupSentinel } from '../../../src/backup/sentinel';
import { gatherStatus, type StatusDeps } from '../../../src/ops/status/gather';
import { isUnknown, type Known } from '../../../src/ops/status/report';
import { parseWalFileName, segmentName } from '../../../src/postgres/walName';
import { MemoryStorage } from '../../../src/storage/memory';
import { initMemoryArchive } from '../../helpers/deps';
import { fakeSentinel } from '../../helpers/sentinel';

const SEG = 16 * 1024 * 1024;
const NOW = new Date('2026-12-02T12:00:00Z');
const seg = (tl: number, n: number) => segmentName({ timeline: tl, segNo: n }, SEG);
const part = (key: string) => ({ key, stored_size: 10, size: 1000, sha256: '0'.repeat(64) });

function store(): MemoryStorage {
  const s = new MemoryStorage();
  initMemoryArchive(s);
  const cluster = { format: 1, system_identifier: '7301234567890123456', pg_major: 15, wal_page_magic: 0xd110, wal_segment_size: SEG, created_at: '2026-11-30T00:00:00Z', created_by: 'db1' };
  s.objects.set(CLUSTER_KEY, { data: Buffer.from(JSON.stringify(cluster)), metadata: {}, lastModified: new Date('2026-11-30T00:00:00Z') });
  return s;
}

function putWal(s: MemoryStorage, name: string, at: string, data = 'x'): void {
  s.objects.set(walKey(parseWalFileName(name)!, '.lz4'), { data: Buffer.from(data), metadata: {}, lastModified: new Date(at) });
}

function putBackup(s: MemoryStorage, tl: number, n: number, start: string, finish: string): BackupSentinel {
  const b = { ...fakeSentinel(tl, n, { finish, volumes: [part('v')], manifest: part('m') }), start_time: start };
  s.objects.set(backupKeys.sentinel(b.name), { data: Buffer.from(JSON.stringify(b)), metadata: {}, lastModified: new Date(finish) });
  return b;
}

/** Segments `from..to` of timeline `tl`, one per 10 minutes ending at `lastAt`. */
function putSegments(s: MemoryStorage, tl: number, from: number, to: number, lastAt: string): void {
  for (let n = from; n <= to; n++) putWal(s, seg(tl, n), new Date(Date.parse(lastAt) - (to - n) * 600_000).toISOString());
}

function deps(storage: MemoryStorage, more: Partial<StatusDeps> = {}): StatusDeps {
  return {
    storage,
    readWal: async (key) => storage.objects.get(key)!.data,
    now: () => NOW,
    log: pino({ level: 'silent' }),
    version: 'test',
    ...more,
  };
}

function known<T>(v: Known<T> | undefined): T {
  if (v === undefined || isUnknown(v)) throw new Error(`expected a known value, got ${JSON.stringify(v)}`);
  return v;
}

function drill(backup: string, startedAt: string, ok: boolean): DrillRecord {
  return {
    format: 1, backup, ok, started_at: startedAt, finished_at: new Date(Date.parse(startedAt) + 90_000).toISOString(), duration_seconds: 90,
    target: { kind: 'end' }, reached_lsn: ok ? '0/9000060' : null, reached_timeline: ok ? 1 : null, reached_time: null,
    checks: [{ name: 'replay', ok, detail: ok ? 'reached' : 'segment missing' }], error: ok ? null : 'segment missing', hostname: 'db1', walts_version: 'test',
  };
}

describe('gatherStatus', () => {
  it('after 2 backups and 8 archived segments: counts, newest backup, newest WAL and its age, the window from the oldest backup', async () => {
    const s = store();
    const b1 = putBackup(s, 1, 2, '2026-12-01T00:00:00Z', '2026-12-01T00:05:00Z');
    const b2 = putBackup(s, 1, 6, '2026-12-02T00:00:00Z', '2026-12-02T00:02:30Z');
    putSegments(s, 1, 2, 9, '2026-12-02T11:00:00Z');
    const r = await gatherStatus(deps(s));
    expect(r.store).toEqual({ description: s.description, reachable: true });
    expect(known(r.cluster)).toEqual({ system_identifier: '7301234567890123456', pg_major: 15, wal_segment_size: SEG });
    expect(r.backups).toEqual({
      count: 2,
      newest: { name: b2.name, finish_time: '2026-12-02T00:02:30.000Z', age_seconds: 12 * 3600 - 150, data_size: 1000, stored_size: 20, duration_seconds: 150 },
    });
    expect(known(r.last_archived_wal)).toEqual({ name: seg(1, 9), stored_at: '2026-12-02T11:00:00.000Z', age_seconds: 3600, objects: 8 });
    expect(known(r.pitr_window)).toEqual({ backup: b1.name, from: '2026-12-01T00:05:00.000Z', to_wal: seg(1, 9), to: '2026-12-02T11:00:00.000Z', seconds: 35 * 3600 - 300 });
    expect(r.postgres).toBeUndefined();
  });

  it('a WAL gap after the oldest backup moves the window start to the next backup with an unbroken chain', async () => {
    const s = store();
    putBackup(s, 1, 2, '2026-12-01T00:00:00Z', '2026-12-01T00:05:00Z');
    const b2 = putBackup(s, 1, 6, '2026-12-02T00:00:00Z', '2026-12-02T00:02:30Z');
    putSegments(s, 1, 2, 9, '2026-12-02T11:00:00Z');
    s.objects.delete(walKey(parseWalFileName(seg(1, 4))!, '.lz4'));
    const w = known((await gatherStatus(deps(s))).pitr_window);
    expect(w.backup).toBe(b2.name);
    expect(w.from).toBe('2026-12-02T00:02:30.000Z');
  });

  it('a gap after the newest backup: no restorable window, and the report names the gaps', async () => {
    const s = store();
    putBackup(s, 1, 2, '2026-12-01T00:00:00Z', '2026-12-01T00:05:00Z');
    putSegments(s, 1, 2, 9, '2026-12-02T11:00:00Z');
    s.objects.delete(walKey(parseWalFileName(seg(1, 8))!, '.lz4'));
    const w = (await gatherStatus(deps(s))).pitr_window;
    expect(w).toEqual({ unknown: expect.stringContaining(`WAL gap at ${seg(1, 8)}`) });
  });

  it('follows a timeline switch through the history file; an unreadable history file makes the window unknown, never a guess', async () => {
    const s = store();
    const b1 = putBackup(s, 1, 2, '2026-12-01T00:00:00Z', '2026-12-01T00:05:00Z');
    putSegments(s, 1, 2, 7, '2026-12-02T08:00:00Z');
    putWal(s, '00000002.history', '2026-12-02T08:05:00Z', '1\t0/8000000\tno recovery target specified\n');
    putSegments(s, 2, 8, 10, '2026-12-02T11:30:00Z');
    const w = known((await gatherStatus(deps(s))).pitr_window);
    expect(w).toMatchObject({ backup: b1.name, to_wal: seg(2, 10), to: '2026-12-02T11:30:00.000Z' });
    expect(known((await gatherStatus(deps(s))).last_archived_wal).name).toBe(seg(2, 10));

    const noKey = await gatherStatus(deps(s, { readWal: async () => Promise.reject(new Error('encrypted: set WALTS_PGP_PRIVATE_KEY')) }));
    expect(noKey.pitr_window).toEqual({ unknown: expect.stringMatching(/^timeline history not readable: 00000002\.history: .*set WALTS_PGP_PRIVATE_KEY/) });
    expect(noKey.store.reachable).toBe(true);
  });

  it('newest WAL by position: a higher timeline wins over the .partial of the same segment', async () => {
    const s = store();
    putWal(s, `${seg(1, 5)}.partial`, '2026-12-02T10:00:00Z');
    putWal(s, seg(2, 5), '2026-12-02T09:59:00Z');
    putWal(s, seg(1, 4), '2026-12-02T09:00:00Z');
    expect(known((await gatherStatus(deps(s))).last_archived_wal)).toMatchObject({ name: seg(2, 5), age_seconds: 7260, objects: 3 });
  });

  it('an empty archive: zero backups, and unknown WAL and window with their reasons', async () => {
    const s = store();
    const r = await gatherStatus(deps(s));
    expect(r.backups).toEqual({ count: 0 });
    expect(r.last_archived_wal).toEqual({ unknown: 'no WAL segment is archived in the store' });
    expect(r.pitr_window).toEqual({ unknown: 'no complete backup in the store' });
    expect(r.restore_drill).toEqual({ count: 0, invalid: 0 });
  });

  it('restore drills: the newest (failed) one with its error, and the newest that passed', async () => {
    const s = store();
    const b = putBackup(s, 1, 2, '2026-12-01T00:00:00Z', '2026-12-01T00:05:00Z');
    await writeDrillRecord(s, drill(b.name, '2026-12-01T03:00:00.000Z', true));
    await writeDrillRecord(s, drill(b.name, '2026-12-02T03:00:00.000Z', false));
    const d = known((await gatherStatus(deps(s))).restore_drill);
    expect(d.count).toBe(2);
    expect(d.last).toMatchObject({ backup: b.name, ok: false, error: 'segment missing', finished_at: '2026-12-02T03:01:30.000Z', age_seconds: 9 * 3600 - 90 });
    expect(d.last_success).toMatchObject({ ok: true, finished_at: '2026-12-01T03:01:30.000Z' });
  });

  it('a location that is not an archive is reported unreachable with the reason, and nothing else is claimed', async () => {
    const r = await gatherStatus(deps(new MemoryStorage()));
    expect(r.store.reachable).toBe(false);
    expect(r.store.error).toMatch(/walts init/);
    expect(r.backups).toBeUndefined();
    expect(r.pitr_window).toBeUndefined();
  });
});

describe('gatherStatus with a PostgreSQL that never answers', () => {
  it('reports the server unreachable after pgTimeoutMs and still reports the store', async () => {
    const s = store();
    putBackup(s, 1, 2, '2026-12-01T00:00:00Z', '2026-12-01T00:05:00Z');
    const r = await gatherStatus(deps(s, { connectPg: () => new Promise(() => undefined), pgTimeoutMs: 5 }));
    expect(r.postgres).toEqual({ reachable: false, error: 'no answer from PostgreSQL within 0.005 s' });
    expect(r.store.reachable).toBe(true);
    expect(r.backups?.count).toBe(1);
  });

  it('a refused connection is reported with its reason', async () => {
    const r = await gatherStatus(deps(store(), { connectPg: async () => Promise.reject(new Error('connection refused')) }));
    expect(r.postgres).toEqual({ reachable: false, error: expect.stringContaining('connection refused') });
  });
});

describe('gatherStatus: streamed WAL', () => {
  it('the newest received partial per slot: segment, bytes recorded with it, end LSN, age; a torn one has no bytes', async () => {
    const s = store();
    const at = new Date('2026-12-02T11:59:00Z');
    const meta = (size: number, stored: number) => ({ 'walts-sha256': 'a'.repeat(64), 'walts-size': String(size), 'walts-stored-size': String(stored) });
    s.objects.set(receivedPartialKey('a', seg(1, 3), '.lz4'), { data: Buffer.alloc(10), metadata: meta(100, 10), lastModified: new Date('2026-12-02T10:00:00Z') });
    s.objects.set(receivedPartialKey('a', seg(1, 4), '.lz4'), { data: Buffer.alloc(10), metadata: meta(8192, 10), lastModified: at });
    s.objects.set(receivedPartialKey('b', seg(1, 4), '.lz4'), { data: Buffer.alloc(5), metadata: meta(8192, 10), lastModified: at });
    const r = await gatherStatus(deps(s));
    expect(r.streamed).toEqual([
      { slot: 'a', segment: seg(1, 4), bytes: 8192, end_lsn: '0/4002000', stored_at: at.toISOString(), age_seconds: 60 },
      { slot: 'b', segment: seg(1, 4), bytes: null, end_lsn: null, stored_at: at.toISOString(), age_seconds: 60 },
    ]);
    expect((await gatherStatus(deps(store()))).streamed).toBeUndefined();
  });
});
