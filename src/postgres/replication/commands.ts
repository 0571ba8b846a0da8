/**
 * The walsender commands walts sends (PostgreSQL 15, "Streaming Replication Protocol"), the rows they
 * answer with, and which server errors mean "this slot cannot be used". Pure: no I/O. Values arrive
 * as the server's text (the connection asks pg for raw text), so each parser checks its own fields.
 */
import { ProtocolError, ReplicationSlotError, UsageError } from '../../errors';
import { Lsn, formatLsn, parseLsn } from '../walName';

/** A row of a walsender result set: each field as the server's text, null for SQL NULL. */
export type TextRow = readonly (string | null)[];

/** ReplicationSlotValidateName (slot.c): lower-case letters, digits and `_`, at most NAMEDATALEN-1 = 63 bytes. */
export function checkSlotName(name: string): string {
  if (!/^[a-z0-9_]{1,63}$/.test(name)) {
    throw new UsageError(`replication slot name ${JSON.stringify(name)} is invalid: use 1 to 63 lower-case letters, digits and underscores`);
  }
  return name;
}

function checkTimeline(tli: number): number {
  if (!Number.isInteger(tli) || tli < 1 || tli > 0xffff_ffff) throw new RangeError(`not a timeline ID: ${tli}`);
  return tli;
}

export const IDENTIFY_SYSTEM = 'IDENTIFY_SYSTEM';

/** SHOW's memory units (`16MB`, `1GB`, `512kB`, `8192B`) in bytes; NaN otherwise. */
export function showBytes(text: string): number {
  const m = /^([0-9]+)\s*(B|kB|MB|GB|TB)?$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1]) * { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }[(m[2] ?? 'B') as 'B'];
}

export function timelineHistoryCommand(timeline: number): string {
  return `TIMELINE_HISTORY ${checkTimeline(timeline)}`;
}

export function readReplicationSlotCommand(slot: string): string {
  return `READ_REPLICATION_SLOT ${checkSlotName(slot)}`;
}

/** RESERVE_WAL makes the slot hold WAL from now on, before any receiver has connected (as pg_receivewal --create-slot). */
export function createPhysicalSlotCommand(slot: string, opts: { reserveWal: boolean }): string {
  return `CREATE_REPLICATION_SLOT ${checkSlotName(slot)} PHYSICAL${opts.reserveWal ? ' RESERVE_WAL' : ''}`;
}

export function startPhysicalReplicationCommand(opts: { slot: string; start: Lsn; timeline: number }): string {
  return `START_REPLICATION SLOT ${checkSlotName(opts.slot)} PHYSICAL ${formatLsn(opts.start)} TIMELINE ${checkTimeline(opts.timeline)}`;
}

/** IDENTIFY_SYSTEM: the cluster (pg_control's system identifier), its current timeline and WAL flush position. */
export interface SystemIdentity {
  /** Decimal text: it does not fit in a double. */
  readonly systemId: string;
  readonly timeline: number;
  readonly xlogPos: Lsn;
}

export function parseIdentifySystem(rows: readonly TextRow[]): SystemIdentity {
  const row = onlyRow('IDENTIFY_SYSTEM', rows, 4);
  const [systemId, timeline, xlogPos] = row;
  if (!systemId || !/^[0-9]{1,20}$/.test(systemId)) throw new ProtocolError(`IDENTIFY_SYSTEM: not a system identifier: ${JSON.stringify(systemId)}`);
  return { systemId, timeline: timelineField('IDENTIFY_SYSTEM', timeline), xlogPos: lsnField('IDENTIFY_SYSTEM', xlogPos) };
}

/** READ_REPLICATION_SLOT (PostgreSQL 15+). `restartLsn` is undefined while the slot reserves no WAL. */
export interface SlotState {
  readonly type: 'physical';
  readonly restartLsn: Lsn | undefined;
  readonly restartTimeline: number | undefined;
}

/** undefined when the slot does not exist (the server answers with a row of NULLs). */
export function parseReadReplicationSlot(slot: string, rows: readonly TextRow[]): SlotState | undefined {
  const [type, lsn, tli] = onlyRow('READ_REPLICATION_SLOT', rows, 3);
  if (type === null) return undefined;
  if (type !== 'physical') {
    throw new ReplicationSlotError(`replication slot "${slot}" is a ${type} slot, not a physical one`, slot, 'wrong-type');
  }
  return {
    type,
    restartLsn: lsn === null ? undefined : lsnField('READ_REPLICATION_SLOT', lsn),
    restartTimeline: tli === null ? undefined : timelineField('READ_REPLICATION_SLOT', tli),
  };
}

/** TIMELINE_HISTORY: the history file of a timeline, as the server stores it in pg_wal. */
export interface TimelineHistoryFile {
  readonly fileName: string;
  readonly content: Buffer;
}

export function parseTimelineHistory(timeline: number, rows: readonly TextRow[]): TimelineHistoryFile {
  const [fileName, content] = onlyRow('TIMELINE_HISTORY', rows, 2);
  const expected = `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
  if (fileName !== expected) throw new ProtocolError(`TIMELINE_HISTORY ${timeline}: the server named the file ${JSON.stringify(fileName)}, expected ${expected}`);
  if (content === null || content === undefined) throw new ProtocolError(`TIMELINE_HISTORY ${timeline}: no content`);
  return { fileName, content: Buffer.from(content, 'utf8') };
}

/** The result set after a historic timeline was streamed to its end: where the next timeline starts. */
export interface TimelineEnd {
  readonly nextTimeline: number;
  readonly nextTimelineStart: Lsn;
}

export function parseTimelineEnd(rows: readonly TextRow[]): TimelineEnd {
  const [tli, start] = onlyRow('START_REPLICATION end of timeline', rows, 2);
  return { nextTimeline: timelineField('START_REPLICATION', tli), nextTimelineStart: lsnField('START_REPLICATION', start) };
}

function onlyRow(what: string, rows: readonly TextRow[], columns: number): TextRow {
  if (rows.length !== 1) throw new ProtocolError(`${what}: expected one row, got ${rows.length}`);
  const row = rows[0]!;
  if (row.length < columns) throw new ProtocolError(`${what}: expected ${columns} columns, got ${row.length}`);
  return row;
}

function timelineField(what: string, text: string | null | undefined): number {
  const n = text && /^[0-9]{1,10}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 0xffff_ffff)) throw new ProtocolError(`${what}: not a timeline ID: ${JSON.stringify(text)}`);
  return n;
}

function lsnField(what: string, text: string | null | undefined): Lsn {
  try {
    return parseLsn(text ?? '');
  } catch {
    throw new ProtocolError(`${what}: not an LSN: ${JSON.stringify(text)}`);
  }
}

/**
 * The walts error for a slot command the server refused, when the refusal is about the slot: recognised
 * by SQLSTATE (which does not depend on lc_messages); undefined for any other failure.
 * `serverMessage` is the server's own message text.
 */
export function slotErrorFor(slot: string, sqlState: string | undefined, serverMessage: string, cause?: unknown): ReplicationSlotError | undefined {
  const said = serverMessage.replace(/\s*\n\s*/g, ' ').trim();
  switch (sqlState) {
    case '55006': {
      // ReplicationSlotAcquire (slot.c): `replication slot "%s" is active for PID %d`.
      const pid = /PID (\d+)/.exec(said)?.[1];
      return new ReplicationSlotError(
        `replication slot "${slot}" is in use by another connection${pid ? ` (server process ${pid})` : ''}: refusing to be a second receiver on it, since two receivers on one slot lose WAL (server: ${said})`,
        slot,
        'in-use',
        pid === undefined ? undefined : Number(pid),
        { cause },
      );
    }
    case '42704':
      return new ReplicationSlotError(`replication slot "${slot}" does not exist on this server (server: ${said})`, slot, 'missing', undefined, { cause });
    case '42710':
      return new ReplicationSlotError(`replication slot "${slot}" already exists (server: ${said})`, slot, 'exists', undefined, { cause });
    default:
      if (/logical replication slot/.test(said)) {
        return new ReplicationSlotError(`replication slot "${slot}" is a logical slot, not a physical one (server: ${said})`, slot, 'wrong-type', undefined, { cause });
      }
      return undefined;
  }
}
