import type { Duplex } from 'node:stream';
import type { Codec } from './codec';
import { Lz4FrameDecoder, type Lz4Native } from './lz4Frame';

// The `lz4` package is a native addon; loaded on first use so commands that never compress skip it.
type Lz4Module = Lz4Native & {
  createEncoderStream(options?: Record<string, unknown>): Duplex;
};
let lz4: Lz4Module | undefined;
function lz4Module(): Lz4Module {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (lz4 ??= require('lz4') as Lz4Module);
}

const BLOCK_SIZE = 4 << 20;

/**
 * LZ4 frame format (the one `lz4 -d` reads): independent 4 MiB blocks and a content checksum
 * (xxHash32 of the whole plain stream), so the stock tool verifies what it decodes. Written by the
 * package's encoder stream; read by our own frame parser (lz4Frame.ts) around the package's block
 * decoder, which accepts what `lz4` writes and reuses its buffers.
 */
export const lz4Codec: Codec = {
  name: 'lz4',
  encoder: () => gatherInOneBuffer(lz4Module().createEncoderStream({ blockMaxSize: BLOCK_SIZE, streamChecksum: true, blockChecksum: false })),
  decoder: (options) => new Lz4FrameDecoder(lz4Module(), { lendOutput: options?.lendOutput === true, skipContentChecksum: options?.plainVerified === true }),
};

/** The parts of the lz4 package's encoder stream (lib/encoder_stream.js, 0.6.x) used below. */
interface Lz4Encoder extends Duplex {
  first: boolean;
  buffer: Buffer[];
  length: number;
  header(): Buffer;
  compress_DataBlock(block: Buffer): Buffer;
  _transform(chunk: Buffer, encoding: BufferEncoding, done: (err?: Error | null) => void): void;
  _flush(done: (err?: Error | null) => void): void;
}

/**
 * The same frame, byte for byte, with every block gathered in one buffer the encoder keeps.
 * The package's encoder joins each 4 MiB block with Buffer.concat: four fresh 4 MiB allocations
 * per 16 MiB segment, and on a VM first touching memory is the largest single cost of a wal-push
 * (docs/performance.md, "Start-up path": about 3,000 page faults per segment saved here).
 * compress_DataBlock reads the block synchronously and returns a buffer of its own (compressed, or a
 * copy when incompressible), so the block can be refilled at once. If the package's internals are
 * not the ones expected, its encoder is used as it is.
 */
function gatherInOneBuffer(stream: Duplex): Duplex {
  const encoder = stream as Lz4Encoder;
  if (typeof encoder.compress_DataBlock !== 'function' || typeof encoder.header !== 'function' || !Array.isArray(encoder.buffer) || encoder.first !== true) {
    return stream;
  }
  let block: Buffer | undefined;
  let filled = 0;
  encoder._transform = function (this: Lz4Encoder, chunk, _encoding, done) {
    try {
      if (this.first) {
        this.push(this.header());
        this.first = false;
      }
      for (let offset = 0; offset < chunk.length; ) {
        block ??= Buffer.allocUnsafe(BLOCK_SIZE);
        const copied = chunk.copy(block, filled, offset, Math.min(chunk.length, offset + BLOCK_SIZE - filled));
        filled += copied;
        offset += copied;
        if (filled === BLOCK_SIZE) {
          this.push(this.compress_DataBlock(block));
          filled = 0;
        }
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  };
  const flush = encoder._flush;
  encoder._flush = function (this: Lz4Encoder, done) {
    // The package's flush compresses what it holds (its own copy of the tail), then ends the frame.
    this.buffer = block && filled > 0 ? [block.subarray(0, filled)] : [];
    this.length = filled;
    filled = 0;
    flush.call(this, done);
  };
  return stream;
}
