/**
 * util/readSteps.ts: file steps lent to the LZ4 encoder come back and are read into again; steps
 * nobody gives back (no encoder, a consumer that keeps them) are never reused.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lz4Codec } from '../../../src/codec/lz4';
import { readSteps } from '../../../src/util/readSteps';
import { DigestStream, pipeStages } from '../../../src/util/streams';

const STEP = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'walts-readsteps-'));

async function withFile<T>(data: Buffer, fn: (h: fsp.FileHandle) => Promise<T>): Promise<T> {
  const path = join(dir, `f${Math.random()}`);
  writeFileSync(path, data);
  const h = await fsp.open(path, 'r');
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

describe('readSteps', () => {
  it('a consumer that keeps every step sees the file: unreleased steps are never read into again', async () => {
    const data = randomBytes(7 * STEP + 123);
    const kept = await withFile(data, async (h) => {
      const chunks: Buffer[] = [];
      for await (const c of readSteps(h, STEP)) chunks.push(c);
      return chunks;
    });
    expect(kept.map((c) => c.length)).toEqual([...Array(7).fill(STEP), 123]);
    expect(Buffer.concat(kept).equals(data)).toBe(true);
    expect(new Set(kept.map((c) => c.buffer)).size).toBe(kept.length);
  });

  it('through SHA-256 and the LZ4 encoder, as wal-push reads: steps come back and are reused, bytes intact', async () => {
    const data = Buffer.concat([randomBytes(3 * STEP), Buffer.alloc(9 * STEP + 77, 'walts ')]);
    const memories = new Set<ArrayBufferLike>();
    const out: Buffer[] = [];
    await withFile(data, (h) =>
      pipeStages([
        (async function* () {
          for await (const c of readSteps(h, STEP)) {
            memories.add(c.buffer);
            yield c;
          }
        })(),
        new DigestStream(),
        lz4Codec.encoder(),
        async (src: AsyncIterable<Buffer>) => {
          for await (const c of src) out.push(c);
        },
      ]),
    );
    // 13 steps through a few buffers: each is given back by the encoder before the read after next.
    expect(memories.size).toBeLessThanOrEqual(3);
    const decoded: Buffer[] = [];
    await pipeStages([out, lz4Codec.decoder(), async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) decoded.push(c);
    }]);
    expect(Buffer.concat(decoded).equals(data)).toBe(true);
  });
});
