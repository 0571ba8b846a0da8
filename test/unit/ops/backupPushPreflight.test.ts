/**
 * backup-push's preflight (backupPush.ts checkArchiving): which server feeds the store. archive_command
 * counts; with archiving off, an active physical slot whose name has a receive/<slot>/ folder in the
 * store; on an idle primary with an active slot but no folder yet, one commit record is written and
 * the folder waited for (bounded); on a standby nothing is written. A fake session and the memory store.
 */
import { checkArchiving } from '../../../src/ops/backupPush';
import { receivedPartialKey } from '../../../src/archive/layout';
import { UsageError } from '../../../src/errors';
import { MemoryStorage } from '../../../src/storage/memory';

function session(opts: { mode: string; command?: string; active: string[]; inRecovery?: boolean; onCommit?: () => void }) {
  const queries: string[] = [];
  return {
    queries,
    query: async <T>(sql: string): Promise<{ rows: T[]; rowCount: number }> => {
      queries.push(sql);
      const rows = (r: unknown[]) => ({ rows: r as T[], rowCount: r.length });
      if (sql.includes("current_setting('archive_mode'")) return rows([{ mode: opts.mode, command: opts.command ?? '', library: '' }]);
      if (sql.includes('pg_replication_slots')) return rows(opts.active.map((slot_name) => ({ slot_name })));
      if (sql.includes('pg_is_in_recovery')) return rows([{ r: opts.inRecovery === true }]);
      if (sql.includes('txid_current')) {
        opts.onCommit?.();
        return rows([]);
      }
      throw new Error(`unexpected query ${sql}`);
    },
  };
}

const folder = (store: MemoryStorage, slot: string) => store.put(receivedPartialKey(slot, '000000010000000000000003', '.lz4'), Buffer.from('x'));
const noSleep = async () => {};

describe('backup-push preflight: what feeds the store', () => {
  it('archive_command: nothing else asked', async () => {
    const s = session({ mode: 'on', command: 'walts wal-push %p', active: [] });
    expect(await checkArchiving(s, new MemoryStorage())).toEqual({ kind: 'archive_command' });
    expect(s.queries).toHaveLength(1);
  });

  it('archiving off: an active slot with its receive/ folder; not a folder of another slot', async () => {
    const store = new MemoryStorage();
    await folder(store, 'other');
    await folder(store, 'barman');
    expect(await checkArchiving(session({ mode: 'off', active: ['barman'] }), store)).toEqual({ kind: 'receiver', slot: 'barman' });
    await expect(checkArchiving(session({ mode: 'off', active: ['third'] }), store, { sleep: noSleep, nudgeWaitMs: 1000 })).rejects.toThrow(/the active physical slot\(s\) third have no folder under receive\//);
    await expect(checkArchiving(session({ mode: 'off', active: [] }), store)).rejects.toThrow(/no physical replication slot is active.*archive_command = 'walts wal-push %p'.*walts wal-receive --slot NAME/);
  });

  it('an idle primary right after a switch: one commit record, then the folder appears', async () => {
    const store = new MemoryStorage();
    const s = session({ mode: 'off', active: ['barman'], onCommit: () => void folder(store, 'barman') });
    expect(await checkArchiving(s, store, { sleep: noSleep })).toEqual({ kind: 'receiver', slot: 'barman' });
    expect(s.queries.filter((q) => q.includes('txid_current'))).toHaveLength(1);
  });

  it('on a standby nothing is written, and without a folder it is refused', async () => {
    const s = session({ mode: 'off', active: ['barman'], inRecovery: true });
    await expect(checkArchiving(s, new MemoryStorage(), { sleep: noSleep })).rejects.toBeInstanceOf(UsageError);
    expect(s.queries.some((q) => q.includes('txid_current'))).toBe(false);
  });
});
