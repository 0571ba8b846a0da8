/**
 * Acceptance for `walts status` and `walts metrics` (issue 9) with real PostgreSQL 15 and the walts
 * binary, on a directory store and on s3rver:
 * - after 2 backups and the WAL archived around them, status (JSON and text), the textfile and the
 *   HTTP endpoint show what the store and pg_stat_archiver hold (read behind walts' back);
 * - with archive_command failing, walts_archive_failed_total rises in the running exporter and
 *   status shows the failure;
 * - with the store gone (file: directory moved away; s3: a proxy that refuses, or holds every request),
 *   walts_up is 0 and the endpoint still answers: while a store request is being held, a scrape
 *   completes with the refresh still in flight (no wall-clock bound: the held request never ends).
 * Metrics are parsed with parse-prometheus-text-format (test/helpers/prometheus.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { writeDrillRecord, type DrillRecord } from '../../src/archive/drillRecord';
import { parseWalKey } from '../../src/archive/layout';
import { FsStorage } from '../../src/storage/fs';
import { openStorage } from '../../src/storage/open';
import type { Storage } from '../../src/storage/storage';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { trackClusters, type Cluster } from '../helpers/pg';
import { parseMetrics, type ParsedMetrics } from '../helpers/prometheus';
import { runWalts, WALTS_BIN, type RunResult } from '../helpers/run';
import { s3StoreConfig } from '../helpers/s3server';
import { startStore, waltsCommand, type StoreKind, type TestStore } from '../helpers/stores';
import { storeKeysUnder } from '../helpers/storeKeys';

jest.setTimeout(600_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, limitMs = 180_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(200);
  }
}

function storageOf(store: TestStore, prefix: string): Storage {
  return store.kind === 'file' ? new FsStorage(store.dir) : openStorage(s3StoreConfig(store.s3!.endpoint, store.s3!.bucket, prefix));
}

function drill(backup: string, ok: boolean): DrillRecord {
  const started = new Date(Date.now() - 60_000).toISOString();
  return {
    format: 1, backup, ok, started_at: started, finished_at: new Date().toISOString(), duration_seconds: 60,
    target: { kind: 'end' }, reached_lsn: null, reached_timeline: null, reached_time: null,
    checks: [{ name: 'replay', ok, detail: ok ? 'reached the end of the archive' : 'WAL segment missing' }],
    error: ok ? null : 'WAL segment missing', hostname: 'test', walts_version: 'test',
  };
}

interface Exporter {
  child: ChildProcess;
  port: number;
  done: Promise<RunResult>;
  scrape(): Promise<ParsedMetrics>;
  stop(): Promise<RunResult>;
}

/** `walts metrics` on a free port; resolves once it says where it listens. */
async function startExporter(args: string[], env: Record<string, string>): Promise<Exporter> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(WALTS_|AWS_|PG)/.test(k)) clean[k] = v;
  const child = spawn(WALTS_BIN, ['metrics', '--listen', '127.0.0.1:0', ...args], {
    env: { ...clean, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  const started = Date.now();
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stdoutBuf: Buffer.from(stdout), stderr, timedOut: false, durationMs: Date.now() - started })),
  );
  let exited = false;
  void done.then(() => (exited = true));
  const port = await waitFor('the exporter to listen', async () => {
    if (exited) throw new Error(`walts metrics exited: ${stderr}`);
    const line = stderr.split('\n').find((l) => l.includes('metrics: serving'));
    return line ? Number(/:(\d+)$/.exec((JSON.parse(line) as { listen: string }).listen)![1]) : undefined;
  });
  return {
    child,
    port,
    done,
    async scrape() {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return parseMetrics(await res.text());
    },
    async stop() {
      child.kill('SIGTERM');
      return done;
    },
  };
}

describe.each<StoreKind>(['file', 's3'])('status and metrics against real PostgreSQL 15 (%s store)', (kind) => {
  const reg = trackClusters();
  const PREFIX = 'status';
  let store: TestStore;
  let c: Cluster;
  const exporters: Exporter[] = [];
  const walts = (args: string[], extra: Record<string, string> = {}) => runWalts(args, { ...store.env, ...c.pgEnv(), ...extra }, { timeoutMs: 180_000 });
  const psqlNumber = async (sql: string) => Number(await c.psql(sql));

  beforeAll(async () => {
    store = await startStore(kind, reg, PREFIX);
    c = await reg.createCluster({ name: 'st', env: store.env, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await c.start();
  });
  afterAll(async () => {
    for (const e of exporters) await e.stop().catch(() => undefined);
    await reg.cleanupAll();
    await store?.stop();
  });

  it('after 2 backups and the WAL around them, status and metrics show what the store and pg_stat_archiver hold; archive failures rise; a vanished store is walts_up 0', async () => {
    const backups: string[] = [];
    for (let i = 0; i < 2; i++) {
      await c.psql(`create table t${i} as select generate_series(1, 20000) as x`);
      await c.switchWalAndWaitArchived();
      const r = await walts(['backup-push', c.dataDir, '--fast', '--volume-size', '8MiB']);
      if (r.code !== 0) throw new Error(`backup-push failed (${r.code}): ${r.stderr}`);
      backups.push((JSON.parse(r.stderr.split('\n').find((l) => l.includes('"backup-push done"'))!) as { backup: string }).backup);
    }
    await c.psql('create table t_after as select 1 as x');
    const lastSegment = await c.switchWalAndWaitArchived();
    const storage = storageOf(store, PREFIX);
    await writeDrillRecord(storage, drill(backups[1]!, true));
    await storage.close();

    // Reality, read behind walts' back.
    const keys = await storeKeysUnder(store, PREFIX);
    const sentinels = keys.filter((k) => k.endsWith('/sentinel.json'));
    const walObjects = keys.filter((k) => parseWalKey(k) !== undefined);
    const archived = await psqlNumber('select archived_count from pg_stat_archiver');
    const listed = JSON.parse((await walts(['backup-list', '--json'])).stdout) as { name: string; finish_time: string }[];
    expect(sentinels).toHaveLength(2);

    const st = await walts(['status', '--json']);
    expect(st.code).toBe(0);
    const report = JSON.parse(st.stdout);
    expect(report.store).toMatchObject({ reachable: true });
    expect(report.cluster.system_identifier).toBe((await c.controlData())['Database system identifier']);
    expect(report.cluster.pg_major).toBe(15);
    expect(report.backups.count).toBe(2);
    expect(report.backups.newest.name).toBe(backups[1]);
    expect(report.last_archived_wal).toMatchObject({ name: lastSegment, objects: walObjects.length });
    expect(report.pitr_window).toMatchObject({ backup: backups[0], from: new Date(listed[0]!.finish_time).toISOString(), to_wal: lastSegment });
    expect(report.restore_drill).toMatchObject({ count: 1, last: { ok: true, backup: backups[1] }, last_success: { backup: backups[1] } });
    expect(report.postgres).toMatchObject({ reachable: true, server_version_num: expect.any(Number), archive_mode: 'on', ready_files: 0, system_identifier: report.cluster.system_identifier });
    expect(report.postgres.archiver).toMatchObject({ archived_count: archived, failed_count: 0, last_archived_wal: lastSegment });

    // A role without pg_monitor: the archiver counters, and the .ready count unknown naming the role.
    await c.psql('create role mon login');
    const asMon = JSON.parse((await walts(['status', '--json'], { PGUSER: 'mon' })).stdout);
    expect(asMon.postgres.archiver.archived_count).toBe(archived);
    expect(asMon.postgres.ready_files).toEqual({ unknown: expect.stringMatching(/pg_ls_archive_statusdir\(\) refused: the role needs pg_monitor/) });
    await c.psql('grant pg_monitor to mon');
    expect(JSON.parse((await walts(['status', '--json'], { PGUSER: 'mon' })).stdout).postgres.ready_files).toBe(0);

    const text = (await walts(['status'])).stdout;
    expect(text).toMatch(new RegExp(`count:\\s+2\\n\\s+newest:\\s+${backups[1]}`));
    expect(text).toMatch(new RegExp(`last archived:\\s+${lastSegment}`));
    expect(text).toMatch(/last drill:\s+passed/);

    const textfile = join(await reg.tempDir('textfile'), 'walts.prom');
    const tf = await walts(['metrics', '--textfile', textfile, '--database-label', 'main']);
    expect(tf.code).toBe(0);
    const m = parseMetrics(await fsp.readFile(textfile, 'utf8'));
    expect(m.families.get('walts_backups')?.metrics[0]?.labels).toEqual({ database: 'main' });
    expect(m.value('walts_up')).toBe(1);
    expect(m.value('walts_pg_up')).toBe(1);
    expect(m.value('walts_backups')).toBe(2);
    expect(m.value('walts_wal_objects')).toBe(walObjects.length);
    expect(m.value('walts_archived_total')).toBe(archived);
    expect(m.value('walts_archive_failed_total')).toBe(0);
    expect(m.value('walts_archive_ready_files')).toBe(0);
    expect(m.value('walts_restore_drill_last_result')).toBe(1);
    expect(m.value('walts_last_backup_timestamp_seconds')).toBe(Date.parse(listed[1]!.finish_time) / 1000);
    expect(m.value('walts_pitr_window_start_timestamp_seconds')).toBe(Date.parse(listed[0]!.finish_time) / 1000);
    expect(m.value('walts_last_backup_age_seconds')).toBeGreaterThanOrEqual(0);

    // The running exporter: archive_command starts failing, and the failure counter rises.
    const e = await startExporter(['--refresh', '1'], { ...store.env, ...c.pgEnv(), WALTS_LOG_LEVEL: 'info' });
    exporters.push(e);
    const before = await waitFor('a first refresh', async () => {
      const s = await e.scrape();
      return s.value('walts_up') === 1 ? s : undefined;
    });
    expect(before.value('walts_archive_failed_total')).toBe(0);
    expect(before.value('walts_backups')).toBe(2);
    c.setConf({ archive_command: 'false' });
    await c.reload();
    await c.psql('create table t_fail as select 1 as x');
    const failing = await c.psql('select pg_walfile_name(pg_switch_wal())');
    const failedNow = await waitFor('pg_stat_archiver to count failures', async () => {
      const n = await psqlNumber('select failed_count from pg_stat_archiver');
      return n > 0 ? n : undefined;
    });
    const after = await waitFor('walts_archive_failed_total to rise', async () => {
      const s = await e.scrape();
      return (s.value('walts_archive_failed_total') ?? 0) >= failedNow ? s : undefined;
    });
    expect(after.value('walts_archive_failing')).toBe(1);
    expect(after.value('walts_archive_ready_files')).toBeGreaterThanOrEqual(1);
    const failedStatus = await walts(['status']);
    expect(failedStatus.stdout).toMatch(new RegExp(`failed:\\s+\\d+, last ${failing}`));
    expect(failedStatus.stdout).toContain('ARCHIVING FAILS');
    expect(JSON.parse((await walts(['status', '--json'])).stdout).postgres.archiver.last_failed_wal).toBe(failing);

    if (kind === 'file') {
      // The store goes away (an unmounted volume): walts_up 0, PostgreSQL still seen, and back again.
      await fsp.rename(store.dir, `${store.dir}.away`);
      try {
        const down = await waitFor('walts_up 0', async () => {
          const s = await e.scrape();
          return s.value('walts_up') === 0 ? s : undefined;
        });
        expect(down.value('walts_backups')).toBeUndefined();
        expect(down.value('walts_pg_up')).toBe(1);
        const downStatus = await walts(['status', '--json']);
        expect(downStatus.code).toBe(0);
        expect(JSON.parse(downStatus.stdout).store.reachable).toBe(false);
      } finally {
        await fsp.rename(`${store.dir}.away`, store.dir);
      }
      await waitFor('walts_up 1 again', async () => (await e.scrape()).value('walts_up') === 1);
    }
    c.setConf({ archive_command: waltsCommand('wal-push %p') });
    await c.reload();
  });
});

describe('metrics with an S3 store behind a fault proxy', () => {
  const reg = trackClusters();
  const PREFIX = 'status-proxy';
  let store: TestStore;
  let proxy: FaultProxy;
  let env: Record<string, string>;
  const exporters: Exporter[] = [];

  beforeAll(async () => {
    store = await startStore('s3', reg, PREFIX);
    proxy = await startFaultProxy({ host: '127.0.0.1', port: store.s3!.port });
    // A refused request fails the refresh after a 2 s retry deadline.
    env = { ...store.env, WALTS_S3_ENDPOINT: proxy.endpoint, WALTS_RETRY_DEADLINE: '2' };
  });
  afterAll(async () => {
    for (const e of exporters) await e.stop().catch(() => undefined);
    await proxy?.stop();
    await reg.cleanupAll();
    await store?.stop();
  });

  it('a store request held forever: the scrape completes while the refresh is still waiting for it, with walts_up 0', async () => {
    proxy.inject({ kind: 'hang', times: 1_000_000 });
    // Nothing in walts gives up on the held request during the test: the store's request and retry
    // deadlines and the refresh timeout are an hour, so the first refresh cannot end.
    const e = await startExporter(['--no-pg', '--refresh', '1', '--refresh-timeout', '3600'], { ...env, WALTS_RETRY_DEADLINE: '3600', WALTS_IO_TIMEOUT: '3600' });
    exporters.push(e);
    await waitFor('the store request to be held', async () => proxy.requests.length > 0);
    const m = await e.scrape();
    expect(m.value('walts_up')).toBe(0);
    expect(m.value('walts_refresh_in_progress')).toBe(1);
    // No refresh has ended: the first one is still waiting for the held request.
    expect(m.value('walts_refreshes_total')).toBe(0);
    expect(m.value('walts_backups')).toBeUndefined();
    expect(m.value('walts_pg_up')).toBeUndefined();
    const second = await e.scrape();
    expect(second.value('walts_refresh_in_progress')).toBe(1);
    // SIGTERM ends the held refresh too: the exporter dies by the signal, as every walts command does.
    const end = await e.stop();
    expect(end.signal).toBe('SIGTERM');
    proxy.clear();
  });

  it('a store that refuses: walts_up goes 1 → 0 → 1 and every scrape answers', async () => {
    proxy.clear();
    const e = await startExporter(['--no-pg', '--refresh', '1'], env);
    exporters.push(e);
    await waitFor('walts_up 1', async () => (await e.scrape()).value('walts_up') === 1);
    proxy.inject({ kind: 'status', status: 503, times: 1_000_000 });
    const down = await waitFor('walts_up 0', async () => {
      const s = await e.scrape();
      return s.value('walts_up') === 0 ? s : undefined;
    });
    expect(down.value('walts_refresh_failures_total')).toBeGreaterThanOrEqual(1);
    expect(down.value('walts_backups')).toBeUndefined();
    const st = await runWalts(['status', '--json', '--no-pg'], env, { timeoutMs: 120_000 });
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout).store).toMatchObject({ reachable: false, error: expect.stringMatching(/503|SlowDown|unavailable/i) });
    proxy.clear();
    await waitFor('walts_up 1 again', async () => (await e.scrape()).value('walts_up') === 1);
  });
});
