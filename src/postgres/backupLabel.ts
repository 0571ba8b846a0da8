/**
 * The `backup_label` file PostgreSQL hands back from `pg_backup_stop` (`pg_stop_backup` before 15),
 * and the WAL file arithmetic a base backup needs. Pure: no I/O.
 *
 * A label, as written by `build_backup_content()` (PG 15) / `do_pg_start_backup()` (9.6-14):
 *
 *   START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
 *   CHECKPOINT LOCATION: 0/2000060
 *   BACKUP METHOD: streamed            (non-exclusive; `pg_start_backup` for the old exclusive mode)
 *   BACKUP FROM: primary               (`master` up to PG 12, `standby` on a standby)
 *   START TIME: 2026-11-21 22:17:38 UTC  (server's log_timezone, `%Y-%m-%d %H:%M:%S %Z`)
 *   LABEL: walts base backup
 *   START TIMELINE: 1                  (PG 11+; older labels only carry it inside the file name)
 *
 * PG 17 adds `INCREMENTAL FROM LSN:` / `INCREMENTAL FROM TLI:` for incremental backups. Unknown lines
 * are kept in `extra`, never rejected. The two lines recovery itself depends on (START WAL LOCATION,
 * CHECKPOINT LOCATION) are required, and the timeline checks PostgreSQL's `read_backup_label()` makes
 * are made here too, so a label that recovery would refuse is refused when the backup is taken.
 */
import { IntegrityError } from '../errors';
import { DEFAULT_SEGMENT_SIZE, Lsn, formatLsn, hex8, lsnToSegment, parseLsn, segmentName } from './walName';

export interface BackupLabel {
  /** `START WAL LOCATION`: the REDO point of the backup's checkpoint, as PostgreSQL prints it (`X/Y`). */
  readonly startLsn: string;
  /** The WAL segment holding startLsn, named with the start timeline (from the label itself). */
  readonly startWalFile: string;
  /** `START TIMELINE`, or (labels older than PG 11) the timeline in startWalFile. */
  readonly startTimeline: number;
  /** `CHECKPOINT LOCATION`: the checkpoint record recovery starts from. */
  readonly checkpointLsn: string;
  /** `BACKUP METHOD` (`streamed` for non-exclusive backups), undefined if absent. */
  readonly backupMethod: string | undefined;
  /** `BACKUP FROM` as written: `primary`, `master` (PG 12 and older) or `standby`; undefined if absent. */
  readonly backupFrom: string | undefined;
  /** True when BACKUP FROM says `standby`. */
  readonly fromStandby: boolean;
  /** `LABEL`, the text given to pg_backup_start. */
  readonly label: string | undefined;
  /** `START TIME` exactly as written (time zone abbreviation of the server's log_timezone). */
  readonly startTime: string | undefined;
  /** START TIME as ISO 8601 (UTC) when its zone is UTC/GMT/Z or a numeric offset; else undefined. */
  readonly startTimeIso: string | undefined;
  /** Any other `KEY: value` lines (e.g. PG 17's `INCREMENTAL FROM LSN`), keyed as written. */
  readonly extra: Readonly<Record<string, string>>;
}

const START_WAL_RE = /^([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}) \(file ([0-9A-F]{24})\)$/;

/**
 * Parse backup_label text. Throws IntegrityError naming the problem when a required line is missing
 * or malformed, or when its timelines disagree (PostgreSQL: "invalid data in file backup_label").
 * With `walSegmentSize`, also checks that the file named in START WAL LOCATION holds the start LSN.
 */
export function parseBackupLabel(text: string, opts: { walSegmentSize?: number } = {}): BackupLabel {
  const fields = new Map<string, string>();
  const extra: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    const i = line.indexOf(': ');
    if (i <= 0) throw new IntegrityError(`backup_label: unexpected line ${JSON.stringify(line.slice(0, 80))}`);
    const key = line.slice(0, i);
    const value = line.slice(i + 2);
    if (fields.has(key)) throw new IntegrityError(`backup_label: duplicate line ${key}`);
    fields.set(key, value);
    if (!KNOWN_KEYS.has(key)) extra[key] = value;
  }

  const startLine = fields.get('START WAL LOCATION');
  if (startLine === undefined) throw new IntegrityError('backup_label: START WAL LOCATION is missing');
  const sm = START_WAL_RE.exec(startLine);
  if (!sm) throw new IntegrityError(`backup_label: malformed START WAL LOCATION ${JSON.stringify(startLine)}`);
  const startLsn = canonicalLsn(sm[1]!, 'START WAL LOCATION');
  const startWalFile = sm[2]!;
  const fileTimeline = parseInt(startWalFile.slice(0, 8), 16);

  const checkpointText = fields.get('CHECKPOINT LOCATION');
  if (checkpointText === undefined) throw new IntegrityError('backup_label: CHECKPOINT LOCATION is missing');
  const checkpointLsn = canonicalLsn(checkpointText, 'CHECKPOINT LOCATION');
  if (parseLsn(checkpointLsn) < parseLsn(startLsn)) {
    throw new IntegrityError(`backup_label: CHECKPOINT LOCATION ${checkpointLsn} precedes START WAL LOCATION ${startLsn}`);
  }

  let startTimeline = fileTimeline;
  const tliText = fields.get('START TIMELINE');
  if (tliText !== undefined) {
    if (!/^[0-9]{1,10}$/.test(tliText)) throw new IntegrityError(`backup_label: malformed START TIMELINE ${JSON.stringify(tliText)}`);
    startTimeline = Number(tliText);
    if (startTimeline !== fileTimeline) {
      throw new IntegrityError(`backup_label: START TIMELINE ${startTimeline} does not match the timeline of ${startWalFile}`);
    }
  }
  if (startTimeline < 1 || startTimeline > 0xffffffff) throw new IntegrityError(`backup_label: invalid timeline ${startTimeline}`);

  if (opts.walSegmentSize !== undefined) {
    const expected = startWalFileName(startLsn, startTimeline, opts.walSegmentSize);
    if (expected !== startWalFile) {
      throw new IntegrityError(
        `backup_label: ${startWalFile} does not hold START WAL LOCATION ${startLsn} with ${opts.walSegmentSize}-byte segments (expected ${expected})`,
      );
    }
  }

  const backupFrom = fields.get('BACKUP FROM');
  const startTime = fields.get('START TIME');
  return {
    startLsn,
    startWalFile,
    startTimeline,
    checkpointLsn,
    backupMethod: fields.get('BACKUP METHOD'),
    backupFrom,
    fromStandby: backupFrom === 'standby',
    label: fields.get('LABEL'),
    startTime,
    startTimeIso: startTime === undefined ? undefined : labelTimeToIso(startTime),
    extra,
  };
}

const KNOWN_KEYS = new Set([
  'START WAL LOCATION',
  'CHECKPOINT LOCATION',
  'BACKUP METHOD',
  'BACKUP FROM',
  'START TIME',
  'LABEL',
  'START TIMELINE',
]);

function canonicalLsn(text: string, what: string): string {
  try {
    return formatLsn(parseLsn(text));
  } catch {
    throw new IntegrityError(`backup_label: malformed ${what} ${JSON.stringify(text)}`);
  }
}

const LABEL_TIME_RE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) (UTC|GMT|Z|[+-]\d{2}(?::?\d{2})?)$/;

/** `2026-11-21 22:17:38 UTC` -> `2026-11-21T22:17:38.000Z`; undefined for zone abbreviations like CEST. */
export function labelTimeToIso(text: string): string | undefined {
  const m = LABEL_TIME_RE.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, zone] = m;
  let offsetMin = 0;
  const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone!);
  if (z) offsetMin = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3] ?? '0'));
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) - offsetMin * 60_000;
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

// ---------------------------------------------------------------------------------------------------
// WAL files of a backup

/**
 * The WAL file holding the backup's first needed byte (XLByteToSeg, as backup_label names it).
 * A start LSN is a checkpoint REDO pointer, which never sits exactly on a segment boundary (it points
 * past the page header), but if it did, the record would start in the segment beginning there.
 */
export function startWalFileName(startLsn: string | Lsn, timeline: number, walSegmentSize = DEFAULT_SEGMENT_SIZE): string {
  const lsn = typeof startLsn === 'string' ? parseLsn(startLsn) : startLsn;
  return segmentName(lsnToSegment(lsn, timeline, walSegmentSize), walSegmentSize);
}

/**
 * The last WAL file a backup needs (XLByteToPrevSeg, as pg_backup_stop, the backup history file and
 * `pg_walfile_name()` name it). The stop LSN is the *end* of the backup-end record (the first byte
 * after it), so when it falls exactly on a segment boundary, e.g. 0/3000000 with 16 MiB segments, the
 * record ended in the previous segment (...02), and the segment starting there (...03) holds nothing
 * the backup needs. PostgreSQL 15's `pg_walfile_name('0/3000000')` answers ...02 as well.
 */
export function stopWalFileName(stopLsn: string | Lsn, timeline: number, walSegmentSize = DEFAULT_SEGMENT_SIZE): string {
  const lsn = typeof stopLsn === 'string' ? parseLsn(stopLsn) : stopLsn;
  if (lsn <= 0n) throw new RangeError(`stop LSN ${formatLsn(lsn)} is not after the start of WAL`);
  return segmentName(lsnToSegment(lsn - 1n, timeline, walSegmentSize), walSegmentSize);
}

/**
 * Name of the `.backup` history file pg_backup_stop writes on a primary (BackupHistoryFileName):
 * the start segment, named with the *stop* timeline, then the start LSN's offset in that segment.
 */
export function backupHistoryFileName(startLsn: string | Lsn, stopTimeline: number, walSegmentSize = DEFAULT_SEGMENT_SIZE): string {
  const lsn = typeof startLsn === 'string' ? parseLsn(startLsn) : startLsn;
  const seg = lsnToSegment(lsn, stopTimeline, walSegmentSize);
  const offset = Number(lsn % BigInt(walSegmentSize));
  return `${segmentName(seg, walSegmentSize)}.${hex8(offset)}.backup`;
}

