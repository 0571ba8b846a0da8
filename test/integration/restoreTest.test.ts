/**
 * Acceptance for `walts restore-test`, the restore drill (issue 9, scope 4), with real PostgreSQL 15,
 * the walts binary and both store kinds:
 * - on a healthy archive (a backup, pgbench and INSERT traffic after it, archived WAL) the drill
 *   passes, exit 0, and its record is read back with `latestDrills` (what status and metrics read);
 *   with `--dest DIR --keep` the restored, promoted cluster is left stopped and starts again;
 * - a WAL segment removed from the store between the backup's end and the archive's end: PostgreSQL
 *   would just end recovery there and promote; the drill proves the gap (exit 3, recorded);
 * - a backup volume whose bytes were rewritten: exit 3 at fetch, recorded;
 * - `--sql FILE` raising an error fails the drill (exit 1, recorded, the other checks still ran);
 * - as root, the drill refuses at once (exit 2), naming runuser.
 * One source cluster per store kind; each drill starts one server of its own.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findBackup } from '../../src/archive/catalog';
import { latestDrills, type DrillRecord } from '../../src/archive/drillRecord';
import { loadConfig } from '../../src/config';
import { openStorage } from '../../src/storage/open';
import type { Storage } from '../../src/storage/storage';
import { readAll } from '../../src/util/streams';
import { chownToPg, PG_OS_USER, trackClusters, type Cluster } from '../helpers/pg';
import { baseEnv, isRoot, runWalts, WALTS_BIN, wrapCommand } from '../helpers/run';
import { startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';

type Printed = DrillRecord & { record_key: string | null; kept_in: string | null };

const ROWS_AFTER_BACKUP = 300;

describe.each<StoreKind>(['file', 's3'])('restore-test (real PostgreSQL 15, %s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let storage: Storage;
  let src: Cluster;
  let newest: string;
  let targetTime: string;
  let backup: { name: string; stop_wal_file: string; volumes: readonly { key: string }[] };
  let sqlDir: string;

  const drill = (args: string[]) => runWalts(['restore-test', ...args, '--json'], { ...store.env, PGUSER: 'postgres' }, { timeoutMs: 600_000, asUser: PG_OS_USER });
  const printed = (stdout: string) => JSON.parse(stdout) as Printed;
  const check = (r: DrillRecord, name: string) => r.checks.find((c) => c.name === name);

  beforeAll(async () => {
    store = await startStore(kind, reg, `drill-${kind}`);
    storage = openStorage(loadConfig({ env: store.env, readFile: () => ({ text: '', mode: 0o600 }) }).store);
    src = await reg.createCluster({ name: `src-${kind}`, env: store.env, dataChecksums: true, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await src.start();
    await src.pgbench(['-i', '-s', '1', '-q']);
    await src.psql('create table marks (id int primary key)');
    const push = await runWalts(['backup-push', src.dataDir, '--fast'], { ...store.env, ...src.pgEnv() }, { timeoutMs: 300_000, asUser: PG_OS_USER });
    expect(push.code).toBe(0);
    // Traffic after the backup, over several archived segments: only the archive has it.
    await src.pgbench(['-t', '200', '-c', '2', '-n']);
    for (let i = 0; i < 3; i++) {
      await src.psql(`insert into marks select generate_series(${i * 100 + 1}, ${(i + 1) * 100})`);
      // Between the second and the third batch: the point-in-time target (200 rows).
      if (i === 1) targetTime = await src.psql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
      newest = await src.switchWalAndWaitArchived();
    }
    await src.stop(); // nothing changes behind the drills' back
    backup = await findBackup(storage, 'LATEST');
    sqlDir = await reg.tempDir(`sql-${kind}`, { forPostgres: true });
  });
  afterAll(async () => {
    await storage?.close();
    await reg.cleanupAll();
    await store?.stop();
  });

  it(`a healthy archive: the drill passes, exit 0, and its record is in the store (${kind === 'file' ? 'to the end of the archive, --dest --keep' : '--target-time'})`, async () => {
    // The file store replays to the end of the archive and keeps the copy (the nightly volume job);
    // the s3 one replays to a time between two batches, in a temporary directory.
    const pitr = kind === 's3';
    const rows = pitr ? 200 : ROWS_AFTER_BACKUP;
    const sql = join(sqlDir, 'ok.sql');
    writeFileSync(sql, `do $$ begin if (select count(*) from marks) <> ${rows} then raise exception 'marks: % rows', (select count(*) from marks); end if; end $$;\n`);
    await chownToPg(sql);
    const kept = pitr ? undefined : await reg.emptyCluster({ name: 'kept' });
    const r = await drill(['LATEST', '--sql', sql, ...(kept ? ['--dest', kept.dataDir, '--keep'] : ['--target-time', targetTime])]);
    if (r.code !== 0 || process.env.DRILL_DEBUG) process.stderr.write(`${r.stdout}\n${r.stderr}`);
    expect(r.code).toBe(0);
    const rec = printed(r.stdout);
    expect(rec).toMatchObject({ ok: true, backup: backup.name, error: null, target: pitr ? { kind: 'time', time: targetTime } : { kind: 'end' }, reached_timeline: 1 });
    expect(rec.checks.map((c) => c.name)).toEqual(['postgres', 'fetch', 'consistent', 'replay', 'query', 'sql', 'amcheck', 'stop', 'checksums']);
    expect(rec.checks.every((c) => c.ok)).toBe(true);
    expect(check(rec, 'replay')!.detail).toContain(pitr ? 'recovery stopping before commit' : `newest archived: ${newest}`);
    if (pitr) expect(Date.parse(rec.reached_time!)).toBeLessThanOrEqual(Date.parse(targetTime.replace(' ', 'T').replace('+00', 'Z')));
    expect(check(rec, 'amcheck')!.detail).toContain('no corruption');
    expect(check(rec, 'checksums')!.detail).toContain('no bad checksum');
    expect(rec.reached_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(rec.record_key).toMatch(/^walts_v1\/drills\/drill_\d{8}T\d{9}Z_base_/);

    const latest = await latestDrills(storage);
    expect(latest.last).toMatchObject({ started_at: rec.started_at, ok: true, backup: backup.name, reached_lsn: rec.reached_lsn, checks: rec.checks });
    expect(latest.lastSuccess?.started_at).toBe(rec.started_at);

    if (kept) {
      expect(rec.kept_in).toBe(kept.dataDir);
      // The kept copy is a stopped, promoted primary: it starts without recovery and holds everything.
      await kept.prepareRestoredDataDir();
      await kept.start();
      expect(await kept.psql('select pg_is_in_recovery()')).toBe('f');
      expect(await kept.psql('select count(*) from marks')).toBe(String(ROWS_AFTER_BACKUP));
      expect(await kept.psql('select count(*) > 0 from pgbench_history')).toBe('t');
      await kept.stop();
    }
  });

  if (kind === 's3') {
    it('--sql FILE that raises an error fails the drill: exit 1, recorded, the other checks still run', async () => {
      const sql = join(sqlDir, 'bad.sql');
      writeFileSync(sql, "select 1;\ndo $$ begin raise exception 'drill assertion: orders missing'; end $$;\n");
      await chownToPg(sql);
      const r = await drill(['--sql', sql]);
      expect(r.code).toBe(1);
      const rec = printed(r.stdout);
      expect(rec.ok).toBe(false);
      expect(check(rec, 'sql')).toMatchObject({ ok: false, detail: expect.stringContaining('drill assertion: orders missing') });
      expect(check(rec, 'replay')?.ok).toBe(true);
      expect(check(rec, 'amcheck')?.ok).toBe(true);
      expect(rec.error).toContain('drill assertion: orders missing');
      const latest = await latestDrills(storage);
      expect(latest.last?.started_at).toBe(rec.started_at);
      expect(latest.last?.ok).toBe(false);
      expect(latest.lastSuccess?.ok).toBe(true);
    });
  }

  if (kind === 'file') {
    it('SIGTERM during replay: the server is stopped, the copy removed, the drill recorded as interrupted, the signal re-raised', async () => {
      const parent = await reg.tempDir('interrupted', { forPostgres: true });
      const dest = join(parent, 'data');
      const env = { ...baseEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...store.env, PGUSER: 'postgres' };
      const w = wrapCommand(WALTS_BIN, ['restore-test', '--dest', dest, '--json'], env, PG_OS_USER, true);
      const child = spawn(w.cmd, w.args, { env: w.spawnEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
      // The seam: walts logs the replay step (with its pid) once the server runs; the signal goes to walts itself.
      const pid = await new Promise<number>((resolve, reject) => {
        child.stderr.on('data', (b: Buffer) => {
          stderr += b.toString();
          const line = stderr.split('\n').find((l) => l.includes('restore-test: replaying WAL'));
          if (line) resolve((JSON.parse(line) as { pid: number }).pid);
        });
        child.on('close', () => reject(new Error(`walts ended before replay: ${stderr}`)));
      });
      process.kill(pid, 'SIGTERM');
      const end = await exited;
      // runuser reports its child's death by a signal as 128 + the signal number.
      expect(end.signal === 'SIGTERM' || end.code === 143).toBe(true);
      expect(stderr).toContain('interrupted by SIGTERM');
      const rec = printed(stdout);
      expect(rec.ok).toBe(false);
      expect(rec.checks.find((c) => c.name === 'interrupted')?.detail).toContain('SIGTERM');
      expect(rec.error).toContain('interrupted');
      expect(existsSync(dest)).toBe(false); // the copy (and with it the stopped server's data) is gone
      const latest = await latestDrills(storage);
      expect(latest.last).toMatchObject({ started_at: rec.started_at, ok: false });
    });
  }

  it('a WAL segment missing between the backup and the end of the archive: exit 3, the gap named, recorded', async () => {
    const walKey = async (segment: string) => {
      for await (const o of storage.list(`walts_v1/wal/${segment.slice(0, 16)}/${segment}`)) return o.key;
      throw new Error(`${segment} is not in the store`);
    };
    // The segment after the backup's last one: PostgreSQL would end recovery there and promote.
    const gap = nextSegmentName(backup.stop_wal_file);
    expect(gap < newest).toBe(true);
    const key = await walKey(gap);
    const object = await storage.get(key);
    const bytes = await readAll(object.body);
    await storage.delete([key]);
    try {
      const r = await drill([]);
      expect(r.code).toBe(3);
      const rec = printed(r.stdout);
      expect(rec.ok).toBe(false);
      expect(check(rec, 'consistent')?.ok).toBe(true);
      expect(check(rec, 'replay')).toMatchObject({ ok: false, detail: expect.stringContaining(`missing from the archive: ${gap}`) });
      expect(rec.error).toContain(gap);
      expect(rec.reached_lsn).not.toBeNull();
      expect(r.stderr).toContain('"error_kind":"integrity"');
      const latest = await latestDrills(storage);
      expect(latest.last).toMatchObject({ started_at: rec.started_at, ok: false });
    } finally {
      await storage.put(key, bytes, { metadata: object.metadata });
    }
  });

  it('a backup volume whose bytes were rewritten: exit 3 at fetch, recorded', async () => {
    const key = `walts_v1/basebackups/${backup.name}/${backup.volumes[0]!.key.split('/').pop()}`;
    const object = await storage.get(key);
    const original = await readAll(object.body);
    const damaged = Buffer.from(original);
    for (let i = Math.floor(damaged.length / 2); i < Math.floor(damaged.length / 2) + 64; i++) damaged[i] = damaged[i]! ^ 0x5a;
    await storage.put(key, damaged, { metadata: object.metadata });
    try {
      const r = await drill([backup.name]);
      expect(r.code).toBe(3);
      const rec = printed(r.stdout);
      expect(rec).toMatchObject({ ok: false, reached_lsn: null });
      expect(check(rec, 'fetch')?.ok).toBe(false);
      expect(check(rec, 'consistent')).toBeUndefined(); // no server was started
      const latest = await latestDrills(storage);
      expect(latest.last).toMatchObject({ started_at: rec.started_at, ok: false, backup: backup.name });
    } finally {
      await storage.put(key, original, { metadata: object.metadata });
    }
  });
});

describe('restore-test as root', () => {
  (isRoot() ? it : it.skip)('refuses at once, exit 2, one line naming runuser (PostgreSQL does not run as root)', async () => {
    // Refused before the configuration is even read: no store needed.
    const r = await runWalts(['restore-test'], {}, { timeoutMs: 60_000 });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('runuser -u postgres -- walts restore-test');
  });
});

function nextSegmentName(name: string): string {
  const tli = name.slice(0, 8);
  const n = BigInt(`0x${name.slice(8, 16)}`) * 0x100n + BigInt(`0x${name.slice(16, 24)}`) + 1n;
  const hex = (v: bigint) => v.toString(16).toUpperCase().padStart(8, '0');
  return `${tli}${hex(n / 0x100n)}${hex(n % 0x100n)}`;
}
