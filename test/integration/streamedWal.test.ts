/**
 * WAL streamed by a receiver, read by the rest of walts, with real PostgreSQL 15 (docs/streaming.md,
 * "Restoring with streamed WAL"). A stand-in plays `walts wal-receive`: `pg_receivewal --slot`
 * keeps the slot active and writes the WAL into a directory; the test pushes each completed segment
 * with `walts wal-push` and writes the segment in progress as `receive/<slot>/<segment>.partial`
 * (through the one encode path), so nothing here depends on the receiver command itself.
 *
 * - backup-push with archive_mode off is refused while no receiver feeds the store (the message names
 *   both ways), and with an active slot but no receiver record; accepted once the receiver's record
 *   (receive/<slot>/receiver.json, written by the stand-in as wal-receive does) names this cluster,
 *   right after a segment switch with no WAL written by the test (no partial: nothing to nudge); its
 *   wait for the stop segment proves that pg_backup_stop switches segments with archive_mode off; the
 *   same for backup-push --remote on an idle server, the slot's folder holding only the record, with
 *   no CHECKPOINT or commit first;
 * - a standby in standby mode fed by the archive alone replays the received partial and follows it as
 *   it grows (restore_command re-run for the same segment);
 * - a restore (backup-fetch + wal-fetch as restore_command, prefetch on) of a primary killed right
 *   after a commit has that commit, which exists only in the received partial, and the prefetcher
 *   served no partial; the same restore with WALTS_FETCH_PARTIAL=off and with the partial removed
 *   loses it;
 * - verify reports how far the streamed WAL reaches; delete everything removes receive/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { RECEIVE_ROOT, receiverRecordKey } from '../../src/archive/layout';
import { writeReceiverRecord } from '../../src/archive/receiverRecord';
import { loadConfig } from '../../src/config';
import { makeDeps, type Deps } from '../../src/deps';
import { parseLsn, parseSegmentName, segmentStartLsn } from '../../src/postgres/walName';
import { pgBin, PG_OS_USER, trackClusters, type Cluster } from '../helpers/pg';
import { baseEnv, runWalts, wrapCommand } from '../helpers/run';
import { writeReceivedPartial } from '../helpers/receivedPartial';
import { startStore, type StoreKind, type TestStore } from '../helpers/stores';
import { storeKeysUnder } from '../helpers/storeKeys';

const SLOT = 'walts_test';
const SEG = 16 * 1024 * 1024;
const PREFIX = 'streamed';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each<StoreKind>(['file', 's3'])('streamed WAL with real PostgreSQL (%s store)', (kind) => {
  const reg = trackClusters();
  let store: TestStore;
  let deps: Deps;
  let a: Cluster;
  let recvDir: string;
  let receiver: ChildProcess | undefined;
  let receiverLog = '';
  const pushed = new Set<string>();
  let partialKey: string | undefined;
  let backup = '';

  /** One round of the stand-in receiver: completed segments pushed, the one in progress written as receive/ partial (unless `partials` is false). */
  async function syncReceiver(partials = true): Promise<void> {
    const files = readdirSync(recvDir).sort();
    for (const f of files.filter((x) => /^[0-9A-F]{24}$/.test(x))) {
      if (pushed.has(f)) continue;
      const r = await runWalts(['wal-push', join(recvDir, f)], { ...store.env, WALTS_PUSH_LOOKAHEAD: '0' }, { timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`wal-push ${f} exited ${r.code}: ${r.stderr}`);
      pushed.add(f);
      // As the receiver does: the partial goes once the complete segment is archived.
      if (partialKey?.includes(`/${f}.partial`)) {
        await deps.storage.delete([partialKey]);
        partialKey = undefined;
      }
    }
    const partial = files.find((x) => /^[0-9A-F]{24}\.partial$/.test(x));
    if (!partial || !partials) return;
    const seg = partial.slice(0, 24);
    const flush = await a.psql("select coalesce(flush_lsn::text, '') from pg_stat_replication where application_name = 'pg_receivewal'").catch(() => '');
    if (!flush) return;
    const bytes = Number(parseLsn(flush) - segmentStartLsn(parseSegmentName(seg, SEG), SEG));
    if (bytes <= 0 || bytes > SEG) return;
    let content: Buffer;
    try {
      content = readFileSync(join(recvDir, partial));
    } catch {
      return; // completed (renamed) meanwhile: pushed next round
    }
    partialKey = await writeReceivedPartial(deps, SLOT, seg, content.subarray(0, bytes));
  }

  /** Until the receiver has flushed everything the server flushed (pg_receivewal --synchronous reports at once). */
  async function receiverCaughtUp(): Promise<void> {
    for (let i = 0; i < 600; i++) {
      const ok = await a.psql("select count(*) from pg_stat_replication where application_name = 'pg_receivewal' and flush_lsn >= pg_current_wal_flush_lsn()");
      if (ok === '1') return;
      await sleep(100);
    }
    throw new Error(`pg_receivewal did not catch up: ${receiverLog}`);
  }

  /** backup-fetch LATEST into a new cluster, recover to the end of the archive, query, remove. */
  async function restoreAndQuery(name: string, sql: string, env: Record<string, string> = {}): Promise<{ value: string; log: string; spool: string }> {
    const r = await reg.emptyCluster({ name: `restore-${name}`, env: { ...store.env, ...env } });
    const fetch = await runWalts(['backup-fetch', r.dataDir, backup], store.env, { timeoutMs: 180_000 });
    if (fetch.code !== 0) throw new Error(`backup-fetch failed (${fetch.code}): ${fetch.stderr}`);
    await r.prepareRestoredDataDir({ keepSourceSettings: true });
    r.setConf({ archive_mode: 'off' });
    await r.start();
    await r.waitForRecoveryEnd(180_000);
    const value = await r.psql(sql);
    const log = r.log();
    const served = join(r.dataDir, 'pg_wal', 'walts_spool', 'fetch', 'served.log');
    const spool = existsSync(served) ? readFileSync(served, 'utf8') : '';
    await r.destroy();
    return { value, log, spool };
  }

  beforeAll(async () => {
    store = await startStore(kind, reg, PREFIX);
    deps = makeDeps(loadConfig({ env: store.env, readFile: () => ({ text: '', mode: 0o600 }) }), pino({ level: 'silent' }));
    recvDir = await reg.tempDir('received', { forPostgres: true });
    a = await reg.createCluster({ name: 'a', env: store.env, conf: { archive_mode: 'off', checkpoint_timeout: '30s' } });
    await a.start();
    await a.psql('create table marks (id int primary key)');
    await a.psql(`select pg_create_physical_replication_slot('${SLOT}')`);
  }, 300_000);
  afterAll(async () => {
    receiver?.kill('SIGTERM');
    await reg.cleanupAll();
    await store?.stop();
  });

  it('backup-push with archive_mode off: refused without a receiver feeding the store, naming both ways', async () => {
    const r = await runWalts(['backup-push', a.dataDir, '--fast'], { ...store.env, ...a.pgEnv() }, { timeoutMs: 120_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('archive_mode is off on this server, and no physical replication slot is active');
    expect(r.stderr).toContain("archive_command = 'walts wal-push %p'");
    expect(r.stderr).toContain('walts wal-receive --slot NAME');
  }, 180_000);

  it('backup-push with archive_mode off succeeds while the receiver on an active slot feeds the store (pg_backup_stop switched segments)', async () => {
    const w = wrapCommand(pgBin('pg_receivewal'), ['-D', recvDir, '-h', a.socketDir, '-p', String(a.port), '-U', 'postgres', '--slot', SLOT, '--synchronous', '-n'], baseEnv(), PG_OS_USER, true);
    receiver = spawn(w.cmd, w.args, { env: w.spawnEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    receiver.stderr!.on('data', (b: Buffer) => (receiverLog += b.toString()));
    await receiverCaughtUp();
    // An active slot, but no receiver record (nothing copies into the store yet): refused.
    const refused = await runWalts(['backup-push', a.dataDir, '--fast'], { ...store.env, ...a.pgEnv() }, { timeoutMs: 120_000 });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`no active physical slot (${SLOT}) has a receiver record of this cluster`);
    // The stand-in starts "streaming" into the store: its record, as wal-receive writes it.
    await writeReceiverRecord(deps.storage, { slot: SLOT, system_identifier: await a.psql('select system_identifier from pg_control_system()'), timeline: 1, host: 'test', pid: receiver.pid ?? 0, started_at: new Date().toISOString(), walts_version: 'test' });
    // Right after a segment switch on an idle server: the record alone shows the receiver.
    await a.psql('select pg_switch_wal()');
    await receiverCaughtUp();
    await syncReceiver();

    let syncing = true;
    const loop = (async () => {
      while (syncing) {
        await syncReceiver();
        await sleep(200);
      }
    })();
    const r = await runWalts(['backup-push', a.dataDir, '--fast', '--archive-timeout', '120'], { ...store.env, ...a.pgEnv() }, { timeoutMs: 240_000 });
    syncing = false;
    await loop;
    expect(r.stderr).toContain(`through the receiver on replication slot ${SLOT}`);
    expect(r.code).toBe(0);
    const list = JSON.parse((await runWalts(['backup-list', '--json'], store.env)).stdout) as { name: string }[];
    expect(list).toHaveLength(1);
    backup = list[0]!.name;
  }, 300_000);

  it('backup-push --remote with archive_mode off, idle server: accepted through the receiver record alone (no CHECKPOINT or commit first)', async () => {
    // The folder holds the record only, and the stand-in writes no partial until the backup is done:
    // what an idle server right after a segment switch looks like, whatever WAL the server writes meanwhile.
    await receiverCaughtUp();
    await syncReceiver(false);
    if (partialKey) await deps.storage.delete([partialKey]);
    partialKey = undefined;
    expect((await storeKeysUnder(store, PREFIX)).filter((k) => k.startsWith(`${RECEIVE_ROOT}/`))).toEqual([receiverRecordKey(SLOT)]);
    let syncing = true;
    const loop = (async () => {
      while (syncing) {
        await syncReceiver(false);
        await sleep(200);
      }
    })();
    const r = await runWalts(['backup-push', '--remote', '--fast', '--archive-timeout', '120'], { ...store.env, ...a.pgEnv() }, { timeoutMs: 240_000 });
    syncing = false;
    await loop;
    expect(r.stderr).toContain(`through the receiver on replication slot ${SLOT}`);
    expect(r.code).toBe(0);
    const list = JSON.parse((await runWalts(['backup-list', '--json'], store.env)).stdout) as { name: string }[];
    expect(list).toHaveLength(2);
  }, 300_000);

  it('a standby in standby mode follows the received partial as it grows; a restore has the commit that exists only in it; without it the commit is lost', async () => {
    await a.psql('insert into marks values (1)');
    await a.psql('select pg_switch_wal()');
    await receiverCaughtUp();
    await syncReceiver(); // segment with mark 1 complete in wal/
    await a.psql('insert into marks values (2)');
    await receiverCaughtUp();
    await syncReceiver(); // mark 2 only in receive/<slot>/<segment>.partial
    const partialSegment = partialKey!.split('/').pop()!.slice(0, 24);
    expect(pushed.has(partialSegment)).toBe(false);
    const marks = "select string_agg(id::text, ',' order by id) from marks";

    // A standby (standby mode) fed by the archive alone replays the partial, runs restore_command for
    // the same segment again, and so follows the receiver's partial as it grows.
    const standby = await reg.emptyCluster({ name: 'standby', env: store.env });
    const fetched = await runWalts(['backup-fetch', standby.dataDir, backup], store.env, { timeoutMs: 180_000 });
    expect(fetched.code).toBe(0);
    await standby.prepareRestoredDataDir({ keepSourceSettings: true });
    await standby.setRecovery({ archive_mode: 'off', wal_retrieve_retry_interval: '500ms' }, { standby: true });
    await standby.start();
    const until = async (want: string) => {
      for (let i = 0; i < 1200 && (await standby.psql(marks).catch(() => '')) !== want; i++) await sleep(100);
      expect(await standby.psql(marks)).toBe(want);
    };
    await until('1,2');
    await a.psql('insert into marks values (3)');
    await receiverCaughtUp();
    await syncReceiver(); // the partial grows
    expect(partialKey).toContain(partialSegment);
    await until('1,2,3');
    expect(standby.log().split('\n').filter((l) => l.includes('"source":"received"') && l.includes(`"wal":"${partialSegment}"`)).length).toBeGreaterThanOrEqual(2);
    await standby.destroy();
    await a.stop('immediate'); // the primary dies: nothing more reaches the archive
    receiver?.kill('SIGTERM');

    const v = await runWalts(['verify', '--json'], store.env, { timeoutMs: 120_000 });
    const report = JSON.parse(v.stdout) as { streamed: { slot: string; segment: string; end_lsn?: string; problem?: string }[] };
    expect(report.streamed).toEqual([expect.objectContaining({ slot: SLOT, segment: partialSegment })]);
    expect(report.streamed[0]!.problem).toBeUndefined();

    const withPartial = await restoreAndQuery('with', marks);
    expect(withPartial.value).toBe('1,2,3');
    expect(withPartial.log).toContain(`"wal":"${partialSegment}"`);
    expect(withPartial.log).toMatch(new RegExp(`"source":"received"[^\\n]*|served the WAL received so far through slot ${SLOT}`));
    // The prefetcher never spooled or served the partial segment (the fast sh path logs what it served).
    expect(withPartial.spool).not.toContain(partialSegment);

    expect((await restoreAndQuery('off', marks, { WALTS_FETCH_PARTIAL: 'off' })).value).toBe('1');
    await deps.storage.delete([partialKey!]);
    expect((await restoreAndQuery('removed', marks)).value).toBe('1');
  }, 900_000);

  it('delete everything removes receive/ too', async () => {
    await writeReceivedPartial(deps, SLOT, '000000010000000000000063', Buffer.from('a receiver left this'));
    expect((await storeKeysUnder(store, PREFIX)).filter((k) => k.startsWith(RECEIVE_ROOT)).length).toBeGreaterThan(0);
    const r = await runWalts(['delete', 'everything', '--confirm'], store.env, { timeoutMs: 120_000 });
    expect(r.code).toBe(0);
    const keys = await storeKeysUnder(store, PREFIX);
    expect(keys.filter((k) => k.startsWith(RECEIVE_ROOT))).toEqual([]);
  }, 180_000);
});
