/**
 * The prefetcher (hidden command `walts wal-prefetch`): after wal-fetch served segment X, a detached
 * background process downloads X+1..X+N of X's timeline into `<spool>/fetch/` so that the next
 * restore_command calls find them there (bin/walts serves them without starting Node). The ideas
 * are WAL-G's and pgBackRest's (async archive-get); the code and rules are walts' own.
 *
 * Every file goes through wal-fetch's one fetch path (`fetchWalFile`: decode, recorded digest and
 * size, segment header, temp file, fsync, rename), then gets its record (fetchSpool.ts). One
 * prefetcher per spool (prefetch.lock). It stops quietly at the first "not found" (the end of the
 * archived WAL, remembered in `end` so that calls past the end do not start another), and at any
 * error (logged to prefetch.log, which is where its stderr goes): the foreground wal-fetch asks the
 * store itself for anything the spool does not have, so a prefetcher can only ever save time.
 * It never touches `%p`, and keeps only its window in the spool (older segments are removed).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Deps } from '../deps';
import { describeError, NotFoundError } from '../errors';
import { nextSegment, parseSegmentName, parseWalFileName, segmentName } from '../postgres/walName';
import { END_FILE, handOverLock, processAlive, recordMatches, releaseLock, removeSpoolFile, takeLock, writeRecord, type SpoolIdentity } from './fetchSpool';
import { isSegmentName } from './pushRecord';
import { fetchWalFile } from './walFetch';
import { removeStaleTempFiles } from './walFetchTemp';

export interface PrefetchArgs {
  /** The segment just served (X). */
  readonly after: string;
  readonly segmentSize: number;
  /** `<spool>/fetch`. */
  readonly dir: string;
  readonly depth: number;
  readonly concurrency: number;
  readonly identity: SpoolIdentity;
  readonly pid?: number;
  readonly signal?: AbortSignal;
}

export interface PrefetchResult {
  /** Set when nothing was done (another prefetcher holds the spool). */
  readonly skipped?: string;
  readonly fetched: string[];
  readonly alreadyThere: number;
  /** The first name the store said it does not have. */
  readonly end?: string;
  readonly error?: string;
}

/** X+1..X+depth on X's timeline. */
export function prefetchWindow(after: string, segmentSize: number, depth: number): string[] {
  const names: string[] = [];
  let id = parseSegmentName(after, segmentSize);
  for (let i = 0; i < depth; i++) {
    id = nextSegment(id);
    names.push(segmentName(id, segmentSize));
  }
  return names;
}

export async function walPrefetch(deps: Deps, args: PrefetchArgs): Promise<PrefetchResult> {
  const pid = args.pid ?? process.pid;
  const window = prefetchWindow(args.after, args.segmentSize, args.depth);
  await fsp.mkdir(args.dir, { recursive: true, mode: 0o700 });
  if (!(await takeLock(args.dir, pid, window))) return { skipped: 'another prefetcher is running for this spool', fetched: [], alreadyThere: 0 };
  // A lock taken for us by bin/walts names no window yet: the next call waits only for listed names.
  await handOverLock(args.dir, pid, window);
  try {
    const missing = await sweep(deps, args.dir, window, args.identity);
    const fetched: string[] = [];
    const stop: { end?: string; error?: string } = {};
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < missing.length && stop.end === undefined && stop.error === undefined && !args.signal?.aborted) {
        const name = missing[next++]!;
        try {
          await fetchWalFile(deps, parseWalFileName(name)!, join(args.dir, name), { signal: args.signal, durable: true }).then((r) => writeRecord(args.dir, name, r.sha256, args.identity));
          fetched.push(name);
        } catch (err) {
          if (err instanceof NotFoundError) {
            const prev = stop.end as string | undefined; // set by another worker meanwhile
            if (prev === undefined || name < prev) stop.end = name;
          } else {
            stop.error ??= describeError(err);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(args.concurrency, missing.length)) }, worker));
    // `end` is rewritten only with what this run learnt: a new end, or none within the whole window.
    if (stop.end !== undefined) await fsp.writeFile(join(args.dir, END_FILE), `${stop.end}\n`).catch(() => undefined);
    else if (stop.error === undefined && !args.signal?.aborted && fetched.length === missing.length) await fsp.rm(join(args.dir, END_FILE), { force: true });
    return { fetched, alreadyThere: window.length - missing.length, ...stop };
  } finally {
    await releaseLock(args.dir, pid);
  }
}

/**
 * Keeps only the window in the spool: segments outside it (older ones, other timelines), records
 * without their file and temp files of dead processes go. Returns the window's names still to fetch
 * (a present file whose record no longer matches is removed and fetched again).
 */
async function sweep(deps: Deps, dir: string, window: readonly string[], identity: SpoolIdentity): Promise<string[]> {
  await removeStaleTempFiles(dir, deps.log, { exists: processAlive });
  const wanted = new Set(window);
  const entries = await fsp.readdir(dir);
  const present = new Set(entries);
  for (const e of entries) {
    const base = e.endsWith('.rec') ? e.slice(0, -4) : e;
    if (!isSegmentName(base)) continue;
    if (!wanted.has(base) || (e !== base && !present.has(base))) await removeSpoolFile(dir, base);
  }
  const missing: string[] = [];
  for (const name of window) {
    if (present.has(name) && (await recordMatches(dir, name, identity))) continue;
    if (present.has(name)) await removeSpoolFile(dir, name);
    missing.push(name);
  }
  return missing;
}
