import { ProtocolError, ReplicationSlotError, UsageError } from '../../../../src/errors';
import {
  checkSlotName,
  createPhysicalSlotCommand,
  parseIdentifySystem,
  parseReadReplicationSlot,
  parseTimelineEnd,
  parseTimelineHistory,
  readReplicationSlotCommand,
  showBytes,
  slotErrorFor,
  startPhysicalReplicationCommand,
  timelineHistoryCommand,
} from '../../../../src/postgres/replication/commands';

describe('walsender commands', () => {
  it('builds the command texts', () => {
    expect(createPhysicalSlotCommand('barman', { reserveWal: true })).toBe('CREATE_REPLICATION_SLOT barman PHYSICAL RESERVE_WAL');
    expect(createPhysicalSlotCommand('barman', { reserveWal: false })).toBe('CREATE_REPLICATION_SLOT barman PHYSICAL');
    expect(readReplicationSlotCommand('walts_1')).toBe('READ_REPLICATION_SLOT walts_1');
    expect(timelineHistoryCommand(16)).toBe('TIMELINE_HISTORY 16');
    expect(startPhysicalReplicationCommand({ slot: 'barman', start: 0x1_0300_0000n, timeline: 3 })).toBe('START_REPLICATION SLOT barman PHYSICAL 1/3000000 TIMELINE 3');
  });

  test.each(['', 'Barman', 'a-b', 'x; DROP_REPLICATION_SLOT y', 'a b', 'x'.repeat(64), 'é'])('refuses the slot name %j before sending anything', (name) => {
    expect(() => checkSlotName(name)).toThrow(UsageError);
    expect(() => startPhysicalReplicationCommand({ slot: name, start: 0n, timeline: 1 })).toThrow(/replication slot name .* is invalid/);
  });

  it('accepts the longest slot name', () => {
    expect(checkSlotName('a'.repeat(63))).toBe('a'.repeat(63));
  });

  test.each([0, -1, 1.5, 2 ** 32])('refuses timeline %p', (tli) => {
    expect(() => timelineHistoryCommand(tli)).toThrow(RangeError);
  });
});

describe('walsender results', () => {
  it('IDENTIFY_SYSTEM: system id as text (above 2^53), timeline, flush position', () => {
    expect(parseIdentifySystem([['7449876543210987654', '1', '0/3000148', null]])).toEqual({ systemId: '7449876543210987654', timeline: 1, xlogPos: 0x3000148n });
  });

  test.each([
    ['no row', [], /expected one row, got 0/],
    ['two rows', [['1', '1', '0/0', null], ['1', '1', '0/0', null]], /expected one row, got 2/],
    ['too few columns', [['1', '1']], /expected 4 columns, got 2/],
    ['a system id that is not a number', [['x', '1', '0/0', null]], /not a system identifier/],
    ['timeline 0', [['1', '0', '0/0', null]], /not a timeline ID: "0"/],
    ['a position that is not an LSN', [['1', '1', '0-0', null]], /not an LSN: "0-0"/],
  ])('IDENTIFY_SYSTEM refuses %s', (_what, rows, message) => {
    expect(() => parseIdentifySystem(rows as (string | null)[][])).toThrow(ProtocolError);
    expect(() => parseIdentifySystem(rows as (string | null)[][])).toThrow(message);
  });

  it('READ_REPLICATION_SLOT: absent, reserving, not reserving, logical', () => {
    expect(parseReadReplicationSlot('s', [[null, null, null]])).toBeUndefined();
    expect(parseReadReplicationSlot('s', [['physical', '0/2000028', '1']])).toEqual({ type: 'physical', restartLsn: 0x2000028n, restartTimeline: 1 });
    expect(parseReadReplicationSlot('s', [['physical', null, null]])).toEqual({ type: 'physical', restartLsn: undefined, restartTimeline: undefined });
    expect(() => parseReadReplicationSlot('s', [['logical', '0/1', '1']])).toThrow(ReplicationSlotError);
  });

  it('TIMELINE_HISTORY: the file of the timeline asked for', () => {
    const content = '1\t0/5000000\tno recovery target specified\n';
    expect(parseTimelineHistory(2, [['00000002.history', content]])).toEqual({ fileName: '00000002.history', content: Buffer.from(content) });
    expect(() => parseTimelineHistory(2, [['00000003.history', content]])).toThrow(/named the file "00000003.history", expected 00000002.history/);
    expect(() => parseTimelineHistory(2, [['00000002.history', null]])).toThrow(/no content/);
  });

  it('the end of a historic timeline: next timeline and its start', () => {
    expect(parseTimelineEnd([['2', '0/5000A0']])).toEqual({ nextTimeline: 2, nextTimelineStart: 0x5000a0n });
    expect(() => parseTimelineEnd([['two', '0/5000A0']])).toThrow(ProtocolError);
  });
});

describe('slot errors', () => {
  it('a slot in use names the process holding it, in one line', () => {
    const e = slotErrorFor('barman', '55006', 'replication slot "barman" is active for PID 4242')!;
    expect(e).toBeInstanceOf(ReplicationSlotError);
    expect(e.reason).toBe('in-use');
    expect(e.activePid).toBe(4242);
    expect(e.kind).toBe('usage');
    expect(e.message).toBe(
      'replication slot "barman" is in use by another connection (server process 4242): refusing to be a second receiver on it, since two receivers on one slot lose WAL (server: replication slot "barman" is active for PID 4242)',
    );
  });

  it('is recognised by SQLSTATE even when the server speaks another language', () => {
    const e = slotErrorFor('barman', '55006', 'le slot de réplication « barman » est actif pour le PID 4242\n')!;
    expect(e.reason).toBe('in-use');
    expect(e.activePid).toBe(4242);
    expect(e.message).not.toContain('\n');
  });

  test.each([
    ['42704', 'replication slot "barman" does not exist', 'missing'],
    ['42710', 'replication slot "barman" already exists', 'exists'],
    ['55000', 'cannot use a logical replication slot for physical replication', 'wrong-type'],
  ])('SQLSTATE %s: %s', (state, message, reason) => {
    expect(slotErrorFor('barman', state, message)?.reason).toBe(reason);
  });

  it('other failures are not slot errors', () => {
    expect(slotErrorFor('barman', '58P01', 'requested WAL segment 000000010000000000000003 has already been removed')).toBeUndefined();
    expect(slotErrorFor('barman', undefined, 'Connection terminated unexpectedly')).toBeUndefined();
  });
});

describe('SHOW values in bytes', () => {
  test('the units SHOW prints; anything else is NaN', () => {
    expect(showBytes('16MB')).toBe(16 * 1024 * 1024);
    expect(showBytes('1GB')).toBe(1024 ** 3);
    expect(showBytes('512kB')).toBe(512 * 1024);
    expect(showBytes('8192')).toBe(8192);
    for (const bad of ['x', '', '16 MiB', '-1MB']) expect(showBytes(bad)).toBeNaN();
  });
});
