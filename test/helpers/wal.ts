import { randomBytes } from 'node:crypto';
import { parseSegmentName, segmentStartLsn } from '../../src/postgres/walName';

/**
 * A synthetic WAL segment that passes walts' checks: a valid long page header for its position,
 * then compressible filler (like real WAL) with a random tail so that two calls differ.
 */
export function fakeSegment(name: string, opts: { sysid?: bigint; segSize?: number; magic?: number; seed?: string } = {}): Buffer {
  const segSize = opts.segSize ?? 1024 * 1024;
  const buf = Buffer.alloc(segSize);
  buf.writeUInt16LE(opts.magic ?? 0xd110, 0);
  buf.writeUInt16LE(0x0002, 2);
  buf.writeUInt32LE(parseInt(name.slice(0, 8), 16), 4);
  buf.writeBigUInt64LE(segmentStartLsn(parseSegmentName(name.slice(0, 24), segSize), segSize), 8);
  buf.writeBigUInt64LE(opts.sysid ?? 7301234567890123456n, 24);
  buf.writeUInt32LE(segSize, 32);
  buf.writeUInt32LE(8192, 36);
  const filler = Buffer.from(`walts test ${opts.seed ?? ''} `);
  for (let o = 64; o < segSize - 4096; o += filler.length) filler.copy(buf, o);
  randomBytes(1024).copy(buf, segSize - 1024);
  return buf;
}
