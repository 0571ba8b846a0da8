/**
 * The prefetch spool: `<spool>/fetch/`, where the background prefetcher (walPrefetch.ts) leaves the
 * segments PostgreSQL is expected to ask for next, and where wal-fetch (bin/walts without Node, or
 * walFetch.ts) takes them from.
 *
 * Safety rules (docs/operations.md, "The prefetch spool"; bin/walts repeats them):
 * - a spool file is only a cache: deleting the spool (or any file in it) is always safe;
 * - never serve a partial, unverified, stale (other store) or other-timeline file: a file is served
 *   only under its exact name, only with a record written after it was verified and renamed into
 *   place, only while its inode, size, mtime and ctime are still those recorded (a rewrite, even one
 *   that restores the mtime with utimes, changes the ctime), and only to a caller configured for the
 *   store the record names;
 * - "not found" (exit 1) is decided only by the store, never by the spool: a missing spool file just
 *   means "ask the store".
 *
 * Layout of `<spool>/fetch/`:
 *   NAME                          a verified segment (24 hex digits)
 *   NAME.rec                      its record, written (temp + rename) after NAME was renamed in
 *   .NAME.walts-PID-RAND.tmp      a download in progress (walFetchTemp.ts naming)
 *   prefetch.lock                 the running prefetcher: its pid, then the names of its window
 *   end                           the first name the last prefetcher was told "not found" for
 *   served.log                    one line per segment served from the spool (sh or Node)
 *   prefetch.log                  the prefetcher's own log (JSON lines)
 *   ask/q.RANDOM, ask/q.RANDOM.ask  a request from bin/walts to the lingering prefetcher, and its
 *                                 answer inside the directory (prefetchAsk.ts)
 *   asked.log                     one line per answer a call used (`NAME absent`, `NAME ready`)
 *
 * The record is read by POSIX sh `read`, so it is words and lines only:
 *   line 1: walts-spool-1 ST_DEV ST_INO SIZE MTIME CTIME SHA256
 *           (MTIME and CTIME as `stat -c %.9Y` / `%.9Z` print them: seconds.nanoseconds)
 *   line 2: the store (WALTS_STORE or its alias WALE_S3_PREFIX, as configured)
 *   line 3: WALTS_S3_ENDPOINT, or empty
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream, promises as fsp, type BigIntStats } from 'node:fs';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { formatRecord as formatStatRecord, identityOf, parseRecord, sameIdentity, sameStore, type StoreIdentity } from './pushRecord';
import { processExists, tempName } from './walFetchTemp';

export const RECORD_VERSION = 'walts-spool-1';
export const LOCK_FILE = 'prefetch.lock';
export const END_FILE = 'end';
export const SERVED_LOG = 'served.log';
export const PREFETCH_LOG = 'prefetch.log';
/** Logs are cut back to nothing past this size (they are diagnostics, not history). */
export const LOG_LIMIT = 1 << 20;

/**
 * Creates the spool directory and, when missing, its parent (the spool root: pg_wal/walts_spool or
 * WALTS_SPOOL_DIR), never anything above them. A prefetcher starts detached and may run after its
 * data directory was removed (a restore drill cleaning up its copy, a finished restore deleted):
 * it must not bring that path back. Then mkdir fails (ENOENT) and the caller gives up.
 */
export async function makeSpoolDir(dir: string): Promise<void> {
  for (const d of [dirname(dir), dir]) {
    await fsp.mkdir(d, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
}

/**
 * Writes the `end` hint (the first segment the store did not have) whole: temp file, then rename.
 * Other processes read it at any moment (prefetchStart's endIs), and must never see it empty or
 * half written. Quiet on failure: it is a hint, and a spool directory that is gone needs none.
 */
export async function writeEndFile(dir: string, name: string): Promise<void> {
  const tmp = join(dir, tempName(END_FILE, randomBytes(4).toString('hex')));
  try {
    await fsp.writeFile(tmp, `${name}\n`);
    await fsp.rename(tmp, join(dir, END_FILE));
  } catch {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
  }
}

export interface SpoolIdentity {
  /** config.store.url: the store string as configured. */
  readonly store: string;
  readonly endpoint?: string;
}

/** `<spool>/fetch`, for a WAL file whose destination is `dest` (absolute). */
export function fetchSpoolDir(spoolDir: string | undefined, dest: string): string {
  return join(spoolDir ?? join(dirname(dest), 'walts_spool'), 'fetch');
}

/**
 * Whether `pid` is a running process: signalable and not a zombie (where nothing reaps orphans, a
 * killed prefetcher stays a zombie and must not hold the spool forever). /proc is Linux's; without
 * it, signalable is taken as alive.
 */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || !processExists(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** The record: pushRecord.ts's three lines under this spool's version word. */
export function formatRecord(st: BigIntStats, sha256: string, id: SpoolIdentity): string {
  return formatStatRecord({ identity: identityOf(st), sha256, store: storeOf(id) }, RECORD_VERSION);
}

function storeOf(id: SpoolIdentity): StoreIdentity {
  return { store: id.store, endpoint: id.endpoint ?? '' };
}

/** Whether `text` is a record of this store for the file `st` describes. */
function recordFits(text: string | undefined, st: BigIntStats, id: SpoolIdentity): 'fits' | 'unreadable' | 'other store' | 'changed' {
  const rec = text === undefined ? undefined : parseRecord(text, RECORD_VERSION);
  if (!rec) return 'unreadable';
  if (!sameStore(rec.store, storeOf(id))) return 'other store';
  return st.isFile() && sameIdentity(rec.identity, identityOf(st)) ? 'fits' : 'changed';
}

/**
 * Writes NAME's record after NAME itself was renamed into place (its ctime is final then): temp
 * file, fsync, rename, so a reader sees a whole record or none.
 */
export async function writeRecord(dir: string, name: string, sha256: string, id: SpoolIdentity): Promise<void> {
  const st = await fsp.lstat(join(dir, name), { bigint: true });
  const tmp = join(dir, tempName(`${name}.rec`, randomBytes(4).toString('hex')));
  const fh = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await fh.writeFile(formatRecord(st, sha256, id));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, join(dir, `${name}.rec`));
}

export type SpoolCheck =
  | { readonly ok: true; readonly sha256: string; readonly size: number; readonly head: Buffer }
  | { readonly ok: false; readonly reason: string };

/**
 * Whether `dir/name` may be served: a record for this store, the file still the one recorded, and
 * its content hashing to the recorded digest (Node reads it again: cheap next to its own start-up,
 * and it makes the Node path independent of the stat comparison the sh path relies on). The segment
 * header checks are the caller's (walFetch.ts `verifySegment`, the same the store path uses).
 * Undefined when there is no spool file at all.
 */
export async function checkSpoolFile(dir: string, name: string, id: SpoolIdentity, headBytes: number): Promise<SpoolCheck | undefined> {
  const file = join(dir, name);
  let st: BigIntStats;
  try {
    st = await fsp.lstat(file, { bigint: true });
  } catch {
    return undefined;
  }
  const text = await fsp.readFile(`${file}.rec`, 'utf8').catch(() => undefined);
  if (text === undefined) return { ok: false, reason: 'no record' };
  const fit = recordFits(text, st, id);
  if (fit === 'unreadable') return { ok: false, reason: 'unreadable record' };
  if (fit === 'other store') return { ok: false, reason: 'recorded for another store' };
  if (fit === 'changed') return { ok: false, reason: 'changed since it was recorded (inode, size, mtime or ctime)' };
  const recorded = parseRecord(text, RECORD_VERSION)!;
  const hash = createHash('sha256');
  const heads: Buffer[] = [];
  let kept = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    if (kept < headBytes) {
      heads.push(chunk.subarray(0, headBytes - kept));
      kept += Math.min(chunk.length, headBytes - kept);
    }
  }
  const sha256 = hash.digest('hex');
  if (sha256 !== recorded.sha256) return { ok: false, reason: 'content does not match the recorded SHA-256' };
  return { ok: true, sha256, size: Number(recorded.identity.size), head: Buffer.concat(heads) };
}

/** Whether NAME and its record are there and the file is still the one recorded (no hashing). */
export async function recordMatches(dir: string, name: string, id: SpoolIdentity): Promise<boolean> {
  const st = await fsp.lstat(join(dir, name), { bigint: true }).catch(() => undefined);
  const text = await fsp.readFile(join(dir, `${name}.rec`), 'utf8').catch(() => undefined);
  return st !== undefined && recordFits(text, st, id) === 'fits';
}

/** Removes a spool file and its record (best effort: the spool is a cache). */
export async function removeSpoolFile(dir: string, name: string): Promise<void> {
  await fsp.rm(join(dir, name), { force: true }).catch(() => undefined);
  await fsp.rm(join(dir, `${name}.rec`), { force: true }).catch(() => undefined);
}

/** Appends one line to served.log (the evidence tests and operators count). */
export async function noteServed(dir: string, name: string, by: 'sh' | 'node'): Promise<void> {
  await fsp.appendFile(join(dir, SERVED_LOG), `${name} ${by}\n`).catch(() => undefined);
}

export interface LockHolder {
  readonly pid: number;
  readonly window: readonly string[];
}

export async function readLock(dir: string): Promise<LockHolder | undefined> {
  const text = await fsp.readFile(join(dir, LOCK_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const [pid, ...window] = text.split('\n').filter((l) => l !== '');
  return { pid: Number(pid), window };
}

function lockText(pid: number, window: readonly string[]): string {
  return `${pid}\n${window.map((n) => `${n}\n`).join('')}`;
}

/**
 * Takes the spool's prefetch lock for `pid` (one prefetcher per spool). A lock whose pid is gone
 * is stale and taken over. Returns false when a live process holds it.
 */
export async function takeLock(dir: string, pid: number, window: readonly string[], exists: (pid: number) => boolean = processAlive): Promise<boolean> {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await fh.writeFile(lockText(pid, window));
      } finally {
        await fh.close();
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await readLock(dir);
    if (holder?.pid === pid) return true; // handed to us by whoever started us
    if (holder && Number.isInteger(holder.pid) && holder.pid > 0 && exists(holder.pid)) return false;
    await fsp.rm(path, { force: true });
  }
  return false;
}

/** Hands the lock to another pid (the spawned prefetcher): rewritten whole by rename. */
export async function handOverLock(dir: string, pid: number, window: readonly string[]): Promise<void> {
  const tmp = join(dir, tempName(LOCK_FILE, randomBytes(4).toString('hex')));
  await fsp.writeFile(tmp, lockText(pid, window), { mode: 0o600 });
  await fsp.rename(tmp, join(dir, LOCK_FILE));
}

/** Releases the lock if `pid` still holds it. */
export async function releaseLock(dir: string, pid: number): Promise<void> {
  const holder = await readLock(dir);
  if (holder?.pid === pid) await fsp.rm(join(dir, LOCK_FILE), { force: true }).catch(() => undefined);
}

/** Cuts a log file back to nothing once it is past LOG_LIMIT. */
export async function trimLog(path: string): Promise<void> {
  const st = await fsp.stat(path).catch(() => undefined);
  if (st && st.size > LOG_LIMIT) await fsp.truncate(path, 0).catch(() => undefined);
}
