import { randomBytes } from 'node:crypto';
import { constants, createReadStream, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

/** Encoded bytes held until they can be uploaded: in memory up to a threshold, then in a temp file. */
export interface Spooled {
  readonly size: number;
  /** A Buffer when held in memory (re-sendable on retry), else a fresh stream over the temp file. */
  body(): Buffer | Readable;
  cleanup(): Promise<void>;
}

/**
 * Drains `source` into a spool. Memory stays under `memoryLimit` whatever the size: an upload needs
 * its size (and, for WAL, its digest) before it starts, so the bytes must wait somewhere.
 *
 * Chunks that are consecutive views of one buffer (the LZ4 encoder writes a WAL segment's whole
 * frame into one, lz4FrameEncoder.ts) are joined as a view, not copied: a frame that arrives that
 * way is held without a gathering copy (docs/performance.md, "LZ4 encoding").
 */
export async function spool(source: AsyncIterable<Buffer>, memoryLimit = 64 << 20, dir = tmpdir()): Promise<Spooled> {
  const chunks: Buffer[] = [];
  let size = 0;
  let file: { path: string; handle: fsp.FileHandle } | undefined;
  try {
    for await (const chunk of source) {
      size += chunk.length;
      if (!file && size > memoryLimit) {
        const path = join(dir, `walts-spool-${process.pid}-${randomBytes(6).toString('hex')}`);
        const handle = await fsp.open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
        file = { path, handle };
        for (const c of chunks) await handle.write(c);
        chunks.length = 0;
      }
      if (file) await file.handle.write(chunk);
      else keep(chunks, chunk);
    }
  } catch (err) {
    if (file) {
      await file.handle.close();
      await fsp.rm(file.path, { force: true });
    }
    throw err;
  }
  if (!file) {
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    return { size, body: () => data, cleanup: async () => {} };
  }
  await file.handle.close();
  const path = file.path;
  return { size, body: () => createReadStream(path), cleanup: () => fsp.rm(path, { force: true }) };
}

/** Appends `chunk`, joined to the last one when it continues it in the same memory (one view, no copy). */
function keep(chunks: Buffer[], chunk: Buffer): void {
  const last = chunks[chunks.length - 1];
  if (last && last.buffer === chunk.buffer && last.byteOffset + last.length === chunk.byteOffset) {
    chunks[chunks.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + chunk.length);
  } else {
    chunks.push(chunk);
  }
}
