import {
  compareSegmentNames,
  formatLsn,
  isValidSegmentSize,
  lsnToSegment,
  nextSegment,
  parseLsn,
  parseSegmentName,
  parseWalFileName,
  segmentName,
  segmentStartLsn,
} from '../../../src/postgres/walName';

const MiB = 1024 * 1024;

describe('WAL file name grammar', () => {
  test.each([
    ['000000010000000000000001', 'segment', 1],
    ['00000002000000A3000000FF', 'segment', 2],
    ['000000010000000000000001.partial', 'partial', 1],
    ['00000003.history', 'history', 3],
    ['000000010000000000000002.00000028.backup', 'backup-history', 1],
  ])('accepts %s as %s on timeline %d', (name, kind, timeline) => {
    expect(parseWalFileName(name)).toMatchObject({ name, kind, timeline });
  });

  test.each([
    '',
    'foo',
    '../x',
    '../../etc/passwd',
    '00000001000000000000000a', // lower-case hex
    '0000000100000000000000001', // 25 digits
    '00000001000000000000001',
    '000000010000000000000001.PARTIAL',
    '000000010000000000000001.lz4',
    '00000003.History',
    '0000003.history',
    'pg_wal/000000010000000000000001',
    '000000010000000000000001\0',
    '000000010000000000000001/',
    ' 000000010000000000000001',
    '000000010000000000000002.0000028.backup',
  ])('refuses %j', (name) => {
    expect(parseWalFileName(name)).toBeUndefined();
  });
});

describe('segment arithmetic', () => {
  // [current, next, segment size]: rollover of the segment within a log id depends on the size.
  test.each([
    ['000000010000000000000051', '000000010000000000000052', 16 * MiB],
    ['0000000100000001000000FF', '000000010000000200000000', 16 * MiB],
    ['00000001FFFFFFFE000000FF', '00000001FFFFFFFF00000000', 16 * MiB],
    ['00000002000000000000003F', '000000020000000100000000', 64 * MiB],
    ['000000010000000000000FFF', '000000010000000100000000', 1 * MiB],
    ['000000010000000000000003', '000000010000000100000000', 1024 * MiB],
  ])('next(%s) = %s with %d-byte segments', (cur, next, size) => {
    expect(segmentName(nextSegment(parseSegmentName(cur, size)), size)).toBe(next);
  });

  it('refuses a segment number beyond what the segment size allows', () => {
    expect(() => parseSegmentName('000000010000000000000100', 16 * MiB)).toThrow(RangeError);
    expect(() => parseSegmentName('000000010000000000000004', 1024 * MiB)).toThrow(RangeError);
  });

  test.each([
    ['0/3000060', 1, 16 * MiB, '000000010000000000000003'],
    ['1/FF000000', 2, 16 * MiB, '0000000200000001000000FF'],
    ['A3/0', 1, 16 * MiB, '00000001000000A300000000'],
    ['0/8000000', 1, 64 * MiB, '000000010000000000000002'],
  ])('LSN %s on timeline %d is in %s', (lsn, tli, size, name) => {
    expect(segmentName(lsnToSegment(parseLsn(lsn), tli, size), size)).toBe(name);
  });

  it('round-trips LSNs and segment starts', () => {
    expect(formatLsn(parseLsn('16/B374D848'))).toBe('16/B374D848');
    expect(formatLsn(segmentStartLsn(parseSegmentName('00000001000000160000000B')))).toBe('16/B000000');
    expect(() => parseLsn('16-B374D848')).toThrow(RangeError);
  });

  test.each([
    [1 * MiB, true],
    [16 * MiB, true],
    [1024 * MiB, true],
    [512 * 1024, false],
    [2048 * MiB, false],
    [24 * MiB, false],
    [0, false],
  ])('segment size %d valid: %s', (size, ok) => {
    expect(isValidSegmentSize(size)).toBe(ok);
  });

  it('orders names by position, then timeline', () => {
    const names = ['000000020000000000000003', '000000010000000000000004', '000000010000000000000003'];
    expect([...names].sort(compareSegmentNames)).toEqual(['000000010000000000000003', '000000020000000000000003', '000000010000000000000004']);
  });
});
