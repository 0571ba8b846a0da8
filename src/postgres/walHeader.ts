/**
 * Reads the long page header at the start of every WAL segment (XLogLongPageHeaderData in
 * `access/xlog_internal.h`). Pure: takes the first bytes of a segment.
 *
 *   offset  field             type
 *        0  xlp_magic         uint16   XLOG_PAGE_MAGIC, changes with every WAL format change
 *        2  xlp_info          uint16   flag bits; XLP_LONG_HEADER (0x0002) on a segment's first page
 *        4  xlp_tli           uint32   timeline of the first record on the page
 *        8  xlp_pageaddr      uint64   LSN of this page
 *       16  xlp_rem_len       uint32
 *       24  xlp_sysid         uint64   pg_control's system identifier
 *       32  xlp_seg_size      uint32
 *       36  xlp_xlog_blcksz   uint32
 *
 * WAL is written in the server's byte order; every platform PostgreSQL 15 ships on in practice is
 * little-endian, and a big-endian file is recognised by its magic read the other way.
 */

export const LONG_HEADER_SIZE = 40;
const XLP_LONG_HEADER = 0x0002;

/** XLOG_PAGE_MAGIC per major version, from each release's xlog_internal.h. */
const MAGIC_TO_MAJOR: ReadonlyMap<number, number> = new Map([
  [0xd093, 9.6],
  [0xd097, 10],
  [0xd098, 11],
  [0xd101, 12],
  [0xd106, 13],
  [0xd10d, 14],
  [0xd110, 15],
  [0xd113, 16],
  [0xd116, 17],
  [0xd118, 18],
]);
/** Anything older than 9.6 is not a WAL format walts knows; WAL-G uses the same floor idea. */
const MIN_MAGIC = 0xd093;

export interface WalSegmentHeader {
  readonly magic: number;
  /** The major version the magic belongs to, when it is one walts knows. */
  readonly pgMajor?: number;
  readonly timeline: number;
  readonly pageAddress: bigint;
  /** Decimal string: a uint64 does not fit a JS number. */
  readonly systemIdentifier: string;
  readonly segmentSize: number;
  readonly blockSize: number;
}

/** Returns the header, or a one-line reason why these bytes are not the start of a WAL segment. */
export function parseWalSegmentHeader(buf: Buffer): WalSegmentHeader | string {
  if (buf.length < LONG_HEADER_SIZE) return `too short for a WAL page header (${buf.length} bytes)`;
  const le = buf.readUInt16LE(0) >= MIN_MAGIC && buf.readUInt16LE(0) <= 0xd1ff;
  const be = !le && buf.readUInt16BE(0) >= MIN_MAGIC && buf.readUInt16BE(0) <= 0xd1ff;
  if (!le && !be) return `bad WAL page magic 0x${buf.readUInt16LE(0).toString(16)}`;
  const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const u64 = (o: number) => (le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o));
  const magic = u16(0);
  if ((u16(2) & XLP_LONG_HEADER) === 0) return 'first page has no long header (not the start of a segment)';
  return {
    magic,
    pgMajor: MAGIC_TO_MAJOR.get(magic),
    timeline: u32(4),
    pageAddress: u64(8),
    systemIdentifier: u64(24).toString(),
    segmentSize: u32(32),
    blockSize: u32(36),
  };
}

/** The WAL page magic a major version writes (for recording a cluster before it archived anything). */
export function magicForMajor(major: number): number | undefined {
  for (const [magic, m] of MAGIC_TO_MAJOR) if (m === major) return magic;
  return undefined;
}
