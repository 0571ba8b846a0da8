/**
 * PITR replay: the same base backup, restored twice (or more) into fresh clusters that differ only in
 * restore_command; timed from `pg_ctl start` until the server logs that it accepts read-write
 * connections (recovery ended, promoted). The log also proves what was replayed: how many segments
 * came from the archive and where redo ended, which must agree between the methods.
 */
import type { ClusterRegistry } from '../../test/helpers/pg';
import { copyDataDir } from './lag';
import { sleep } from './proc';

export interface ReplayMethod {
  readonly label: string;
  readonly env: Record<string, string>;
  restoreCommand(dataDir: string): string;
}

export interface ReplayResult {
  readonly seconds: number;
  /** `restored log file ... from archive` lines: segments served by restore_command. */
  readonly restored: number;
  /** LSN of "redo done at". */
  readonly redoDone: string;
}

const READY = /database system is ready to accept connections/;

export async function timeReplay(reg: ClusterRegistry, baseDataDir: string, m: ReplayMethod, timeoutSeconds = 900): Promise<ReplayResult> {
  const c = await reg.emptyCluster({ name: `pitr-${m.label.replace(/[^a-z0-9]+/gi, '-')}`.slice(0, 30), env: m.env });
  try {
    await copyDataDir(baseDataDir, c.dataDir);
    await c.prepareRestoredDataDir();
    await c.setRecovery({ restore_command: m.restoreCommand(c.dataDir), recovery_target_action: 'promote' });
    const started = process.hrtime.bigint();
    await c.start({ wait: false });
    const deadline = Date.now() + timeoutSeconds * 1000;
    let seconds: number | undefined;
    while (Date.now() < deadline) {
      if (READY.test(c.log())) {
        seconds = Number(process.hrtime.bigint() - started) / 1e9;
        break;
      }
      if (!c.isRunning() && /FATAL|PANIC/.test(c.log())) break;
      await sleep(25);
    }
    if (seconds === undefined) throw new Error(`${m.label}: recovery did not end (within ${timeoutSeconds} s)\n${c.logTail(30)}`);
    await c.waitForRecoveryEnd();
    const log = c.log();
    const redoDone = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
    if (!redoDone) throw new Error(`${m.label}: no "redo done" in the log\n${c.logTail(30)}`);
    return { seconds, restored: (log.match(/restored log file "[0-9A-F]{24}" from archive/g) ?? []).length, redoDone };
  } finally {
    // WALTS_TEST_KEEP=1 keeps the cluster's files (and log) for a look afterwards, as the test harness does.
    await c.destroy({ keepFiles: process.env['WALTS_TEST_KEEP'] === '1' }).catch(() => undefined);
  }
}
