/**
 * The JavaScript LZ4 block coder (the fallback that always loads) against the `lz4` package's
 * native one and the stock `lz4` tool: every block either writes is read by the other, and frames
 * framed around the JavaScript blocks are read by `lz4 -d`.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { decodeBlockJs, encodeBlockJs, encodeBoundJs } from '../../../src/codec/lz4BlockJs';
import { jsBlocks } from '../../../src/codec/lz4Blocks';
import { Lz4FrameDecoder } from '../../../src/codec/lz4Frame';
import { Lz4FrameEncoder } from '../../../src/codec/lz4FrameEncoder';
import { pipeStages, readAll } from '../../../src/util/streams';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const native = require('lz4') as { encodeBlock(i: Buffer, o: Buffer): number; decodeBlock(i: Buffer, o: Buffer): number; encodeBound(n: number): number };

/** Deterministic pseudo-random bytes of a given compressibility. */
function sample(size: number, seed: number, alphabet: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    // Runs and repeats, as WAL has: copy from a recent position now and then.
    if (i > 64 && x % 7 === 0) b[i] = b[i - 1 - (x % 61)]!;
    else b[i] = x % alphabet;
  }
  return b;
}

const inputs: Array<[string, Buffer]> = [
  ['empty', Buffer.alloc(0)],
  ['one byte', Buffer.from([7])],
  ['12 bytes (below the match limit)', Buffer.from('abcabcabcabc')],
  ['13 zero bytes', Buffer.alloc(13)],
  ['64 KiB of zeros (overlapping copies)', Buffer.alloc(64 << 10)],
  ['random (incompressible)', randomBytes(300_000)],
  ['text-like', sample(1 << 20, 42, 20)],
  ['period 3 pattern', Buffer.from('xyz'.repeat(100_000))],
  ['a repeat further back than 64 KiB', ((r: Buffer) => Buffer.concat([r, randomBytes(70_000), r]))(randomBytes(1000))],
  ['a full 4 MiB block, mixed', Buffer.concat([sample(2 << 20, 7, 250), Buffer.alloc(1 << 20), randomBytes(1 << 20)])],
];

function encodeJs(plain: Buffer): Buffer {
  const out = Buffer.alloc(encodeBoundJs(plain.length));
  const n = encodeBlockJs(plain, out);
  expect(n).toBeGreaterThan(0);
  return out.subarray(0, n);
}

describe('LZ4 blocks in JavaScript', () => {
  it.each(inputs)('%s: round-trips, and the native coder reads it', (_name, plain) => {
    const block = encodeJs(plain);
    const back = Buffer.alloc(plain.length);
    expect(decodeBlockJs(block, back)).toBe(plain.length);
    expect(back.equals(plain)).toBe(true);
    const nativeBack = Buffer.alloc(plain.length);
    expect(native.decodeBlock(block, nativeBack)).toBe(plain.length);
    expect(nativeBack.equals(plain)).toBe(true);
  });

  it.each(inputs.filter(([, p]) => p.length > 0))('%s: reads what the native coder writes', (_name, plain) => {
    const out = Buffer.alloc(native.encodeBound(plain.length));
    const n = native.encodeBlock(plain, out);
    const back = Buffer.alloc(plain.length);
    expect(decodeBlockJs(out.subarray(0, n), back)).toBe(plain.length);
    expect(back.equals(plain)).toBe(true);
  });

  it('compresses compressible data about as well as the native coder', () => {
    const plain = sample(4 << 20, 3, 16);
    const out = Buffer.alloc(native.encodeBound(plain.length));
    const nativeSize = native.encodeBlock(plain, out);
    expect(encodeJs(plain).length).toBeLessThan(nativeSize * 1.15);
  });

  it('returns 0 when the output does not fit, as LZ4_compress_default', () => {
    expect(encodeBlockJs(randomBytes(1000), Buffer.alloc(900))).toBe(0);
  });

  it('refuses malformed blocks with -1, never reading or writing outside the buffers', () => {
    const plain = sample(200_000, 9, 30);
    const block = encodeJs(plain);
    expect(decodeBlockJs(Buffer.alloc(0), Buffer.alloc(10))).toBe(-1);
    expect(decodeBlockJs(block, Buffer.alloc(plain.length - 1))).toBe(-1); // output too small
    expect(decodeBlockJs(Buffer.from([0x00, 0x00, 0x00]), Buffer.alloc(100))).toBe(-1); // offset 0
    expect(decodeBlockJs(Buffer.from([0x10, 0x41, 0x05, 0x00]), Buffer.alloc(100))).toBe(-1); // offset past the start
    for (let cut = 1; cut < 200; cut += 7) expect(decodeBlockJs(block.subarray(0, block.length - cut), Buffer.alloc(plain.length))).toBeLessThan(plain.length);
    let seed = 5;
    for (let i = 0; i < 300; i++) {
      const bad = Buffer.from(block.subarray(0, 2000));
      seed = (seed * 1103515245 + 12345) >>> 0;
      const at = seed % bad.length;
      bad[at] = bad[at]! ^ (1 + ((seed >>> 24) % 255));
      const out = Buffer.alloc(5000);
      const n = decodeBlockJs(bad, out);
      expect(n === -1 || (n >= 0 && n <= out.length)).toBe(true);
    }
  });
});

describe('LZ4 frames around the JavaScript blocks', () => {
  const lz4Cli = (() => {
    try {
      execFileSync('lz4', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  const plain = Buffer.concat([sample(5 << 20, 11, 40), randomBytes(1 << 20)]);

  async function through(stage: NodeJS.ReadWriteStream, input: Buffer): Promise<Buffer> {
    let out: Buffer = Buffer.alloc(0);
    await pipeStages([Readable.from([input]), stage, async (s: AsyncIterable<Buffer>) => void (out = await readAll(s))]);
    return out;
  }

  (lz4Cli ? it : it.skip)('`lz4 -d` reads a frame of JavaScript blocks, and the JavaScript decoder reads `lz4`', async () => {
    const frame = await through(new Lz4FrameEncoder(jsBlocks, { plainSize: plain.length }), plain);
    expect(execFileSync('lz4', ['-d', '-c'], { input: frame, maxBuffer: 64 << 20 }).equals(plain)).toBe(true);
    const stock = execFileSync('lz4', ['-c', '-B7', '--content-size'], { input: plain, maxBuffer: 64 << 20 });
    expect((await through(new Lz4FrameDecoder(jsBlocks), stock)).equals(plain)).toBe(true);
  });

  it('a corrupted frame is refused by its content checksum', async () => {
    const frame = await through(new Lz4FrameEncoder(jsBlocks), plain);
    frame[frame.length - 2] = frame[frame.length - 2]! ^ 0xff;
    await expect(through(new Lz4FrameDecoder(jsBlocks), frame)).rejects.toThrow(/content checksum/);
  });
});
