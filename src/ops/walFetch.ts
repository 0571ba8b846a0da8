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
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { openArchive } from '../archive/archive';
import { walKey } from '../archive/layout';
import { completeFacts } from '../archive/objectMeta';
import { findWalVariants } from '../archive/walObjects';
import type { Deps } from '../deps';
import { IntegrityError, NotFoundError, UnavailableError, UsageError, WaltsError } from '../errors';
import { LONG_HEADER_SIZE, parseWalSegmentHeader } from '../postgres/walHeader';
import { isValidSegmentSize, parseSegmentName, parseWalFileName, segmentStartLsn, type WalFileName } from '../postgres/walName';
import type { StoredObject } from '../storage/storage';
import { DigestStream, pipeStages } from '../util/streams';

export interface WalFetchArgs {
  /** `%f`: the WAL file name PostgreSQL wants. */
  readonly name: string;
  /** `%p`: where to put it, relative to `cwd` or absolute. */
  readonly dest: string;
  readonly cwd: string;
  /** Overall time for retrying transient failures (reads broken mid-stream included). */
  readonly retryDeadlineMs: number;
  readonly signal?: AbortSignal;
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface WalFetchResult {
  readonly name: string;
  readonly key: string;
  readonly storedBytes: number;
  readonly plainBytes: number;
  /** False for objects without walts metadata (written by hand): checked by format only. */
  readonly digestVerified: boolean;
}

export async function walFetch(deps: Deps, args: WalFetchArgs): Promise<WalFetchResult> {
  const name = parseWalFileName(args.name);
  if (!name) throw new UsageError(`${JSON.stringify(args.name)} is not a WAL file name; refusing to fetch`);
  const dest = resolve(args.cwd, args.dest);
  const started = Date.now();
  const sleep = args.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  let integrityRetried = false;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetchOnce(deps, name, dest, args.signal);
    } catch (err) {
      if (args.signal?.aborted) throw err;
      // A digest mismatch is read once more: a connection cut short can look like a short object.
      const retryIntegrity = err instanceof IntegrityError && !integrityRetried;
      // Any store failure is retried here, access denied included (IAM changes propagate, tokens
      // refresh): giving up early would stop recovery for something that may pass.
      const retryStore = err instanceof UnavailableError;
      if (!(retryStore || retryIntegrity) || Date.now() - started >= args.retryDeadlineMs) throw err;
      if (retryIntegrity) integrityRetried = true;
      const delay = Math.min(5000, 200 * 2 ** attempt) * Math.random();
      deps.log.warn({ wal: name.name, attempt, err: (err as Error).message }, 'wal-fetch attempt failed; retrying');
      await sleep(delay);
    }
  }
}

async function fetchOnce(deps: Deps, name: WalFileName, dest: string, signal?: AbortSignal): Promise<WalFetchResult> {
  const obj = await openBest(deps, name, signal);
  const tmp = join(dirname(dest), `.${basename(dest)}.walts-${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600).catch((err: NodeJS.ErrnoException) => {
    obj.body.destroy();
    throw new UnavailableError(`cannot create ${tmp}: ${err.code ?? err.message}`, { transient: false, cause: err });
  });
  let renamed = false;
  try {
    const stored = new DigestStream();
    const plain = new DigestStream(LONG_HEADER_SIZE);
    try {
      // The write stream owns the handle and closes it when done or destroyed.
      await pipeStages([obj.body, stored, ...deps.codecs.decoders(obj.codecs), plain, handle.createWriteStream()], signal);
    } catch (err) {
      throw classifyReadError(err, obj.key);
    }
    const digestVerified = verify(obj, name, stored.bytes, { sha256: plain.digest(), size: plain.bytes }, plain.head());
    await fsp.rename(tmp, dest);
    renamed = true;
    return { name: name.name, key: obj.key, storedBytes: stored.bytes, plainBytes: plain.bytes, digestVerified };
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
function verify(obj: StoredObject, name: WalFileName, storedBytes: number, plain: { sha256: string; size: number }, head: Buffer): boolean {
  if (storedBytes !== obj.size) throw new IntegrityError(`${obj.key}: read ${storedBytes} bytes, the store announced ${obj.size}`);
  const recorded = completeFacts(obj);
  if (Object.keys(obj.metadata).length > 0 && !recorded) {
    throw new IntegrityError(`${obj.key} is incomplete: its size does not match the size recorded with it`);
  }
  if (recorded && (recorded.sha256 !== plain.sha256 || recorded.size !== plain.size)) {
    throw new IntegrityError(`${obj.key}: decoded content does not match the recorded SHA-256/size (corrupt object)`);
  }
  if (name.kind === 'segment' || name.kind === 'partial') {
    if (!isValidSegmentSize(plain.size)) throw new IntegrityError(`${obj.key}: decoded to ${plain.size} bytes, not a WAL segment size`);
    const header = parseWalSegmentHeader(head);
    if (typeof header === 'string') throw new IntegrityError(`${obj.key}: ${header}`);
    const expected = segmentStartLsn(parseSegmentName(name.name, plain.size), plain.size);
    if (header.segmentSize !== plain.size || header.pageAddress !== expected) {
      throw new IntegrityError(`${obj.key}: the decoded segment does not match its name (page address or segment size)`);
    }
  }
  return recorded !== undefined;
}

/** Errors from the middle of a read: ours pass through; a broken connection is worth another try. */
function classifyReadError(err: unknown, key: string): unknown {
  if (err instanceof WaltsError || (err as Error).name === 'AbortError') return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || code === 'EACCES') {
    return new UnavailableError(`cannot write the fetched file: ${code}`, { transient: false, cause: err });
  }
  const message = (err as Error).message ?? String(err);
  // LZ4 frame and checksum errors come from the decoder as plain Errors.
  if (/checksum|invalid|magic|lz4/i.test(message)) return new IntegrityError(`${key}: cannot decode (${message})`, { cause: err });
  return new UnavailableError(`${key}: read failed: ${message}`, { transient: true, cause: err });
}
