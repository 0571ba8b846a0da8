/**
 * wal-push: PostgreSQL's archive_command. PostgreSQL deletes or recycles the file as soon as this
 * resolves, so it resolves only after the store acknowledged the whole object, and rejects for
 * everything else (reliability.md rules 1-8, 15-18, 37).
 *
 * Order of work: validate the name and the file; then, at the same time, encode the file into a
 * spool (hashing the plain bytes on the way) and ask the store what it already has under that name
 * and which archive and cluster it is (a location without an archive record is refused: wal-push
 * never creates an archive, see archive/archive.ts); judge objects without usable metadata by their
 * content; decide; where the store cannot enforce create-if-absent, decide again right before
 * uploading; upload with create-if-absent; where the store cannot enforce it, read back and verify.
 *
 * `pushFile` is the one push path: the file PostgreSQL asked for and the files a look-ahead pushes
 * with it (ops/walPushLookahead.ts) alike, within a `PushSession` that opens the archive once.
 */
import { promises as fsp } from 'node:fs';
import { basename, resolve } from 'node:path';
import { checkWriteEncryption, openArchive, type OpenArchive } from '../archive/archive';
import { checkSameCluster, conditionalCreateTrusted, ensureClusterRecord, type ClusterRecord } from '../archive/cluster';
import { walKey } from '../archive/layout';
import { completeFacts, META, objectMetadata, type PlainFacts } from '../archive/objectMeta';
import { findWalVariants, sameFacts, type WalVariant } from '../archive/walObjects';
import { readWalObject } from '../archive/walRead';
import type { Deps } from '../deps';
import { ConfigError, CryptoError, IntegrityError, NotFoundError, ObjectExistsError, UnavailableError, UsageError } from '../errors';
import { LONG_HEADER_SIZE, parseWalSegmentHeader, type WalSegmentHeader } from '../postgres/walHeader';
import { isValidSegmentSize, parseSegmentName, parseWalFileName, segmentStartLsn, type WalFileName } from '../postgres/walName';
import { encodeTo } from '../archive/encode';
import { spool, type Spooled } from '../util/spool';
import { LZ4_BLOCK_MAX } from '../codec/lz4FrameEncoder';
import { readSteps } from '../util/readSteps';
import { identityOf, type FileIdentity } from './pushRecord';

/** Segment read step: one LZ4 block (lz4FrameEncoder.ts). */
const READ_STEP = LZ4_BLOCK_MAX;

/** History and backup-history files are a few lines of text. */
const MAX_TEXT_FILE = 1 << 20;

export interface WalPushArgs {
  /** `%p`: relative to `cwd` (PostgreSQL runs archive_command in PGDATA) or absolute. */
  readonly path: string;
  readonly cwd: string;
  readonly signal?: AbortSignal;
}

export interface WalPushResult {
  readonly name: string;
  readonly key: string;
  /** `uploaded`, or `already-archived` when identical content was there (nothing uploaded). */
  readonly outcome: 'uploaded' | 'already-archived';
  readonly plainBytes: number;
  readonly storedBytes: number;
  /** Incomplete objects (truncated or without walts metadata) that this push replaced. */
  readonly replaced: readonly string[];
  /** The plain SHA-256 of what the store now holds under `key`. */
  readonly sha256: string;
  /** The file as it was opened, before any byte was read (look-ahead binds its record to it). */
  readonly source: { readonly identity: FileIdentity; readonly firstStatMs: number };
}

/** Pushes one file: the command as PostgreSQL's archive_command calls it. */
export async function walPush(deps: Deps, args: WalPushArgs): Promise<WalPushResult> {
  const session = new PushSession(deps, args.signal);
  try {
    return await pushFile(deps, session, { path: args.path, cwd: args.cwd, primary: true }, args.signal);
  } finally {
    session.primaryFinished();
  }
}

/**
 * What the files pushed by one call share: the archive, opened once (and checked once for
 * encryption), and the cluster that owns the store. Only the call's own file (the primary) may
 * make a store without a cluster record belong to its cluster; look-ahead files wait for that and
 * are checked against it like every file.
 */
export class PushSession {
  readonly archive: Promise<OpenArchive>;
  readonly #claim: Promise<ClusterRecord>;
  #resolveClaim!: (claim: Promise<ClusterRecord>) => void;
  #claimSettled = false;

  constructor(deps: Deps, signal?: AbortSignal) {
    this.archive = openArchive(deps.storage, signal).then((archive) => {
      checkWriteEncryption(archive, deps.codecs.writeChain.some((c) => c.name === 'pgp'), deps.storage);
      return archive;
    });
    this.archive.catch(() => undefined); // awaited (and reported) by each file
    this.#claim = new Promise((resolve) => (this.#resolveClaim = resolve));
    this.#claim.catch(() => undefined);
  }

  async owner(deps: Deps, archive: OpenArchive, header: WalSegmentHeader, what: string, primary: boolean): Promise<ClusterRecord> {
    let owner = archive.cluster;
    if (!owner && primary) {
      const claim = ensureClusterRecord(deps.storage, undefined, header, deps);
      this.#settleClaim(() => claim);
      owner = await claim;
    } else if (!owner) {
      owner = await this.#claim;
    }
    checkSameCluster(owner, header, what);
    return owner;
  }

  /** The primary file is done (or failed before claiming): nobody waits for a claim any longer. */
  primaryFinished(): void {
    this.#settleClaim(() => Promise.reject(new UnavailableError('the store has no cluster record and the call\'s own file did not create one', { transient: false })));
  }

  #settleClaim(claim: () => Promise<ClusterRecord>): void {
    if (this.#claimSettled) return;
    this.#claimSettled = true;
    const p = claim();
    p.catch(() => undefined);
    this.#resolveClaim(p);
  }
}

export interface PushFileArgs {
  readonly path: string;
  readonly cwd: string;
  /** The file PostgreSQL asked for (true), or a look-ahead file (false). */
  readonly primary: boolean;
}

/** Pushes one file within a session. The one push path: the primary and look-ahead files alike. */
export async function pushFile(deps: Deps, session: PushSession, args: PushFileArgs, signal?: AbortSignal): Promise<WalPushResult> {
  const { storage, log } = deps;
  const name = parseWalFileName(basename(args.path));
  if (!name) {
    throw new UsageError(`${JSON.stringify(args.path)} is not a WAL file name (24 upper-case hex digits, optionally .partial; TTTTTTTT.history; or a .backup file)`);
  }
  const path = resolve(args.cwd, args.path);
  const handle = await fsp.open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot open ${path}: ${err.code ?? err.message}`);
  });
  let encoded: Spooled | undefined;
  try {
    // The clock is read before the stat: see ops/pushRecord.ts for why the order matters.
    const firstStatMs = deps.now().getTime();
    const identity = identityOf(await handle.stat({ bigint: true }));
    const source = { identity, firstStatMs };
    const fileSize = Number(identity.size);
    const header = await validateSource(handle, name, fileSize);

    // Network round trips and CPU work overlap: the store is asked while the file is encoded.
    const [archiveResult, variantsResult, encodedResult] = await Promise.allSettled([
      session.archive,
      findWalVariants(storage, name, signal),
      encode(deps, handle, fileSize, signal),
    ]);
    if (encodedResult.status === 'fulfilled') encoded = encodedResult.value.spooled; // cleaned up in finally
    const archive = settledValue(archiveResult);
    const variants = settledValue(variantsResult);
    const { plain, spooled } = settledValue(encodedResult);

    const owner = header ? await session.owner(deps, archive, header, name.name, args.primary) : archive.cluster;
    const trusted = conditionalCreateTrusted(storage, archive.record, owner);

    const key = walKey(name, deps.codecs.writeSuffix);
    const done = (outcome: WalPushResult['outcome'], storedBytes: number, replaced: readonly string[]): WalPushResult => ({
      name: name.name,
      key,
      outcome,
      plainBytes: plain.size,
      storedBytes,
      replaced,
      sha256: plain.sha256,
      source,
    });
    const decision = decide(name, plain, await judgeUnvouched(deps, variants, signal));
    if (decision === 'already-archived') {
      // info, not warn: normal after a crash (PostgreSQL pushes the file again) and for every segment
      // when wal-receive and archive_command both feed the archive.
      if (args.primary) log.info({ wal: name.name }, 'already archived with identical content; nothing uploaded');
      return done('already-archived', 0, []);
    }
    const stale = decision.replace;
    const overwrite = stale.some((v) => v.info.key === key);
    if (stale.length > 0) log.warn({ wal: name.name, keys: stale.map((v) => v.info.key) }, 'replacing incomplete object(s) (size differs from the size recorded with it, or no walts metadata)');

    const metadata = objectMetadata(plain, spooled.size, header?.systemIdentifier);
    if (!trusted) {
      // The store may ignore create-if-absent: look again right before the upload, so that the
      // window in which another writer's object can be overwritten is one PUT long, not the
      // whole encode (docs/storage-format.md, "Stores that ignore If-None-Match").
      const again = decide(name, plain, await judgeUnvouched(deps, await findWalVariants(storage, name, signal), signal));
      if (again === 'already-archived') {
        log.warn({ wal: name.name }, 'archived with identical content by another writer while this push ran; nothing uploaded');
        return done('already-archived', 0, []);
      }
    }
    try {
      await storage.put(key, spooled.body(), { ifAbsent: !overwrite, metadata, size: spooled.size, signal });
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
      // Someone created the key between our listing and our upload: judge what they wrote.
      if ((await judgeExisting(deps, key, name, plain)) === 'same') return done('already-archived', 0, []);
    }
    if (!trusted) await verifyOurs(deps, key, name, plain);

    const others = stale.filter((v) => v.info.key !== key).map((v) => v.info.key);
    if (others.length > 0) await storage.delete(others, { signal });
    return done('uploaded', spooled.size, stale.map((v) => v.info.key));
  } finally {
    await handle.close();
    await encoded?.cleanup();
  }
}

/**
 * Checks that the file is what its name says before anything is uploaded. Segments (and .partial
 * files) must be a whole segment with a valid long page header for that position; returns the header.
 */
async function validateSource(handle: fsp.FileHandle, name: WalFileName, size: number): Promise<WalSegmentHeader | undefined> {
  if (name.kind === 'history' || name.kind === 'backup-history') {
    if (size === 0 || size > MAX_TEXT_FILE) throw new IntegrityError(`${name.name} is ${size} bytes; refusing (expected a small text file)`);
    const { buffer } = await handle.read(Buffer.alloc(size), 0, size, 0);
    if (buffer.includes(0)) throw new IntegrityError(`${name.name} contains NUL bytes; refusing (expected a text file)`);
    return undefined;
  }
  if (!isValidSegmentSize(size)) {
    throw new IntegrityError(`${name.name} is ${size} bytes, not a WAL segment size (a power of two from 1 MiB to 1 GiB); refusing truncated or foreign file`);
  }
  const { buffer, bytesRead } = await handle.read(Buffer.alloc(LONG_HEADER_SIZE), 0, LONG_HEADER_SIZE, 0);
  const header = parseWalSegmentHeader(buffer.subarray(0, bytesRead));
  if (typeof header === 'string') throw new IntegrityError(`${name.name}: ${header}; refusing`);
  if (header.segmentSize !== size) {
    throw new IntegrityError(`${name.name} is ${size} bytes but its header says ${header.segmentSize}-byte segments; refusing`);
  }
  const expected = segmentStartLsn(parseSegmentName(name.name, size), size);
  if (header.pageAddress !== expected) {
    throw new IntegrityError(`${name.name}: first page is for LSN ${header.pageAddress.toString(16)}, not ${expected.toString(16)}; the file does not match its name`);
  }
  return header;
}

async function encode(deps: Deps, handle: fsp.FileHandle, fileSize: number, signal?: AbortSignal): Promise<{ plain: PlainFacts; spooled: Spooled }> {
  let spooled: Spooled | undefined;
  // Read in steps of one LZ4 block into reused memory: 64 times fewer reads than a read stream's
  // 64 KiB, each step a whole block the encoder compresses where it lies (no gathering), and the
  // same few buffers for every segment (util/readSteps.ts; docs/performance.md, "LZ4 encoding").
  const { plain } = await encodeTo(deps.codecs, readSteps(handle, READ_STEP), async (encoded) => {
    spooled = await spool(encoded);
  }, signal, { plainSize: fileSize });
  if (!spooled) throw new Error('encoder produced no output');
  if (plain.size !== fileSize) {
    await spooled.cleanup();
    throw new IntegrityError(`file changed size while being read (${fileSize} → ${plain.size} bytes)`);
  }
  return { plain, spooled };
}

/**
 * What to do given what is stored: identical complete content ⇒ nothing; different complete
 * content ⇒ refuse (split brain, or two clusters on one prefix); incomplete objects ⇒ replace.
 */
function decide(name: WalFileName, plain: PlainFacts, variants: readonly WalVariant[]): 'already-archived' | { replace: WalVariant[] } {
  const complete = variants.filter((v) => v.facts);
  const conflicting = complete.find((v) => v.facts && !sameFacts(v.facts, plain));
  if (conflicting?.facts) {
    throw new IntegrityError(
      `${name.name} is already archived with different content (stored sha256 ${conflicting.facts.sha256.slice(0, 16)}…, ${conflicting.facts.size} bytes; this file ${plain.sha256.slice(0, 16)}…, ${plain.size} bytes); refusing to overwrite ${conflicting.info.key}`,
    );
  }
  if (complete.length > 0) return 'already-archived';
  return { replace: variants.filter((v) => !v.facts) };
}

/**
 * Objects walts cannot vouch for by their metadata (none, or a stored size that does not match) are
 * judged by their content where this host can decode them: intact content counts as what it is
 * (identical ⇒ nothing to do, different ⇒ refused), so nothing decodable is ever overwritten on the
 * word of missing metadata. Objects that fail to decode stay unvouched and are replaced; so are
 * encrypted ones on a host without the private key (an archive host): walts never leaves an object
 * it published without metadata while its writer may still acknowledge it (docs/storage-format.md).
 */
async function judgeUnvouched(deps: Deps, variants: readonly WalVariant[], signal?: AbortSignal): Promise<WalVariant[]> {
  return Promise.all(
    variants.map(async (v) => {
      if (v.facts) return v;
      // Its own metadata says it was cut short (stored size differs from the recorded one): an
      // interrupted upload, nothing anyone acknowledged. Replace it without downloading it.
      if (v.info.metadata[META.storedSize] !== undefined) return v;
      try {
        const read = await readWalObject(deps, v.info.key, false, signal);
        deps.log.warn({ key: v.info.key }, 'object without usable walts metadata: judged by its decoded content');
        return { ...v, facts: { sha256: read.sha256, size: read.size } };
      } catch (err) {
        if (err instanceof IntegrityError || err instanceof CryptoError || err instanceof ConfigError || err instanceof NotFoundError) return v; // does not decode here
        throw err;
      }
    }),
  );
}

async function judgeExisting(deps: Deps, key: string, name: WalFileName, plain: PlainFacts): Promise<'same'> {
  const info = await deps.storage.head(key);
  const facts = info && completeFacts(info);
  if (!facts) throw new UnavailableError(`${key} is being written by another process; PostgreSQL will retry`, { transient: true });
  if (!sameFacts(facts, plain)) throw new IntegrityError(`${name.name} was archived with different content by another writer while this push ran; refusing to overwrite`);
  return 'same';
}

/** On stores that may ignore create-if-absent: make sure the object now there is ours. */
async function verifyOurs(deps: Deps, key: string, name: WalFileName, plain: PlainFacts): Promise<void> {
  const info = await deps.storage.head(key);
  const facts = info && completeFacts(info);
  if (!facts || !sameFacts(facts, plain)) {
    throw new IntegrityError(`${name.name}: after upload, ${key} does not hold this file's content (another writer on the same prefix?)`);
  }
}

function settledValue<T>(result: PromiseSettledResult<T>): T {
  if (result.status === 'rejected') throw result.reason;
  return result.value;
}
