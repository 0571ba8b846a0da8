/**
 * Acceptance for retention (`walts delete`, reliability.md rules 28-30) with real PostgreSQL 15 and
 * the walts binary, on a directory store and on s3rver:
 * - A: `delete retain 2` is a dry run without --confirm; with it, the 2 newest backups and the WAL
 *   from the older one's start remain, and PITR from that backup reaches the newest data;
 * - B: `delete before <name>`, `delete before <time>`, `delete everything`;
 * - F2 (s3): a delete SIGKILLed while a DeleteObjects request hangs leaves every listed backup whole,
 *   and the next run finishes it;
 * - C: a backup in flight while `delete` runs survives and restores (its volumes and its WAL);
 * - D: after a promotion to timeline 2, retention keeps the history file and the WAL of both
 *   timelines, and `verify` follows the switch.
 * Backups are small (pgbench scale 1) and use --fast and 8 MiB volumes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { parseWalKey } from '../../src/archive/layout';
import { compareSegmentNames } from '../../src/postgres/walName';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { trackClusters, type Cluster } from '../helpers/pg';
import { WALTS_BIN, type RunResult } from '../helpers/run';
import { backupFolders, harness, storeKeysUnder, walNames } from '../helpers/retention';
import { rawS3Client } from '../helpers/s3server';
import { startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PREFIX = 'retention';
const storeKeys = (store: TestStore) => storeKeysUnder(store, PREFIX);

/** A backup's sentinel, read behind walts' back. */
async function readSentinel(store: TestStore, name: string): Promise<{ volumes: { key: string }[]; manifest: { key: string } }> {
  const key = `walts_v1/basebackups/${name}/sentinel.json`;
  if (store.kind === 'file') return JSON.parse(await fsp.readFile(join(store.dir, key), 'utf8'));
  const client = rawS3Client(store.s3!.endpoint);
  const out = await client.send(new GetObjectCommand({ Bucket: store.s3!.bucket, Key: `${PREFIX}/${key}` }));
  const text = await out.Body!.transformToString();
  client.destroy();
  return JSON.parse(text);
}

/** The walts binary as a child process we can signal (runWalts only resolves at the end). */
function spawnWalts(args: string[], env: Record<string, string>): { child: ChildProcess; done: Promise<RunResult> } {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(WALTS_|AWS_|PG)/.test(k)) clean[k] = v;
  const started = Date.now();
  const child = spawn(WALTS_BIN, [...args], { env: { ...clean, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', TZ: 'UTC', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => {
      const stdoutBuf = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBuf.toString('utf8'), stdoutBuf, stderr: Buffer.concat(err).toString('utf8'), timedOut: false, durationMs: Date.now() - started });
    }),
  );
  return { child, done };
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const MARKS = "select string_agg(id::text, ',' order by id) from marks";

describe.each<StoreKind>(['file', 's3'])('delete with real PostgreSQL (%s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let proxy: FaultProxy | undefined;
  let a: Cluster;
  let mark = 0;
  const h = harness(reg, () => store.env);
  /** B1..B4, oldest first. */
  let initial: string[] = [];

  const addMark = async () => {
    await a.psql(`insert into marks (id) values (${++mark})`);
    await a.switchWalAndWaitArchived();
  };

  beforeAll(async () => {
    store = await startStore(kind, reg, PREFIX);
    if (store.s3) proxy = await startFaultProxy({ host: '127.0.0.1', port: store.s3.port });
    a = await reg.createCluster({ name: 'a', env: store.env, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    await a.pgbench(['-i', '-s', '1', '-q']);
    await a.psql('create table marks (id int primary key, at timestamptz not null default clock_timestamp())');
    // Four backups, with a mark and archived WAL before each and after the last.
    for (let i = 0; i < 4; i++) {
      await addMark();
      initial.push(await h.push(a));
    }
    await addMark();
    expect(await h.names()).toEqual(initial);
  }, 600_000); // four backups: minutes on a loaded machine
  afterAll(async () => {
    await reg.cleanupAll();
    await proxy?.stop();
    await store?.stop();
  });

  it('A: retain 2 without --confirm deletes nothing and names the 2 backups it would delete', async () => {
    const before = await storeKeys(store);
    const r = await h.walts(['delete', 'retain', '2']);
    expect(r.stderr).not.toMatch(/"level":(50|60)/);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('dry run, nothing deleted');
    for (const [i, name] of initial.entries()) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${i < 2 ? 'delete' : 'keep'}\\s+${name}\\s+complete`, 'm'));
    }
    expect(r.stdout).toContain('would delete: 2 backup(s)');
    expect(await storeKeys(store)).toEqual(before);
    expect(await h.names()).toEqual(initial);

    const json = await h.walts(['delete', 'retain', '2', '--json']);
    const plan = JSON.parse(json.stdout) as { confirm: boolean; wal_cutoff: string; backups: { name: string; action: string }[] };
    expect(plan.confirm).toBe(false);
    expect(plan.backups.filter((b) => b.action === 'delete').map((b) => b.name)).toEqual(initial.slice(0, 2));
    expect(plan.wal_cutoff).toBe(initial[2]!.slice(5, 29));
    expect(await storeKeys(store)).toEqual(before);
  });

  it('A: retain 2 --confirm keeps the 2 newest and the WAL from the older one on; PITR from it reaches the newest data', async () => {
    const before = await storeKeys(store);
    const cutoff = (await h.list())[2]!.wal_start;
    const r = await h.walts(['delete', 'retain', '2', '--confirm']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^delete retain 2: done, \d+ objects deleted/);
    expect(await h.names()).toEqual(initial.slice(2));

    const after = await storeKeys(store);
    expect(backupFolders(after)).toEqual(initial.slice(2));
    const walBefore = walNames(before);
    const older = walBefore.filter((n) => !n.endsWith('.history') && compareSegmentNames(n.slice(0, 24), cutoff) < 0);
    const newer = walBefore.filter((n) => n.endsWith('.history') || compareSegmentNames(n.slice(0, 24), cutoff) >= 0);
    expect(older.length).toBeGreaterThan(3);
    expect(newer).toContain(cutoff);
    const walAfter = new Set(walNames(after));
    expect(older.filter((n) => walAfter.has(n))).toEqual([]);
    expect(newer.filter((n) => !walAfter.has(n))).toEqual([]);
    // Nothing else went: the kept backups' folders and the cluster record are untouched.
    expect(before.filter((k) => !after.includes(k)).every((k) => parseWalKey(k) !== undefined || initial.slice(0, 2).some((b) => k.includes(b)))).toBe(true);

    const verify = await h.walts(['verify']);
    expect(verify.stdout).toContain('ok: 2 backup(s)');
    expect(verify.code).toBe(0);

    // Point-in-time recovery from the oldest kept backup replays every later mark.
    const { value } = await h.restoreAndQuery(initial[2]!, ['--target-timeline', 'latest', '--target-action', 'promote'], MARKS);
    expect(value).toBe(Array.from({ length: mark }, (_, i) => i + 1).join(','));
  });

  if (kind === 's3') {
    it('F2: a delete killed while a DeleteObjects request hangs leaves every listed backup whole; the next runs finish it', async () => {
      // Four backups again: the 2 kept ones and 2 new.
      for (let i = 0; i < 2; i++) {
        await addMark();
        initial.push(await h.push(a));
      }
      await addMark();
      const four = await h.names();
      expect(four).toEqual(initial.slice(2));
      const viaProxy = { WALTS_S3_ENDPOINT: proxy!.endpoint, WALTS_IO_TIMEOUT: '60', WALTS_RETRY_DEADLINE: '60' };
      const deletes = () => proxy!.requests.filter((q) => q.method === 'POST' && q.url.includes('?delete')).length;

      /** Runs `delete retain 2 --confirm`, hangs its `nth` DeleteObjects request and SIGKILLs it then. */
      const killedAt = async (nth: number) => {
        const seen = deletes();
        proxy!.inject({ kind: 'hang', method: 'POST', pathIncludes: '?delete', skip: nth - 1 });
        const { child, done } = spawnWalts(['delete', 'retain', '2', '--confirm'], { ...store.env, ...viaProxy });
        try {
          await waitFor(`DeleteObjects request ${nth}`, () => deletes() >= seen + nth, 30_000);
          await sleep(200); // the request hangs: nothing after it is sent
          expect(deletes()).toBe(seen + nth);
        } finally {
          child.kill('SIGKILL');
        }
        expect((await done).signal).toBe('SIGKILL');
        proxy!.clear();
      };

      /** Whatever backup-list shows has every part its sentinel names; verify passes. */
      const expectConsistent = async () => {
        const keys = new Set(await storeKeys(store));
        for (const name of await h.names()) {
          const sentinel = await readSentinel(store, name);
          const parts = [`walts_v1/basebackups/${name}/started.json`, ...sentinel.volumes.map((v) => v.key), sentinel.manifest.key];
          expect({ name, missing: parts.filter((k) => !keys.has(k)) }).toEqual({ name, missing: [] });
        }
        const verify = await h.walts(['verify', '--json']);
        const report = JSON.parse(verify.stdout) as { ok: boolean; backups: { name: string; problems: string[] }[] };
        expect(report.backups.flatMap((b) => b.problems)).toEqual([]);
        expect(verify.code).toBe(0);
        return report;
      };

      // Run 1 dies at its 2nd request: the first backup's sentinel is gone, its volumes are not.
      await killedAt(2);
      expect(await h.names()).toEqual(four.slice(1));
      let keys = await storeKeys(store);
      expect(keys).toContain(`walts_v1/basebackups/${four[0]}/deleting.json`);
      expect(keys.some((k) => k.startsWith(`walts_v1/basebackups/${four[0]}/part_`))).toBe(true);
      let report = await expectConsistent();
      expect(report.backups.map((b) => b.name)).toEqual(four.slice(1));

      // Run 2 takes the second backup first (sentinel, volumes), then dies removing its marker and
      // tombstone; the half-deleted first one is still waiting for its turn.
      await killedAt(3);
      expect(await h.names()).toEqual(four.slice(2));
      keys = await storeKeys(store);
      expect(backupFolders(keys)).toEqual(four);
      expect(keys.filter((k) => k.includes(four[1]!))).toEqual([`walts_v1/basebackups/${four[1]}/deleting.json`, `walts_v1/basebackups/${four[1]}/started.json`]);
      expect(keys).toContain(`walts_v1/basebackups/${four[0]}/deleting.json`);
      report = await expectConsistent();
      expect(report.backups.map((b) => b.name)).toEqual(four.slice(2));

      // Run 3, unhindered, completes the plan: 2 backups, no WAL before the older one's start.
      const r = await h.walts(['delete', 'retain', '2', '--confirm'], viaProxy);
      expect(r.code).toBe(0);
      expect(await h.names()).toEqual(four.slice(2));
      keys = await storeKeys(store);
      expect(backupFolders(keys)).toEqual(four.slice(2));
      const cutoff = four[2]!.slice(5, 29);
      expect(walNames(keys).filter((n) => !n.endsWith('.history') && compareSegmentNames(n.slice(0, 24), cutoff) < 0)).toEqual([]);
      expect(walNames(keys)).toContain(cutoff);
      await expectConsistent();
      const again = await h.walts(['delete', 'retain', '2', '--json']);
      const plan = JSON.parse(again.stdout) as { backups: { action: string }[]; wal: { action: string }[] };
      expect(plan.backups.filter((b) => b.action === 'delete')).toEqual([]);
      expect(plan.wal.filter((w) => w.action === 'delete')).toEqual([]);
      initial = four.slice(2);
    });
  }

  it('B: before <name> deletes exactly the backups older than the one named', async () => {
    const current = await h.names();
    expect(current.length).toBeGreaterThanOrEqual(2);
    const newest = current[current.length - 1]!;
    const r = await h.walts(['delete', 'before', newest, '--confirm']);
    expect(r.code).toBe(0);
    expect(await h.names()).toEqual([newest]);
    expect(backupFolders(await storeKeys(store))).toEqual([newest]);
    const missing = await h.walts(['delete', 'before', 'base_000000010000000000000001_00000028']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not exist/);
  });

  it('B: before <time> deletes exactly the backups that finished before that time', async () => {
    await addMark();
    const middle = await h.push(a);
    await sleep(1100);
    const t = await a.psql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    await sleep(1100);
    await addMark();
    const newest = await h.push(a);
    const three = await h.names();
    expect(three.slice(1)).toEqual([middle, newest]);

    const dry = await h.walts(['delete', 'before', t]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`^\\s+delete\\s+${three[0]}\\s`, 'm'));
    expect(dry.stdout).toMatch(new RegExp(`^\\s+delete\\s+${middle}\\s`, 'm'));
    expect(dry.stdout).toMatch(new RegExp(`^\\s+keep\\s+${newest}\\s`, 'm'));
    const r = await h.walts(['delete', 'before', t, '--confirm']);
    expect(r.code).toBe(0);
    expect(await h.names()).toEqual([newest]);
    expect(backupFolders(await storeKeys(store))).toEqual([newest]);
    const bad = await h.walts(['delete', 'before', 'yesterday']);
    expect(bad.code).toBe(2);
  });

  it('B: everything --confirm leaves no backup and no WAL in the prefix, only the archive record', async () => {
    await a.stop(); // nothing archives behind our back any more
    expect(walNames(await storeKeys(store)).length).toBeGreaterThan(0);
    const dry = await h.walts(['delete', 'everything']);
    expect(dry.code).toBe(0);
    expect(await h.names()).toHaveLength(1);
    const r = await h.walts(['delete', 'everything', '--confirm']);
    expect(r.code).toBe(0);
    expect(await h.names()).toEqual([]);
    // The archive still exists (empty, same encryption record): no new walts init is needed.
    expect(await storeKeys(store)).toEqual(['walts_v1/archive.json']);
  });
});

describe('delete with a backup in flight, and across a timeline switch (file store)', () => {
  const reg = trackClusters();
  let store: TestStore;
  let c: Cluster;
  let mark = 0;
  const h = harness(reg, () => store.env);
  let first: string;
  let inFlight: string;
  let second: string;

  const addMark = async (on: Cluster = c) => {
    await on.psql(`insert into marks (id) values (${++mark})`);
    await on.switchWalAndWaitArchived();
  };
  const keyPath = (key: string) => join(store.dir, ...key.split('/'));
  const exists = (key: string) => fsp.access(keyPath(key)).then(() => true, () => false);

  beforeAll(async () => {
    store = await startStore('file', reg, 'inflight');
    c = await reg.createCluster({ name: 'c', env: store.env, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await c.start();
    await c.pgbench(['-i', '-s', '1', '-q']);
    await c.psql('create table marks (id int primary key, at timestamptz not null default clock_timestamp())');
    await addMark();
    first = await h.push(c);
    await addMark();
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
  });

  it('C: a backup started before delete runs and finished after it keeps its volumes and its WAL, and restores', async () => {
    // Archiving fails: backup-push uploads started.json, its volumes and its manifest, then waits for its WAL.
    await c.psql("alter system set archive_command = 'false'");
    await c.psql('select pg_reload_conf()');
    await sleep(300);
    const backup = spawnWalts(['backup-push', c.dataDir, '--fast', '--volume-size', '8MiB', '--archive-timeout', '120'], { ...store.env, ...c.pgEnv() });
    try {
      const folder = () => fsp.readdir(join(store.dir, 'walts_v1', 'basebackups')).then((d) => d.filter((n) => n !== first), () => []);
      await waitFor('the in-flight backup folder', async () => (await folder()).length === 1);
      inFlight = (await folder())[0]!;
      await waitFor('its manifest', async () => (await fsp.readdir(join(store.dir, 'walts_v1', 'basebackups', inFlight))).some((f) => f.startsWith('manifest')));
      const folderKeys = async () => (await storeKeys(store)).filter((k) => k.includes(inFlight));
      const inFlightKeys = await folderKeys();
      expect(inFlightKeys.some((k) => k.endsWith('sentinel.json'))).toBe(false);

      // 1. While it waits: the folder without a sentinel is a backup in progress, not a leftover.
      const dry = await h.walts(['delete', 'retain', '1']);
      expect(dry.stdout).toMatch(new RegExp(`^\\s+keep\\s+${inFlight}\\s+unfinished\\s.*in progress`, 'm'));
      const r1 = await h.walts(['delete', 'retain', '1', '--confirm']);
      expect(r1.code).toBe(0);
      expect(await folderKeys()).toEqual(inFlightKeys);
      expect(await h.names()).toEqual([first]);

      // 2. Freeze it; archiving works again and a newer backup completes: the in-flight one started
      //    earlier, so a pass computed from sentinels alone would delete the WAL it still needs.
      backup.child.kill('SIGSTOP');
      await c.psql('alter system reset archive_command');
      await c.psql('select pg_reload_conf()');
      await addMark();
      second = await h.push(c);
      await addMark();
      expect(await h.names()).toEqual([first, second]);
      const startWal = inFlight.slice(5, 29);
      expect(compareSegmentNames(startWal, second.slice(5, 29))).toBeLessThan(0);
      const r2 = await h.walts(['delete', 'retain', '1', '--confirm', '--json']);
      expect(r2.code).toBe(0);
      expect(JSON.parse(r2.stdout)).toMatchObject({ wal_cutoff: startWal });
      expect(await h.names()).toEqual([second]);
      expect(await folderKeys()).toEqual(inFlightKeys);
      const wal = walNames(await storeKeys(store));
      expect(wal).toContain(startWal);
      expect(wal.filter((n) => !n.endsWith('.history') && compareSegmentNames(n.slice(0, 24), startWal) < 0)).toEqual([]);
    } finally {
      backup.child.kill('SIGCONT');
    }

    // 3. It resumes, finds its WAL and completes; it restores to the newest data.
    const done = await backup.done;
    expect(done.stderr).toContain('"backup-push done"');
    expect(done.code).toBe(0);
    expect(await h.names()).toEqual([inFlight, second]);
    expect(await exists(`walts_v1/basebackups/${inFlight}/sentinel.json`)).toBe(true);
    await addMark();
    const { value } = await h.restoreAndQuery(inFlight, ['--target-timeline', 'latest', '--target-action', 'promote'], MARKS);
    expect(value).toBe(Array.from({ length: mark }, (_, i) => i + 1).join(','));
  });

  it('D: after a promotion, retention keeps the history file and the WAL of both timelines; verify follows the switch', async () => {
    // Timeline 1 ends here: the old primary stops, its copy is promoted and archives into the same prefix.
    await addMark();
    await c.stop();
    const { cluster: p } = await h.restoreAndQuery(second, ['--target-timeline', 'latest', '--target-action', 'promote'], MARKS, { keep: true });
    await p.psql('checkpoint');
    expect(await p.psql('select timeline_id from pg_control_checkpoint()')).toBe('2');
    await waitFor('00000002.history in the store', async () => walNames(await storeKeys(store)).includes('00000002.history'));
    await addMark(p);
    const onTwo = await h.push(p);
    expect(onTwo).toMatch(/^base_00000002/);
    await addMark(p);
    expect(await h.names()).toEqual([inFlight, second, onTwo]);

    const verify1 = await h.walts(['verify', '--json']);
    expect(verify1.code).toBe(0);

    // Keep the newest timeline-1 backup and the timeline-2 one.
    const before = walNames(await storeKeys(store));
    const r = await h.walts(['delete', 'retain', '2', '--confirm']);
    expect(r.code).toBe(0);
    expect(await h.names()).toEqual([second, onTwo]);
    const after = walNames(await storeKeys(store));
    const cutoff = second.slice(5, 29);
    expect(after).toContain('00000002.history');
    expect(after.filter((n) => !n.endsWith('.history') && compareSegmentNames(n.slice(0, 24), cutoff) < 0)).toEqual([]);
    expect(before.filter((n) => (n.endsWith('.history') || compareSegmentNames(n.slice(0, 24), cutoff) >= 0) && !after.includes(n))).toEqual([]);
    expect(after.some((n) => n.startsWith('00000001') && !n.endsWith('.partial'))).toBe(true);
    expect(after.some((n) => n.startsWith('00000002') && !n.endsWith('.history'))).toBe(true);

    const verify = await h.walts(['verify', '--json']);
    expect(verify.stderr).not.toMatch(/"level":(50|60)/);
    expect(verify.code).toBe(0);
    const report = JSON.parse(verify.stdout) as { ok: boolean; backups: { name: string; timeline: number; wal_to?: string; problems: string[] }[] };
    expect(report.ok).toBe(true);
    const t1 = report.backups.find((b) => b.name === second)!;
    expect(t1.timeline).toBe(1);
    expect(t1.wal_to).toMatch(/^00000002/);
    expect(report.backups.find((b) => b.name === onTwo)!.wal_to).toBe(t1.wal_to);

    // And the timeline-1 backup really restores through the switch to the newest timeline-2 data.
    await p.stop();
    const { value } = await h.restoreAndQuery(second, ['--target-timeline', 'latest', '--target-action', 'promote'], MARKS);
    expect(value).toBe(Array.from({ length: mark }, (_, i) => i + 1).join(','));
  });
});
