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
import { WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { releaseChunk } from '../codec/blockPool';
import type { Deps } from '../deps';
import { CryptoError, IntegrityError, UnavailableError, WaltsError } from '../errors';
import type { StoredObject } from '../storage/storage';
import { CountingStream, DigestStream, pipeStages } from '../util/streams';
import { completeFacts, type PlainFacts } from './objectMeta';
import { canOffload, WorkerStage } from './workerStage';

export interface DecodeOptions {
  readonly signal?: AbortSignal;
  /** Keep this many plain bytes from the start (a WAL segment's header). */
  readonly headBytes?: number;
  /** Let decryption stream before its integrity check ends (volumes: verified whole afterwards). */
  readonly unauthenticatedStream?: boolean;
  /**
   * Run the decoders and the plain SHA-256 in a worker thread (large objects: backup volumes), so
   * decoding the next bytes overlaps with what the sink does with these. No `head` then. Only for
   * chains without OpenPGP (see below); others decode here.
   */
  readonly offload?: boolean;
  /**
   * The plain SHA-256 and size recorded with the object (`completeFacts`): decodeObject holds the
   * result to them itself before it returns, and the decoders skip checksums that only cover the
   * plain bytes (LZ4's xxHash32 content checksum, about 12 ms of CPU per 16 MiB segment).
   *
   * Why that loses nothing: both checksums cover the same decoded chunks (the SHA-256 is taken of
   * the very chunks handed to the sink), and both are checked before the caller uses any of them
   * (wal-fetch renames its temp file only after this returns), so no damage can reach one and not
   * the other. A match of 256 bits of SHA-256 plus the exact size is a far stronger proof than 32
   * bits of xxHash32, which is built to catch accidents, not forgeries: whoever can rewrite the
   * frame can recompute its xxHash32 as easily as the recorded digest. Every structural check of
   * the frame stays. The checksum is still written, so `lz4 -d` checks it on a restore by hand;
   * objects without walts' record (written by hand, or incomplete) come without `expected` and
   * keep every check.
   */
  readonly expected?: PlainFacts;
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
  const stored = new CountingStream(); // its size is checked; the plain digest is the one that counts
  // Where the failure began: a pipeline destroys every stage with the first error, so each stage
  // reports it; the first report names the stage it came from.
  let origin: { where: Origin; err: unknown } | undefined;
  const note = (where: Origin) => (err: unknown) => void (origin ??= { where, err });
  let bodyEnded = false;
  if (obj.body.errored) note('body')(obj.body.errored); // it failed before we were listening
  obj.body.on('error', note('body'));
  obj.body.once('end', () => (bodyEnded = true));
  // Not with OpenPGP: decrypting ahead of the consumer would let its end-of-stream check (a
  // CryptoError) overtake the consumer's own checks of damaged bytes, changing how damage is told.
  const offload = options.offload === true && !codecs.includes('pgp') && canOffload(deps.codecs);
  const plainVerified = options.expected !== undefined;
  const offloaded = offload ? new WorkerStage({ kind: 'decode', spec: deps.codecs.spec!, codecs: [...codecs], unauthenticatedStream: options.unauthenticatedStream === true, plainVerified }) : undefined;
  // A file is written chunk by chunk here, so each chunk's end of use is known: the decoder may
  // then lend reused buffers (see writeReleasing). Other sinks keep what they are given.
  const lendOutput = !offloaded && sink instanceof WriteStream;
  const plain = new DigestStream(options.headBytes ?? 0, { objectMode: lendOutput });
  const decoders = offloaded ? [offloaded] : [...deps.codecs.decoders([...codecs], { unauthenticatedStream: options.unauthenticatedStream === true, lendOutput, plainVerified }), plain];
  for (const d of decoders) d.on('error', note('decoder'));
  let consumer: PlainSink;
  if (typeof sink === 'function') {
    consumer = (s: AsyncIterable<Buffer>) => sink(s).catch((err: unknown) => Promise.reject((note('sink')(err), err)));
  } else if (lendOutput) {
    sink.on('error', note('sink'));
    consumer = writeReleasing(sink as WriteStream, note('sink'));
  } else {
    sink.on('error', note('sink'));
    consumer = sink;
  }
  try {
    await pipeStages([obj.body, stored, ...decoders, consumer], options.signal);
  } catch (err) {
    throw classifyDecodeError(err, { key: obj.key, announced: obj.size, read: stored.bytes, bodyEnded, origin: origin?.where, cause: origin?.err ?? err, aborted: options.signal?.aborted === true });
  }
  if (stored.bytes !== obj.size) {
    // The body ended early without an error (a proxy closing cleanly): a broken read, not a bad object.
    if (stored.bytes < obj.size) throw brokenRead(obj.key, stored.bytes, obj.size);
    throw new IntegrityError(`${obj.key}: read ${stored.bytes} bytes, the store announced ${obj.size}`);
  }
  const decoded = offloaded
    ? { storedBytes: stored.bytes, plainBytes: offloaded.result!.plainBytes, sha256: offloaded.result!.sha256, head: Buffer.alloc(0) }
    : { storedBytes: stored.bytes, plainBytes: plain.bytes, sha256: plain.digest(), head: plain.head() };
  if (options.expected && (options.expected.sha256 !== decoded.sha256 || options.expected.size !== decoded.plainBytes)) {
    throw new IntegrityError(`${obj.key}: decoded content does not match the recorded SHA-256/size (corrupt object)`);
  }
  return decoded;
}

/**
 * Writes the plain chunks to a file one at a time and releases each (`releaseChunk`) once its write
 * completed: fs.WriteStream calls a write's callback after fs.write returned, when the kernel holds
 * the bytes, so nothing reads the chunk's memory any more and the decoder may decode into it again.
 * The stages before (DigestStream, CountingStream) pass chunks on without keeping them. Like a
 * pipeline's last stage: ended on success, destroyed (closing its file) on any failure.
 */
function writeReleasing(file: WriteStream, onWriteError: (err: unknown) => void): (plain: AsyncIterable<Buffer>) => Promise<void> {
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      file.write(chunk, (err) => (err ? (onWriteError(err), reject(err)) : resolve()));
    });
  return async (plain) => {
    try {
      for await (const chunk of plain) {
        await write(chunk);
        releaseChunk(chunk);
      }
      file.end();
      await finished(file);
    } catch (err) {
      file.destroy();
      throw err;
    }
  };
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

type Origin = 'body' | 'decoder' | 'sink';

interface FailureContext {
  readonly key: string;
  readonly announced: number;
  readonly read: number;
  /** The body ended (cleanly) before the failure. */
  readonly bodyEnded: boolean;
  /** The stage whose error came first (undefined: none reported one, e.g. a function stage). */
  readonly origin?: Origin;
  /** That first error. */
  readonly cause: unknown;
  readonly aborted: boolean;
}

/** The classification described at the top of this file. Exported for tests. */
export function classifyDecodeError(err: unknown, ctx: FailureContext): unknown {
  // The caller's abort; or an AbortError no stage accounts for (the pipeline's own abort).
  if (ctx.aborted || (ctx.origin === undefined && (err as Error)?.name === 'AbortError')) return err;
  const { key } = ctx;
  let cause = ctx.cause;
  // An AbortError a stage raised on its own hides the failure that made it stop: look through it.
  if ((cause as Error)?.name === 'AbortError') {
    if ((cause as Error).cause === undefined) return cause;
    cause = (cause as Error).cause;
  }
  if (ctx.origin === 'body') {
    if (cause instanceof WaltsError) return cause; // the store classified it (UnavailableError)
    return new UnavailableError(`${key}: read failed after ${ctx.read} of ${ctx.announced} bytes: ${describe(cause)}`, { transient: true, cause });
  }
  if (cause instanceof CryptoError) return cause.message.includes(key) ? cause : new CryptoError(`${key}: ${cause.message}`, { cause });
  if (cause instanceof WaltsError) {
    if (cause.kind !== 'integrity') return cause; // ConfigError (no key), UnavailableError from the store
    return cause.message.includes(key) ? cause : new IntegrityError(`${key}: ${cause.message}`, { cause });
  }
  if (ctx.origin === 'sink') return classifySinkError(cause, key);
  // A decoder failing on a body that ended short is the broken read, not the content.
  if (ctx.bodyEnded && ctx.read < ctx.announced) return brokenRead(key, ctx.read, ctx.announced, cause);
  return new IntegrityError(`${key}: cannot decode (${describe(cause)})`, { cause });
}

/** A failure to write the plain bytes where they go. */
function classifySinkError(err: unknown, key: string): unknown {
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
