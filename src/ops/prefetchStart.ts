/**
 * Starting the prefetcher from wal-fetch's Node path: one detached process (own session, so
 * PostgreSQL neither waits for it nor signals it with the startup process's group), stdin closed,
 * stdout and stderr into `<spool>/fetch/prefetch.log`, PostgreSQL's log untouched. Best effort: a
 * prefetcher that cannot start costs nothing but speed.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { END_FILE, PREFETCH_LOG, processAlive, readLock, takeLock, trimLog } from './fetchSpool';
import { prefetchWindow } from './walPrefetch';

export interface StartPrefetchArgs {
  /** `<spool>/fetch`. */
  readonly dir: string;
  /** The segment just served, its size, and where it went (`%p`, absolute). */
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

/** Path of the Node entry point (bin/walts.js), from dist/ops or src/ops. */
const ENTRY = join(__dirname, '..', '..', 'bin', 'walts.js');

export async function startPrefetcher(args: StartPrefetchArgs): Promise<StartOutcome> {
  const holder = await readLock(args.dir);
  if (holder && processAlive(holder.pid)) return 'running';
  if (args.fromSpool) {
    // The last prefetcher found the end of the archive ahead of this segment: no new one until
    // the store itself serves a segment (which means the archive grew).
    const end = (await fsp.readFile(join(args.dir, END_FILE), 'utf8').catch(() => '')).trim();
    if (end.slice(0, 8) === args.after.slice(0, 8) && end > args.after) return 'at-end';
  }
  await fsp.mkdir(args.dir, { recursive: true, mode: 0o700 });
  const logPath = join(args.dir, PREFETCH_LOG);
  await trimLog(logPath);
  const fd = openSync(logPath, 'a', 0o600);
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [ENTRY, 'wal-prefetch', args.after, args.dest, '--segment-size', String(args.segmentSize)], {
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
  return 'started';
}
