/**
 * Push records: the proof, left by a wal-push look-ahead, that a WAL file PostgreSQL has not asked
 * for yet is already in the archive, so that PostgreSQL's own call for it can answer "archived"
 * without starting Node (bin/walts) or touching the store (docs/performance.md, "Look-ahead
 * archiving and the wal-push fast path").
 *
 * A record `<spool>/push/<NAME>` is three lines, readable by POSIX sh with `read`:
 *
 *     walts-push-v1 DEV INO SIZE MTIME CTIME SHA256
 *     <store: WALTS_STORE (or its alias WALE_S3_PREFIX) exactly as configured>
 *     <WALTS_S3_ENDPOINT, or empty>
 *
 * DEV INO SIZE MTIME CTIME are the file's identity in the format of
 * `stat -L -c '%d %i %s %.9Y %.9Z'` (times as seconds.nanoseconds), so that the sh front compares one
 * string. SHA256 is the plain digest that was uploaded (for people and audits; nobody re-hashes).
 *
 * Why an unchanged identity proves unchanged content: every write, truncate or rename of a file
 * sets its ctime to the current time of the kernel's (coarse) clock, and nothing (utimes included)
 * can set ctime back. So if the file's ctime is the recorded one, nothing touched the inode after
 * the moment the record describes, PROVIDED that no change can land in the same clock tick as the
 * recorded ctime. That is ruled out by recording only files whose ctime was already older than the
 * moment of the first stat by a safe margin (FRESHNESS_MARGIN_MS, far above a clock tick): any change
 * after that stat gets a ctime at or after that moment, hence different. Files fresher than that get
 * no record; their own call does the full push. The identity is taken (fstat of the handle that is
 * read) before reading, and the path is stat'ed again after the store's acknowledgement: it must
 * still name the same inode with the same identity, or no record is written. dev+ino bind the
 * record to the inode: PostgreSQL recycles a segment by renaming it, which changes its name and ctime.
 *
 * Not covered (documented): a wall clock stepped backwards by more than the margin between the
 * first stat and a later write, and pg_wal on a network filesystem whose server clock is skewed.
 * Set WALTS_PUSH_LOOKAHEAD=0 there.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp, readFileSync, statSync, unlinkSync, type BigIntStats } from 'node:fs';
import { dirname, join } from 'node:path';

export const RECORD_VERSION = 'walts-push-v1';
/** How much older than the first stat a file's ctime must be for a record (see above). */
export const FRESHNESS_MARGIN_MS = 100;
/** Leftover temp files (a killed writer) older than this are removed by the sweep. */
const STALE_TEMP_MS = 10 * 60_000;
const SEGMENT_NAME = /^[0-9A-F]{24}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export interface FileIdentity {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

/** Which store a record is about: the effective store string and the S3 endpoint ('' for none). */
export interface StoreIdentity {
  readonly store: string;
  readonly endpoint: string;
}

export interface PushRecord {
  readonly identity: FileIdentity;
  readonly sha256: string;
  readonly store: StoreIdentity;
}

export function isSegmentName(name: string): boolean {
  return SEGMENT_NAME.test(name);
}

/** `<spool>/push`: WALTS_SPOOL_DIR, or `walts_spool` beside the WAL file (bin/walts computes the same). */
export function pushRecordDir(spoolDir: string | undefined, walPath: string): string {
  return join(spoolDir ?? join(dirname(walPath), 'walts_spool'), 'push');
}

export function identityOf(st: BigIntStats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/** The identity as `stat -L -c '%d %i %s %.9Y %.9Z'` prints it. */
export function formatIdentity(id: FileIdentity): string {
  return `${id.dev} ${id.ino} ${id.size} ${formatTime(id.mtimeNs)} ${formatTime(id.ctimeNs)}`;
}

function formatTime(ns: bigint): string {
  return `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/**
 * Whether a file whose identity was taken right after the clock read `firstStatMs` may be recorded:
 * its ctime must be older than that moment by the margin (see the module comment).
 */
export function settledBeforeStat(id: FileIdentity, firstStatMs: number, marginMs = FRESHNESS_MARGIN_MS): boolean {
  return id.mtimeNs >= 0n && id.ctimeNs >= 0n && id.ctimeNs < BigInt(Math.floor(firstStatMs - marginMs)) * 1_000_000n;
}

/**
 * The record text. The prefetch spool (fetchSpool.ts) writes the same three lines under its own
 * version word, so both are read the same way by bin/walts and by parseRecord.
 */
export function formatRecord(r: PushRecord, version: string = RECORD_VERSION): string {
  for (const v of [r.store.store, r.store.endpoint]) {
    if (/[\r\n]/.test(v)) throw new RangeError('store identity with a line break cannot be recorded');
  }
  if (!SHA256.test(r.sha256)) throw new RangeError(`not a sha256: ${r.sha256}`);
  return `${version} ${formatIdentity(r.identity)} ${r.sha256}\n${r.store.store}\n${r.store.endpoint}\n`;
}

/** Strict: anything but exactly what formatRecord writes is no record. */
export function parseRecord(text: string, version: string = RECORD_VERSION): PushRecord | undefined {
  const lines = text.split('\n');
  if (lines.length !== 4 || lines[3] !== '') return undefined;
  const m = /^([a-z0-9-]+) (\d+) (\d+) (\d+) (\d+)\.(\d{9}) (\d+)\.(\d{9}) ([0-9a-f]{64})$/.exec(lines[0] ?? '');
  if (!m || m[1] !== version) return undefined;
  const n = (i: number) => BigInt(m[i] ?? '');
  return {
    identity: { dev: n(2), ino: n(3), size: n(4), mtimeNs: n(5) * 1_000_000_000n + n(6), ctimeNs: n(7) * 1_000_000_000n + n(8) },
    sha256: m[9] ?? '',
    store: { store: lines[1] ?? '', endpoint: lines[2] ?? '' },
  };
}

export function sameStore(a: StoreIdentity, b: StoreIdentity): boolean {
  return a.store !== '' && a.store === b.store && a.endpoint === b.endpoint;
}

/**
 * Writes the record durably: temp file, fsync, rename, fsync of the directory. Only ever called
 * after the store acknowledged the upload (or proved identical content was already there).
 */
export async function writeRecord(dir: string, name: string, record: PushRecord): Promise<void> {
  if (!isSegmentName(name)) throw new RangeError(`not a segment name: ${name}`);
  const text = formatRecord(record);
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fsp.rename(tmp, join(dir, name));
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  const d = await fsp.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export type RecordCheck = 'valid' | 'absent' | 'stale';

/**
 * Whether the record for `walPath` proves it archived in `store` (synchronous and cheap: runs
 * before the store client is loaded). A record that exists but proves nothing (another store, the
 * file changed, replaced or gone, unreadable) is deleted: it can never become valid again.
 */
export function checkRecordSync(dir: string, name: string, walPath: string, store: StoreIdentity): RecordCheck {
  const path = join(dir, name);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return 'absent';
  }
  const record = parseRecord(text);
  let current: FileIdentity | undefined;
  try {
    current = identityOf(statSync(walPath, { bigint: true }));
  } catch {
    current = undefined;
  }
  if (record && current && sameStore(record.store, store) && sameIdentity(record.identity, current)) return 'valid';
  try {
    unlinkSync(path);
  } catch {
    // gone already, or not ours to delete: it proves nothing either way
  }
  return 'stale';
}

/**
 * Removes records that can never be honoured again: their WAL file is gone (archived and removed
 * or recycled by PostgreSQL) or is no longer the file recorded; and temp files a killed writer left.
 * Only an optimisation is ever lost by removing a record.
 */
export async function sweepRecords(dir: string, walDir: string, nowMs: number): Promise<number> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const entry of entries) {
    const path = join(dir, entry);
    if (isSegmentName(entry)) {
      const record = await fsp.readFile(path, 'utf8').then(parseRecord, () => undefined);
      const current = await fsp.stat(join(walDir, entry), { bigint: true }).then(identityOf, () => undefined);
      if (record && current && sameIdentity(record.identity, current)) continue;
    } else if (entry.startsWith('.')) {
      const st = await fsp.stat(path).catch(() => undefined);
      if (!st || nowMs - st.mtimeMs < STALE_TEMP_MS) continue;
    } else {
      continue; // not ours
    }
    await fsp.rm(path, { force: true }).then(() => removed++, () => undefined);
  }
  return removed;
}
