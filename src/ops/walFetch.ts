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
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { openArchive } from '../archive/archive';
import { checkRecordedFacts, decodeObject, type Decoded } from '../archive/decode';
import { walKey } from '../archive/layout';
import { findWalVariants } from '../archive/walObjects';
import type { Deps } from '../deps';
import { describeError, IntegrityError, isTransient, NotFoundError, UnavailableError, UsageError } from '../errors';
import { LONG_HEADER_SIZE, parseWalSegmentHeader } from '../postgres/walHeader';
import { isValidSegmentSize, parseSegmentName, parseWalFileName, segmentStartLsn, type WalFileName } from '../postgres/walName';
import type { StoredObject } from '../storage/storage';
import { retrying } from '../util/retryBudget';
import { removeStaleTempFiles, tempName } from './walFetchTemp';

export interface WalFetchArgs {
  /** `%f`: the WAL file name PostgreSQL wants. */
  readonly name: string;
  /** `%p`: where to put it, relative to `cwd` or absolute. */
  readonly dest: string;
  readonly cwd: string;
  readonly signal?: AbortSignal;
}

export interface WalFetchResult {
  readonly name: string;
  readonly key: string;
  readonly storedBytes: number;
  readonly plainBytes: number;
  /** False for objects without walts metadata (written by hand): checked by format only. */
  readonly digestVerified: boolean;
}

/**
 * Retries go through the command's one budget (deps.retry), shared with the store's request
 * retries: a whole fetch is tried again when its download broke mid-stream (transient) or, once,
 * when the content did not verify (a connection cut short can look like a short object). Errors
 * that retrying cannot change (access refused, missing key, full disk) end the fetch at once.
 */
export async function walFetch(deps: Deps, args: WalFetchArgs): Promise<WalFetchResult> {
  const name = parseWalFileName(args.name);
  if (!name) throw new UsageError(`${JSON.stringify(args.name)} is not a WAL file name; refusing to fetch`);
  const dest = resolve(args.cwd, args.dest);
  // Leftovers of killed fetches are swept beside the fetch, not before it: the sweep is one readdir
  // of pg_wal and must not delay the store request (it never touches a live process's file).
  const sweeping = removeStaleTempFiles(dirname(dest), deps.log);
  let integrityRetried = false;
  try {
    return await retrying(
      deps.retry,
      {
        op: 'wal-fetch',
        key: name.name,
        signal: args.signal,
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
      () => fetchOnce(deps, name, dest, args.signal),
    );
  } finally {
    await sweeping; // best effort: never rejects
  }
}

async function fetchOnce(deps: Deps, name: WalFileName, dest: string, signal?: AbortSignal): Promise<WalFetchResult> {
  const obj = await openBest(deps, name, signal);
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
    const decoded = await decodeObject(deps, obj, obj.codecs, handle.createWriteStream(), { signal, headBytes: LONG_HEADER_SIZE });
    const digestVerified = verify(obj, name, decoded);
    await fsp.rename(tmp, dest);
    renamed = true;
    return { name: name.name, key: obj.key, storedBytes: decoded.storedBytes, plainBytes: decoded.plainBytes, digestVerified };
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
  const size = decoded.plainBytes;
  if (name.kind === 'segment' || name.kind === 'partial') {
    if (!isValidSegmentSize(size)) throw new IntegrityError(`${obj.key}: decoded to ${size} bytes, not a WAL segment size`);
    const header = parseWalSegmentHeader(decoded.head);
    if (typeof header === 'string') throw new IntegrityError(`${obj.key}: ${header}`);
    const expected = segmentStartLsn(parseSegmentName(name.name, size), size);
    if (header.segmentSize !== size || header.pageAddress !== expected) {
      throw new IntegrityError(`${obj.key}: the decoded segment does not match its name (page address or segment size)`);
    }
  }
  return recorded;
}
