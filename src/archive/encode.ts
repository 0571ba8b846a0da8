/**
 * The one write path of the archive: plain bytes → SHA-256 and size of the plain bytes → encoders
 * (today's write chain: lz4, then OpenPGP) → size of the stored bytes → a sink (the store, or a
 * spool file when the stored size must be known before the upload). wal-push, backup volumes and
 * the backup manifest all come through here, so what is hashed and recorded is the same everywhere:
 * the plain SHA-256 that every read (decode.ts) checks.
 */
import { Readable } from 'node:stream';
import type { CodecSet } from '../codec/chain';
import type { PutOptions, Storage } from '../storage/storage';
import { CountingStream, DigestStream, pipeStages } from '../util/streams';
import type { PlainFacts } from './objectMeta';
import { canOffload, WorkerStage } from './workerStage';

export interface Encoded {
  /** SHA-256 and size of the plain bytes. */
  readonly plain: PlainFacts;
  /** Bytes handed to the sink (what the store holds). */
  readonly storedBytes: number;
}

/**
 * Encodes `source` with the write chain into `sink`. With `offload` (large objects: backup volumes)
 * the hashing and the codec chain run in a worker thread (`WorkerStage`), which calls this same
 * function there; small objects stay here, where a worker's start-up would cost more than it saves.
 */
export async function encodeTo(
  codecs: CodecSet,
  source: Readable | AsyncIterable<Buffer>,
  sink: (encoded: AsyncIterable<Buffer>) => Promise<void>,
  signal?: AbortSignal,
  options: { offload?: boolean; plainSize?: number } = {},
): Promise<Encoded> {
  // Not with OpenPGP for now: encrypting in the worker measured 320 MiB peak RSS on incompressible
  // data (bench:memory --s3 --random-mib 256) against a 256 MiB budget; LZ4 alone stays inside it.
  const offload = options.offload === true && !codecs.writeChain.some((c) => c.name === 'pgp') && canOffload(codecs);
  if (offload) {
    const stage = new WorkerStage({ kind: 'encode', spec: codecs.spec! });
    await pipeStages([source, stage, sink], signal);
    const r = stage.result!;
    return { plain: { sha256: r.sha256, size: r.plainBytes }, storedBytes: r.storedBytes };
  }
  const plain = new DigestStream();
  // The stored bytes are counted, not hashed: the plain SHA-256 is the one digest a read checks.
  const stored = new CountingStream();
  const encoders = codecs.encoders(options.plainSize === undefined ? undefined : { plainSize: options.plainSize });
  await pipeStages([source, plain, ...encoders, stored, sink], signal);
  return { plain: { sha256: plain.digest(), size: plain.bytes }, storedBytes: stored.bytes };
}

/**
 * Encodes `source` and streams it to `key` (a stream put: not retried whole; a multipart upload's
 * parts are, within the retry budget).
 */
export function encodeAndPut(deps: { storage: Storage; codecs: CodecSet }, key: string, source: Readable | AsyncIterable<Buffer>, options: PutOptions = {}): Promise<Encoded> {
  return encodeTo(deps.codecs, source, (encoded) => deps.storage.put(key, Readable.from(encoded), options), options.signal);
}
