import { pipeline as pipelinePromise } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';

/** Reads a whole stream into one Buffer. Only for bodies already known to be small (bounded by the caller). */
export async function readAll(body: Readable | AsyncIterable<Buffer>, limit = Number.MAX_SAFE_INTEGER): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    size += buf.length;
    if (size > limit) throw new RangeError(`stream is larger than ${limit} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks, size);
}


/**
 * A pass-through that counts bytes and computes SHA-256 of what flows through it, keeping the
 * first `keepHead` bytes (a file header to inspect without reading the file again).
 */
export class DigestStream extends Transform {
  #hash = createHash('sha256');
  #headChunks: Buffer[] = [];
  bytes = 0;
  /** `objectMode`: hand each chunk on as the same object, never joined with the next (lent chunks). */
  constructor(private readonly keepHead = 0, options: { objectMode?: boolean } = {}) {
    super({ objectMode: options.objectMode === true });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#hash.update(chunk);
    // A copy: the chunk's memory may be reused once the consumer is done with it (lent LZ4 output).
    if (this.bytes < this.keepHead) this.#headChunks.push(Buffer.from(chunk.subarray(0, this.keepHead - this.bytes)));
    this.bytes += chunk.length;
    done(null, chunk);
  }
  /** The first `keepHead` bytes (fewer if the stream was shorter). */
  head(): Buffer {
    return Buffer.concat(this.#headChunks);
  }
  /** Hex SHA-256; call once, after the stream ended. */
  digest(): string {
    return this.#hash.digest('hex');
  }
}


/**
 * A pass-through that only counts bytes: for the stored side of a codec chain, whose size is
 * recorded but whose digest nobody reads (the plain SHA-256 is what every read checks).
 */
export class CountingStream extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

/**
 * `stream.pipeline` over a list of stages built at run time (the codec chain varies), with an
 * optional abort signal. The last stage may be an async function consuming the stream.
 */
export function pipeStages(stages: readonly unknown[], signal?: AbortSignal): Promise<void> {
  const run = pipelinePromise as unknown as (...args: unknown[]) => Promise<void>;
  return signal ? run(...stages, { signal }) : run(...stages);
}
