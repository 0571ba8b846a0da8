/**
 * The completion record of a base backup (`sentinel.json`), written last: its presence is what makes
 * a backup exist. Plain JSON (not encrypted) so that listing, retention and monitoring work on hosts
 * without the private key; it holds positions, sizes and the backup_label, no table data.
 * Pure: schema, parsing and the derived facts list/show print.
 */
import { IntegrityError } from '../errors';

export const SENTINEL_FORMAT = 1;

export interface StoredPart {
  readonly key: string;
  /** Bytes of the object in the store (after compression and encryption). */
  readonly stored_size: number;
  /** Plain bytes (the tar or JSONL stream before encoding) and their SHA-256. */
  readonly size: number;
  readonly sha256: string;
}

export interface TablespaceInfo {
  readonly oid: number;
  readonly name: string;
  /** Where the tablespace lived on the backed-up server. */
  readonly location: string;
}

export interface BackupSentinel {
  readonly format: typeof SENTINEL_FORMAT;
  readonly name: string;
  readonly label: string;
  readonly walts_version: string;
  readonly system_identifier: string;
  readonly pg_version: string;
  readonly pg_version_num: number;
  readonly timeline: number;
  readonly start_lsn: string;
  readonly stop_lsn: string;
  /** First and last WAL file the backup needs to become consistent. */
  readonly start_wal_file: string;
  readonly stop_wal_file: string;
  /** Server clock, ISO 8601 with offset. */
  readonly start_time: string;
  readonly finish_time: string;
  readonly wal_segment_size: number;
  readonly data_checksums: boolean;
  readonly from_standby: boolean;
  readonly hostname: string;
  readonly data_directory: string;
  /** Files and their plain bytes (what a restore writes). */
  readonly file_count: number;
  readonly data_size: number;
  /** Sum of stored object sizes (volumes + manifest). */
  readonly stored_size: number;
  readonly codecs: readonly string[];
  readonly volumes: readonly StoredPart[];
  readonly manifest: StoredPart;
  readonly tablespaces: readonly TablespaceInfo[];
  /** Verbatim from pg_backup_stop; also inside the last volume. */
  readonly backup_label: string;
  readonly tablespace_map: string | null;
}

/** Parses and checks a sentinel's text; a malformed one is an integrity problem, not a missing backup. */
export function parseSentinel(text: string, key: string): BackupSentinel {
  let s: BackupSentinel;
  try {
    s = JSON.parse(text) as BackupSentinel;
  } catch (err) {
    throw new IntegrityError(`${key} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof s !== 'object' || s === null) throw new IntegrityError(`${key} is not a walts format-${SENTINEL_FORMAT} backup sentinel (not a JSON object)`);
  const required: (keyof BackupSentinel)[] = ['name', 'start_lsn', 'stop_lsn', 'timeline', 'start_wal_file', 'stop_wal_file', 'finish_time', 'volumes', 'manifest', 'backup_label'];
  const missing = required.filter((k) => s[k] === undefined || s[k] === null);
  if (s.format !== SENTINEL_FORMAT || missing.length > 0) {
    throw new IntegrityError(`${key} is not a walts format-${SENTINEL_FORMAT} backup sentinel${missing.length ? ` (missing ${missing.join(', ')})` : ''}`);
  }
  return s;
}

/** Orders backups by start position (timeline-independent LSN), never by name or local clock. */
export function compareByStart(a: BackupSentinel, b: BackupSentinel): number {
  const la = lsnValue(a.start_lsn);
  const lb = lsnValue(b.start_lsn);
  return la < lb ? -1 : la > lb ? 1 : a.timeline - b.timeline;
}

function lsnValue(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi ?? '0'}`) << 32n) | BigInt(`0x${lo ?? '0'}`);
}

/** The snake_case summary `backup-list --json` and `backup-show --json` print. */
export function backupSummary(s: BackupSentinel): Record<string, unknown> {
  return {
    name: s.name,
    start_time: s.start_time,
    finish_time: s.finish_time,
    duration_seconds: Math.round((Date.parse(s.finish_time) - Date.parse(s.start_time)) / 100) / 10,
    start_lsn: s.start_lsn,
    stop_lsn: s.stop_lsn,
    timeline: s.timeline,
    pg_version: s.pg_version,
    system_identifier: s.system_identifier,
    data_size: s.data_size,
    stored_size: s.stored_size,
    file_count: s.file_count,
    wal_start: s.start_wal_file,
    wal_stop: s.stop_wal_file,
    tablespaces: s.tablespaces.map((t) => ({ oid: t.oid, name: t.name, location: t.location })),
    from_standby: s.from_standby,
    hostname: s.hostname,
    label: s.label,
  };
}
