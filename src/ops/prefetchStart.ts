/**
 * Starting the prefetcher from wal-fetch's Node path: one detached process (own session, so
 * PostgreSQL neither waits for it nor signals it with the startup process's group), stdin closed,
 * stdout and stderr into `<spool>/fetch/prefetch.log`, PostgreSQL's log untouched. Best effort: a
 * prefetcher that cannot start costs nothing but speed.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { parseControlFile } from '../postgres/controlFile';
import { END_FILE, makeSpoolDir, PREFETCH_LOG, processAlive, readLock, takeLock, trimLog, writeEndFile } from './fetchSpool';
import { prefetchWindow } from './walPrefetch';

export interface StartPrefetchArgs {
  /** `<spool>/fetch`. */
  readonly dir: string;
  /** The segment served (or being fetched), its size, and `%p` (absolute). */
  readonly after: string;
  readonly segmentSize: number;
  readonly dest: string;
  readonly depth: number;
  /** Whether the segment came from the spool (then an `end` ahead of it means: nothing new yet). */
  readonly fromSpool: boolean;
  /** The child's environment: the caller's, with its command-line settings turned into variables. */
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

export type StartOutcome = 'started' | 'running' | 'at-end';

/**
 * The cluster's WAL segment size from `global/pg_control` under `pgdata` (restore_command's cwd),
 * or undefined when that is not a data directory walts can read.
 */
export async function segmentSizeOf(pgdata: string): Promise<number | undefined> {
  const buf = await fsp.readFile(join(pgdata, 'global', 'pg_control')).catch(() => undefined);
  const parsed = buf ? parseControlFile(buf) : undefined;
  return typeof parsed === 'object' ? parsed.segmentSize : undefined;
}

/**
 * Notes that the store has no `name` (the end of the archive, for now): no early start for it.
 * Only in a spool that exists (a prefetcher ran or was started for this call): a "not found" must
 * leave the directory of `%p` as it was, and without a spool there is no prefetcher to hold back.
 */
export async function noteEnd(dir: string, name: string): Promise<void> {
  await writeEndFile(dir, name);
}

/** Whether the last answer for `name` was "not found" (a standby polling at the end of the archive). */
export async function endIs(dir: string, name: string): Promise<boolean> {
  return (await fsp.readFile(join(dir, END_FILE), 'utf8').catch(() => '')).trim() === name;
}

/** Path of the Node entry point (bin/walts.js), from dist/ops or src/ops. */
const ENTRY = join(__dirname, '..', '..', 'bin', 'walts.js');

export async function startPrefetcher(args: StartPrefetchArgs): Promise<{ outcome: StartOutcome; pid?: number }> {
  const holder = await readLock(args.dir);
  if (holder && processAlive(holder.pid)) return { outcome: 'running' };
  if (args.fromSpool) {
    // The last prefetcher found the end of the archive ahead of this segment: no new one until
    // the store itself serves a segment (which means the archive grew).
    const end = (await fsp.readFile(join(args.dir, END_FILE), 'utf8').catch(() => '')).trim();
    if (end.slice(0, 8) === args.after.slice(0, 8) && end > args.after) return { outcome: 'at-end' };
  }
  await makeSpoolDir(args.dir);
  const logPath = join(args.dir, PREFETCH_LOG);
  await trimLog(logPath);
  const fd = openSync(logPath, 'a', 0o600);
  let pid: number | undefined;
  try {
    // Started while this call still downloads its own segment (or about to exit): the child loads
    // its modules now and holds its downloads until this process is gone, so that on two cores it
    // does not slow down the call PostgreSQL waits for (docs/performance.md, measured).
    const child = spawn(process.execPath, [ENTRY, 'wal-prefetch', args.after, args.dest, '--segment-size', String(args.segmentSize), '--hold-for', String(process.pid)], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: args.env,
      cwd: args.cwd,
    });
    child.on('error', () => undefined);
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(fd);
  }
  // Taken for the child at once, so that the next restore_command (sh) knows a prefetcher is on its
  // way and waits for the file instead of starting Node; the child finds its own pid in it.
  if (pid !== undefined) await takeLock(args.dir, pid, prefetchWindow(args.after, args.segmentSize, args.depth));
  return { outcome: 'started', pid };
}
