/**
 * The one read path of the archive: stored object → decoders → consumer, counting and hashing the
 * stored and the plain bytes on the way, with one classification of what can go wrong. wal-fetch,
 * backup parts (volumes, manifests) and WAL reads (history files, verify --deep) all come through
 * here, so a fix to how a failure is told apart lands everywhere.
 *
 * Classification (everything read may have been written by an attacker: only our own checks decide):
 * - the caller's abort: the AbortError passes through;
 * - the body stream broke (reset, idle timeout, ended before the announced size): a transient
 *   UnavailableError, worth another attempt within the retry budget;
 * - the consumer could not write (full disk, read-only, permissions): a non-transient
 *   UnavailableError that says which (a full disk is named as such);
 * - a decoder or the consumer rejected the content: IntegrityError (CryptoError for decryption),
 *   with the key named; a ConfigError (no private key) passes through unchanged.
 */
import type { Writable } from 'node:stream';
import type { Deps } from '../deps';
import { CryptoError, IntegrityError, UnavailableError, WaltsError } from '../errors';
import type { StoredObject } from '../storage/storage';
import { DigestStream, pipeStages } from '../util/streams';
import { completeFacts } from './objectMeta';

export interface DecodeOptions {
  readonly signal?: AbortSignal;
  /** Keep this many plain bytes from the start (a WAL segment's header). */
  readonly headBytes?: number;
  /** Let decryption stream before its integrity check ends (volumes: verified whole afterwards). */
  readonly unauthenticatedStream?: boolean;
}

export interface Decoded {
  readonly storedBytes: number;
  readonly plainBytes: number;
  /** Hex SHA-256 of the plain bytes. */
  readonly sha256: string;
  readonly head: Buffer;
}

/** Where plain bytes go: a file's write stream, or a function consuming them. */
export type PlainSink = Writable | ((plain: AsyncIterable<Buffer>) => Promise<void>);

/** Error codes of a full disk or quota, named as such in the message. */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

/**
 * Decodes `obj` (whose codec chain is `codecs`, outermost last as in the key suffix) into `sink`.
 * Checks that exactly the announced number of bytes was read; everything else (recorded digest,
 * the sentinel's record, a segment header) is the caller's, see `checkRecordedFacts`.
 */
export async function decodeObject(
  deps: Pick<Deps, 'codecs'>,
  obj: StoredObject,
  codecs: readonly string[],
  sink: PlainSink,
  options: DecodeOptions = {},
): Promise<Decoded> {
  const stored = new DigestStream();
  const plain = new DigestStream(options.headBytes ?? 0);
  let bodyError: unknown;
  let sinkError: unknown;
  let bodyEnded = false;
  obj.body.once('error', (err) => (bodyError ??= err));
  obj.body.once('end', () => (bodyEnded = true));
  if (typeof sink !== 'function') sink.once('error', (err) => (sinkError ??= err));
  const consumer = typeof sink === 'function' ? async (s: AsyncIterable<Buffer>) => sink(s).catch((err: unknown) => Promise.reject((sinkError ??= err))) : sink;
  try {
    const decoders = deps.codecs.decoders([...codecs], options.unauthenticatedStream ? { unauthenticatedStream: true } : undefined);
    await pipeStages([obj.body, stored, ...decoders, plain, consumer], options.signal);
  } catch (err) {
    throw classifyDecodeError(err, { key: obj.key, announced: obj.size, read: stored.bytes, bodyEnded, bodyError, sinkError, aborted: options.signal?.aborted === true });
  }
  if (stored.bytes !== obj.size) {
    // The body ended early without an error (a proxy closing cleanly): a broken read, not a bad object.
    if (stored.bytes < obj.size) throw brokenRead(obj.key, stored.bytes, obj.size);
    throw new IntegrityError(`${obj.key}: read ${stored.bytes} bytes, the store announced ${obj.size}`);
  }
  return { storedBytes: stored.bytes, plainBytes: plain.bytes, sha256: plain.digest(), head: plain.head() };
}

/**
 * Checks the decoded content against the SHA-256 and size recorded with the object at write time.
 * Returns whether there was a record (objects written by hand have none). An object with walts
 * metadata that does not add up is incomplete: an interrupted upload on a store without atomic puts.
 */
export function checkRecordedFacts(obj: StoredObject, decoded: Pick<Decoded, 'sha256' | 'plainBytes'>): boolean {
  const recorded = completeFacts(obj);
  if (Object.keys(obj.metadata).length > 0 && !recorded) {
    throw new IntegrityError(`${obj.key} is incomplete: its size does not match the size recorded with it`);
  }
  if (recorded && (recorded.sha256 !== decoded.sha256 || recorded.size !== decoded.plainBytes)) {
    throw new IntegrityError(`${obj.key}: decoded content does not match the recorded SHA-256/size (corrupt object)`);
  }
  return recorded !== undefined;
}

interface FailureContext {
  readonly key: string;
  readonly announced: number;
  readonly read: number;
  /** The body ended (cleanly) before the failure. */
  readonly bodyEnded: boolean;
  readonly bodyError: unknown;
  readonly sinkError: unknown;
  readonly aborted: boolean;
}

/** The classification described at the top of this file. Exported for tests. */
export function classifyDecodeError(err: unknown, ctx: FailureContext): unknown {
  if (ctx.aborted || (err as Error)?.name === 'AbortError') return err;
  const { key } = ctx;
  if (ctx.sinkError !== undefined && err === ctx.sinkError) return classifySinkError(err, key);
  if (ctx.bodyError !== undefined && (err === ctx.bodyError || ctx.read < ctx.announced)) {
    const cause = ctx.bodyError;
    if (cause instanceof WaltsError) return cause; // the store classified it (UnavailableError)
    return new UnavailableError(`${key}: read failed after ${ctx.read} of ${ctx.announced} bytes: ${describe(cause)}`, { transient: true, cause });
  }
  if (err instanceof CryptoError) return err.message.includes(key) ? err : new CryptoError(`${key}: ${err.message}`, { cause: err });
  if (err instanceof WaltsError) {
    if (err.kind !== 'integrity') return err; // ConfigError (no key), UnavailableError from the store
    return err.message.includes(key) ? err : new IntegrityError(`${key}: ${err.message}`, { cause: err });
  }
  // A decoder failing on a body that ended short is the broken read, not the content.
  if (ctx.bodyEnded && ctx.read < ctx.announced) return brokenRead(key, ctx.read, ctx.announced, err);
  return new IntegrityError(`${key}: cannot decode (${describe(err)})`, { cause: err });
}

/** A failure to write the plain bytes where they go. */
function classifySinkError(err: unknown, key: string): unknown {
  if (err instanceof WaltsError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code && DISK_FULL.has(code)) {
    return new UnavailableError(`cannot write ${key} decoded: the disk is full (${code})`, { transient: false, cause: err });
  }
  if (typeof code === 'string' && (err as NodeJS.ErrnoException).syscall) {
    return new UnavailableError(`cannot write ${key} decoded: ${describe(err)}`, { transient: false, cause: err });
  }
  // The consumer parsed the plain bytes and rejected them (a malformed tar stream, say).
  return new IntegrityError(`${key}: ${describe(err)}`, { cause: err });
}

function brokenRead(key: string, read: number, announced: number, cause?: unknown): UnavailableError {
  return new UnavailableError(`${key}: the download broke off after ${read} of ${announced} bytes`, { transient: true, cause });
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e instanceof Error) return e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
  return String(err);
}
