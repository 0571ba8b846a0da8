/**
 * What `walts status` and `walts metrics` report: one typed record gathered by `gather.ts`.
 *
 * Every fact is either proven from what was read (the store, PostgreSQL) or absent with the reason:
 * an `Unknown` says why it could not be established, never a guess. Times are ISO 8601 UTC; ages are
 * seconds on walts' clock at `generated_at` (store times come from the store's clock: a skewed host
 * shows up as a small age error, never as a different answer about what exists).
 */

/** A fact that could not be established, and why (one line). */
export interface Unknown {
  readonly unknown: string;
}

export type Known<T> = T | Unknown;

export function isUnknown<T>(v: Known<T>): v is Unknown {
  return typeof v === 'object' && v !== null && 'unknown' in v;
}

export function unknown(why: string): Unknown {
  return { unknown: why };
}

export interface StoreStatus {
  readonly description: string;
  readonly reachable: boolean;
  /** Why the store could not be read (only when not reachable). */
  readonly error?: string;
}

export interface ClusterIdentity {
  readonly system_identifier: string;
  readonly pg_major: number | null;
  readonly wal_segment_size: number;
}

export interface ArchivedWal {
  /** The newest WAL segment (or .partial) by position, any timeline. */
  readonly name: string;
  /** When the store says the object was written; null when the store keeps no time. */
  readonly stored_at: string | null;
  readonly age_seconds: number | null;
  /** WAL objects in the store (segments, .partial, .history, .backup). */
  readonly objects: number;
}

export interface ArchiverStats {
  readonly archived_count: number;
  readonly failed_count: number;
  readonly last_archived_wal: string | null;
  readonly last_archived_time: string | null;
  readonly last_failed_wal: string | null;
  readonly last_failed_time: string | null;
  readonly stats_reset: string | null;
}

/**
 * A physical replication slot on the server (what a `walts wal-receive` uses), and the walsender
 * serving it when one is connected. Lag and positions are what the server says.
 */
export interface SlotStatus {
  readonly slot: string;
  /** A receiver is connected to the slot now. */
  readonly active: boolean;
  readonly restart_lsn: string | null;
  /** WAL the server keeps for this slot: its current write position minus restart_lsn. */
  readonly retained_bytes: number | null;
  /** pg_replication_slots.wal_status: reserved, extended, unreserved or lost. */
  readonly wal_status: string | null;
  /** The connected receiver (pg_stat_replication; its details need pg_read_all_stats). */
  readonly receiver?: {
    readonly application_name: string | null;
    readonly client_addr: string | null;
    readonly state: string | null;
    readonly sync_state: string | null;
    readonly flush_lsn: string | null;
    /** Bytes between the server's write position and what the receiver reported as flushed. */
    readonly flush_lag_bytes: number | null;
    /** pg_stat_replication.flush_lag in seconds (null when the server has no recent sample). */
    readonly flush_lag_seconds: number | null;
    readonly reply_time: string | null;
  };
}

export interface PostgresStatus {
  readonly reachable: boolean;
  readonly error?: string;
  /** host:port/database as libpq settings named it (no password). */
  readonly target?: string;
  readonly server_version_num?: number;
  readonly system_identifier?: Known<string>;
  /** The server belongs to another cluster than the store: set when both are known and differ. */
  readonly identity_mismatch?: string;
  readonly in_recovery?: boolean;
  readonly archive_mode?: string;
  readonly archiver?: Known<ArchiverStats>;
  /** `.ready` files in pg_wal/archive_status: WAL waiting to be archived. */
  readonly ready_files?: Known<number>;
  /** Physical replication slots (wal-receive's), each with its connected receiver. */
  readonly replication_slots?: Known<readonly SlotStatus[]>;
}

export interface BackupStatus {
  readonly count: number;
  readonly newest?: {
    readonly name: string;
    readonly finish_time: string;
    readonly age_seconds: number;
    readonly data_size: number;
    readonly stored_size: number;
    readonly duration_seconds: number;
  };
}

export interface PitrWindow {
  /** The oldest backup from whose end every point up to `to` can be restored. */
  readonly backup: string;
  /** That backup's consistent point (its finish time, server clock). */
  readonly from: string;
  /** The newest WAL segment of the unbroken chain, and when it reached the store. */
  readonly to_wal: string;
  readonly to: string;
  readonly seconds: number;
}

export interface DrillSummary {
  readonly backup: string;
  readonly ok: boolean;
  readonly started_at: string;
  readonly finished_at: string;
  readonly age_seconds: number;
  readonly duration_seconds: number;
  readonly error: string | null;
}

export interface DrillStatus {
  readonly count: number;
  readonly last?: DrillSummary;
  readonly last_success?: DrillSummary;
  /** Keys under the drill folder that are not valid drill records. */
  readonly invalid: number;
}

/** The newest segment in progress a receiver (`walts wal-receive`) keeps for one slot. */
export interface StreamedWal {
  readonly slot: string;
  readonly segment: string;
  /** Bytes of the segment received (recorded with the object); null when it carries no whole record. */
  readonly bytes: number | null;
  /** The LSN the streamed WAL reaches (segment start + bytes); null with bytes. */
  readonly end_lsn: string | null;
  readonly stored_at: string | null;
  readonly age_seconds: number | null;
}

export interface StatusReport {
  readonly generated_at: string;
  readonly walts_version: string;
  readonly store: StoreStatus;
  /** Store facts: present only when the store was read (else `store.error` says why). */
  readonly cluster?: Known<ClusterIdentity>;
  readonly last_archived_wal?: Known<ArchivedWal>;
  readonly backups?: BackupStatus;
  readonly pitr_window?: Known<PitrWindow>;
  readonly restore_drill?: Known<DrillStatus>;
  /** Per receiver slot with a segment in progress in the store (`receive/`); absent when none. */
  readonly streamed?: readonly StreamedWal[];
  /** Absent when PostgreSQL was not asked (--no-pg). */
  readonly postgres?: PostgresStatus;
  /** How long gathering took (seconds). */
  readonly duration_seconds: number;
}
