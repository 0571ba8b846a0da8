/**
 * WAL file names and LSN arithmetic, as PostgreSQL defines them in `access/xlog_internal.h`.
 * Pure: no I/O. The segment size is always a parameter (clusters may use `initdb --wal-segsize`).
 *
 * A segment name is `TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, then the segment number split in a "log id"
 * (high part) and a segment within that log id, each 8 upper-case hex digits (XLogFileName).
 */

export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;
/** XLogSegmentsPerXLogId: how many segments share one "log id" (the middle 8 hex digits). */
export function segmentsPerLogId(segmentSize: number): number {
  return 0x1_0000_0000 / segmentSize;
}

/** initdb accepts powers of two from 1 MiB to 1 GiB (IsValidWalSegSize). */
export function isValidSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1024 * 1024 && size <= 1024 * 1024 * 1024 && (size & (size - 1)) === 0;
}

export type WalFileKind = 'segment' | 'partial' | 'history' | 'backup-history';

export interface WalFileName {
  readonly name: string;
  readonly kind: WalFileKind;
  readonly timeline: number;
  /** The 24-hex segment part for segment, partial and backup-history files. */
  readonly segment?: string;
}

const HEX8 = '[0-9A-F]{8}';
const SEGMENT_RE = new RegExp(`^(${HEX8})(${HEX8})(${HEX8})$`);
const PARTIAL_RE = new RegExp(`^(${HEX8})(${HEX8})(${HEX8})\\.partial$`);
const HISTORY_RE = new RegExp(`^(${HEX8})\\.history$`);
const BACKUP_RE = new RegExp(`^(${HEX8})(${HEX8})(${HEX8})\\.${HEX8}\\.backup$`);

/**
 * Parses a name of the WAL family, or returns undefined for anything else (lower-case hex, paths,
 * `..`, empty, NUL...). This is the gate every name passes before it becomes a key or a path.
 */
export function parseWalFileName(name: string): WalFileName | undefined {
  let m: RegExpExecArray | null;
  if ((m = SEGMENT_RE.exec(name))) return { name, kind: 'segment', timeline: hex(m[1]), segment: name };
  if ((m = PARTIAL_RE.exec(name))) return { name, kind: 'partial', timeline: hex(m[1]), segment: name.slice(0, 24) };
  if ((m = HISTORY_RE.exec(name))) return { name, kind: 'history', timeline: hex(m[1]) };
  if ((m = BACKUP_RE.exec(name))) return { name, kind: 'backup-history', timeline: hex(m[1]), segment: name.slice(0, 24) };
  return undefined;
}

function hex(s: string | undefined): number {
  return parseInt(s ?? '', 16);
}

/** A segment as (timeline, segment number); segment numbers fit in 2^53 for every valid size. */
export interface SegmentId {
  readonly timeline: number;
  readonly segNo: number;
}

export function parseSegmentName(name: string, segmentSize = DEFAULT_SEGMENT_SIZE): SegmentId {
  const m = SEGMENT_RE.exec(name.slice(0, 24));
  if (!m) throw new RangeError(`not a WAL segment name: ${JSON.stringify(name)}`);
  const perLogId = segmentsPerLogId(segmentSize);
  const seg = hex(m[3]);
  if (seg >= perLogId) throw new RangeError(`segment ${name} is out of range for ${segmentSize}-byte segments`);
  return { timeline: hex(m[1]), segNo: hex(m[2]) * perLogId + seg };
}

/** XLogFileName. */
export function segmentName(id: SegmentId, segmentSize = DEFAULT_SEGMENT_SIZE): string {
  const perLogId = segmentsPerLogId(segmentSize);
  return hex8(id.timeline) + hex8(Math.floor(id.segNo / perLogId)) + hex8(id.segNo % perLogId);
}

export function nextSegment(id: SegmentId): SegmentId {
  return { timeline: id.timeline, segNo: id.segNo + 1 };
}

export function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

/** An LSN as a bigint; PostgreSQL prints it as `X/Y` (high/low 32 bits in hex). */
export type Lsn = bigint;

export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new RangeError(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** XLByteToSeg: the segment holding `lsn`. */
export function lsnToSegment(lsn: Lsn, timeline: number, segmentSize = DEFAULT_SEGMENT_SIZE): SegmentId {
  return { timeline, segNo: Number(lsn / BigInt(segmentSize)) };
}

/** XLogSegNoOffsetToRecPtr with offset 0: the first LSN of a segment. */
export function segmentStartLsn(id: SegmentId, segmentSize = DEFAULT_SEGMENT_SIZE): Lsn {
  return BigInt(id.segNo) * BigInt(segmentSize);
}

/** Orders segment-family names by (segment position, then timeline) as PostgreSQL replays them. */
export function compareSegmentNames(a: string, b: string): number {
  const ka = a.slice(8, 24) + a.slice(0, 8);
  const kb = b.slice(8, 24) + b.slice(0, 8);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
