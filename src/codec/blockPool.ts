/**
 * Block buffers the LZ4 decoder decodes into, kept for the next block instead of fresh memory.
 *
 * Why: on this VM first touching memory costs more than decoding into it (docs/performance.md,
 * "LZ4 decoding"): a fresh 4 MiB buffer per block is about 1,000 page faults.
 *
 * Safety rule: a buffer is only ever written by the one holder that took it. It comes back to the
 * free list in exactly two ways:
 * - `giveBack`, by a decoder, for a buffer it never handed to anyone (its input staging buffer);
 * - `releaseChunk`, by the final consumer of a chunk a decoder *lent* (`Lending`), once nothing can
 *   read that chunk any more (decodeObject: after the file write of it completed);
 * - `releaseChunk`, by the LZ4 encoder, for a file step a reader lent it as input
 *   (util/readSteps.ts), at the end of the `_transform` that compressed or copied it.
 * A chunk that is never released is simply garbage collected: forgetting a release costs memory,
 * never bytes.
 */

/** Free buffers kept per size: enough for the prefetcher's concurrent fetches, bounded memory. */
const FREE_LIMIT = 4;
const freeBySize = new Map<number, Buffer[]>();

/** A buffer of exactly `size` bytes owned by the caller: a kept one, else fresh (not zero-filled). */
export function takeBlock(size: number): Buffer {
  return freeBySize.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
}

/** Returns a buffer taken with `takeBlock` that no one else can read. */
export function giveBack(buf: Buffer): void {
  const free = freeBySize.get(buf.length) ?? [];
  freeBySize.set(buf.length, free);
  if (free.length < FREE_LIMIT) free.push(buf);
}

/** Lent buffers by their memory, with the one chunk lent from each: only that chunk gives it back. */
const lentBy = new WeakMap<ArrayBufferLike, { lending: Lending; buf: Buffer; chunk: Buffer }>();

/**
 * The buffers one decoder has lent out, at most `limit` at a time: the decoder waits for `room()`
 * before taking another, so a slow consumer holds the decoder back instead of costing memory.
 * Only for a consumer that releases every chunk (see decodeObject); `close()` ends all waiting.
 */
export class Lending {
  #out = 0;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(private readonly limit: number) {}

  /** Resolves once another buffer may be lent (at once if one may now). */
  room(): Promise<void> | undefined {
    if (this.#out < this.limit || this.#closed) return undefined;
    return new Promise((resolve) => (this.#wake = resolve));
  }

  /** Lends the first `length` bytes of `buf` (from `takeBlock`): the chunk to hand on. */
  lend(buf: Buffer, length: number): Buffer {
    this.#out++;
    const chunk = buf.subarray(0, length);
    lentBy.set(buf.buffer, { lending: this, buf, chunk });
    return chunk;
  }

  /** No more waiting: the decoder is done or destroyed (chunks still out stay released-or-lost). */
  close(): void {
    this.#closed = true;
    this.#wakeUp();
  }

  /** Called by `releaseChunk` only. */
  returned(buf: Buffer): void {
    this.#out--;
    giveBack(buf);
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/**
 * The consumer is done with `chunk`: if it is the chunk lent, its buffer may be decoded into again.
 * Anything else (a chunk never lent, a copy, or one released before) is left alone. The chunk must
 * reach the consumer as the same object: streams between decoder and consumer run in object mode,
 * since a byte-mode `read()` joins buffered chunks into a new buffer and the originals would never
 * be released (the decoder would wait for them for ever).
 */
export function releaseChunk(chunk: Buffer): void {
  const entry = lentBy.get(chunk.buffer);
  if (entry?.chunk !== chunk) return;
  lentBy.delete(chunk.buffer);
  entry.lending.returned(entry.buf);
}
