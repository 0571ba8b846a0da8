/**
 * BASE_BACKUP over a physical replication connection (PostgreSQL 15 protocol, "Streaming Replication
 * Protocol", BASE_BACKUP; the server side is basebackup_copy.c): the command walts sends, the result
 * sets around the copy, and the messages inside it. Pure: no I/O.
 *
 * What the server sends, in order:
 *   1. a result set (recptr text, tli int8): where the backup starts (the REDO point) and its timeline;
 *   2. a result set (spcoid, spclocation, size): one row per tablespace, the data directory last with
 *      NULL oid and location; size in KiB when PROGRESS was asked, else NULL;
 *   3. one CopyOutResponse, then CopyData messages whose first byte says what they are:
 *        'n' archive name (String) and tablespace location (String, '' for the data directory): a new archive;
 *        'd' the next bytes of the current archive (tar), or of the manifest after 'm';
 *        'p' Int64: bytes sent so far (PROGRESS);
 *        'm' the manifest follows (walts asks for none);
 *      then CopyDone;
 *   4. a result set (recptr, tli): where the backup ends.
 * The tar archives omit the two end-of-archive blocks (the client adds them, as pg_basebackup does).
 */
import { ProtocolError, UsageError } from '../../errors';
import { Lsn, parseLsn } from '../walName';
import type { TextRow } from './commands';

export interface BaseBackupOptions {
  /** LABEL: one line of text, recorded in backup_label. */
  readonly label: string;
  /** CHECKPOINT 'fast' (immediate) or 'spread'. */
  readonly fast: boolean;
}

/**
 * The command. WAL false: the backup's WAL comes from the archive (archive_command or a receiver).
 * WAIT false: the server would otherwise wait, without a limit, for archive_command to archive the
 * last segment, and not at all for a receiver; walts waits for the segments in the store instead, as
 * the local backup-push does. MANIFEST 'no': walts writes its own manifest of every file.
 * TABLESPACE_MAP: tablespaces are described by a tablespace_map file instead of pg_tblspc links
 * (a walts backup holds no links).
 */
export function baseBackupCommand(opts: BaseBackupOptions): string {
  if (/[\0\r\n]/.test(opts.label) || Buffer.byteLength(opts.label) > 1024) throw new UsageError('a backup label is one line of at most 1024 bytes');
  // Quoted as a standard SQL string: the replication grammar (repl_scanner.l) doubles quotes.
  const label = `'${opts.label.replace(/'/g, "''")}'`;
  return `BASE_BACKUP (LABEL ${label}, PROGRESS, CHECKPOINT '${opts.fast ? 'fast' : 'spread'}', WAL false, WAIT false, MANIFEST 'no', TABLESPACE_MAP true)`;
}

/** Where the backup starts or ends (result sets 1 and 4). */
export interface BackupPosition {
  readonly lsn: Lsn;
  readonly timeline: number;
}

export function parseBackupPosition(what: string, rows: readonly TextRow[]): BackupPosition {
  if (rows.length !== 1 || rows[0]!.length < 2) throw new ProtocolError(`BASE_BACKUP ${what}: expected one row of (recptr, tli), got ${rows.length} row(s)`);
  const [recptr, tli] = rows[0]!;
  let lsn: Lsn;
  try {
    lsn = parseLsn(recptr ?? '');
  } catch {
    throw new ProtocolError(`BASE_BACKUP ${what}: not an LSN: ${JSON.stringify(recptr)}`);
  }
  const timeline = tli && /^[0-9]{1,10}$/.test(tli) ? Number(tli) : NaN;
  if (!(timeline >= 1 && timeline <= 0xffff_ffff)) throw new ProtocolError(`BASE_BACKUP ${what}: not a timeline ID: ${JSON.stringify(tli)}`);
  return { lsn, timeline };
}

/** One row of the tablespace list: a tablespace, or (oid undefined) the data directory. */
export interface BackupTablespace {
  readonly oid: number | undefined;
  /** The tablespace's directory on the server; undefined for the data directory. */
  readonly location: string | undefined;
  /** Approximate bytes (from the server's KiB), when PROGRESS was asked. */
  readonly sizeBytes: number | undefined;
}

export function parseTablespaceList(rows: readonly TextRow[]): BackupTablespace[] {
  const list = rows.map((row, i): BackupTablespace => {
    const [oid, location, size] = row;
    const what = `BASE_BACKUP tablespace list row ${i + 1}`;
    if ((oid === null) !== (location === null)) throw new ProtocolError(`${what}: an OID without a location or the reverse`);
    if (oid !== null && (oid === undefined || !/^[1-9][0-9]{0,9}$/.test(oid) || Number(oid) > 0xffff_ffff)) throw new ProtocolError(`${what}: not an OID: ${JSON.stringify(oid)}`);
    if (location !== null && (location === undefined || !location.startsWith('/'))) throw new ProtocolError(`${what}: not an absolute location: ${JSON.stringify(location)}`);
    if (size !== null && (size === undefined || !/^[0-9]{1,15}$/.test(size))) throw new ProtocolError(`${what}: not a size: ${JSON.stringify(size)}`);
    return { oid: oid === null ? undefined : Number(oid), location: location ?? undefined, sizeBytes: size === null || size === undefined ? undefined : Number(size) * 1024 };
  });
  if (list.filter((t) => t.oid === undefined).length !== 1) throw new ProtocolError('BASE_BACKUP tablespace list: expected exactly one row for the data directory');
  if (new Set(list.map((t) => t.oid)).size !== list.length) throw new ProtocolError('BASE_BACKUP tablespace list: a tablespace is listed twice');
  return list;
}

/** Type bytes of the CopyData messages inside BASE_BACKUP's copy (basebackup_copy.c). */
export const BaseBackupMessageType = {
  NewArchive: 0x6e, // 'n'
  Data: 0x64, // 'd'
  Progress: 0x70, // 'p'
  Manifest: 0x6d, // 'm'
} as const;

export interface NewArchiveMessage {
  readonly type: 'archive';
  /** `base.tar` or `<oid>.tar`. */
  readonly name: string;
  /** '' for the data directory. */
  readonly location: string;
}
/** `data` is a view into the payload: copy it to keep it. */
export interface DataMessage {
  readonly type: 'data';
  readonly data: Buffer;
}
export interface ProgressMessage {
  readonly type: 'progress';
  readonly bytes: number;
}
export interface ManifestMessage {
  readonly type: 'manifest';
}
export type BaseBackupMessage = NewArchiveMessage | DataMessage | ProgressMessage | ManifestMessage;

/** Reads one CopyData payload. Throws ProtocolError for anything malformed or unknown. */
export function parseBaseBackupMessage(payload: Buffer): BaseBackupMessage {
  if (payload.length === 0) throw new ProtocolError('BASE_BACKUP: empty CopyData message');
  switch (payload[0]) {
    case BaseBackupMessageType.NewArchive: {
      const nameEnd = payload.indexOf(0, 1);
      const locationEnd = nameEnd < 0 ? -1 : payload.indexOf(0, nameEnd + 1);
      if (locationEnd !== payload.length - 1) throw new ProtocolError('BASE_BACKUP: malformed new-archive message (expected two NUL-terminated strings)');
      return { type: 'archive', name: payload.toString('utf8', 1, nameEnd), location: payload.toString('utf8', nameEnd + 1, locationEnd) };
    }
    case BaseBackupMessageType.Data:
      return { type: 'data', data: payload.subarray(1) };
    case BaseBackupMessageType.Progress: {
      if (payload.length !== 9) throw new ProtocolError(`BASE_BACKUP: progress message of ${payload.length} bytes (expected 9)`);
      const bytes = payload.readBigInt64BE(1);
      if (bytes < 0n || bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`BASE_BACKUP: progress of ${bytes} bytes`);
      return { type: 'progress', bytes: Number(bytes) };
    }
    case BaseBackupMessageType.Manifest:
      if (payload.length !== 1) throw new ProtocolError('BASE_BACKUP: malformed manifest message');
      return { type: 'manifest' };
    default:
      throw new ProtocolError(`BASE_BACKUP: unknown CopyData message type 0x${payload[0]!.toString(16).padStart(2, '0')}`);
  }
}
