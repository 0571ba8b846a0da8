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
import { processExists, tempName } from './walFetchTemp';

export const RECORD_VERSION = 'walts-spool-1';
export const LOCK_FILE = 'prefetch.lock';
export const END_FILE = 'end';
export const SERVED_LOG = 'served.log';
export const PREFETCH_LOG = 'prefetch.log';
/** Logs are cut back to nothing past this size (they are diagnostics, not history). */
export const LOG_LIMIT = 1 << 20;

const SEGMENT_RE = /^[0-9A-F]{24}$/;

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

export function isSegmentFileName(name: string): boolean {
  return SEGMENT_RE.test(name);
}

/** `stat -c %.9Y` formatting of a bigint nanosecond time. */
function statTime(ns: bigint): string {
  const s = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  return `${s}.${frac.toString().padStart(9, '0')}`;
}

export function statLine(st: BigIntStats): string {
  return `${st.dev} ${st.ino} ${st.size} ${statTime(st.mtimeNs)} ${statTime(st.ctimeNs)}`;
}

export function formatRecord(st: BigIntStats, sha256: string, id: SpoolIdentity): string {
  return `${RECORD_VERSION} ${statLine(st)} ${sha256}\n${id.store}\n${id.endpoint ?? ''}\n`;
}

interface ParsedRecord {
  readonly stat: string;
  readonly size: number;
  readonly sha256: string;
  readonly store: string;
  readonly endpoint: string;
}

function parseRecord(text: string): ParsedRecord | undefined {
  const lines = text.split('\n');
  const words = (lines[0] ?? '').split(' ');
  if (words.length !== 7 || words[0] !== RECORD_VERSION || !/^[0-9a-f]{64}$/.test(words[6] ?? '')) return undefined;
  return { stat: words.slice(1, 6).join(' '), size: Number(words[3]), sha256: words[6]!, store: lines[1] ?? '', endpoint: lines[2] ?? '' };
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
  const rec = parseRecord(text);
  if (!rec) return { ok: false, reason: 'unreadable record' };
  if (rec.store !== id.store || rec.endpoint !== (id.endpoint ?? '')) return { ok: false, reason: 'recorded for another store' };
  if (!st.isFile() || rec.stat !== statLine(st)) return { ok: false, reason: 'changed since it was recorded (inode, size, mtime or ctime)' };
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
  if (sha256 !== rec.sha256) return { ok: false, reason: 'content does not match the recorded SHA-256' };
  return { ok: true, sha256, size: rec.size, head: Buffer.concat(heads) };
}

/** Whether NAME and its record are there and the file is still the one recorded (no hashing). */
export async function recordMatches(dir: string, name: string, id: SpoolIdentity): Promise<boolean> {
  const st = await fsp.lstat(join(dir, name), { bigint: true }).catch(() => undefined);
  const text = await fsp.readFile(join(dir, `${name}.rec`), 'utf8').catch(() => undefined);
  const rec = text === undefined ? undefined : parseRecord(text);
  return st !== undefined && st.isFile() && rec !== undefined && rec.store === id.store && rec.endpoint === (id.endpoint ?? '') && rec.stat === statLine(st);
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
