/**
 * The PostgreSQL half of `status`: the archiver's own counters and the WAL waiting to be archived,
 * read from the server the libpq environment names. Each query is answered on its own: a role
 * without pg_monitor still gets the archiver counters, and the report says which answer it lacks.
 */
import { describeError } from '../../errors';
import type { PgSession } from '../../postgres/client';
import { unknown, type ArchiverStats, type Known, type PostgresStatus, type SlotStatus } from './report';

const QUERY_TIMEOUT_MS = 15_000;

export async function gatherPostgres(connect: () => Promise<PgSession>): Promise<PostgresStatus> {
  let session: PgSession;
  try {
    session = await connect();
  } catch (err) {
    return { reachable: false, error: describeError(err) };
  }
  try {
    const t = session.target;
    const target = `${t.host}:${t.port}/${t.database} as ${t.user}`;
    const base = (
      await session.query<{ r: boolean; m: string }>("select pg_is_in_recovery() as r, current_setting('archive_mode') as m", undefined, { timeoutMs: QUERY_TIMEOUT_MS })
    ).rows[0]!;
    const systemId = await answer(async () => {
      const rows = (await session.query<{ id: string }>('select system_identifier::text as id from pg_control_system()', undefined, { timeoutMs: QUERY_TIMEOUT_MS })).rows;
      return rows[0]!.id;
    }, 'pg_control_system()');
    const archiver = await answer(() => archiverStats(session), 'pg_stat_archiver');
    const readyFiles = await answer(async () => {
      const rows = (
        await session.query<{ n: number }>("select count(*)::int as n from pg_ls_archive_statusdir() where name like '%.ready'", undefined, { timeoutMs: QUERY_TIMEOUT_MS })
      ).rows;
      return rows[0]!.n;
    }, 'pg_ls_archive_statusdir()', 'pg_monitor (or superuser)');
    const slots = await answer(() => replicationSlots(session, base.r), 'pg_replication_slots');
    return {
      reachable: true,
      target,
      server_version_num: session.serverVersionNum,
      system_identifier: systemId,
      in_recovery: base.r,
      archive_mode: base.m,
      archiver,
      ready_files: readyFiles,
      replication_slots: slots,
    };
  } catch (err) {
    return { reachable: false, error: describeError(err) };
  } finally {
    await session.close().catch(() => undefined);
  }
}

async function archiverStats(session: PgSession): Promise<ArchiverStats> {
  const row = (
    await session.query<Record<string, unknown>>(
      'select archived_count::float8 as archived_count, failed_count::float8 as failed_count, last_archived_wal, last_archived_time, last_failed_wal, last_failed_time, stats_reset from pg_stat_archiver',
      undefined,
      { timeoutMs: QUERY_TIMEOUT_MS },
    )
  ).rows[0]!;
  const time = (v: unknown) => (v instanceof Date ? v.toISOString() : v == null ? null : new Date(String(v)).toISOString());
  const text = (v: unknown) => (v == null ? null : String(v));
  return {
    archived_count: Number(row['archived_count']),
    failed_count: Number(row['failed_count']),
    last_archived_wal: text(row['last_archived_wal']),
    last_archived_time: time(row['last_archived_time']),
    last_failed_wal: text(row['last_failed_wal']),
    last_failed_time: time(row['last_failed_time']),
    stats_reset: time(row['stats_reset']),
  };
}

/**
 * Physical slots and the walsender of each active one. The write position is the server's own
 * (on a standby, the WAL it has received), so retained and lag bytes are what this server holds.
 */
async function replicationSlots(session: PgSession, inRecovery: boolean): Promise<SlotStatus[]> {
  const here = inRecovery ? 'pg_last_wal_receive_lsn()' : 'pg_current_wal_lsn()';
  const rows = (
    await session.query<Record<string, unknown>>(
      `select s.slot_name, s.active, s.restart_lsn::text as restart_lsn, s.wal_status,
              pg_wal_lsn_diff(${here}, s.restart_lsn)::float8 as retained_bytes,
              r.pid is not null as connected, r.application_name, host(r.client_addr) as client_addr, r.state, r.sync_state,
              r.flush_lsn::text as flush_lsn, pg_wal_lsn_diff(${here}, r.flush_lsn)::float8 as flush_lag_bytes,
              extract(epoch from r.flush_lag)::float8 as flush_lag_seconds, r.reply_time
         from pg_replication_slots s left join pg_stat_replication r on r.pid = s.active_pid
        where s.slot_type = 'physical' order by s.slot_name`,
      undefined,
      { timeoutMs: QUERY_TIMEOUT_MS },
    )
  ).rows;
  const text = (v: unknown) => (v == null ? null : String(v));
  const num = (v: unknown) => (v == null || !Number.isFinite(Number(v)) ? null : Number(v));
  return rows.map((r) => ({
    slot: String(r['slot_name']),
    active: r['active'] === true,
    restart_lsn: text(r['restart_lsn']),
    retained_bytes: num(r['retained_bytes']),
    wal_status: text(r['wal_status']),
    ...(r['connected'] === true
      ? {
          receiver: {
            application_name: text(r['application_name']),
            client_addr: text(r['client_addr']),
            state: text(r['state']),
            sync_state: text(r['sync_state']),
            flush_lsn: text(r['flush_lsn']),
            flush_lag_bytes: num(r['flush_lag_bytes']),
            flush_lag_seconds: num(r['flush_lag_seconds']),
            reply_time: r['reply_time'] instanceof Date ? r['reply_time'].toISOString() : text(r['reply_time']),
          },
        }
      : {}),
  }));
}

/** The answer, or why there is none; a refused privilege names the role that grants it. */
async function answer<T>(fn: () => Promise<T>, what: string, needs = 'EXECUTE on it, or a role with more privileges'): Promise<Known<T>> {
  try {
    return await fn();
  } catch (err) {
    const state = (err as { sqlState?: string; code?: string }).sqlState ?? '';
    const msg = describeError(err);
    if (state === '42501' || /permission denied/i.test(msg)) return unknown(`${what} refused: the role needs ${needs} (${msg})`);
    return unknown(`${what} failed: ${msg}`);
  }
}
