/**
 * LZ4 frame decoder (the format `lz4 -d` reads, https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md),
 * our own parser around a block decoder (lz4Blocks.ts: the `lz4` package's native one when it
 * loads, else our JavaScript one) and our xxHash32.
 *
 * Why not the package's decoder stream: it joins every input chunk to what it holds (Buffer.concat:
 * a block arriving in 64 KiB chunks is copied again with each chunk) and decodes each block into a
 * fresh zero-filled 4 MiB buffer. On this VM that fresh memory, not LZ4, was most of a wal-fetch's
 * CPU (docs/performance.md, "LZ4 decoding"). Here input is gathered once into a kept staging
 * buffer (or decoded in place when a block lies within one chunk), and output goes to a buffer of
 * its own per block, or, when the caller promises to release every chunk, to lent buffers reused
 * once released (blockPool.ts).
 *
 * Checked as the stock tool checks: magic, version, reserved bits, header checksum, block sizes
 * within the frame's maximum, block checksums, content size and content checksum when the frame has
 * them (the content checksum only when the caller does not check a recorded SHA-256 instead, see
 * `skipContentChecksum`), and that the input does not end inside a frame. Also accepted like
 * `lz4 -d`: concatenated frames, skippable frames, empty input. Refused with a reason: legacy-format frames (`lz4 -l`),
 * preset dictionaries, and linked blocks (`lz4 -BD`) that refer back into the previous block (each
 * block is decoded on its own; one that decodes so is exact, the decoder never reads outside it).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { giveBack, Lending, takeBlock } from './blockPool';

/** The block decoder and xxHash32 used here (lz4Blocks.ts provides them, native or JavaScript). */
export interface Lz4Native {
  decodeBlock(input: Buffer, output: Buffer): number;
  utils: {
    blockChecksum(data: Buffer): number;
    /** Streaming xxHash32 (seed 0): `null` data returns the digest of the state. */
    streamChecksum(data: Buffer | null, state: unknown): unknown;
  };
}

const FRAME_MAGIC = 0x184d2204;
const LEGACY_MAGIC = 0x184c2102;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** Block maximum sizes by the BD byte's 3-bit code; codes 0-3 are reserved. */
const BLOCK_MAX: Record<number, number> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

/** Lent buffers out per decoder: one being written, one decoded ahead. */
const LEND_LIMIT = 2;

type State = 'magic' | 'skipSize' | 'skip' | 'descriptor' | 'headerRest' | 'blockSize' | 'blockData' | 'blockChecksum' | 'contentChecksum';

interface Frame {
  readonly blockMax: number;
  readonly blockChecksum: boolean;
  readonly contentChecksum: boolean;
  readonly linked: boolean;
  /** Announced plain size, if the frame carries one. */
  readonly contentSize: bigint | undefined;
  plainBytes: bigint;
  blocks: number;
  xxh: unknown;
}

export interface Lz4DecoderOptions {
  /** Lend output chunks: the consumer calls `releaseChunk` on each when done with it (blockPool.ts). */
  readonly lendOutput?: boolean;
  /**
   * Read the frame's content checksum (xxHash32 of the plain bytes) without computing or comparing
   * it: only for a caller that holds the plain bytes to a SHA-256 and size recorded apart from the
   * frame (codec.ts `plainVerified`, decode.ts `expected`). Every check of the frame's structure
   * stays (header checksum, block sizes and checksums, content size, decodable blocks).
   */
  readonly skipContentChecksum?: boolean;
}

export class Lz4FrameDecoder extends Transform {
  readonly #lz4: Lz4Native;
  readonly #lending: Lending | undefined;
  readonly #skipContentChecksum: boolean;
  #state: State = 'magic';
  #frame: Frame | undefined;
  /** Descriptor bytes (FLG, BD) kept for the header checksum. */
  #flgBd = Buffer.alloc(2);
  /** Bytes of the current field or block gathered so far across chunks, into the staging buffer. */
  #have = 0;
  #small = Buffer.alloc(16);
  #staging: Buffer | undefined;
  #skipLeft = 0;
  #blockSize = 0;
  #blockRaw = false;
  /** The current block's stored bytes, held until its checksum has been read. */
  #block: Buffer | undefined;
  /** Input position, for error messages. */
  #offset = 0;
  #input: Buffer = Buffer.alloc(0);
  #pos = 0;

  constructor(lz4: Lz4Native, options: Lz4DecoderOptions = {}) {
    // Lent chunks leave in object mode, each as the object lent (see releaseChunk).
    super(options.lendOutput ? { readableObjectMode: true } : {});
    this.#lz4 = lz4;
    this.#lending = options.lendOutput ? new Lending(LEND_LIMIT) : undefined;
    this.#skipContentChecksum = options.skipContentChecksum === true;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#input = chunk;
    this.#pos = 0;
    this.#run().then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    if (this.#state !== 'magic' || this.#have > 0) return done(this.#error('the LZ4 stream ends inside a frame (truncated)'));
    this.#releaseStaging();
    this.#lending?.close();
    done();
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.#lending?.close();
    this.#releaseStaging();
    done(err);
  }

  /** Consumes the current input chunk, waiting for a lent buffer to come back when needed. */
  async #run(): Promise<void> {
    while (this.#pos < this.#input.length) {
      if (this.destroyed) return;
      switch (this.#state) {
        case 'magic': {
          const b = this.#take(4, this.#small);
          if (b) this.#onMagic(b.readUInt32LE(0));
          break;
        }
        case 'skipSize': {
          const b = this.#take(4, this.#small);
          if (b) {
            this.#skipLeft = b.readUInt32LE(0);
            this.#state = this.#skipLeft > 0 ? 'skip' : 'magic';
          }
          break;
        }
        case 'skip': {
          const n = Math.min(this.#skipLeft, this.#input.length - this.#pos);
          this.#advance(n);
          this.#skipLeft -= n;
          if (this.#skipLeft === 0) this.#state = 'magic';
          break;
        }
        case 'descriptor': {
          const b = this.#take(2, this.#small);
          if (b) {
            b.copy(this.#flgBd);
            this.#state = 'headerRest';
          }
          break;
        }
        case 'headerRest': {
          const b = this.#take(this.#headerRestLength(), this.#small);
          if (b) this.#onHeader(b);
          break;
        }
        case 'blockSize': {
          const b = this.#take(4, this.#small);
          if (b) this.#onBlockSize(b.readUInt32LE(0));
          break;
        }
        case 'blockData': {
          this.#staging ??= takeBlock(this.#frame!.blockMax);
          const b = this.#take(this.#blockSize, this.#staging);
          if (!b) break;
          this.#block = b;
          if (this.#frame!.blockChecksum) {
            this.#state = 'blockChecksum';
            break;
          }
          await this.#emitBlock();
          break;
        }
        case 'blockChecksum': {
          const b = this.#take(4, this.#small);
          if (!b) break;
          if (b.readUInt32LE(0) !== this.#lz4.utils.blockChecksum(this.#block!) >>> 0) {
            throw this.#error(`block ${this.#frame!.blocks + 1}: block checksum mismatch (corrupt frame)`);
          }
          await this.#emitBlock();
          break;
        }
        case 'contentChecksum': {
          const b = this.#take(4, this.#small);
          if (!b) break;
          const frame = this.#frame!;
          if (!this.#skipContentChecksum && b.readUInt32LE(0) !== (this.#lz4.utils.streamChecksum(null, frame.xxh) as number) >>> 0) {
            throw this.#error('content checksum mismatch (corrupt frame)');
          }
          this.#endFrame();
          break;
        }
      }
    }
  }

  /**
   * The next `n` bytes of input once all have arrived: a view on the chunk when they lie within it,
   * else gathered into `into` (a view on it, valid until the next `#take` into the same buffer).
   */
  #take(n: number, into: Buffer): Buffer | undefined {
    const available = this.#input.length - this.#pos;
    if (this.#have === 0 && available >= n) {
      const view = this.#input.subarray(this.#pos, this.#pos + n);
      this.#advance(n);
      return view;
    }
    const copied = this.#input.copy(into, this.#have, this.#pos, this.#pos + Math.min(available, n - this.#have));
    this.#advance(copied);
    this.#have += copied;
    if (this.#have < n) return undefined;
    this.#have = 0;
    return into.subarray(0, n);
  }

  #advance(n: number): void {
    this.#pos += n;
    this.#offset += n;
  }

  #onMagic(magic: number): void {
    if (magic === FRAME_MAGIC) this.#state = 'descriptor';
    else if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) this.#state = 'skipSize';
    else if (magic === LEGACY_MAGIC) throw this.#error('legacy LZ4 format (lz4 -l) is not supported: decode it with `lz4 -d`');
    else throw this.#error(`not an LZ4 frame (magic number ${magic.toString(16)})`);
  }

  #headerRestLength(): number {
    const flg = this.#flgBd[0]!;
    return (flg & 0x08 ? 8 : 0) + (flg & 0x01 ? 4 : 0) + 1;
  }

  #onHeader(rest: Buffer): void {
    const flg = this.#flgBd[0]!;
    const bd = this.#flgBd[1]!;
    if (flg >> 6 !== 1) throw this.#error(`unsupported LZ4 frame version ${flg >> 6}`);
    if (flg & 0x02 || bd & 0x8f) throw this.#error('reserved bits set in the LZ4 frame descriptor (corrupt frame)');
    const blockMax = BLOCK_MAX[(bd >> 4) & 0x07];
    if (blockMax === undefined) throw this.#error(`invalid LZ4 block maximum size code ${(bd >> 4) & 0x07}`);
    const described = Buffer.concat([this.#flgBd, rest.subarray(0, rest.length - 1)]);
    if (rest[rest.length - 1] !== ((this.#lz4.utils.blockChecksum(described) >>> 8) & 0xff)) {
      throw this.#error('LZ4 frame header checksum mismatch (corrupt frame)');
    }
    if (flg & 0x01) throw this.#error('LZ4 frames with a preset dictionary are not supported');
    if (this.#staging && this.#staging.length !== blockMax) this.#releaseStaging();
    this.#frame = {
      blockMax,
      blockChecksum: (flg & 0x10) !== 0,
      contentChecksum: (flg & 0x04) !== 0,
      linked: (flg & 0x20) === 0,
      contentSize: flg & 0x08 ? rest.readBigUInt64LE(0) : undefined,
      plainBytes: 0n,
      blocks: 0,
      xxh: null,
    };
    this.#state = 'blockSize';
  }

  #onBlockSize(word: number): void {
    const frame = this.#frame!;
    if (word === 0) {
      // EndMark: the plain size must be the announced one, then the content checksum (if any).
      if (frame.contentSize !== undefined && frame.contentSize !== frame.plainBytes) {
        throw this.#error(`the LZ4 frame announces ${frame.contentSize} bytes but holds ${frame.plainBytes}`);
      }
      if (frame.contentChecksum) this.#state = 'contentChecksum';
      else this.#endFrame();
      return;
    }
    this.#blockRaw = (word & 0x80000000) !== 0;
    this.#blockSize = word & 0x7fffffff;
    if (this.#blockSize > frame.blockMax) {
      throw this.#error(`block ${frame.blocks + 1}: size ${this.#blockSize} exceeds the frame's block maximum ${frame.blockMax} (corrupt frame)`);
    }
    this.#state = this.#blockSize === 0 ? 'blockSize' : 'blockData';
    // An empty stored block carries nothing; its checksum (if any) is still read and checked.
    if (this.#blockSize === 0 && frame.blockChecksum) {
      this.#block = Buffer.alloc(0);
      this.#state = 'blockChecksum';
    }
  }

  /** Decodes the current block into an output buffer and hands it on. */
  async #emitBlock(): Promise<void> {
    const frame = this.#frame!;
    const block = this.#block!;
    this.#block = undefined;
    const wait = this.#lending?.room();
    if (wait) {
      // The input views may point into this chunk only: it stays ours until `done` is called.
      await wait;
      if (this.destroyed) return;
    }
    const out = takeBlock(frame.blockMax);
    let n: number;
    if (this.#blockRaw) n = block.copy(out);
    else {
      n = this.#lz4.decodeBlock(block, out);
      if (n < 0) {
        giveBack(out);
        const why = frame.linked && frame.blocks > 0 ? ' (or it refers back into the previous block: linked blocks, lz4 -BD, are decoded only when each block stands alone; decode it with `lz4 -d`)' : '';
        throw this.#error(`block ${frame.blocks + 1} cannot be decoded (corrupt frame)${why}`);
      }
    }
    frame.blocks++;
    frame.plainBytes += BigInt(n);
    this.#state = 'blockSize';
    if (n === 0) return giveBack(out);
    if (frame.contentChecksum && !this.#skipContentChecksum) frame.xxh = this.#lz4.utils.streamChecksum(out.subarray(0, n), frame.xxh);
    if (this.#lending) this.push(this.#lending.lend(out, n));
    else this.push(out.subarray(0, n)); // this buffer is the consumer's from now on
  }

  #endFrame(): void {
    this.#frame = undefined;
    this.#state = 'magic';
  }

  #releaseStaging(): void {
    if (this.#staging) giveBack(this.#staging);
    this.#staging = undefined;
  }

  #error(message: string): Error {
    return new Error(`${message} (at byte ${this.#offset})`);
  }
}
