/**
 * Shared by the retention integration tests (retention.test.ts, retentionWindow.test.ts): what the
 * store holds, read behind walts' back, and one source cluster's backups and restores through the CLI.
 */
import { parseWalKey } from '../../src/archive/layout';
import type { Cluster, ClusterRegistry } from './pg';
import { runWalts } from './run';
import { storeKeysUnder } from './storeKeys';

export { storeKeysUnder };

export interface Listed {
  name: string;
  start_lsn: string;
  timeline: number;
  wal_start: string;
  finish_time: string;
}


/** WAL file names (codec suffix removed) among store keys. */
export function walNames(keys: readonly string[]): string[] {
  return keys.map((k) => parseWalKey(k)?.name.name).filter((n): n is string => n !== undefined);
}

export const backupFolders = (keys: readonly string[]) => [...new Set(keys.filter((k) => k.startsWith('walts_v1/basebackups/')).map((k) => k.split('/')[2]!))].sort();

/** Helpers around one source cluster archiving into one store. */
export function harness(reg: ClusterRegistry, getEnv: () => Record<string, string>) {
  let restores = 0;
  const walts = (args: string[], extra: Record<string, string> = {}) => runWalts(args, { ...getEnv(), ...extra }, { timeoutMs: 120_000 });
  return {
    walts,
    async push(c: Cluster, extra: string[] = []): Promise<string> {
      const r = await runWalts(['backup-push', c.dataDir, '--fast', '--volume-size', '8MiB', ...extra], { ...getEnv(), ...c.pgEnv() }, { timeoutMs: 180_000 });
      if (r.code !== 0) throw new Error(`backup-push failed (${r.code}): ${r.stderr}\n${c.logTail(30)}`);
      const done = r.stderr.split('\n').find((l) => l.includes('"backup-push done"'));
      return (JSON.parse(done ?? '{}') as { backup: string }).backup;
    },
    async list(): Promise<Listed[]> {
      const r = await walts(['backup-list', '--json']);
      if (r.code !== 0) throw new Error(`backup-list failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout) as Listed[];
    },
    async names(): Promise<string[]> {
      return (await this.list()).map((b) => b.name);
    },
    /** Restores `name` with `args`, starts it until recovery ends, runs `sql`, and removes it again. */
    async restoreAndQuery(name: string, args: string[], sql: string, opts: { keep?: boolean; env?: Record<string, string> } = {}): Promise<{ value: string; cluster: Cluster }> {
      const r = await reg.emptyCluster({ name: `restore-${++restores}`, env: opts.env ?? getEnv() });
      // keep: the copy goes on archiving into this store as a new timeline (on purpose, for the timeline tests).
      const fetch = await walts(['backup-fetch', r.dataDir, name, ...args, ...(opts.keep ? ['--archive-mode', 'preserve'] : [])]);
      if (fetch.code !== 0) throw new Error(`backup-fetch failed (${fetch.code}): ${fetch.stderr}`);
      await r.prepareRestoredDataDir({ keepSourceSettings: true });
      if (!opts.keep) r.setConf({ archive_mode: 'off' });
      await r.start();
      await r.waitForRecoveryEnd(120_000);
      const value = await r.psql(sql);
      if (!opts.keep) await r.destroy();
      return { value, cluster: r };
    },
  };
}

