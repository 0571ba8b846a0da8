/**
 * Acceptance for retention by recovery window (`walts delete window <duration>`, issue 9 item 5) with
 * real PostgreSQL 15 and the walts binary, on a directory store and on s3rver: the window keeps exactly
 * what a restore to its first second needs, shown by restoring to it.
 *
 * Three backups with marks (rows) and archived WAL between them; the window start W is a whole second
 * after backup 2 finished and mark 3 committed, before mark 4 and backup 3 (all on the server clock,
 * which is this machine's). The duration is derived from the real times (`window <N>s`), and `--now`
 * pins the instant delete measures from to W + N s: without it, delete would read the clock a moment
 * later, by however long this loaded machine took to start it, and the start would move by as much.
 */
import { compareSegmentNames } from '../../src/postgres/walName';
import { formatWindowTime } from '../../src/retention/window';
import { trackClusters, type Cluster } from '../helpers/pg';
import { backupFolders, harness, storeKeysUnder, walNames } from '../helpers/retention';
import { startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';

const PREFIX = 'window';
const MARKS = "select string_agg(id::text, ',' order by id) from marks";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface PlanJson {
  confirm: boolean;
  window_start: string;
  window_anchor: string | null;
  wal_cutoff: string | null;
  backups: { name: string; action: string; reason: string }[];
}

describe.each<StoreKind>(['file', 's3'])('delete window with real PostgreSQL (%s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let a: Cluster;
  let mark = 0;
  const h = harness(reg, () => store.env);
  const storeKeys = () => storeKeysUnder(store, PREFIX);
  const serverClockMs = async () => Number(await a.psql('select (extract(epoch from clock_timestamp()) * 1000)::bigint'));
  const addMark = async () => {
    await a.psql(`insert into marks (id) values (${++mark})`);
    await a.switchWalAndWaitArchived();
  };
  const plan = async (args: string[]): Promise<PlanJson> => {
    const r = await h.walts(['delete', ...args, '--json']);
    if (r.code !== 0) throw new Error(`delete ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as PlanJson;
  };
  const actions = (p: PlanJson) => p.backups.map((b) => `${b.action} ${b.name}`);

  beforeAll(async () => {
    store = await startStore(kind, reg, PREFIX);
    a = await reg.createCluster({ name: 'a', env: store.env, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    await a.pgbench(['-i', '-s', '1', '-q']);
    await a.psql('create table marks (id int primary key, at timestamptz not null default clock_timestamp())');
  }, 300_000);
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
  });

  it('refuses a duration it does not know, and a --now later than the clock, with exit 2 and one line naming the forms', async () => {
    for (const args of [['window', '7x'], ['window', '7'], ['retain', '1.5d'], ['window', '0d'], ['retain', '7days']]) {
      const r = await h.walts(['delete', ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.split('\n')[0]).toMatch(/needs .*a whole number with a unit: s, m or min, h, d, w \(e\.g\. 36h, 7d, 2w\); got/);
    }
    const future = await h.walts(['delete', 'window', '7d', '--now', '2099-01-01 00:00:00+00', '--confirm']);
    expect(future.code).toBe(2);
    expect(future.stderr).toMatch(/later than this machine's clock/);
  });

  it("keeps exactly what a restore to the window's first second needs, shown by restoring to it", async () => {
    await addMark(); // 1
    const b1 = await h.push(a);
    await addMark(); // 2
    const b2 = await h.push(a);
    await addMark(); // 3: committed just before the window start
    const b2Finish = Date.parse((await h.list()).find((b) => b.name === b2)!.finish_time);
    const windowStart = (Math.floor(Math.max(await serverClockMs(), b2Finish) / 1000) + 1) * 1000;
    while ((await serverClockMs()) <= windowStart) await sleep(100); // mark 4 commits after the start
    await addMark(); // 4
    const b3 = await h.push(a);
    await addMark(); // 5
    expect(await h.names()).toEqual([b1, b2, b3]);

    const seconds = Math.floor((Date.now() - windowStart) / 1000);
    const now = formatWindowTime(windowStart + seconds * 1000);
    const window = `${seconds}s`;
    const start = formatWindowTime(windowStart);

    // The dry run names the rule for each backup; `retain <duration>` is the same rule.
    const dry = await plan(['window', window, '--now', now]);
    expect({ start: dry.window_start, anchor: dry.window_anchor }).toEqual({ start, anchor: b2 });
    expect(actions(dry)).toEqual([`delete ${b1}`, `keep ${b2}`, `keep ${b3}`]);
    expect(dry.backups.map((b) => b.reason)).toEqual([
      `finished before the window start (${start}); ${b2} is newer and restores to it`,
      `newest before the window start: needed to restore to ${start}`,
      `inside the ${window} window (finished after ${start})`,
    ]);
    expect(dry.wal_cutoff).toBe(b2.slice(5, 29));
    expect(await plan(['retain', window, '--now', now])).toEqual(dry);
    // What `delete before <start>` does: it drops backup 2, and with it the start of the window.
    const before = await plan(['before', start]);
    expect(actions(before)).toEqual([`delete ${b1}`, `delete ${b2}`, `keep ${b3}`]);
    // On the real clock, a 1 h window starts before every backup finished: all are kept.
    const real = await plan(['window', '1h']);
    expect(real.window_anchor).toBeNull();
    expect(real.backups.every((b) => b.action === 'keep')).toBe(true);

    const keysBefore = await storeKeys();
    const text = await h.walts(['delete', 'window', window, '--now', now, '--confirm']);
    expect(text.stderr).not.toMatch(/"level":(50|60)/);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^delete window ${window}: done, \\d+ objects deleted`));
    expect(text.stdout).toContain(`window: from ${start} (this machine's clock); a restore to that point starts from ${b2}`);
    expect(text.stdout).toMatch(new RegExp(`^\\s+keep\\s+${b2}\\s+complete\\s.*newest before the window start: needed to restore to ${start.replace('+', '\\+')}$`, 'm'));

    // Backup 1 is gone; backups 2 and 3 and every WAL file from backup 2's start on are kept.
    expect(await h.names()).toEqual([b2, b3]);
    const keysAfter = await storeKeys();
    expect(backupFolders(keysAfter)).toEqual([b2, b3]);
    const cutoff = b2.slice(5, 29);
    const walBefore = walNames(keysBefore);
    const walAfter = new Set(walNames(keysAfter));
    const needed = walBefore.filter((n) => n.endsWith('.history') || compareSegmentNames(n.slice(0, 24), cutoff) >= 0);
    expect(needed).toContain(cutoff);
    expect(needed.filter((n) => !walAfter.has(n))).toEqual([]);
    expect([...walAfter].filter((n) => !n.endsWith('.history') && compareSegmentNames(n.slice(0, 24), cutoff) < 0)).toEqual([]);
    const verify = await h.walts(['verify']);
    expect(verify.code).toBe(0);

    // A restore of backup 2 to the window's first second gets there (PostgreSQL 15 refuses to start
    // when recovery ends before its target) with mark 3, committed just before it, and not mark 4.
    const { value } = await h.restoreAndQuery(b2, ['--target-time', start, '--target-action', 'promote'], MARKS);
    expect(value).toBe('1,2,3');
  }, 600_000);
});
