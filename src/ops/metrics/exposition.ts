/**
 * The Prometheus exposition of a status report, through prom-client. Every series carries the
 * `database` label (the Barman exporter's `barman_*{database="..."}`). A fresh registry is built per
 * scrape from the cached report: ages are computed at scrape time from the absolute times gathered,
 * so they keep growing between refreshes. A fact that is unknown, or whose source could not be read
 * in the latest refresh, has no series (never a stale or guessed value): `walts_up`/`walts_pg_up`
 * say why.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { failingNow } from '../status/format';
import { isUnknown, type Known, type StatusReport } from '../status/report';

export interface RefreshState {
  /** The report of the latest refresh that ended (succeeded, failed or timed out). */
  readonly report?: StatusReport;
  /** When that refresh ended, and how long it took (seconds). */
  readonly endedAtMs?: number;
  readonly durationSeconds?: number;
  readonly inProgress: boolean;
  readonly refreshes: number;
  readonly failures: number;
}

export const CONTENT_TYPE = new Registry().contentType;

/** The exposition text for `state` at `nowMs`, every series labelled `database="<label>"`. */
export async function renderMetrics(state: RefreshState, nowMs: number, database: string): Promise<string> {
  const registry = new Registry();
  const labels = { database };
  const gauge = (name: string, help: string, value: number | undefined | null) => {
    if (value === undefined || value === null || !Number.isFinite(value)) return;
    new Gauge({ name, help, labelNames: ['database'], registers: [registry] }).set(labels, value);
  };
  const counter = (name: string, help: string, value: number | undefined) => {
    if (value === undefined || !Number.isFinite(value)) return;
    new Counter({ name, help, labelNames: ['database'], registers: [registry] }).inc(labels, value);
  };
  const seconds = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : undefined);
  const age = (iso: string | null | undefined) => (iso ? Math.max(0, (nowMs - Date.parse(iso)) / 1000) : undefined);
  const r = state.report;
  const store = r?.store.reachable ? r : undefined;
  const pg = r?.postgres?.reachable ? r.postgres : undefined;

  gauge('walts_up', '1 when the latest refresh read the store (archive, WAL listing, backups), 0 when it failed, timed out or has not ended yet.', store ? 1 : 0);
  if (r?.postgres) gauge('walts_pg_up', '1 when the latest refresh queried PostgreSQL (libpq environment), else 0.', pg ? 1 : 0);

  const b = store?.backups;
  gauge('walts_backups', 'Complete base backups in the store (those with a sentinel).', b?.count);
  gauge('walts_last_backup_timestamp_seconds', 'When the newest backup finished (its consistent point, server clock), Unix time.', seconds(b?.newest?.finish_time));
  gauge('walts_last_backup_age_seconds', 'Seconds since the newest backup finished.', age(b?.newest?.finish_time));
  gauge('walts_last_backup_size_bytes', 'Plain size of the newest backup (the files a restore writes).', b?.newest?.data_size);
  gauge('walts_last_backup_stored_bytes', 'Bytes the newest backup takes in the store (compressed, encrypted).', b?.newest?.stored_size);
  gauge('walts_last_backup_duration_seconds', 'How long the newest backup took (pg_backup_start to pg_backup_stop).', b?.newest?.duration_seconds);

  const w = known(store?.last_archived_wal);
  gauge('walts_last_archived_wal_timestamp_seconds', 'When the newest archived WAL segment (by position) reached the store (store clock), Unix time.', seconds(w?.stored_at));
  gauge('walts_last_archived_wal_age_seconds', 'Seconds since the newest archived WAL segment reached the store.', age(w?.stored_at));
  gauge('walts_wal_objects', 'WAL objects in the store (segments, .partial, .history, .backup files).', w?.objects);

  const win = known(store?.pitr_window);
  gauge('walts_pitr_window_seconds', 'Length of the point-in-time recovery window: oldest restorable point to the newest archived WAL.', win?.seconds);
  gauge('walts_pitr_window_start_timestamp_seconds', 'Oldest point restorable (consistent point of the oldest backup with unbroken WAL), Unix time.', seconds(win?.from));
  gauge('walts_pitr_window_end_timestamp_seconds', 'When the newest WAL segment of that unbroken chain reached the store, Unix time.', seconds(win?.to));

  const d = known(store?.restore_drill);
  gauge('walts_restore_drills', 'Restore drill records in the store.', d?.count);
  gauge('walts_restore_drill_last_timestamp_seconds', 'When the newest restore drill finished, passed or failed, Unix time.', seconds(d?.last?.finished_at));
  gauge('walts_restore_drill_last_result', '1 when the newest restore drill passed, 0 when it failed (no series when none is recorded).', d?.last ? (d.last.ok ? 1 : 0) : undefined);
  gauge('walts_restore_drill_last_success_timestamp_seconds', 'When the newest passed restore drill finished, Unix time.', seconds(d?.last_success?.finished_at));
  gauge('walts_restore_drill_last_duration_seconds', 'How long the newest restore drill took.', d?.last?.duration_seconds);

  // One series per receiver slot with a segment in progress in the store.
  const bySlot = (name: string, help: string, value: (s: NonNullable<StatusReport['streamed']>[number]) => number | null | undefined) => {
    const points = (store?.streamed ?? []).map((s) => [s.slot, value(s)] as const).filter((p): p is readonly [string, number] => typeof p[1] === 'number' && Number.isFinite(p[1]));
    if (points.length === 0) return;
    const g = new Gauge({ name, help, labelNames: ['database', 'slot'], registers: [registry] });
    for (const [slot, v] of points) g.set({ database, slot }, v);
  };
  bySlot('walts_streamed_wal_bytes', 'Bytes of the segment in progress a receiver keeps in the store (receive/<slot>/), per slot.', (s) => s.bytes);
  bySlot('walts_streamed_wal_end_lsn_bytes', 'The LSN (as a byte position) the streamed WAL in the store reaches, per slot.', (s) => (s.end_lsn ? lsnBytes(s.end_lsn) : undefined));
  bySlot('walts_streamed_wal_age_seconds', 'Seconds since the receiver last wrote its segment in progress to the store, per slot.', (s) => age(s.stored_at));

  const a = known(pg?.archiver);
  counter('walts_archived_total', 'WAL files PostgreSQL archived successfully (pg_stat_archiver.archived_count; resets with the statistics).', a?.archived_count);
  counter('walts_archive_failed_total', 'Failed archive_command attempts (pg_stat_archiver.failed_count; resets with the statistics).', a?.failed_count);
  gauge('walts_archive_last_archived_timestamp_seconds', 'pg_stat_archiver.last_archived_time, Unix time.', seconds(a?.last_archived_time));
  gauge('walts_archive_last_failed_timestamp_seconds', 'pg_stat_archiver.last_failed_time, Unix time.', seconds(a?.last_failed_time));
  gauge('walts_archive_failing', '1 when the archiver\'s last attempt failed (last failure newer than last success), else 0.', a ? (failingNow(a) ? 1 : 0) : undefined);
  gauge('walts_archive_ready_files', '.ready files in pg_wal/archive_status: WAL waiting to be archived (needs pg_monitor).', known(pg?.ready_files));
  // One series per physical replication slot on the server (wal-receive's), from PostgreSQL's views.
  const slots = known(pg?.replication_slots) ?? [];
  const bySlotPg = (name: string, help: string, value: (s: (typeof slots)[number]) => number | null | undefined) => {
    const points = slots.map((s) => [s.slot, value(s)] as const).filter((p): p is readonly [string, number] => typeof p[1] === 'number' && Number.isFinite(p[1]));
    if (points.length === 0) return;
    const g = new Gauge({ name, help, labelNames: ['database', 'slot'], registers: [registry] });
    for (const [slot, v] of points) g.set({ database, slot }, v);
  };
  bySlotPg('walts_replication_slot_active', '1 when a receiver is connected to the physical replication slot, else 0.', (s) => (s.active ? 1 : 0));
  bySlotPg('walts_replication_slot_retained_bytes', 'WAL the server keeps for the slot (its write position minus the slot\'s restart_lsn).', (s) => s.retained_bytes);
  bySlotPg('walts_replication_slot_flush_lag_bytes', 'Bytes between the server\'s write position and what the connected receiver reported as flushed (durable in the store, for walts wal-receive).', (s) => s.receiver?.flush_lag_bytes);
  bySlotPg('walts_replication_slot_flush_lag_seconds', 'pg_stat_replication.flush_lag of the connected receiver, seconds.', (s) => s.receiver?.flush_lag_seconds);

  gauge('walts_pg_server_version_num', 'server_version_num of the PostgreSQL server, e.g. 150010.', pg?.server_version_num);
  gauge('walts_pg_cluster_mismatch', '1 when PostgreSQL is another database system than the one that owns the store.', pg && store && known(pg.system_identifier) !== undefined && known(store.cluster) ? (pg.identity_mismatch ? 1 : 0) : undefined);

  gauge('walts_refresh_timestamp_seconds', 'When the latest refresh ended (successful or not), Unix time.', state.endedAtMs === undefined ? undefined : state.endedAtMs / 1000);
  gauge('walts_refresh_duration_seconds', 'How long the latest refresh took.', state.durationSeconds);
  gauge('walts_refresh_in_progress', '1 while a refresh is running (a scrape never waits for it).', state.inProgress ? 1 : 0);
  counter('walts_refreshes_total', 'Refreshes ended since start.', state.refreshes);
  counter('walts_refresh_failures_total', 'Refreshes since start that could not read the store (failed or timed out).', state.failures);
  const text = await registry.metrics();
  // The text format wants every line ended, the last one too (node_exporter's textfile collector checks).
  return text.endsWith('\n') ? text : `${text}\n`;
}

function lsnBytes(lsn: string): number | undefined {
  const m = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(lsn);
  return m ? Number((BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`)) : undefined;
}

function known<T>(v: Known<T> | undefined): T | undefined {
  return v === undefined || isUnknown(v) ? undefined : v;
}
