/**
 * Retention against a store (src/retention/apply.ts), in memory: reading the store into a plan's
 * input, and carrying a plan out so that an interruption at any point leaves no listed backup with a
 * missing part, and the next run finishes the job (reliability.md rules 22, 28-30).
 */
import { listBackups } from '../../../src/archive/catalog';
import { backupKeys, backupName, CLUSTER_KEY, receiverRecordKey, walKey } from '../../../src/archive/layout';
import type { BackupSentinel } from '../../../src/backup/sentinel';
import { fakeSentinel } from '../../helpers/sentinel';
import { parseSegmentName, parseWalFileName, segmentName } from '../../../src/postgres/walName';
import { applyRetention, readRetentionInput } from '../../../src/retention/apply';
import { planRetention, type RetentionRule } from '../../../src/retention/policy';
import { MemoryStorage } from '../../../src/storage/memory';

const SEG = 16 * 1024 * 1024;
const HOUR = 3_600_000;
const NOW = Date.now();
const LEFTOVER_AGE = 24 * HOUR;
const seg = (tl: number, n: number) => segmentName({ timeline: tl, segNo: n }, SEG);

function put(store: MemoryStorage, key: string, data: string | Buffer, ageHours = 0): void {
  store.objects.set(key, { data: Buffer.from(data), metadata: {}, lastModified: new Date(NOW - ageHours * HOUR) });
}

function walObjectKey(name: string): string {
  return walKey(parseWalFileName(name)!, '.lz4');
}

/** A complete backup at segment `n` of timeline `tl` with two volumes, written as backup-push does. */
function addBackup(store: MemoryStorage, tl: number, n: number, opts: { finish: string; ageHours?: number }): BackupSentinel {
  const start = seg(tl, n);
  const name = backupName(start, 0x28);
  const age = opts.ageHours ?? 48;
  put(store, backupKeys.started(name), JSON.stringify({ name, start_wal_file: start }), age);
  const volumes = [1, 2].map((i) => {
    const key = backupKeys.volume(name, i, '.lz4');
    put(store, key, `volume ${i} of ${name}`, age);
    return { key, stored_size: store.objects.get(key)!.data.length, size: 100, sha256: 'a'.repeat(64) };
  });
  const mkey = backupKeys.manifest(name, '.lz4');
  put(store, mkey, `manifest of ${name}`, age);
  const sentinel = fakeSentinel(tl, n, { finish: opts.finish, volumes, manifest: { key: mkey, stored_size: store.objects.get(mkey)!.data.length, size: 100, sha256: 'b'.repeat(64) } });
  put(store, backupKeys.sentinel(name), JSON.stringify(sentinel), age);
  return sentinel;
}

/** A folder without a sentinel: a backup in progress (young) or the leftover of a failed one (old). */
function addUnfinished(store: MemoryStorage, tl: number, n: number, ageHours: number): string {
  const name = backupName(seg(tl, n), 0x28);
  put(store, backupKeys.started(name), JSON.stringify({ name, start_wal_file: seg(tl, n) }), ageHours);
  put(store, backupKeys.volume(name, 1, '.lz4'), 'partial volume', ageHours);
  return name;
}

/**
 * 2,500 WAL segments on timeline 1 (so WAL deletes take three batches of at most 1,000), a
 * `.backup` file, a history file, four complete backups at segments 500, 1200, 2300 and 2400, a backup
 * in progress at 2450 and the leftover of a failed backup at 1000 (72 hours old).
 */
function populate(store: MemoryStorage): { backups: BackupSentinel[]; running: string; leftover: string } {
  put(store, CLUSTER_KEY, '{}');
  // A receiver's record: only `delete everything` removes it, however old.
  put(store, receiverRecordKey('walts_rx'), '{}', 480);
  for (let n = 1; n <= 2500; n++) put(store, walObjectKey(seg(1, n)), `wal ${n}`, 48);
  put(store, walObjectKey(`${seg(1, 1200)}.00000028.backup`), 'backup history', 48);
  put(store, walObjectKey('00000002.history'), '1\t0/1\tno recovery target specified\n', 48);
  // Young (finished within --leftover-age): a half-deleted one would look like a backup in progress
  // but for its tombstone.
  const backups = [500, 1200, 2300, 2400].map((n, i) => addBackup(store, 1, n, { finish: `2026-11-1${i + 1}T01:00:00Z`, ageHours: 2 }));
  const running = addUnfinished(store, 1, 2450, 1);
  const leftover = addUnfinished(store, 1, 1000, 72);
  return { backups, running, leftover };
}

async function plan(store: MemoryStorage, rule: RetentionRule) {
  return planRetention(await readRetentionInput(store, { nowMs: NOW, leftoverAgeMs: LEFTOVER_AGE }), rule);
}

/** Makes the store's delete fail after `okCalls` successful calls; with `partial`, the failing call first deletes half its keys. */
function failAfter(store: MemoryStorage, okCalls: number, partial = false): { calls: () => number } {
  let calls = 0;
  const del = store.delete.bind(store);
  store.delete = async (keys: readonly string[]) => {
    if (calls++ >= okCalls) {
      if (partial) await del(keys.slice(0, Math.ceil(keys.length / 2)));
      throw new Error(`injected failure of delete call ${calls}`);
    }
    return del(keys);
  };
  return { calls: () => calls };
}

/** What a restore needs of every listed backup is there: its marker, volumes, manifest and WAL. */
async function expectListedBackupsWhole(store: MemoryStorage): Promise<void> {
  for (const b of await listBackups(store)) {
    const parts = [backupKeys.started(b.name), ...b.volumes.map((v) => v.key), b.manifest.key];
    expect({ backup: b.name, missing: parts.filter((k) => !store.objects.has(k)) }).toEqual({ backup: b.name, missing: [] });
    const from = parseSegmentName(b.start_wal_file, SEG).segNo;
    const to = parseSegmentName(b.stop_wal_file, SEG).segNo;
    for (let n = from; n <= to; n++) expect(store.objects.has(walObjectKey(seg(1, n)))).toBe(true);
  }
}

const keys = (store: MemoryStorage) => [...store.objects.keys()].sort();

describe('readRetentionInput', () => {
  it('sorts complete backups by start LSN, reads markers of unfinished folders, and sorts out WAL and other keys', async () => {
    const store = new MemoryStorage();
    // Written newest first, on purpose.
    const late = addBackup(store, 2, 0x300, { finish: '2026-11-20T00:00:00Z' });
    const early = addBackup(store, 1, 0x1ff, { finish: '2026-11-21T00:00:00Z' });
    const running = addUnfinished(store, 1, 0x400, 1);
    const deletingName = backupName(seg(1, 0x100), 0x28);
    put(store, backupKeys.sentinel(deletingName), 'sentinel of a backup being deleted');
    put(store, backupKeys.deleting(deletingName), '{}');
    const noMarker = backupName(seg(1, 0x50), 0x28);
    put(store, backupKeys.volume(noMarker, 1, '.lz4'), 'x', 3);
    const badMarker = backupName(seg(1, 0x60), 0x28);
    put(store, backupKeys.started(badMarker), '{"start_wal_file": "../../x"}', 5);
    put(store, walObjectKey(seg(1, 0x1ff)), 'w');
    put(store, walObjectKey('00000002.history'), 'h');
    put(store, CLUSTER_KEY, '{}');
    put(store, 'walts_v1/wal/0000000100000000/not-a-wal-file', 'junk');

    const input = await readRetentionInput(store, { nowMs: NOW, leftoverAgeMs: LEFTOVER_AGE });
    expect(input.backups.map((b) => b.name)).toEqual([early.name, late.name]);
    expect(input.backupKeys.get(early.name)).toHaveLength(5);
    const byName = Object.fromEntries(input.unfinished.map((u) => [u.name, u]));
    expect(byName[running]).toMatchObject({ startWalFile: seg(1, 0x400), deleting: false });
    expect(byName[running]!.lastModifiedMs).toBeGreaterThan(NOW - 2 * HOUR);
    expect(byName[deletingName]).toMatchObject({ deleting: true, keys: [backupKeys.deleting(deletingName), backupKeys.sentinel(deletingName)] });
    expect(byName[noMarker]).toMatchObject({ startWalFile: undefined, deleting: false });
    expect(byName[noMarker]!.lastModifiedMs).toBe(NOW - 3 * HOUR);
    expect(byName[badMarker]?.startWalFile).toBeUndefined();
    expect(input.wal.map((w) => w.name.name)).toEqual([seg(1, 0x1ff), '00000002.history']);
    expect(input.otherKeys).toEqual([CLUSTER_KEY, 'walts_v1/wal/0000000100000000/not-a-wal-file']);
    expect(input.sizes.get(CLUSTER_KEY)).toBe(2);
  });
});

describe('applyRetention', () => {
  it('retain 2: deletes the old backups, the leftover and the WAL before the cutoff; keeps the rest and the backup in progress', async () => {
    const store = new MemoryStorage();
    const { backups, running, leftover } = populate(store);
    const p = await plan(store, { kind: 'retain', count: 2 });
    expect(p.backups.filter((b) => b.action === 'delete').map((b) => b.name).sort()).toEqual([backups[0]!.name, backups[1]!.name, leftover].sort());
    expect(p.walCutoff).toBe(seg(1, 2300));
    const before = keys(store);
    const deleted = await applyRetention(store, p);
    const after = keys(store);
    expect(before.length - after.length).toBe(deleted);
    expect((await listBackups(store)).map((b) => b.name)).toEqual([backups[2]!.name, backups[3]!.name]);
    expect(after.filter((k) => k.includes(backups[0]!.name) || k.includes(backups[1]!.name) || k.includes(leftover))).toEqual([]);
    expect(after.filter((k) => k.includes(running))).toHaveLength(2);
    expect(store.objects.has(walObjectKey(seg(1, 2299)))).toBe(false);
    expect(store.objects.has(walObjectKey(seg(1, 2300)))).toBe(true);
    expect(store.objects.has(walObjectKey(`${seg(1, 1200)}.00000028.backup`))).toBe(false);
    expect(store.objects.has(walObjectKey('00000002.history'))).toBe(true);
    expect(store.objects.has(CLUSTER_KEY)).toBe(true);
    expect(store.objects.has(receiverRecordKey('walts_rx'))).toBe(true);
    await expectListedBackupsWhole(store);
    // A second run has nothing left to do.
    const again = await plan(store, { kind: 'retain', count: 2 });
    expect(again.backups.filter((b) => b.action === 'delete')).toEqual([]);
    expect(again.walKeys).toEqual([]);
  });

  it('everything: the prefix is empty afterwards', async () => {
    const store = new MemoryStorage();
    populate(store);
    await applyRetention(store, await plan(store, { kind: 'everything' }));
    expect(keys(store)).toEqual([]);
  });

  it('deletes the sentinel before any other part, and the marker and tombstone last', async () => {
    const store = new MemoryStorage();
    const b = addBackup(store, 1, 5, { finish: '2026-11-01T00:00:00Z' });
    addBackup(store, 1, 9, { finish: '2026-11-02T00:00:00Z' });
    const events: string[] = [];
    const put0 = store.put.bind(store);
    const del0 = store.delete.bind(store);
    store.put = async (key, body, options) => {
      events.push(`put ${key.split('/').pop()}`);
      return put0(key, body, options);
    };
    store.delete = async (ks: readonly string[]) => {
      events.push(`delete ${ks.map((k) => k.split('/').pop()).join(',')}`);
      return del0(ks);
    };
    await applyRetention(store, await plan(store, { kind: 'before-backup', name: backupName(seg(1, 9), 0x28) }));
    expect(events).toEqual(['put deleting.json', 'delete sentinel.json', 'delete manifest.jsonl.lz4,part_00001.tar.lz4,part_00002.tar.lz4', 'delete started.json', 'delete deleting.json']);
    expect(keys(store).some((k) => k.includes(b.name))).toBe(false);
  });

  describe.each([
    ['retain 2', { kind: 'retain', count: 2 } as RetentionRule],
    ['before the third backup', { kind: 'before-backup', name: backupName(seg(1, 2300), 0x28) } as RetentionRule],
    ['everything', { kind: 'everything' } as RetentionRule],
  ])('%s interrupted at every delete call', (_what, rule) => {
    let cleanKeys: string[];
    let deleteCalls: number;

    beforeAll(async () => {
      const store = new MemoryStorage();
      populate(store);
      const counter = failAfter(store, Number.MAX_SAFE_INTEGER);
      await applyRetention(store, await plan(store, rule));
      cleanKeys = keys(store);
      deleteCalls = counter.calls();
      expect(deleteCalls).toBeGreaterThan(4);
    });

    test.each([
      ['deletes nothing', false],
      ['deletes half its keys', true],
    ])('the failing call %s; every listed backup stays whole and a second run completes the plan', async (_how, partial) => {
      for (let k = 0; k <= deleteCalls; k++) {
        const store = new MemoryStorage();
        const { running } = populate(store);
        const runningKeys = keys(store).filter((key) => key.includes(running));
        const first = await plan(store, rule);
        const keptKeys = first.backups.filter((b) => b.action === 'keep').flatMap((b) => b.keys);
        failAfter(store, k, partial);
        const outcome = await applyRetention(store, first).then(
          () => 'completed',
          (err: Error) => err.message,
        );
        expect(outcome).toBe(k === deleteCalls ? 'completed' : `injected failure of delete call ${k + 1}`);

        // Interrupted anywhere: whatever is listed can be restored, and what is kept was not touched.
        await expectListedBackupsWhole(store);
        expect(keptKeys.filter((key) => !store.objects.has(key))).toEqual([]);
        if (rule.kind !== 'everything') expect(runningKeys.filter((key) => !store.objects.has(key))).toEqual([]);

        // A second run, with the store healthy again, finishes exactly what the first run set out to do.
        const fresh = new MemoryStorage();
        for (const [key, e] of store.objects) fresh.objects.set(key, e);
        const second = await plan(fresh, rule);
        for (const b of first.backups.filter((d) => d.action === 'delete')) {
          // A half-deleted backup is finished, never taken for a backup in progress.
          if (keys(fresh).some((key) => key.includes(b.name))) expect(second.backups.find((d) => d.name === b.name)?.action).toBe('delete');
        }
        await applyRetention(fresh, second);
        expect({ k, keys: keys(fresh) }).toEqual({ k, keys: cleanKeys });
      }
    });
  });
});
