import { parseWalSegmentHeader } from '../../../src/postgres/walHeader';

/** Builds the 40-byte long page header the way PostgreSQL lays it out (little-endian). */
export function longHeader(opts: { magic?: number; info?: number; tli?: number; pageAddr?: bigint; sysid?: bigint; segSize?: number; blcksz?: number } = {}): Buffer {
  const b = Buffer.alloc(40);
  b.writeUInt16LE(opts.magic ?? 0xd110, 0);
  b.writeUInt16LE(opts.info ?? 0x0002, 2);
  b.writeUInt32LE(opts.tli ?? 1, 4);
  b.writeBigUInt64LE(opts.pageAddr ?? 0x3000000n, 8);
  b.writeBigUInt64LE(opts.sysid ?? 7301234567890123456n, 24);
  b.writeUInt32LE(opts.segSize ?? 16 * 1024 * 1024, 32);
  b.writeUInt32LE(opts.blcksz ?? 8192, 36);
  return b;
}

describe('WAL long page header', () => {
  it('reads the fields of a PostgreSQL 15 segment', () => {
    expect(parseWalSegmentHeader(longHeader())).toEqual({
      magic: 0xd110,
      pgMajor: 15,
      timeline: 1,
      pageAddress: 0x3000000n,
      systemIdentifier: '7301234567890123456',
      segmentSize: 16 * 1024 * 1024,
      blockSize: 8192,
    });
  });

  it('keeps system identifiers above 2^53 exact', () => {
    const h = parseWalSegmentHeader(longHeader({ sysid: 18446744073709551615n }));
    expect(typeof h !== 'string' && h.systemIdentifier).toBe('18446744073709551615');
  });

  test.each([
    ['zeros', Buffer.alloc(40)],
    ['text', Buffer.from('127.0.0.1 localhost\n'.repeat(4))],
    ['short', longHeader().subarray(0, 20)],
    ['no long header flag', longHeader({ info: 0 })],
    ['ancient magic', longHeader({ magic: 0xd07e })],
  ])('refuses %s', (_what, buf) => {
    expect(typeof parseWalSegmentHeader(buf)).toBe('string');
  });
});
