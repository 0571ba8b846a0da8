/**
 * A receiver's record read back from the store (src/archive/receiverRecord.ts): untrusted JSON, so
 * anything but a whole record of the slot asked for counts as no record.
 */
import { receiverRecordKey } from '../../../src/archive/layout';
import { feedingSlots } from '../../../src/archive/receivedPartials';
import { parseReceiverRecord, readReceiverRecord, writeReceiverRecord, type ReceiverRecord } from '../../../src/archive/receiverRecord';
import { MemoryStorage } from '../../../src/storage/memory';

const REC: ReceiverRecord = { slot: 'rx', system_identifier: '7301234567890123456', timeline: 2, host: 'backup1', pid: 4242, started_at: '2026-12-03T08:00:00.000Z', walts_version: '0.1.0' };
const bytes = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('receiver record', () => {
  it('round-trips through the store as plain JSON; none when absent', async () => {
    const store = new MemoryStorage();
    expect(await readReceiverRecord(store, 'rx')).toBeUndefined();
    await writeReceiverRecord(store, REC);
    expect(JSON.parse(store.objects.get(receiverRecordKey('rx'))!.data.toString('utf8'))).toEqual(REC);
    expect(await readReceiverRecord(store, 'rx')).toEqual(REC);
  });

  it.each([
    ['another slot', { ...REC, slot: 'other' }],
    ['a numeric system id', { ...REC, system_identifier: 7301234567890123456 }],
    ['a system id that is not decimal', { ...REC, system_identifier: '0x1f' }],
    ['timeline 0', { ...REC, timeline: 0 }],
    ['no pid', { ...REC, pid: undefined }],
    ['a start time that is no time', { ...REC, started_at: 'yesterday' }],
    ['an array', [REC]],
    ['null', null],
  ])('refuses %s', (_what, v) => {
    expect(parseReceiverRecord(bytes(v), 'rx')).toBeUndefined();
  });

  it('refuses what is not JSON, or too big to be a record', async () => {
    expect(parseReceiverRecord(Buffer.from('{"slot":'), 'rx')).toBeUndefined();
    const store = new MemoryStorage();
    await store.put(receiverRecordKey('rx'), bytes({ ...REC, host: 'x'.repeat(100_000) }));
    expect(await readReceiverRecord(store, 'rx')).toBeUndefined();
  });

  it('feedingSlots: the slots whose record names the system, not others', async () => {
    const store = new MemoryStorage();
    await writeReceiverRecord(store, REC);
    await writeReceiverRecord(store, { ...REC, slot: 'foreign', system_identifier: '42' });
    expect([...(await feedingSlots(store, REC.system_identifier))]).toEqual(['rx']);
    expect([...(await feedingSlots(store, '42'))]).toEqual(['foreign']);
  });
});
