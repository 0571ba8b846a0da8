/**
 * wal-fetch's temp files in pg_wal: `.<dest>.walts-<pid>-<random>.tmp`. A wal-fetch killed by
 * SIGKILL (or a crash, or power loss) cannot remove its own, so every wal-fetch first removes those
 * of its own pattern in the destination directory whose process is gone. A live process's file is
 * never touched: two restore_commands may run at once (a standby's and a manual one).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

const PATTERN = /^\..+\.walts-(\d+)-[0-9a-f]+\.tmp$/;
/** Files from walts versions that did not put the pid in the name: removed once this old. */
const LEGACY = /^\..+\.walts-[0-9a-f]{8}\.tmp$/;
const LEGACY_AGE_MS = 24 * 3600 * 1000;

export interface TempLog {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export function tempName(destBase: string, random: string, pid: number = process.pid): string {
  return `.${destBase}.walts-${pid}-${random}.tmp`;
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function processExists(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes leftovers of dead wal-fetch processes in `dir`. Best effort: a failure here must not fail
 * the fetch (the directory is PostgreSQL's; the fetch itself reports real problems).
 */
export async function removeStaleTempFiles(
  dir: string,
  log: TempLog,
  deps: { exists?: (pid: number) => boolean; now?: () => number } = {},
): Promise<string[]> {
  const exists = deps.exists ?? processExists;
  const now = deps.now ?? Date.now;
  const removed: string[] = [];
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = PATTERN.exec(name);
    let stale = m !== null && !exists(Number(m[1]));
    if (!m && LEGACY.test(name)) {
      const st = await fsp.lstat(join(dir, name)).catch(() => undefined);
      stale = st !== undefined && st.isFile() && now() - st.mtimeMs > LEGACY_AGE_MS;
    }
    if (!stale) continue;
    try {
      await fsp.unlink(join(dir, name));
      removed.push(name);
    } catch (err) {
      log.debug({ file: join(dir, name), err: (err as Error).message }, 'could not remove a leftover wal-fetch temp file');
    }
  }
  if (removed.length > 0) log.info({ dir, files: removed }, 'removed temp files left by wal-fetch processes that no longer exist');
  return removed;
}
