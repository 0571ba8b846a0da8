/**
 * backup-push's preflight (backupPush.ts checkArchiving): which server feeds the store. archive_command
 * counts; with archiving off, an active physical slot whose receiver record (receive/<slot>/receiver.json)
 * names this server's system identifier, with or without a partial beside it (an idle server right
 * after a segment switch has none); nothing is ever written to the server. A fake session and the memory store.
 */
import { checkArchiving } from '../../../src/ops/backupPush';
import { receivedPartialKey, receiverRecordKey } from '../../../src/archive/layout';
import { writeReceiverRecord } from '../../../src/archive/receiverRecord';
import { UsageError } from '../../../src/errors';
import { MemoryStorage } from '../../../src/storage/memory';

const SYSTEM = '7301234567890123456';

function session(opts: { mode: string; command?: string; active: string[] }) {
  const queries: string[] = [];
  return {
    queries,
    query: async <T>(sql: string): Promise<{ rows: T[]; rowCount: number }> => {
      queries.push(sql);
      const rows = (r: unknown[]) => ({ rows: r as T[], rowCount: r.length });
      if (sql.includes("current_setting('archive_mode'")) return rows([{ mode: opts.mode, command: opts.command ?? '', library: '' }]);
      if (sql.includes('pg_replication_slots')) return rows(opts.active.map((slot_name) => ({ slot_name })));
      if (sql.includes('pg_control_system')) return rows([{ id: SYSTEM }]);
      throw new Error(`unexpected query ${sql}`);
    },
  };
}

const record = (store: MemoryStorage, slot: string, systemId = SYSTEM) =>
  writeReceiverRecord(store, { slot, system_identifier: systemId, timeline: 1, host: 'db1', pid: 42, started_at: '2026-12-03T08:00:00.000Z', walts_version: '0.1.0' });
const partial = (store: MemoryStorage, slot: string) => store.put(receivedPartialKey(slot, '000000010000000000000003', '.lz4'), Buffer.from('x'));

describe('backup-push preflight: what feeds the store', () => {
  it('archive_command: nothing else asked', async () => {
    const s = session({ mode: 'on', command: 'walts wal-push %p', active: [] });
    expect(await checkArchiving(s, new MemoryStorage())).toEqual({ kind: 'archive_command' });
    expect(s.queries).toHaveLength(1);
  });

  it('archiving off, idle server: an active slot whose record names this cluster, with no partial; not a record of another slot', async () => {
    const store = new MemoryStorage();
    await record(store, 'other');
    await record(store, 'barman');
    const s = session({ mode: 'off', active: ['barman'] });
    expect(await checkArchiving(s, store)).toEqual({ kind: 'receiver', slot: 'barman' });
    expect(s.queries.some((q) => /txid_current|pg_switch_wal|checkpoint/i.test(q))).toBe(false);
    await expect(checkArchiving(session({ mode: 'off', active: ['third'] }), store)).rejects.toThrow(/no active physical slot \(third\) has a receiver record of this cluster/);
    await expect(checkArchiving(session({ mode: 'off', active: [] }), store)).rejects.toThrow(/no physical replication slot is active.*archive_command = 'walts wal-push %p'.*walts wal-receive --slot NAME/);
  });

  it('a record of another cluster, or a malformed one, is no receiver, even with a partial beside it', async () => {
    const store = new MemoryStorage();
    await record(store, 'foreign', '7300000000000000001');
    await partial(store, 'foreign');
    await store.put(receiverRecordKey('broken'), Buffer.from('{"slot":"broken","system_identifier":7301234567890123456}'));
    await partial(store, 'broken');
    await store.put(receiverRecordKey('notjson'), Buffer.from('not json'));
    await expect(checkArchiving(session({ mode: 'off', active: ['broken', 'foreign', 'notjson'] }), store)).rejects.toBeInstanceOf(UsageError);
  });

  it('a partial without any record (a receiver from before the record) still counts', async () => {
    const store = new MemoryStorage();
    await partial(store, 'barman');
    expect(await checkArchiving(session({ mode: 'off', active: ['barman'] }), store)).toEqual({ kind: 'receiver', slot: 'barman' });
  });
});
