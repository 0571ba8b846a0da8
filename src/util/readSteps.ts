import type { promises as fsp } from 'node:fs';
import { giveBack, Lending, takeBlock } from '../codec/blockPool';

/**
 * Reads a file from its start in steps of `step` bytes into buffers from blockPool, lending each
 * step (blockPool.ts `Lending`): the LZ4 encoder gives a lent step back (`releaseChunk`) once it
 * has compressed or copied it, and the next read, of this file or another, reuses that memory.
 * Why: on this VM a fresh 64 KiB chunk per read made reading a 16 MiB segment the largest single
 * CPU cost of a wal-push (docs/performance.md, "LZ4 encoding": first-touched memory).
 *
 * Never waits for a release: a step nobody gives back (another first encoder, no encoder, an error)
 * is garbage like any buffer, and the next read takes fresh memory. So a consumer that keeps chunks
 * (e.g. a spool with no codec in between) gets buffers of its own; only `releaseChunk` with the very
 * chunk lent returns its memory, and the LZ4 encoder calls it only on its own input (the plain-side
 * SHA-256 between them hashes synchronously and keeps copies only).
 *
 * Pass the generator itself to `pipeline` (not `Readable.from`, whose object mode would read 16
 * steps ahead): pipeline writes it into the next stage and waits for drain, one step ahead at most.
 */
export async function* readSteps(handle: fsp.FileHandle, step: number): AsyncGenerator<Buffer, void, undefined> {
  const lending = new Lending(Number.POSITIVE_INFINITY);
  try {
    for (let position = 0; ; ) {
      const buf = takeBlock(step);
      const { bytesRead } = await handle.read(buf, 0, step, position);
      if (bytesRead === 0) return giveBack(buf);
      position += bytesRead;
      yield lending.lend(buf, bytesRead);
    }
  } finally {
    lending.close();
  }
}
