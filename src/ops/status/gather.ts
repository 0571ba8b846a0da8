/**
 * Gathers the status report: the store (archive, cluster identity, WAL, backups, PITR window, restore
 * drills) and, when asked, PostgreSQL. Never throws for what it finds: a store or server that cannot be
 * read is part of the answer (`store.reachable: false`, `postgres.reachable: false`, `{unknown}`).
 * The signal ends a gather early (metrics' refresh timeout, SIGTERM); what was aborted is reported as
 * not reachable.
 */
import type { Logger } from 'pino';
import { openArchive } from '../../archive/archive';
import { latestDrills, type DrillRecord } from '../../archive/drillRecord';
import type { BackupSentinel } from '../../backup/sentinel';
import { describeError } from '../../errors';
import type { PgSession } from '../../postgres/client';
import { DEFAULT_SEGMENT_SIZE } from '../../postgres/walName';
import { readRetentionInput } from '../../retention/apply';
import { parseHistory, type HistoryEntry } from '../../retention/walChain';
import type { Storage } from '../../storage/storage';
import { gatherPostgres } from './postgres';
import { streamedStatus } from './streamed';
import { unknown, type BackupStatus, type PostgresStatus, type DrillStatus, type DrillSummary, type Known, type StatusReport } from './report';
import { ageSeconds, lastArchivedWal, pitrWindow } from './window';

export interface StatusDeps {
  readonly storage: Storage;
  /** Plain bytes of a WAL object (history files); on an encrypted archive this needs the private key. */
  readonly readWal: (key: string, signal?: AbortSignal) => Promise<Buffer>;
  /** Opens a session with the libpq environment; undefined: PostgreSQL is not asked. */
  readonly connectPg?: () => Promise<PgSession>;
  /**
   * How long PostgreSQL may take to answer before it is reported unreachable (metrics: half the
   * refresh timeout, so a server that hangs never costs the store's answer). Default: no limit beyond
   * the client's own connect and query timeouts.
   */
  readonly pgTimeoutMs?: number;
  readonly now: () => Date;
  readonly log: Logger;
  readonly version: string;
  readonly signal?: AbortSignal;
}

/** Backup folders left without a sentinel are only counted by `delete`/`verify`: a day is plenty here. */
const LEFTOVER_AGE_MS = 24 * 3600_000;

export async function gatherStatus(deps: StatusDeps): Promise<StatusReport> {
  const started = deps.now().getTime();
  const { storage, signal } = deps;
  const storePart = (async (): Promise<Partial<StatusReport> & Pick<StatusReport, 'store'>> => {
    try {
      const archive = await openArchive(storage, signal);
      const nowMs = deps.now().getTime();
      const input = await readRetentionInput(storage, { nowMs, leftoverAgeMs: LEFTOVER_AGE_MS, signal });
      const segmentSize = archive.cluster?.wal_segment_size ?? input.backups[0]?.wal_segment_size ?? DEFAULT_SEGMENT_SIZE;
      const histories = new Map<number, HistoryEntry[]>();
      const unreadable: string[] = [];
      for (const h of input.wal.filter((w) => w.name.kind === 'history')) {
        try {
          histories.set(h.name.timeline, parseHistory((await deps.readWal(h.key, signal)).toString('utf8')));
        } catch (err) {
          signal?.throwIfAborted();
          unreadable.push(`${h.name.name}: ${describeError(err)}`);
        }
      }
      const contents = { backups: input.backups, wal: input.wal, histories, unreadableHistories: unreadable, segmentSize, nowMs };
      const c = archive.cluster;
      return {
        store: { description: storage.description, reachable: true },
        cluster: c
          ? { system_identifier: c.system_identifier, pg_major: c.pg_major ?? null, wal_segment_size: c.wal_segment_size }
          : unknown('no cluster has claimed this archive yet (cluster.json is written by `walts init --pgdata` or the first wal-push)'),
        last_archived_wal: lastArchivedWal(contents),
        backups: backupStatus(input.backups, nowMs),
        pitr_window: pitrWindow(contents),
        restore_drill: await drillStatus(storage, nowMs, signal),
        ...(await streamedStatus(storage, input.received ?? [], segmentSize, nowMs, signal)),
      };
    } catch (err) {
      return { store: { description: storage.description, reachable: false, error: describeError(err) } };
    }
  })();
  // PostgreSQL is asked at the same time: a slow store does not delay it, nor the reverse.
  const pgPart = deps.connectPg ? bounded(gatherPostgres(deps.connectPg), deps.pgTimeoutMs, signal) : Promise.resolve(undefined);
  const [store, pg] = await Promise.all([storePart, pgPart]);
  const storeId = store.cluster && !('unknown' in store.cluster) ? store.cluster.system_identifier : undefined;
  const pgId = pg?.system_identifier;
  const postgres =
    pg && storeId && typeof pgId === 'string' && pgId !== storeId
      ? { ...pg, identity_mismatch: `PostgreSQL at ${pg.target} is database system ${pgId}, but the store belongs to system ${storeId}` }
      : pg;
  return {
    generated_at: new Date(started).toISOString(),
    walts_version: deps.version,
    ...store,
    ...(postgres ? { postgres } : {}),
    duration_seconds: (deps.now().getTime() - started) / 1000,
  };
}

/** The PostgreSQL answer, or "unreachable" once `ms` passed or `signal` aborted (the attempt ends by its own timeouts). */
function bounded(p: Promise<PostgresStatus>, ms: number | undefined, signal: AbortSignal | undefined): Promise<PostgresStatus> {
  if (ms === undefined && !signal) return p;
  return new Promise((resolve) => {
    const done = (v: PostgresStatus) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(v);
    };
    const onAbort = () => done({ reachable: false, error: 'PostgreSQL was still being asked when the gathering was stopped' });
    const timer = ms === undefined ? undefined : setTimeout(() => done({ reachable: false, error: `no answer from PostgreSQL within ${ms / 1000} s` }), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    void p.then(done);
  });
}

function backupStatus(backups: readonly BackupSentinel[], nowMs: number): BackupStatus {
  const newest = backups[backups.length - 1];
  if (!newest) return { count: 0 };
  const finish = Date.parse(newest.finish_time);
  return {
    count: backups.length,
    newest: {
      name: newest.name,
      finish_time: new Date(finish).toISOString(),
      age_seconds: ageSeconds(nowMs, finish),
      data_size: newest.data_size,
      stored_size: newest.stored_size,
      duration_seconds: Math.max(0, (finish - Date.parse(newest.start_time)) / 1000),
    },
  };
}

async function drillStatus(storage: Storage, nowMs: number, signal?: AbortSignal): Promise<Known<DrillStatus>> {
  try {
    const d = await latestDrills(storage, { signal });
    return {
      count: d.count,
      ...(d.last ? { last: drillSummary(d.last, nowMs) } : {}),
      ...(d.lastSuccess ? { last_success: drillSummary(d.lastSuccess, nowMs) } : {}),
      invalid: d.invalid.length,
    };
  } catch (err) {
    signal?.throwIfAborted();
    return unknown(`restore drill records could not be read: ${describeError(err)}`);
  }
}

function drillSummary(r: DrillRecord, nowMs: number): DrillSummary {
  return {
    backup: r.backup,
    ok: r.ok,
    started_at: r.started_at,
    finished_at: r.finished_at,
    age_seconds: ageSeconds(nowMs, Date.parse(r.finished_at)),
    duration_seconds: r.duration_seconds,
    error: r.error,
  };
}
