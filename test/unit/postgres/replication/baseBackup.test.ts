/**
 * BASE_BACKUP's command, result sets and copy messages (PostgreSQL 15, basebackup_copy.c), parsed
 * from bytes laid out as the server sends them.
 */
import { ProtocolError, UsageError } from '../../../../src/errors';
import { baseBackupCommand, parseBackupPosition, parseBaseBackupMessage, parseTablespaceList } from '../../../../src/postgres/replication/baseBackup';

const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.alloc(1)]);

describe('baseBackupCommand', () => {
  it('asks for progress, the checkpoint kind, no WAL, no server wait, no manifest and a tablespace map', () => {
    expect(baseBackupCommand({ label: 'walts backup 2026-12-03T07:00:00.000Z', fast: true })).toBe(
      "BASE_BACKUP (LABEL 'walts backup 2026-12-03T07:00:00.000Z', PROGRESS, CHECKPOINT 'fast', WAL false, WAIT false, MANIFEST 'no', TABLESPACE_MAP true)",
    );
    expect(baseBackupCommand({ label: 'x', fast: false })).toContain("CHECKPOINT 'spread'");
  });
  it("doubles quotes in the label and refuses one that is not one line", () => {
    expect(baseBackupCommand({ label: "it's", fast: true })).toContain("LABEL 'it''s'");
    expect(() => baseBackupCommand({ label: 'a\nSTART WAL LOCATION: 0/0', fast: true })).toThrow(UsageError);
    expect(() => baseBackupCommand({ label: 'x'.repeat(1025), fast: true })).toThrow(UsageError);
  });
});

describe('result sets', () => {
  it('start and end positions: recptr text and tli', () => {
    expect(parseBackupPosition('start', [['0/2000028', '1']])).toEqual({ lsn: 0x2000028n, timeline: 1 });
    expect(parseBackupPosition('end', [['1A/FF000100', '4294967295']])).toEqual({ lsn: (0x1an << 32n) | 0xff000100n, timeline: 0xffffffff });
  });
  it.each([[[]], [[['0/1', '1'], ['0/2', '1']]], [[['nope', '1']]], [[['0/1', '0']]], [[['0/1', null]]], [[['0/1']]]])('refuses %j', (rows) => {
    expect(() => parseBackupPosition('start', rows as never)).toThrow(ProtocolError);
  });
  it('tablespace list: tablespaces, then the data directory with NULL oid and location; KiB to bytes', () => {
    expect(
      parseTablespaceList([
        ['16384', '/srv/ts1', '120'],
        [null, null, '30000'],
      ]),
    ).toEqual([
      { oid: 16384, location: '/srv/ts1', sizeBytes: 120 * 1024 },
      { oid: undefined, location: undefined, sizeBytes: 30000 * 1024 },
    ]);
    expect(parseTablespaceList([[null, null, null]])).toEqual([{ oid: undefined, location: undefined, sizeBytes: undefined }]);
  });
  it.each([
    ['no data directory row', [['16384', '/ts', '1']]],
    ['two data directory rows', [[null, null, '1'], [null, null, '1']]],
    ['an OID without a location', [['16384', null, '1'], [null, null, '1']]],
    ['a relative location', [['16384', 'ts', '1'], [null, null, '1']]],
    ['a bad OID', [['-1', '/ts', '1'], [null, null, '1']]],
    ['a tablespace twice', [['16384', '/a', '1'], ['16384', '/b', '1'], [null, null, '1']]],
    ['a bad size', [[null, null, '1e9']]],
  ])('tablespace list with %s is refused', (_what, rows) => {
    expect(() => parseTablespaceList(rows as never)).toThrow(ProtocolError);
  });
});

describe('parseBaseBackupMessage', () => {
  it("'n': a new archive with its name and tablespace location ('' for the data directory)", () => {
    expect(parseBaseBackupMessage(Buffer.concat([Buffer.from('n'), cstr('16384.tar'), cstr('/srv/ts1')]))).toEqual({ type: 'archive', name: '16384.tar', location: '/srv/ts1' });
    expect(parseBaseBackupMessage(Buffer.concat([Buffer.from('n'), cstr('base.tar'), cstr('')]))).toEqual({ type: 'archive', name: 'base.tar', location: '' });
  });
  it("'d': the bytes after the type byte, as a view", () => {
    const payload = Buffer.from('dtar bytes');
    const m = parseBaseBackupMessage(payload);
    expect(m).toEqual({ type: 'data', data: Buffer.from('tar bytes') });
    expect(m.type === 'data' && m.data.buffer).toBe(payload.buffer);
  });
  it("'p': Int64 bytes done; 'm': the manifest begins", () => {
    const p = Buffer.alloc(9);
    p[0] = 0x70;
    p.writeBigInt64BE(123_456_789_012n, 1);
    expect(parseBaseBackupMessage(p)).toEqual({ type: 'progress', bytes: 123_456_789_012 });
    expect(parseBaseBackupMessage(Buffer.from('m'))).toEqual({ type: 'manifest' });
  });
  it.each([
    ['empty', Buffer.alloc(0)],
    ['unknown type', Buffer.from('zabc')],
    ['a new archive with one string', Buffer.concat([Buffer.from('n'), cstr('base.tar')])],
    ['a new archive with trailing bytes', Buffer.concat([Buffer.from('n'), cstr('base.tar'), cstr(''), Buffer.from('x')])],
    ['a short progress message', Buffer.from('p1234')],
    ['a negative progress', Buffer.concat([Buffer.from('p'), Buffer.alloc(8, 0xff)])],
    ['a manifest message with data', Buffer.from('mx')],
  ])('refuses %s', (_what, payload) => {
    expect(() => parseBaseBackupMessage(payload)).toThrow(ProtocolError);
  });
});
