/**
 * Acceptance for `walts verify` with real PostgreSQL 15, the walts binary and an encrypted directory
 * store: a healthy store passes (shallow and --deep); a WAL segment missing in the middle of a
 * backup's chain fails with exit 3 and is named; a volume with one flipped byte passes the shallow
 * check (sizes match) but fails `--deep` with exit 3, named; a missing volume fails the shallow check.
 * A restored copy that kept archiving and promoted while the origin goes on archiving into the same
 * prefix is a forked history: exit 3, one line naming both timelines and the branch LSN (and exit 0
 * before the origin went on: a clean promotion is no fork).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { trackClusters, type Cluster } from '../helpers/pg';
import { runWalts } from '../helpers/run';
import { startStore, waltsCommand, type TestStore } from '../helpers/stores';

interface Report {
  ok: boolean;
  deep: boolean;
  backups: { name: string; wal_from: string; wal_to?: string; wal_segments: number; problems: string[] }[];
  problems: string[];
  orphans: string[];
}

describe('verify (real PostgreSQL, encrypted directory store)', () => {
  const reg = trackClusters();
  let store: TestStore;
  let keys: GpgKeys;
  let e: Cluster;
  let pushEnv: Record<string, string>;
  let readEnv: Record<string, string>;
  const backups: { name: string; wal_start: string; wal_stop: string }[] = [];
  let newest: string;

  const verify = (args: string[] = [], env = readEnv) => runWalts(['verify', ...args], env, { timeoutMs: 120_000 });
  const path = (key: string) => join(store.dir, ...key.split('/'));
  const walKeyOf = (segment: string) => `walts_v1/wal/${segment.slice(0, 16)}/${segment}.lz4.pgp`;

  /** Moves an object (and its metadata side file) out of the store; returns how to put it back. */
  async function takeAway(key: string): Promise<() => Promise<void>> {
    const aside = join(await reg.tempDir(`aside-${Math.random().toString(36).slice(2)}`), 'obj');
    await fsp.rename(path(key), aside);
    const meta = await fsp.rename(`${path(key)}.meta.json`, `${aside}.meta.json`).then(() => true, () => false);
    return async () => {
      await fsp.rename(aside, path(key));
      if (meta) await fsp.rename(`${aside}.meta.json`, `${path(key)}.meta.json`);
    };
  }

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'verify pass', algo: 'ed25519' });
    store = await startStore('file', reg, 'verify');
    pushEnv = { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath };
    readEnv = { ...pushEnv, WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' };
    e = await reg.createCluster({ name: 'e', env: pushEnv, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await e.start();
    await e.pgbench(['-i', '-s', '1', '-q']);
    await e.psql('create table marks (id int primary key)');
    for (let b = 0; b < 2; b++) {
      // A few archived segments before each backup, so the first backup's chain has a middle.
      for (let i = 0; i < 3; i++) {
        await e.psql(`insert into marks values (${b * 10 + i})`);
        await e.switchWalAndWaitArchived();
      }
      const push = await runWalts(['backup-push', e.dataDir, '--fast', '--volume-size', '8MiB'], { ...pushEnv, ...e.pgEnv() }, { timeoutMs: 180_000 });
      expect(push.code).toBe(0);
    }
    newest = await e.switchWalAndWaitArchived();
    await e.stop(); // nothing changes behind the tests' back
    const list = await runWalts(['backup-list', '--json'], readEnv);
    backups.push(...(JSON.parse(list.stdout) as typeof backups));
    expect(backups).toHaveLength(2);
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
    await keys?.cleanup();
  });

  it('a healthy store: exit 0, shallow without the private key and --deep with it', async () => {
    const shallow = await verify([], pushEnv);
    expect(shallow.stderr).not.toMatch(/"level":(50|60)/);
    expect(shallow.code).toBe(0);
    expect(shallow.stdout).toContain('ok: 2 backup(s) restorable to the newest archived WAL');
    for (const b of backups) expect(shallow.stdout).toMatch(new RegExp(`^${b.name}\\s+1\\s+${b.wal_start}\\s+${newest}\\s+\\d+\\s+ok$`, 'm'));

    const deep = await verify(['--deep', '--json']);
    expect(deep.code).toBe(0);
    const report = JSON.parse(deep.stdout) as Report;
    expect(report).toMatchObject({ ok: true, deep: true, problems: [] });
    expect(report.backups.map((b) => [b.name, b.wal_from, b.wal_to, b.problems])).toEqual(backups.map((b) => [b.name, b.wal_start, newest, []]));
    expect(report.backups[0]!.wal_segments).toBeGreaterThan(report.backups[1]!.wal_segments);
  });

  it('a WAL segment missing in the middle: exit 3, the segment named, only the backups that need it fail', async () => {
    // A segment after the first backup's stop and before the second backup's start.
    const entries = (await fsp.readdir(path(`walts_v1/wal/${backups[0]!.wal_stop.slice(0, 16)}`))).filter((f) => /^[0-9A-F]{24}\.lz4\.pgp$/.test(f)).map((f) => f.slice(0, 24));
    const gap = entries.filter((s) => s > backups[0]!.wal_stop && s < backups[1]!.wal_start).sort()[0];
    expect(gap).toBeDefined();
    const putBack = await takeAway(walKeyOf(gap!));
    try {
      const r = await verify();
      expect(r.code).toBe(3);
      expect(r.stdout).toMatch(new RegExp(`^problem: ${backups[0]!.name}: WAL gap: ${gap} missing`, 'm'));
      expect(r.stdout).toContain('FAILED');
      expect(r.stderr).toMatch(/verify found 1 problem/);
      const json = JSON.parse((await verify(['--json'])).stdout) as Report;
      expect(json.ok).toBe(false);
      expect(json.backups[0]!.problems).toEqual([expect.stringContaining(gap!)]);
      expect(json.backups[1]!.problems).toEqual([]);
    } finally {
      await putBack();
    }
    expect((await verify()).code).toBe(0);
  });

  it('a volume with one flipped byte: the shallow check passes, --deep exits 3 naming the volume', async () => {
    const volume = `walts_v1/basebackups/${backups[1]!.name}/part_00001.tar.lz4.pgp`;
    const file = path(volume);
    const original = await fsp.readFile(file);
    const damaged = Buffer.from(original);
    const at = Math.floor(damaged.length / 2);
    damaged[at] = damaged[at]! ^ 0x01;
    await fsp.writeFile(file, damaged);
    try {
      const shallow = await verify();
      expect(shallow.code).toBe(0); // same size: only the digests can tell
      const deep = await verify(['--deep']);
      expect(deep.code).toBe(3);
      expect(deep.stdout).toMatch(new RegExp(`^problem: ${backups[1]!.name}: .*${volume.replace(/\./g, '\\.')}`, 'm'));
      expect(deep.stdout).not.toMatch(new RegExp(`^problem: ${backups[0]!.name}`, 'm'));
    } finally {
      await fsp.writeFile(file, original);
    }
    expect((await verify(['--deep'])).code).toBe(0);
  });

  it('a corrupted WAL object fails --deep, naming it', async () => {
    const key = walKeyOf(backups[1]!.wal_start);
    const original = await fsp.readFile(path(key));
    const damaged = Buffer.from(original);
    damaged[damaged.length - 40] = damaged[damaged.length - 40]! ^ 0x80;
    await fsp.writeFile(path(key), damaged);
    try {
      expect((await verify()).code).toBe(0);
      const deep = await verify(['--deep']);
      expect(deep.code).toBe(3);
      expect(deep.stdout).toMatch(new RegExp(`^problem: ${key.replace(/\./g, '\\.')}`, 'm'));
    } finally {
      await fsp.writeFile(path(key), original);
    }
  });

  it('a missing volume or manifest fails the shallow check', async () => {
    const manifest = (await fsp.readdir(path(`walts_v1/basebackups/${backups[0]!.name}`))).find((f) => f.startsWith('manifest'))!;
    const key = `walts_v1/basebackups/${backups[0]!.name}/${manifest}`;
    const putBack = await takeAway(key);
    try {
      const r = await verify([], pushEnv);
      expect(r.code).toBe(3);
      expect(r.stdout).toContain(`problem: ${backups[0]!.name}: ${key} is missing`);
    } finally {
      await putBack();
    }
  });

  it('a leftover of a failed backup and WAL older than every backup are orphans, not failures', async () => {
    const name = 'base_000000010000000000000001_00000028';
    await fsp.mkdir(path(`walts_v1/basebackups/${name}`), { recursive: true });
    await fsp.writeFile(path(`walts_v1/basebackups/${name}/started.json`), '{}');
    const old = new Date(Date.now() - 48 * 3_600_000);
    await fsp.utimes(path(`walts_v1/basebackups/${name}/started.json`), old, old);
    try {
      const r = await verify(['--json']);
      expect(r.code).toBe(0);
      // WAL archived before the first backup is an orphan too.
      expect((JSON.parse(r.stdout) as Report).orphans).toEqual([
        expect.stringMatching(new RegExp(`^${name}: leftover of a failed backup`)),
        expect.stringMatching(/^\d+ WAL file\(s\) older than the oldest backup/),
      ]);
    } finally {
      await fsp.rm(path(`walts_v1/basebackups/${name}`), { recursive: true });
    }
  });
});

describe('verify reports a forked history (real PostgreSQL, directory store)', () => {
  const reg = trackClusters();
  let store: TestStore;
  let origin: Cluster;
  let mark = 0;

  const verify = (args: string[] = []) => runWalts(['verify', ...args], store.env, { timeoutMs: 120_000 });
  const addMark = async (c: Cluster) => {
    await c.psql(`insert into marks values (${++mark})`);
    return c.switchWalAndWaitArchived();
  };
  const historyStored = async (tli: number) => {
    const dir = join(store.dir, 'walts_v1', 'wal', 'history');
    const names = await fsp.readdir(dir).catch(() => [] as string[]);
    return names.some((n) => n.startsWith(`${tli.toString(16).toUpperCase().padStart(8, '0')}.history`));
  };

  beforeAll(async () => {
    store = await startStore('file', reg, 'fork');
    origin = await reg.createCluster({ name: 'origin', env: store.env, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await origin.start();
    await origin.psql('create table marks (id int primary key)');
    await addMark(origin);
    const push = await runWalts(['backup-push', origin.dataDir, '--fast', '--volume-size', '8MiB'], { ...store.env, ...origin.pgEnv() }, { timeoutMs: 180_000 });
    expect(push.code).toBe(0);
    await addMark(origin);
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await store?.stop();
  });

  it('a restored copy that kept archiving promotes while the origin goes on: verify exits 3 naming both timelines and the branch', async () => {
    // The copy keeps the origin's archive_command (--archive-mode preserve) and promotes at the end
    // of the archive: timeline 2 branches off timeline 1 in the origin's prefix.
    const copy = await reg.emptyCluster({ name: 'copy', env: store.env });
    const fetch = await runWalts(['backup-fetch', copy.dataDir, 'LATEST', '--target-action', 'promote', '--archive-mode', 'preserve'], store.env, { timeoutMs: 180_000 });
    expect(fetch.code).toBe(0);
    await copy.prepareRestoredDataDir({ keepSourceSettings: true });
    await copy.start();
    await copy.waitForRecoveryEnd(120_000);
    await copy.psql('checkpoint');
    expect(await copy.psql('select timeline_id from pg_control_checkpoint()')).toBe('2');
    const deadline = Date.now() + 120_000;
    while (!(await historyStored(2))) {
      if (Date.now() > deadline) throw new Error('00000002.history never reached the store');
      await new Promise((r) => setTimeout(r, 100));
    }
    await addMark(copy);

    // A clean promotion so far: the origin has archived nothing past the segment holding the branch point.
    const clean = await verify(['--json']);
    expect(clean.stderr).not.toMatch(/"level":(50|60)/);
    expect(clean.code).toBe(0);
    expect((JSON.parse(clean.stdout) as { forks: unknown[] }).forks).toEqual([]);

    // The origin goes on archiving timeline 1 into the same prefix.
    for (let i = 0; i < 3; i++) await addMark(origin);
    const last = await addMark(origin);

    const json = await verify(['--json']);
    expect(json.code).toBe(3);
    const report = JSON.parse(json.stdout) as Report & { forks: { timeline: number; branched_timeline: number; branch_lsn: string; segments_after_branch: number; continued_to: string; latest_timeline: number }[] };
    expect(report.ok).toBe(false);
    expect(report.forks).toHaveLength(1);
    const [fork] = report.forks;
    expect(fork).toMatchObject({ timeline: 1, branched_timeline: 2, continued_to: last, latest_timeline: 2 });
    expect(fork!.segments_after_branch).toBeGreaterThanOrEqual(3);
    expect(fork!.branch_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]).toContain(`timeline 1 went on to ${last}`);
    expect(report.problems[0]).toContain(`timeline 2 branched off it at ${fork!.branch_lsn}`);

    const text = await verify();
    expect(text.code).toBe(3);
    const lines = text.stdout.split('\n').filter((l) => l.startsWith('problem: forked history'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/two servers archived into this prefix.*--target-timeline latest.*follow timeline 2.*own WALTS_STORE prefix/);
    expect(text.stderr).not.toMatch(/\n\s+at /); // one line, no stack trace
    await copy.stop();
  });
});
