/**
 * `walts metrics` without a network: the exposition of a report (parsed back with an independent
 * Prometheus text parser), ages from the injected clock, absent series for unknown facts, the
 * background refresher that scrapes never wait for, --listen parsing and the atomic textfile.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderMetrics, type RefreshState } from '../../../src/ops/metrics/exposition';
import { Refresher } from '../../../src/ops/metrics/refresher';
import { parseListen } from '../../../src/ops/metrics/listen';
import { writeTextfile } from '../../../src/ops/metrics/textfile';
import { formatStatus } from '../../../src/ops/status/format';
import type { SlotStatus, StatusReport } from '../../../src/ops/status/report';
import { parseMetrics } from '../../helpers/prometheus';

const T0 = Date.parse('2026-12-02T12:00:00Z');

const REPORT: StatusReport = {
  generated_at: '2026-12-02T12:00:00.000Z',
  walts_version: 'test',
  store: { description: 's3://bucket/main', reachable: true },
  cluster: { system_identifier: '7301234567890123456', pg_major: 15, wal_segment_size: 16 << 20 },
  last_archived_wal: { name: '000000010000000000000009', stored_at: '2026-12-02T11:00:00.000Z', age_seconds: 3600, objects: 8 },
  backups: { count: 2, newest: { name: 'base_000000010000000000000006_00000028', finish_time: '2026-12-02T00:00:00.000Z', age_seconds: 43200, data_size: 123456789, stored_size: 4567, duration_seconds: 150 } },
  pitr_window: { backup: 'base_000000010000000000000002_00000028', from: '2026-12-01T00:00:00.000Z', to_wal: '000000010000000000000009', to: '2026-12-02T11:00:00.000Z', seconds: 126000 },
  restore_drill: {
    count: 2,
    invalid: 0,
    last: { backup: 'base_000000010000000000000006_00000028', ok: false, started_at: '2026-12-02T03:00:00.000Z', finished_at: '2026-12-02T03:01:30.000Z', age_seconds: 32310, duration_seconds: 90, error: 'segment missing' },
    last_success: { backup: 'base_000000010000000000000002_00000028', ok: true, started_at: '2026-12-01T03:00:00.000Z', finished_at: '2026-12-01T03:01:30.000Z', age_seconds: 118710, duration_seconds: 90, error: null },
  },
  postgres: {
    reachable: true,
    target: '/tmp:5432/postgres as postgres',
    server_version_num: 150010,
    system_identifier: '7301234567890123456',
    in_recovery: false,
    archive_mode: 'on',
    archiver: { archived_count: 40, failed_count: 3, last_archived_wal: '000000010000000000000009', last_archived_time: '2026-12-02T11:00:00.000Z', last_failed_wal: '00000001000000000000000A', last_failed_time: '2026-12-02T11:30:00.000Z', stats_reset: null },
    ready_files: { unknown: 'pg_ls_archive_statusdir() refused: the role needs pg_monitor (or superuser)' },
  },
  duration_seconds: 0.2,
};

const STREAMED = { slot: 'barman', segment: '00000001000000000000000A', bytes: 4096, end_lsn: '0/A001000', stored_at: '2026-12-02T11:59:50.000Z', age_seconds: 10 };

const state = (report: StatusReport | undefined, more: Partial<RefreshState> = {}): RefreshState => ({ report, endedAtMs: T0, durationSeconds: 0.2, inProgress: false, refreshes: 1, failures: 0, ...more });

describe('renderMetrics', () => {
  it('every fact of the report, labelled database, parsed by a Prometheus text parser; unknown facts have no series', async () => {
    const text = await renderMetrics(state(REPORT), T0 + 60_000, 'main');
    const m = parseMetrics(text);
    for (const f of m.families.values()) {
      expect(f.name).toMatch(/^walts_[a-z_]+$/);
      expect(f.help.length).toBeGreaterThan(10);
      expect(f.metrics.map((s) => s.labels)).toEqual([{ database: 'main' }]);
    }
    expect(m.families.get('walts_archive_failed_total')?.type).toBe('COUNTER');
    expect(m.families.get('walts_backups')?.type).toBe('GAUGE');
    expect(m.value('walts_up')).toBe(1);
    expect(m.value('walts_pg_up')).toBe(1);
    expect(m.value('walts_backups')).toBe(2);
    // Ages are computed at scrape time: one minute after the refresh, one minute older.
    expect(m.value('walts_last_backup_age_seconds')).toBe(43200 + 60);
    expect(m.value('walts_last_archived_wal_age_seconds')).toBe(3600 + 60);
    expect(m.value('walts_last_backup_size_bytes')).toBe(123456789);
    expect(m.value('walts_last_backup_duration_seconds')).toBe(150);
    expect(m.value('walts_pitr_window_seconds')).toBe(126000);
    expect(m.value('walts_restore_drill_last_result')).toBe(0);
    expect(m.value('walts_restore_drill_last_success_timestamp_seconds')).toBe(Date.parse('2026-12-01T03:01:30Z') / 1000);
    expect(m.value('walts_archived_total')).toBe(40);
    expect(m.value('walts_archive_failed_total')).toBe(3);
    expect(m.value('walts_archive_failing')).toBe(1);
    expect(m.value('walts_pg_server_version_num')).toBe(150010);
    expect(m.value('walts_pg_cluster_mismatch')).toBe(0);
    expect(m.value('walts_archive_ready_files')).toBeUndefined();
    expect(m.value('walts_refresh_in_progress')).toBe(0);
    expect(text.endsWith('\n')).toBe(true);
  });

  it('the store down: walts_up 0 and no store series (never stale values); PostgreSQL series stay', async () => {
    const down: StatusReport = { ...REPORT, store: { description: 's3://bucket/main', reachable: false, error: 'connect ECONNREFUSED' }, backups: undefined, last_archived_wal: undefined, pitr_window: undefined, restore_drill: undefined, cluster: undefined };
    const m = parseMetrics(await renderMetrics(state(down, { failures: 1 }), T0, 'main'));
    expect(m.value('walts_up')).toBe(0);
    expect(m.value('walts_backups')).toBeUndefined();
    expect(m.value('walts_last_backup_age_seconds')).toBeUndefined();
    expect(m.value('walts_pg_up')).toBe(1);
    expect(m.value('walts_refresh_failures_total')).toBe(1);
  });

  it('before the first refresh ends: walts_up 0, a refresh in progress', async () => {
    const m = parseMetrics(await renderMetrics({ inProgress: true, refreshes: 0, failures: 0 }, T0, 'main'));
    expect(m.value('walts_up')).toBe(0);
    expect(m.value('walts_refresh_in_progress')).toBe(1);
    expect(m.value('walts_pg_up')).toBeUndefined();
  });
});

describe('formatStatus', () => {
  it('sections for people: failures are spelled out, unknowns carry their reason', () => {
    const text = formatStatus(REPORT);
    for (const title of ['Store', 'Cluster', 'WAL archive', 'Backups', 'Point-in-time recovery window', 'Restore drill', 'PostgreSQL']) expect(text).toContain(`\n${title}\n`.slice(title === 'Store' ? 1 : 0));
    expect(text).toMatch(/last archived:\s+000000010000000000000009/);
    expect(text).toMatch(/last drill:\s+FAILED: base_000000010000000000000006_00000028/);
    expect(text).toMatch(/error:\s+segment missing/);
    expect(text).toMatch(/failed:\s+3, last 00000001000000000000000A at 2026-12-02 11:30:00Z/);
    expect(text).toContain('ARCHIVING FAILS');
    expect(text).toMatch(/\.ready files waiting:\s+unknown \(pg_ls_archive_statusdir\(\) refused: the role needs pg_monitor/);
    expect(text).toMatch(/length:\s+35h00m/);
  });

  it('a store that cannot be read is said first, and nothing is claimed about its contents', () => {
    const text = formatStatus({ ...REPORT, store: { description: 'file:///x', reachable: false, error: 'ENOENT' }, backups: undefined, postgres: undefined });
    expect(text).toMatch(/reachable: NO: ENOENT/);
    expect(text).not.toContain('Backups');
  });
});

describe('Refresher', () => {
  const options = (gather: (signal: AbortSignal) => Promise<StatusReport>, timeoutMs = 60_000) =>
    new Refresher({ gather, intervalMs: 3_600_000, timeoutMs, nowMs: () => T0, withPostgres: true, storeDescription: 's3://bucket/main', version: 'test' });

  it('a scrape during a refresh that hangs answers at once from the state, without waiting for it', async () => {
    let release!: (r: StatusReport) => void;
    let signalSeen: AbortSignal | undefined;
    const r = options((signal) => {
      signalSeen = signal;
      return new Promise<StatusReport>((resolve) => (release = resolve));
    });
    const first = r.refreshOnce();
    const m = parseMetrics(await renderMetrics(r.state(), T0, 'main'));
    expect(m.value('walts_up')).toBe(0);
    expect(m.value('walts_refresh_in_progress')).toBe(1);
    release(REPORT);
    await first;
    expect(signalSeen?.aborted).toBe(false);
    expect(parseMetrics(await renderMetrics(r.state(), T0, 'main')).value('walts_up')).toBe(1);
  });

  it('a refresh past its timeout is abandoned: its signal is aborted and the store counts as down', async () => {
    let signalSeen: AbortSignal | undefined;
    const r = options((signal) => {
      signalSeen = signal;
      return new Promise<StatusReport>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    }, 5);
    const st = await r.refreshOnce();
    expect(signalSeen?.aborted).toBe(true);
    expect(st.report?.store).toMatchObject({ reachable: false, error: expect.stringContaining('--refresh-timeout') });
    expect(st.report?.postgres).toMatchObject({ reachable: false });
    expect(st).toMatchObject({ failures: 1, refreshes: 1, inProgress: false });
  });

  it('a gather that throws counts as a failed refresh, with its message', async () => {
    const st = await options(async () => Promise.reject(new Error('boom'))).refreshOnce();
    expect(st.report?.store).toMatchObject({ reachable: false, error: 'boom' });
  });
});

describe('--listen and --textfile', () => {
  it('parses HOST:PORT, [IPv6]:PORT and :PORT; refuses the rest', () => {
    expect(parseListen('127.0.0.1:10432')).toEqual({ host: '127.0.0.1', port: 10432 });
    expect(parseListen('[::1]:9')).toEqual({ host: '::1', port: 9 });
    expect(parseListen(':10432')).toEqual({ host: undefined, port: 10432 });
    expect(() => parseListen('10432')).toThrow(/--listen/);
    expect(() => parseListen('host:99999')).toThrow(/--listen/);
  });

  it('the textfile is replaced whole, and no temporary file stays behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walts-textfile-'));
    try {
      const path = join(dir, 'walts.prom');
      await writeTextfile(path, 'a 1\n');
      await writeTextfile(path, 'a 2\n');
      expect(readFileSync(path, 'utf8')).toBe('a 2\n');
      expect(readdirSync(dir)).toEqual(['walts.prom']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('streamed WAL (a receiver\'s segment in progress)', () => {
  it('one series per slot: bytes, end position and age; none without a receiver; status prints it', async () => {
    const m = parseMetrics(await renderMetrics(state({ ...REPORT, streamed: [STREAMED] }), T0, 'main'));
    expect(m.families.get('walts_streamed_wal_bytes')?.metrics).toEqual([{ value: '4096', labels: { database: 'main', slot: 'barman' } }]);
    expect(m.value('walts_streamed_wal_end_lsn_bytes')).toBe(0xa001000);
    expect(m.value('walts_streamed_wal_age_seconds')).toBe(10);
    expect(parseMetrics(await renderMetrics(state(REPORT), T0, 'main')).families.has('walts_streamed_wal_bytes')).toBe(false);
    expect(formatStatus({ ...REPORT, streamed: [STREAMED] })).toMatch(/slot barman: +00000001000000000000000A, 4(\.0+)? KiB received, up to 0\/A001000/);
  });
});

describe('physical replication slots (from the server)', () => {
  const SLOTS: SlotStatus[] = [
    { slot: 'walts', active: true, restart_lsn: '0/A000000', retained_bytes: 1048576, wal_status: 'reserved', receiver: { application_name: 'walts_receive', client_addr: '192.0.2.10', state: 'streaming', sync_state: 'async', flush_lsn: '0/A0FF000', flush_lag_bytes: 4096, flush_lag_seconds: 0.25, reply_time: '2026-12-02T12:00:00.000Z' } },
    { slot: 'old', active: false, restart_lsn: '0/5000000', retained_bytes: 83886080, wal_status: 'extended' },
  ];
  it('one series per slot: connected, retained, flush lag (only for a connected receiver); status prints both states', async () => {
    const report: StatusReport = { ...REPORT, postgres: { ...REPORT.postgres!, replication_slots: SLOTS } };
    const m = parseMetrics(await renderMetrics(state(report), T0, 'main'));
    expect(m.families.get('walts_replication_slot_active')?.metrics).toEqual([
      { value: '1', labels: { database: 'main', slot: 'walts' } },
      { value: '0', labels: { database: 'main', slot: 'old' } },
    ]);
    expect(m.families.get('walts_replication_slot_retained_bytes')?.metrics.map((x) => x.value)).toEqual(['1048576', '83886080']);
    expect(m.families.get('walts_replication_slot_flush_lag_bytes')?.metrics).toEqual([{ value: '4096', labels: { database: 'main', slot: 'walts' } }]);
    expect(m.families.get('walts_replication_slot_flush_lag_seconds')?.metrics).toEqual([{ value: '0.25', labels: { database: 'main', slot: 'walts' } }]);
    const text = formatStatus(report);
    expect(text).toMatch(/slot walts: +connected \(walts_receive from 192\.0\.2\.10, streaming\), flushed 0\/A0FF000, 4(\.0+)? KiB behind \(0\.3 s\), retains 1(\.0+)? MiB/);
    expect(text).toMatch(/slot old: +NOT CONNECTED, retains 80(\.0+)? MiB \(extended\)/);
    expect(parseMetrics(await renderMetrics(state(REPORT), T0, 'main')).families.has('walts_replication_slot_active')).toBe(false);
  });
});

describe('docs and alert rules name only metrics walts exports', () => {
  it('every walts_* in contrib/prometheus/walts-alerts.yml and docs/monitoring.md exists, and the docs table lists every metric', async () => {
    const slot: SlotStatus = { slot: 's', active: true, restart_lsn: '0/1', retained_bytes: 1, wal_status: 'reserved', receiver: { application_name: null, client_addr: null, state: null, sync_state: null, flush_lsn: '0/1', flush_lag_bytes: 0, flush_lag_seconds: 0, reply_time: null } };
    const full: StatusReport = { ...REPORT, postgres: { ...REPORT.postgres!, ready_files: 0, replication_slots: [slot] }, streamed: [STREAMED] };
    const exported = new Set(parseMetrics(await renderMetrics(state(full), T0, 'main')).families.keys());
    const root = join(__dirname, '../../..');
    const rules = readFileSync(join(root, 'contrib/prometheus/walts-alerts.yml'), 'utf8');
    const doc = readFileSync(join(root, 'docs/monitoring.md'), 'utf8');
    const named = (text: string) => new Set([...text.matchAll(/\bwalts_[a-z_]+\*?/g)].map((m) => m[0]).filter((n) => n !== 'walts_ok' && n !== 'walts_receive' && !n.startsWith('walts_v') && !/[_*]$/.test(n)));
    for (const name of named(rules)) expect(exported).toContain(name);
    for (const name of named(doc)) expect(exported).toContain(name);
    const table = new Set([...doc.matchAll(/^\| `(walts_[a-z_]+)` \| (?:gauge|counter) \|/gm)].map((m) => m[1]));
    expect([...table].sort()).toEqual([...exported].sort());
  });
});
