import { latestDrills, parseDrillRecord, writeDrillRecord, type DrillRecord } from '../../src/archive/drillRecord';
import { drillKey, parseDrillKey } from '../../src/archive/layout';
import { MemoryStorage } from '../../src/storage/memory';

const BACKUP = 'base_000000010000000000000004_00000028';

function record(startedAt: string, ok: boolean): DrillRecord {
  return {
    format: 1,
    backup: BACKUP,
    ok,
    started_at: startedAt,
    finished_at: startedAt,
    duration_seconds: 12.5,
    target: { kind: 'end' },
    reached_lsn: ok ? '0/5000060' : null,
    reached_timeline: ok ? 1 : null,
    reached_time: null,
    checks: [{ name: 'replay', ok, detail: ok ? 'reached 0/5000060' : 'segment 000000010000000000000005 missing' }],
    error: ok ? null : 'segment 000000010000000000000005 missing',
    hostname: 'db1',
    walts_version: '0.1.0',
  };
}

describe('drill records', () => {
  test('keys sort by start time and name their backup', () => {
    const a = drillKey(Date.parse('2026-12-02T09:00:00.005Z'), BACKUP);
    const b = drillKey(Date.parse('2026-12-02T10:00:00.000Z'), BACKUP);
    expect(a).toBe(`walts_v1/drills/drill_20261202T090000005Z_${BACKUP}.json`);
    expect(a < b).toBe(true);
    expect(parseDrillKey(a)).toEqual({ stamp: '20261202T090000005Z', backup: BACKUP });
    expect(parseDrillKey('walts_v1/drills/../x.json')).toBeUndefined();
    expect(() => drillKey(0, '../etc')).toThrow(RangeError);
  });

  test('latest drill and latest successful drill, newest first; foreign and corrupt keys are reported, not trusted', async () => {
    const storage = new MemoryStorage();
    await writeDrillRecord(storage, record('2026-12-01T03:00:00.000Z', true));
    await writeDrillRecord(storage, record('2026-12-02T03:00:00.000Z', false));
    await storage.put(`walts_v1/drills/drill_20261202T040000000Z_${BACKUP}.json`, Buffer.from('{"format":1,"ok":true}'));
    await storage.put('walts_v1/drills/README', Buffer.from('x'));
    const latest = await latestDrills(storage);
    expect(latest.last?.started_at).toBe('2026-12-02T03:00:00.000Z');
    expect(latest.last?.ok).toBe(false);
    expect(latest.lastSuccess?.started_at).toBe('2026-12-01T03:00:00.000Z');
    expect(latest.count).toBe(3);
    expect(latest.invalid).toHaveLength(2);
  });

  test('a record is never overwritten', async () => {
    const storage = new MemoryStorage();
    await writeDrillRecord(storage, record('2026-12-01T03:00:00.000Z', true));
    await expect(writeDrillRecord(storage, record('2026-12-01T03:00:00.000Z', false))).rejects.toThrow();
  });

  test('a record claiming success with a failed check, or for another backup, is refused', () => {
    const bad = { ...record('2026-12-01T03:00:00.000Z', true), checks: [{ name: 'sql', ok: false, detail: 'x' }] };
    expect(parseDrillRecord(Buffer.from(JSON.stringify(bad)), BACKUP)).toBeUndefined();
    const good = record('2026-12-01T03:00:00.000Z', true);
    expect(parseDrillRecord(Buffer.from(JSON.stringify(good)), BACKUP)).toEqual(good);
    expect(parseDrillRecord(Buffer.from(JSON.stringify(good)), 'base_000000010000000000000009_00000028')).toBeUndefined();
    expect(parseDrillRecord(Buffer.from('not json'), BACKUP)).toBeUndefined();
  });
});
