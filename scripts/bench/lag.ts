/**
 * Archiver lag under load: a copy of the bench's scale-N cluster archives through one tool's
 * archive_command while pgbench runs at full speed; every 250 ms we count the segments PostgreSQL has
 * finished and not yet had archived (pg_wal/archive_status/*.ready).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Cluster, ClusterRegistry } from '../../test/helpers/pg';
import { runOk } from '../../test/helpers/run';
import { percentile, sleep } from './proc';

export interface LagTool {
  readonly label: string;
  /** Environment of the server (so of archive_command). */
  readonly env: Record<string, string>;
  archiveCommand(dataDir: string): string;
  /** After the cluster started, before the load (e.g. pgBackRest's stanza-create). */
  beforeLoad?(cluster: Cluster): Promise<void>;
}

export interface LagResult {
  readonly label: string;
  /** `.ready` files, one sample per interval during the load. */
  readonly samples: readonly number[];
  readonly max: number;
  readonly p95: number;
  /** Segments archived (pg_stat_archiver) from the start of the load until drained or given up. */
  readonly archived: number;
  readonly failed: number;
  readonly tps: number;
  readonly walMB: number;
  /** Seconds after the load until nothing was waiting; undefined if that took longer than the limit. */
  readonly drainSeconds: number | undefined;
  readonly waitingAtEnd: number;
}

export async function countReady(dataDir: string): Promise<number> {
  const names = await fsp.readdir(join(dataDir, 'pg_wal', 'archive_status'));
  return names.filter((n) => n.endsWith('.ready')).length;
}

const ARCHIVER = "select archived_count || '|' || failed_count || '|' || pg_current_wal_lsn() from pg_stat_archiver";

/**
 * One tool: copy the (stopped) template data dir into a new cluster archiving through the tool,
 * run `pgbench -c 2 -j 2 -T loadSeconds`, sample, then wait up to drainLimitSeconds for the archiver.
 */
export async function measureLag(
  reg: ClusterRegistry,
  templateDataDir: string,
  tool: LagTool,
  opts: { loadSeconds: number; intervalMs?: number; drainLimitSeconds?: number },
): Promise<LagResult> {
  const intervalMs = opts.intervalMs ?? 250;
  const c = await reg.emptyCluster({ name: `lag-${tool.label.replace(/[^a-z0-9]+/gi, '-')}`.slice(0, 30), env: tool.env });
  try {
    await copyDataDir(templateDataDir, c.dataDir);
    await c.prepareRestoredDataDir();
    // max_wal_size large: no checkpoint forced by WAL volume during the load, the same for every tool.
    c.setConf({ archive_mode: 'on', archive_command: tool.archiveCommand(c.dataDir), max_wal_size: '8GB', min_wal_size: '1GB' });
    await c.start();
    await tool.beforeLoad?.(c);
    const [a0, f0, lsn0] = (await c.psql(ARCHIVER)).split('|');

    const samples: number[] = [];
    let loading = true;
    const sampler = (async () => {
      for (let next = Date.now(); loading; ) {
        samples.push(await countReady(c.dataDir));
        next += intervalMs;
        await sleep(Math.max(0, next - Date.now()));
      }
    })();
    let bench;
    try {
      bench = await c.pgbench(['-n', '-c', '2', '-j', '2', '-T', String(opts.loadSeconds)]);
    } finally {
      loading = false;
      await sampler;
    }
    const tps = Number(/tps = ([0-9.]+)/.exec(bench.stdout)?.[1] ?? NaN);

    const drainStart = Date.now();
    const limit = (opts.drainLimitSeconds ?? 120) * 1000;
    let waiting = await countReady(c.dataDir);
    while (waiting > 0 && Date.now() - drainStart < limit) {
      await sleep(intervalMs);
      waiting = await countReady(c.dataDir);
    }
    const drainSeconds = waiting === 0 ? (Date.now() - drainStart) / 1000 : undefined;
    const [a1, f1] = (await c.psql(ARCHIVER)).split('|');
    const walBytes = Number(await c.psql(`select pg_wal_lsn_diff(pg_current_wal_lsn(), '${lsn0}')`));
    return {
      label: tool.label,
      samples,
      max: Math.max(...samples),
      p95: percentile(samples, 95),
      archived: Number(a1) - Number(a0),
      failed: Number(f1) - Number(f0),
      tps,
      walMB: walBytes / 1e6,
      drainSeconds,
      waitingAtEnd: waiting,
    };
  } finally {
    // WALTS_TEST_KEEP=1 keeps the cluster's files (and log) for a look afterwards, as the test harness does.
    await c.destroy({ keepFiles: process.env['WALTS_TEST_KEEP'] === '1' }).catch(() => undefined);
  }
}

/** cp -a: keeps the owner (postgres) and modes PostgreSQL insists on. */
export async function copyDataDir(from: string, to: string): Promise<void> {
  await runOk('cp', ['-a', from, to]);
}

export function lagCell(r: LagResult): string {
  const drain = r.drainSeconds === undefined ? `${r.waitingAtEnd} still waiting after the drain limit` : `drained ${r.drainSeconds.toFixed(1)} s after`;
  return `max ${r.max}, p95 ${r.p95} (${r.archived} archived${r.failed ? `, ${r.failed} failed` : ''}, ${r.tps.toFixed(0)} tps, ${drain})`;
}
