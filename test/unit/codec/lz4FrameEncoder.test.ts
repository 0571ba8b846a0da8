/**
 * The LZ4 frame encoder (src/codec/lz4FrameEncoder.ts): the same bytes as the lz4 package's encoder
 * stream for every size and chunking (full, short, incompressible and empty blocks), frames the
 * stock `lz4 -d` and our decoder read back, and output chunks a consumer may keep while the encoder
 * (and other encoders sharing its scratch and block buffers) goes on.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { lz4Codec } from '../../../src/codec/lz4';
import { pipeStages, readAll } from '../../../src/util/streams';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const lz4Package = require('lz4') as { createEncoderStream(o: object): NodeJS.ReadWriteStream };
const MiB = 1 << 20;

function chunked(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) out.push(data.subarray(at, at + size));
  return out;
}

/** Runs `chunks` through `stage`; returns every output chunk as handed on (kept, not copied). */
async function run(stage: NodeJS.ReadWriteStream, chunks: Buffer[]): Promise<Buffer[]> {
  const kept: Buffer[] = [];
  await pipeStages([Readable.from(chunks), stage, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) kept.push(c);
  }]);
  return kept;
}

const packageFrame = async (data: Buffer): Promise<Buffer> =>
  Buffer.concat(await run(lz4Package.createEncoderStream({ blockMaxSize: 4 * MiB, streamChecksum: true, blockChecksum: false }), [data]));
const ourFrame = async (data: Buffer, chunk = 64 << 10, plainSize?: number): Promise<Buffer> =>
  Buffer.concat(await run(lz4Codec.encoder(plainSize === undefined ? undefined : { plainSize }), data.length === 0 ? [] : chunked(data, chunk)));

/** WAL-like: compressible records with noise, and incompressible stretches. */
function mixed(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0; at < size; ) {
    const piece = at % (3 * MiB) < 2 * MiB ? Buffer.from(`record ${at} walts lz4 encoder `.repeat(40)) : randomBytes(8192);
    at += piece.copy(out, at);
  }
  return out;
}

describe('LZ4 frame encoder', () => {
  const inputs: Array<[string, Buffer]> = [
    ['empty input', Buffer.alloc(0)],
    ['one byte', Buffer.from('x')],
    ['100 random bytes (compressed form larger than the input, still stored compressed as the package does)', randomBytes(100)],
    ['exactly one block', mixed(4 * MiB)],
    ['one block and one byte', mixed(4 * MiB + 1)],
    ['two blocks and a short one, mixed', mixed(9 * MiB + 12_345)],
    ['incompressible (stored blocks)', randomBytes(5 * MiB + 7)],
    ['a whole block that compresses to almost nothing', Buffer.alloc(8 * MiB, 7)],
  ];

  it.each(inputs)('writes the package\'s bytes: %s, whatever the chunking', async (_name, data) => {
    const expected = await packageFrame(data);
    for (const chunk of [7_919, 65_536, 1_000_003, 4 * MiB, 4 * MiB + 3, Math.max(1, data.length)]) {
      if (chunk < 65_536 && data.length > 2 * MiB) continue; // tiny chunks only on small inputs: fast
      const ours = await ourFrame(data, chunk);
      expect({ chunk, equal: ours.equals(expected) }).toEqual({ chunk, equal: true });
    }
  });

  it.each(inputs)('writes the package\'s bytes into one buffer when told the size, right or wrong: %s', async (_name, data) => {
    const expected = await packageFrame(data);
    for (const plainSize of [data.length, Math.max(0, data.length - 1), data.length + 5 * MiB]) {
      for (const chunk of plainSize === data.length ? [65_536, 4 * MiB] : [4 * MiB]) {
        const ours = await ourFrame(data, chunk, plainSize);
        expect({ plainSize, chunk, equal: ours.equals(expected) }).toEqual({ plainSize, chunk, equal: true });
      }
    }
  });

  it('with the size known, hands on consecutive views of one buffer: one per call, the header with the first block', async () => {
    const data = mixed(9 * MiB + 5);
    const chunks = await run(lz4Codec.encoder({ plainSize: data.length }), chunked(data, 4 * MiB));
    expect(chunks.length).toBeLessThanOrEqual(4); // three reads of 4 MiB or less, then the end mark with the last block
    for (const [i, c] of chunks.entries()) {
      expect(c.buffer).toBe(chunks[0]!.buffer);
      if (i > 0) expect(c.byteOffset).toBe(chunks[i - 1]!.byteOffset + chunks[i - 1]!.length);
    }
    expect(Buffer.concat(chunks).equals(await packageFrame(data))).toBe(true);
  });

  it('writes frames the stock `lz4 -d` and our decoder read back', async () => {
    for (const data of [Buffer.alloc(0), mixed(9 * MiB + 12_345), randomBytes(4 * MiB + 100)]) {
      const frame = await ourFrame(data, 4 * MiB);
      const cli = execFileSync('lz4', ['-d', '-c', '-q'], { input: frame, maxBuffer: 1 << 30 });
      expect(cli.equals(data)).toBe(true);
      const decoded = Buffer.concat(await run(lz4Codec.decoder(), chunked(frame, 65_536)));
      expect(decoded.equals(data)).toBe(true);
    }
  });

  it('hands on chunks the consumer may keep: never rewritten by this or any later encoder', async () => {
    // Three encoders at once (sharing the scratch buffer and pooled block buffers), then three more
    // after them (reusing those blocks); every chunk is kept until the very end and only then compared.
    const datas = [mixed(9 * MiB + 1), randomBytes(6 * MiB), mixed(5 * MiB + 3), mixed(4 * MiB), randomBytes(3 * MiB), mixed(8 * MiB + 5)];
    const chunkings = [65_536, 1_000_003, 4 * MiB, 333_333, 4 * MiB + 1, 65_536];
    // Every other encoder is told the size (one output buffer) or a wrong one (part in one buffer).
    const sizes = [undefined, 6 * MiB, 5 * MiB, undefined, 3 * MiB, 4 * MiB];
    const encoder = (i: number) => lz4Codec.encoder(sizes[i] === undefined ? undefined : { plainSize: sizes[i]! });
    const first = await Promise.all(datas.slice(0, 3).map((d, i) => run(encoder(i), chunked(d, chunkings[i]!))));
    const later = await Promise.all(datas.slice(3).map((d, i) => run(encoder(3 + i), chunked(d, chunkings[3 + i]!))));
    const kept = [...first, ...later];
    for (const [i, chunks] of kept.entries()) {
      expect(Buffer.concat(chunks).equals(await packageFrame(datas[i]!))).toBe(true);
    }
    // Each block is the whole of its own memory (transferable to a worker without a copy); the
    // 7-byte header and the 8-byte end come from Node's small-buffer pool.
    for (const c of [...kept[0]!, ...kept[3]!].filter((c) => c.length >= 64 << 10)) expect(c.byteOffset === 0 && c.byteLength === c.buffer.byteLength).toBe(true);
  });
});
