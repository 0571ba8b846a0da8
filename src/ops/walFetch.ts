/**
 * wal-fetch: PostgreSQL's restore_command. PostgreSQL only looks at the exit status and the size of
 * `%p`, so nothing reaches `%p` before it is proven whole: decode into a temp file beside it, check
 * the plain digest and size recorded with the object (and the segment header), then rename.
 *
 * "Not found" is claimed only when the store answered that no variant of the name exists, inside an
 * archive proven to exist (its record readable): a missing or unmounted directory, an empty mount
 * point, a missing bucket or a wrong prefix is a hard error, never the end of the archive. Every
 * other failure is retried within the deadline and then reported as a hard error, which the CLI
 * turns into an exit code that stops recovery rather than ending it early (reliability.md rule 12).
 * Temp files carry the writer's pid, so one left by a killed wal-fetch is removed by the next one
 * (walFetchTemp.ts).
 *
 * Prefetch (docs/performance.md, "Prefetch during recovery"): a segment may already be in the
 * spool, downloaded and verified by the background prefetcher (walPrefetch.ts) through the same
 * `fetchWalFile` below; it is served from there only after fetchSpool.ts `checkSpoolFile` and the
 * same segment checks pass, else removed and fetched from the store. After serving a segment, the
 * caller may start the prefetcher for the ones that follow.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { openArchive } from '../archive/archive';
import { checkRecordedFacts, decodeObject, type Decoded } from '../archive/decode';
import { walKey } from '../archive/layout';
import { completeFacts } from '../archive/objectMeta';
import { findWalVariants } from '../archive/walObjects';
import type { Deps } from '../deps';
import { describeError, IntegrityError, isTransient, NotFoundError, UnavailableError, UsageError } from '../errors';
import { LONG_HEADER_SIZE, parseWalSegmentHeader } from '../postgres/walHeader';
import { isValidSegmentSize, parseSegmentName, parseWalFileName, segmentStartLsn, type WalFileName } from '../postgres/walName';
import type { StoredObject } from '../storage/storage';
import { retrying } from '../util/retryBudget';
import type { Ticket } from './decodeTurns';
import { checkSpoolFile, noteServed, removeSpoolFile, type SpoolIdentity } from './fetchSpool';
import { serveReceivedPartial, type ServedPartial } from './walFetchPartial';
import { removeStaleTempFiles, tempName } from './walFetchTemp';

export interface WalFetchArgs {
  /** `%f`: the WAL file name PostgreSQL wants. */
  readonly name: string;
  /** `%p`: where to put it, relative to `cwd` or absolute. */
  readonly dest: string;
  readonly cwd: string;
  readonly signal?: AbortSignal;
  /**
   * WALTS_FETCH_PARTIAL: when the archive has no complete `name` (a segment), serve the longest
   * verified received partial, padded (walFetchPartial.ts). Never the prefetcher's path.
   */
  readonly receivedPartials?: boolean;
  /** Prefetch on: where the spool is and which store its records must name. */
  readonly spool?: {
    readonly dir: (dest: string) => string;
    readonly identity: SpoolIdentity;
    /** Called when a segment is not in the spool, just before the store is asked for it. */
    readonly beforeStore?: () => Promise<void>;
  };
}

export interface WalFetchResult {
  readonly name: string;
  readonly key: string;
  readonly storedBytes: number;
  readonly plainBytes: number;
  /** False for objects without walts metadata (written by hand): checked by format only. */
  readonly digestVerified: boolean;
  /** Hex SHA-256 of the plain bytes written. */
  readonly sha256: string;
  /** 'spool' when the prefetched copy was served; 'received' for a receiver's partial, padded. */
  readonly source: 'store' | 'spool' | 'received';
  /** What was served when source is 'received'. */
  readonly partial?: ServedPartial;
  /** The absolute destination. */
  readonly dest: string;
}

export async function walFetch(deps: Deps, args: WalFetchArgs): Promise<WalFetchResult> {
  const name = parseWalFileName(args.name);
  if (!name) throw new UsageError(`${JSON.stringify(args.name)} is not a WAL file name; refusing to fetch`);
  const dest = resolve(args.cwd, args.dest);
  // Leftovers of killed fetches are swept beside the fetch, not before it: the sweep is one readdir
  // of pg_wal and must not delay the store request (it never touches a live process's file).
  const sweeping = removeStaleTempFiles(dirname(dest), deps.log);
  try {
    if (args.spool && name.kind === 'segment') {
      const served = await serveFromSpool(deps, name, dest, args.spool.dir(dest), args.spool.identity);
      if (served) return served;
      await args.spool.beforeStore?.();
    }
    return await fetchOrPartial(deps, name, dest, args);
  } finally {
    await sweeping; // best effort: never rejects
  }
}

/**
 * The complete segment, else (only after the store's real "not found", and only when asked for) a
 * received partial. A partial that vanished between listing and download means the receiver just
 * archived the complete segment: that is asked for once more.
 */
async function fetchOrPartial(deps: Deps, name: WalFileName, dest: string, args: WalFetchArgs): Promise<WalFetchResult> {
  for (let round = 0; ; round++) {
    try {
      return await fetchWalFile(deps, name, dest, { signal: args.signal });
    } catch (err) {
      if (!(err instanceof NotFoundError) || !args.receivedPartials || name.kind !== 'segment') throw err;
      const served = await retrying(deps.retry, { op: 'wal-fetch (received partial)', key: name.name, signal: args.signal, retryable: isTransient }, () =>
        serveReceivedPartial(deps, name, dest, args.signal),
      );
      if (served === 'vanished' && round === 0) continue;
      if (served === undefined || served === 'vanished') throw err;
      deps.log.info(
        { wal: name.name, key: served.key, slot: served.slot, received_bytes: served.receivedBytes, end_lsn: served.endLsn },
        `${name.name} is not archived complete: served the WAL received so far through slot ${served.slot} (${served.receivedBytes} bytes, up to ${served.endLsn}), padded with zeros to ${served.segmentSize} bytes; recovery ends at its end unless more WAL arrives`,
      );
      return { name: name.name, key: served.key, storedBytes: served.storedBytes, plainBytes: served.segmentSize, digestVerified: true, sha256: served.sha256, source: 'received', partial: served, dest };
    }
  }
}

/**
 * Moves the spool's copy of `name` to `dest` when it is still exactly what the prefetcher verified;
 * removes it otherwise (the store then answers). Never decides "not found".
 */
async function serveFromSpool(deps: Deps, name: WalFileName, dest: string, dir: string, identity: SpoolIdentity): Promise<WalFetchResult | undefined> {
  const check = await checkSpoolFile(dir, name.name, identity, LONG_HEADER_SIZE).catch((err: Error) => ({ ok: false as const, reason: err.message }));
  if (!check) return undefined;
  const problem = check.ok ? segmentProblem(name, check.size, check.head) : check.reason;
  if (problem !== undefined) {
    deps.log.info({ wal: name.name, spool: dir, reason: problem }, 'removed a spool file that cannot be served; fetching from the store');
    await removeSpoolFile(dir, name.name);
    return undefined;
  }
  if (!check.ok) return undefined;
  try {
    await fsp.rename(join(dir, name.name), dest);
  } catch (err) {
    // EXDEV (the spool on another file system) or a race: the store path still works.
    deps.log.debug({ wal: name.name, err: (err as Error).message }, 'could not move the spool file into place; fetching from the store');
    return undefined;
  }
  await fsp.rm(join(dir, `${name.name}.rec`), { force: true }).catch(() => undefined);
  await noteServed(dir, name.name, 'node');
  return { name: name.name, key: join(dir, name.name), storedBytes: check.size, plainBytes: check.size, digestVerified: true, sha256: check.sha256, source: 'spool', dest };
}

export interface FetchFileOptions {
  readonly signal?: AbortSignal;
  /** fsync the file before it is renamed into place (spool files outlive the call). */
  readonly durable?: boolean;
  /** The prefetcher's order of decoding (decodeTurns.ts): waited for once the body is there. */
  readonly turn?: Ticket;
}

/**
 * The one way walts fetches a WAL file: from the store to `dest` (absolute), through a temp file
 * beside it, verified, renamed. wal-fetch uses it for `%p`, the prefetcher for spool files.
 *
 * Retries go through the command's one budget (deps.retry), shared with the store's request
 * retries: a whole fetch is tried again when its download broke mid-stream (transient) or, once,
 * when the content did not verify (a connection cut short can look like a short object). Errors
 * that retrying cannot change (access refused, missing key, full disk) end the fetch at once.
 */
export async function fetchWalFile(deps: Deps, name: WalFileName, dest: string, options: FetchFileOptions = {}): Promise<WalFetchResult> {
  let integrityRetried = false;
  return retrying(
    deps.retry,
    {
      op: 'wal-fetch',
      key: name.name,
      signal: options.signal,
      retryable: (err) => {
        if (isTransient(err)) return true;
        if (err instanceof IntegrityError && !integrityRetried) return (integrityRetried = true);
        return false;
      },
      onRetry: ({ attempt, delayMs, remainingMs, error }) =>
        deps.log.warn(
          { wal: name.name, attempt, delay_ms: delayMs, remaining_ms: remainingMs, err: describeError(error) },
          `wal-fetch attempt failed; retrying in ${delayMs} ms (${(remainingMs / 1000).toFixed(1)} s left of the retry deadline)`,
        ),
    },
    () => fetchOnce(deps, name, dest, options),
  );
}

async function fetchOnce(deps: Deps, name: WalFileName, dest: string, options: FetchFileOptions): Promise<WalFetchResult> {
  const obj = await openBest(deps, name, options.signal);
  // A body failing before decodeObject listens (while the temp file is created) must not go
  // unhandled: decodeObject finds it in `body.errored`.
  obj.body.on('error', () => {});
  const tmp = join(dirname(dest), tempName(basename(dest), randomBytes(4).toString('hex')));
  const handle = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600).catch((err: NodeJS.ErrnoException) => {
    obj.body.destroy();
    const full = err.code === 'ENOSPC' || err.code === 'EDQUOT';
    throw new UnavailableError(`cannot create ${tmp}: ${full ? `the disk is full (${err.code})` : (err.code ?? err.message)}`, { transient: false, cause: err });
  });
  let renamed = false;
  try {
    // The write stream owns the handle and closes it when done or destroyed.
    let decoded: Decoded;
    try {
      await options.turn?.wait(options.signal);
      // With walts' record, the decode holds the content to it (and skips LZ4's weaker checksum).
      decoded = await decodeObject(deps, obj, obj.codecs, handle.createWriteStream(), { signal: options.signal, headBytes: LONG_HEADER_SIZE, expected: completeFacts(obj) });
    } finally {
      // The next download decodes while this file is checked, synced and renamed.
      options.turn?.done();
    }
    const digestVerified = verify(obj, name, decoded);
    if (options.durable) {
      const fh = await fsp.open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await fsp.rename(tmp, dest);
    renamed = true;
    return { name: name.name, key: obj.key, storedBytes: decoded.storedBytes, plainBytes: decoded.plainBytes, digestVerified, sha256: decoded.sha256, source: 'store', dest };
  } finally {
    if (!renamed) {
      await fsp.rm(tmp, { force: true });
    }
  }
}

/**
 * Opens the object for `name`: the key today's codecs would write first (one request in the usual
 * case), else whatever variant exists, preferring complete objects walts can vouch for.
 */
async function openBest(deps: Deps, name: WalFileName, signal?: AbortSignal): Promise<StoredObject & { codecs: string[] }> {
  const preferred = walKey(name, deps.codecs.writeSuffix);
  try {
    const obj = await deps.storage.get(preferred, { signal });
    return { ...obj, codecs: deps.codecs.writeChain.map((c) => c.name) };
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  const variants = await findWalVariants(deps.storage, name, signal);
  const best = variants.find((v) => v.facts) ?? variants[0];
  if (!best) {
    // Only now, off the usual path: prove the archive is there before telling PostgreSQL "the end".
    await openArchive(deps.storage, signal);
    throw new NotFoundError(`${name.name} is not in the archive (${deps.storage.description})`);
  }
  const obj = await deps.storage.get(best.info.key, { signal });
  return { ...obj, codecs: [...best.codecs] };
}

/** Proves the decoded file is the archived one. Returns whether a recorded digest was checked. */
function verify(obj: StoredObject, name: WalFileName, decoded: Decoded): boolean {
  const recorded = checkRecordedFacts(obj, decoded);
  const problem = segmentProblem(name, decoded.plainBytes, decoded.head);
  if (problem !== undefined) throw new IntegrityError(`${obj.key}: ${problem}`);
  return recorded;
}

/**
 * What is wrong with a segment (or .partial) of `size` bytes starting with `head` for its name, if
 * anything: size, header, page address, segment size, and timeline. The header's timeline may be
 * lower than the name's, never higher: the first segment of a new timeline starts with the pages
 * PostgreSQL copied from the parent timeline (XLogInitNewTimeline), whose headers keep the parent's
 * timeline, so equality would refuse every timeline switch; a higher one is another timeline's WAL.
 */
export function segmentProblem(name: WalFileName, size: number, head: Buffer): string | undefined {
  if (name.kind !== 'segment' && name.kind !== 'partial') return undefined;
  if (!isValidSegmentSize(size)) return `decoded to ${size} bytes, not a WAL segment size`;
  const header = parseWalSegmentHeader(head);
  if (typeof header === 'string') return header;
  const expected = segmentStartLsn(parseSegmentName(name.name, size), size);
  if (header.segmentSize !== size || header.pageAddress !== expected) return 'the decoded segment does not match its name (page address or segment size)';
  if (header.timeline > name.timeline) return `the segment header is of timeline ${header.timeline}, later than its name's (${name.timeline})`;
  return undefined;
}
