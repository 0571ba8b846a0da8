/**
 * LZ4 frame encoder (the format `lz4 -d` reads, https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md),
 * the counterpart of the decoder in lz4Frame.ts: our own framing around a block compressor
 * (lz4Blocks.ts: the `lz4` package's native `LZ4_compress_default` when it loads, else our
 * JavaScript one, same format, other bytes), with the content checksum by our xxHash32 (xxhash32.ts,
 * faster here than the package's streaming one). With the native blocks it writes, byte for byte,
 * what the package's encoder stream writes with `{ blockMaxSize: 4 MiB, streamChecksum: true, blockChecksum: false }`:
 * independent 4 MiB blocks, a content checksum, no block checksums, no content size.
 *
 * Why not the package's encoder stream: it joins its input with Buffer.concat, compresses each block
 * into a fresh buffer of compressBound(4 MiB) and hands on a view of it. On this VM first-touched
 * memory costs more than LZ4 itself (docs/performance.md, "LZ4 encoding"). Here, on input:
 * - a whole block lying within one input chunk is compressed where it lies (wal-push reads 4 MiB
 *   steps: no input copy at all); only blocks spread over chunks are gathered, into a block buffer
 *   from blockPool that never leaves this encoder and is reused by the next encoder;
 * - input chunks lent by a reader (util/readSteps.ts) are given back (`releaseChunk`) at the end of
 *   the `_transform` that read them: each is read synchronously there, never kept.
 *
 * Output chunks are the consumer's to keep: never written again once handed on. Two layouts:
 * - by default each block is compressed into one process-wide scratch buffer and copied out at its
 *   exact size: a buffer of its own, the whole of its memory, so the codec worker transfers it
 *   without a copy (workerStage.forTransfer). The scratch is written and read within one
 *   synchronous call (no await in between; worker threads have their own module instance), so
 *   encoders sharing it cannot see each other's bytes;
 * - given the plain size (`plainSize`, wal-push: the segment's size) and a frame bound within
 *   ARENA_MAX, the whole frame is written into one buffer of that bound, each block compressed
 *   straight into it, and each call hands on a view of what it wrote: consecutive views of one
 *   buffer, which the spool joins without a copy (util/spool.ts). Bytes are only ever written past
 *   the end of every view handed on. Pages of the bound never written are never touched (no fault).
 *   If more bytes come than announced, the rest goes the default way.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { giveBack, releaseChunk, takeBlock } from './blockPool';
import type { Lz4Native } from './lz4Frame';
import { Xxh32 } from './xxhash32';

/** The parts of the `lz4` package the encoder uses, beyond the decoder's. */
export interface Lz4NativeEncode extends Lz4Native {
  /** `LZ4_compress_default`: compressed size, or 0 when it does not fit in `output`. */
  encodeBlock(input: Buffer, output: Buffer): number;
  encodeBound(size: number): number;
}

const FRAME_MAGIC = 0x184d2204;
export const LZ4_BLOCK_MAX = 4 << 20;
/** FLG: version 01, independent blocks, content checksum. BD: block maximum code 7 (4 MiB). */
const FLG = 0x64;
const BD = 7 << 4;
/** A stored (uncompressed) block: the high bit of its size word. */
const RAW_BLOCK = 0x80000000;

/** Largest frame written into one buffer: the spool's memory limit (a larger one goes to a file). */
const ARENA_MAX = 64 << 20;

/** Shared by every encoder of this thread; see the file comment for why that is safe. */
let scratch: Buffer | undefined;

export interface Lz4EncoderOptions {
  /** The plain size, if known before the first byte: see the file comment. */
  readonly plainSize?: number;
}

/** The most a frame of `plainSize` bytes can take: header, blocks at compressBound, end mark, checksum. */
function frameBound(lz4: Lz4NativeEncode, plainSize: number): number {
  const full = Math.floor(plainSize / LZ4_BLOCK_MAX);
  const tail = plainSize - full * LZ4_BLOCK_MAX;
  return 7 + full * (4 + lz4.encodeBound(LZ4_BLOCK_MAX)) + (tail > 0 ? 4 + lz4.encodeBound(tail) : 0) + 8;
}

export class Lz4FrameEncoder extends Transform {
  readonly #lz4: Lz4NativeEncode;
  #started = false;
  /** Gathers a block whose bytes arrive in more than one chunk. */
  #block: Buffer | undefined;
  #held = 0;
  readonly #xxh = new Xxh32();
  readonly #plainSize: number | undefined;
  /** The one output buffer (plainSize given): written up to #end, handed on up to #handed. */
  #arena: Buffer | undefined;
  #end = 0;
  #handed = 0;

  constructor(lz4: Lz4NativeEncode, options: Lz4EncoderOptions = {}) {
    super();
    this.#lz4 = lz4;
    this.#plainSize = options.plainSize;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.#start();
      let pos = 0;
      while (pos < chunk.length) {
        if (this.#held === 0 && chunk.length - pos >= LZ4_BLOCK_MAX) {
          this.#emitBlock(chunk.subarray(pos, pos + LZ4_BLOCK_MAX));
          pos += LZ4_BLOCK_MAX;
          continue;
        }
        this.#block ??= takeBlock(LZ4_BLOCK_MAX);
        const copied = chunk.copy(this.#block, this.#held, pos, pos + Math.min(chunk.length - pos, LZ4_BLOCK_MAX - this.#held));
        this.#held += copied;
        pos += copied;
        if (this.#held === LZ4_BLOCK_MAX) this.#emitHeld();
      }
      this.#handOnArena();
      done();
    } catch (err) {
      done(err as Error);
    } finally {
      // Compressed into fresh output or copied into our block: nothing here reads the chunk again.
      releaseChunk(chunk);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      this.#start();
      if (this.#held > 0) this.#emitHeld();
      this.#releaseBlock();
      const arena = this.#arena;
      if (arena && this.#end + 8 <= arena.length) {
        arena.writeUInt32LE(0, this.#end);
        arena.writeUInt32LE(this.#xxh.digest(), this.#end + 4);
        this.#end += 8;
        this.#handOnArena();
        return done();
      }
      this.#handOnArena();
      const end = Buffer.allocUnsafe(8);
      end.writeUInt32LE(0, 0);
      end.writeUInt32LE(this.#xxh.digest(), 4);
      done(null, end);
    } catch (err) {
      done(err as Error);
    }
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.#releaseBlock();
    done(err);
  }

  /** The frame header, pushed before the first block (also for empty input, as the package does). */
  #start(): void {
    if (this.#started) return;
    this.#started = true;
    const bound = this.#plainSize === undefined ? Infinity : frameBound(this.#lz4, this.#plainSize);
    if (bound <= ARENA_MAX) this.#arena = Buffer.allocUnsafeSlow(bound);
    const header = this.#arena ?? Buffer.allocUnsafe(7);
    header.writeUInt32LE(FRAME_MAGIC, 0);
    header[4] = FLG;
    header[5] = BD;
    header[6] = (this.#lz4.utils.blockChecksum(header.subarray(4, 6)) >>> 8) & 0xff;
    if (this.#arena) this.#end = 7; // handed on with the first block
    else this.push(header);
  }

  /** Hands on what this call wrote into the arena, as one view (see the file comment). */
  #handOnArena(): void {
    if (!this.#arena || this.#end === this.#handed) return;
    this.push(this.#arena.subarray(this.#handed, this.#end));
    this.#handed = this.#end;
  }

  #emitHeld(): void {
    const data = this.#block!.subarray(0, this.#held);
    this.#held = 0;
    this.#emitBlock(data);
  }

  /**
   * Compresses one block of plain bytes into the arena (handed on at the end of the call), or else
   * pushes it as a buffer of its own. Stored compressed
   * exactly when the package stores it so (0 < size ≤ block maximum, with compressBound room),
   * else stored raw: the same bytes as its encoder.
   */
  #emitBlock(data: Buffer): void {
    this.#xxh.update(data);
    const bound = this.#lz4.encodeBound(data.length);
    const arena = this.#arena;
    if (arena && this.#end + 4 + bound <= arena.length) {
      const at = this.#end;
      const compressed = this.#lz4.encodeBlock(data, arena.subarray(at + 4, at + 4 + bound));
      if (compressed > 0 && compressed <= LZ4_BLOCK_MAX) {
        arena.writeUInt32LE(compressed, at);
        this.#end = at + 4 + compressed;
      } else {
        arena.writeUInt32LE((RAW_BLOCK | data.length) >>> 0, at);
        this.#end = at + 4 + data.copy(arena, at + 4);
      }
      return;
    }
    // No arena, or more bytes than announced: this block and the rest as buffers of their own.
    this.#handOnArena();
    this.#arena = undefined;
    const out = (scratch ??= Buffer.allocUnsafeSlow(4 + this.#lz4.encodeBound(LZ4_BLOCK_MAX)));
    const compressed = this.#lz4.encodeBlock(data, out.subarray(4, 4 + bound));
    let block: Buffer;
    if (compressed > 0 && compressed <= LZ4_BLOCK_MAX) {
      block = Buffer.allocUnsafeSlow(4 + compressed);
      out.copy(block, 4, 4, 4 + compressed);
      block.writeUInt32LE(compressed, 0);
    } else {
      block = Buffer.allocUnsafeSlow(4 + data.length);
      data.copy(block, 4);
      block.writeUInt32LE((RAW_BLOCK | data.length) >>> 0, 0);
    }
    this.push(block);
  }

  /** The block buffer never left this encoder: the next one may gather into it. */
  #releaseBlock(): void {
    if (this.#block) giveBack(this.#block);
    this.#block = undefined;
    this.#held = 0;
  }
}
