import { IntegrityError } from '../../../src/errors';
import { settingBytes } from '../../../src/postgres/backupApi';
import { backupHistoryFileName, labelTimeToIso, parseBackupLabel, startWalFileName, stopWalFileName } from '../../../src/postgres/backupLabel';

const MiB = 1024 * 1024;

// Byte for byte what PostgreSQL 15.18 returned from pg_backup_stop(false) on a primary and a standby
// (captured from the integration harness), and what PG 13 (non-exclusive) and PG 12 (exclusive,
// BACKUP FROM: master) labels look like. PG 10 and older have no START TIMELINE line.
const PG15_PRIMARY =
  'START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n' +
  'CHECKPOINT LOCATION: 0/2000060\n' +
  'BACKUP METHOD: streamed\n' +
  'BACKUP FROM: primary\n' +
  'START TIME: 2026-11-21 22:21:06 UTC\n' +
  'LABEL: x\n' +
  'START TIMELINE: 1\n';
const PG15_STANDBY =
  'START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n' +
  'CHECKPOINT LOCATION: 0/4000060\n' +
  'BACKUP METHOD: streamed\n' +
  'BACKUP FROM: standby\n' +
  'START TIME: 2026-11-21 22:21:07 UTC\n' +
  'LABEL: sb\n' +
  'START TIMELINE: 1\n';
const PG13_NONEXCLUSIVE =
  'START WAL LOCATION: 2/A8000028 (file 0000000300000002000000A8)\n' +
  'CHECKPOINT LOCATION: 2/A8000060\n' +
  'BACKUP METHOD: streamed\n' +
  'BACKUP FROM: primary\n' +
  'START TIME: 2021-03-15 10:12:33 CET\n' +
  'LABEL: walts backup 2021-03-15T09:12:30.000Z\n' +
  'START TIMELINE: 3\n';
const PG12_EXCLUSIVE_MASTER =
  'START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\n' +
  'CHECKPOINT LOCATION: 0/9000060\n' +
  'BACKUP METHOD: pg_start_backup\n' +
  'BACKUP FROM: master\n' +
  'START TIME: 2020-01-02 03:04:05 +05\n' +
  'LABEL: nightly: with a colon\n' +
  'START TIMELINE: 1\n';
const PG10_NO_TIMELINE =
  'START WAL LOCATION: 0/B000028 (file 00000002000000000000000B)\n' +
  'CHECKPOINT LOCATION: 0/B000060\n' +
  'BACKUP METHOD: streamed\n' +
  'BACKUP FROM: master\n' +
  'START TIME: 2019-06-01 00:00:00 GMT\n' +
  'LABEL: old\n';
const PG17_INCREMENTAL =
  PG15_PRIMARY + 'INCREMENTAL FROM LSN: 0/1000028\n' + 'INCREMENTAL FROM TLI: 1\n';

describe('parseBackupLabel: real labels', () => {
  test.each([
    [
      'PG 15 primary',
      PG15_PRIMARY,
      {
        startLsn: '0/2000028',
        startWalFile: '000000010000000000000002',
        startTimeline: 1,
        checkpointLsn: '0/2000060',
        backupMethod: 'streamed',
        backupFrom: 'primary',
        fromStandby: false,
        label: 'x',
        startTime: '2026-11-21 22:21:06 UTC',
        startTimeIso: '2026-11-21T22:21:06.000Z',
        extra: {},
      },
    ],
    [
      'PG 15 standby',
      PG15_STANDBY,
      { startLsn: '0/4000028', startWalFile: '000000010000000000000004', startTimeline: 1, backupFrom: 'standby', fromStandby: true, label: 'sb' },
    ],
    [
      'PG 13 non-exclusive, timeline 3, CET',
      PG13_NONEXCLUSIVE,
      {
        startLsn: '2/A8000028',
        startWalFile: '0000000300000002000000A8',
        startTimeline: 3,
        checkpointLsn: '2/A8000060',
        label: 'walts backup 2021-03-15T09:12:30.000Z',
        startTime: '2021-03-15 10:12:33 CET',
        startTimeIso: undefined, // a zone abbreviation cannot be converted safely
      },
    ],
    [
      'PG 12 exclusive, BACKUP FROM: master, numeric zone, colon in label',
      PG12_EXCLUSIVE_MASTER,
      {
        backupMethod: 'pg_start_backup',
        backupFrom: 'master',
        fromStandby: false,
        label: 'nightly: with a colon',
        startTimeIso: '2020-01-01T22:04:05.000Z',
      },
    ],
    ['PG 10 without START TIMELINE', PG10_NO_TIMELINE, { startTimeline: 2, startWalFile: '00000002000000000000000B', startTimeIso: '2019-06-01T00:00:00.000Z' }],
    ['PG 17 incremental lines are kept', PG17_INCREMENTAL, { startLsn: '0/2000028', extra: { 'INCREMENTAL FROM LSN': '0/1000028', 'INCREMENTAL FROM TLI': '1' } }],
    ['CRLF line ends', PG15_PRIMARY.replace(/\n/g, '\r\n'), { startLsn: '0/2000028', label: 'x' }],
    ['no trailing newline', PG15_PRIMARY.trimEnd(), { startTimeline: 1 }],
  ])('%s', (_name, text, expected) => {
    expect(parseBackupLabel(text)).toMatchObject(expected);
  });

  test('checks the start file against the segment size when given', () => {
    expect(parseBackupLabel(PG15_PRIMARY, { walSegmentSize: 16 * MiB }).startWalFile).toBe('000000010000000000000002');
    // With 1 MiB segments 0/2000028 is in segment 0x20.
    expect(() => parseBackupLabel(PG15_PRIMARY, { walSegmentSize: 1 * MiB })).toThrow(/expected 000000010000000000000020/);
  });

  test('LSNs are canonical upper case', () => {
    const l = parseBackupLabel(PG13_NONEXCLUSIVE.replace('2/A8000028 (', '2/a8000028 ('));
    expect(l.startLsn).toBe('2/A8000028');
  });
});

describe('parseBackupLabel: refuses what recovery would refuse', () => {
  const replace = (from: string, to: string) => PG15_PRIMARY.replace(from, to);
  test.each([
    ['empty', '', /START WAL LOCATION is missing/],
    ['no START WAL LOCATION', PG15_PRIMARY.split('\n').slice(1).join('\n'), /START WAL LOCATION is missing/],
    ['no CHECKPOINT LOCATION', replace('CHECKPOINT LOCATION: 0/2000060\n', ''), /CHECKPOINT LOCATION is missing/],
    ['malformed start', replace('0/2000028 (file', '0/20000Z8 (file'), /malformed START WAL LOCATION/],
    ['lower-case file name', replace('(file 000000010000000000000002)', '(file 00000001000000000000000a)'), /malformed START WAL LOCATION/],
    ['missing file part', replace(' (file 000000010000000000000002)', ''), /malformed START WAL LOCATION/],
    ['malformed checkpoint', replace('CHECKPOINT LOCATION: 0/2000060', 'CHECKPOINT LOCATION: nowhere'), /malformed CHECKPOINT LOCATION/],
    ['checkpoint before start', replace('CHECKPOINT LOCATION: 0/2000060', 'CHECKPOINT LOCATION: 0/1000060'), /precedes START WAL LOCATION/],
    ['timeline mismatch', replace('START TIMELINE: 1', 'START TIMELINE: 2'), /does not match the timeline/],
    ['malformed timeline', replace('START TIMELINE: 1', 'START TIMELINE: one'), /malformed START TIMELINE/],
    ['timeline 0', PG10_NO_TIMELINE.replace('(file 00000002', '(file 00000000'), /invalid timeline 0/],
    ['a line that is not KEY: value', PG15_PRIMARY + 'garbage\n', /unexpected line/],
    ['duplicate line', PG15_PRIMARY + 'LABEL: again\n', /duplicate line LABEL/],
  ])('%s', (_name, text, message) => {
    expect(() => parseBackupLabel(text)).toThrow(IntegrityError);
    expect(() => parseBackupLabel(text)).toThrow(message);
  });
});

describe('labelTimeToIso', () => {
  test.each([
    ['2026-11-21 22:17:38 UTC', '2026-11-21T22:17:38.000Z'],
    ['2026-11-21 22:17:38 GMT', '2026-11-21T22:17:38.000Z'],
    ['2026-11-21 22:17:38 +0530', '2026-11-21T16:47:38.000Z'],
    ['2026-11-21 22:17:38 -03', '2026-11-22T01:17:38.000Z'],
    ['2026-11-21 22:17:38 CEST', undefined],
    ['yesterday', undefined],
  ])('%s', (text, iso) => {
    expect(labelTimeToIso(text)).toBe(iso);
  });
});

describe('WAL files of a backup', () => {
  // stopWalFileName mirrors pg_walfile_name() (XLByteToPrevSeg): a stop LSN is the end of the last
  // needed record, so a boundary LSN belongs to the segment before it. The integration test checks
  // these against a live server's pg_walfile_name().
  test.each([
    ['0/2000100', 1, 16 * MiB, '000000010000000000000002'],
    ['0/3000000', 1, 16 * MiB, '000000010000000000000002'], // exactly on a boundary: previous segment
    ['0/3000001', 1, 16 * MiB, '000000010000000000000003'],
    ['0/5000000', 1, 16 * MiB, '000000010000000000000004'], // seen as a standby's stop LSN
    ['1/0', 2, 16 * MiB, '0000000200000000000000FF'], // boundary across a log id
    ['1/1', 2, 16 * MiB, '000000020000000100000000'],
    ['0/100000', 1, 1 * MiB, '000000010000000000000000'],
    ['0/100001', 1, 1 * MiB, '000000010000000000000001'],
    ['0/4000000', 3, 64 * MiB, '000000030000000000000000'], // one 64 MiB segment
    ['0/40000000', 3, 64 * MiB, '00000003000000000000000F'],
  ])('stop %s on timeline %d with %d-byte segments: %s', (lsn, tli, seg, name) => {
    expect(stopWalFileName(lsn, tli, seg)).toBe(name);
  });

  test('a stop LSN of 0/0 has no segment', () => {
    expect(() => stopWalFileName('0/0', 1)).toThrow(RangeError);
  });

  test.each([
    ['0/2000028', 1, 16 * MiB, '000000010000000000000002'],
    ['0/3000000', 1, 16 * MiB, '000000010000000000000003'], // a record starting on a boundary is in the new segment
    ['2/A8000028', 3, 16 * MiB, '0000000300000002000000A8'],
    ['0/2000028', 1, 1 * MiB, '000000010000000000000020'],
  ])('start %s on timeline %d with %d-byte segments: %s', (lsn, tli, seg, name) => {
    expect(startWalFileName(lsn, tli, seg)).toBe(name);
  });

  test('backup history file name: start segment on the stop timeline, start offset', () => {
    expect(backupHistoryFileName('0/2000028', 1)).toBe('000000010000000000000002.00000028.backup');
    expect(backupHistoryFileName('2/A8F12340', 3)).toBe('0000000300000002000000A8.00F12340.backup');
    expect(backupHistoryFileName('0/2000028', 1, 1 * MiB)).toBe('000000010000000000000020.00000028.backup');
  });
});

describe('settingBytes (pg_settings setting + unit)', () => {
  test.each([
    ['16777216', 'B', 16 * MiB], // PG 11+ wal_segment_size
    ['2048', '8kB', 16 * MiB], // PG 9.6/10 wal_segment_size in XLOG_BLCKSZ units
    ['8192', null, 8192], // block_size has no unit
    ['4', 'MB', 4 * MiB],
    ['1', 'GB', 1024 * MiB],
  ])('%s %s = %d', (setting, unit, bytes) => {
    expect(settingBytes(setting, unit)).toBe(bytes);
  });

  test.each([
    ['16MB', 'B'],
    ['', 'B'],
    ['16', 'parsecs'],
  ])('refuses %s %s', (setting, unit) => {
    expect(() => settingBytes(setting, unit)).toThrow(RangeError);
  });
});
