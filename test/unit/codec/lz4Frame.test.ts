/**
 * The LZ4 frame decoder (src/codec/lz4Frame.ts) against the stock `lz4` CLI: the same bytes for
 * every frame the CLI writes (block sizes, block checksums, content size, concatenated and skippable
 * frames), whatever the chunking; refusal of damaged frames; and the lending of reused output
 * buffers: never rewritten while a consumer can still read them.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, writeFileSync, WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { decodeObject } from '../../../src/archive/decode';
import { releaseChunk } from '../../../src/codec/blockPool';
import { lz4Codec } from '../../../src/codec/lz4';
import type { StoredObject } from '../../../src/storage/storage';
import { pipeStages, readAll } from '../../../src/util/streams';
import { testDeps } from '../../helpers/deps';
import { MemoryStorage } from '../../../src/storage/memory';

const lz4Cli = (args: string[], input: Buffer): Buffer => execFileSync('lz4', args, { input, maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'ignore'] });
const work = mkdtempSync(join(tmpdir(), 'walts-lz4frame-'));
/** From a file, not stdin: only then does `lz4 --content-size` know the size to write. */
function cliCompress(plain: Buffer, opts: string[] = []): Buffer {
  const src = join(work, 'plain');
  writeFileSync(src, plain);
  return execFileSync('lz4', ['-z', '-c', '-q', ...opts, src], { maxBuffer: 1 << 30 });
}
const cliDecompress = (frame: Buffer): Buffer => lz4Cli(['-d', '-c', '-q'], frame);

/** Decodes `frame` fed in chunks of `chunk` bytes; the consumer keeps every chunk until the end. */
async function decode(frame: Buffer, chunk = 64 << 10): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < frame.length; i += chunk) parts.push(frame.subarray(i, i + chunk));
  let out: Buffer = Buffer.alloc(0);
  await pipeStages([Readable.from(parts), lz4Codec.decoder(), async (s: AsyncIterable<Buffer>) => void (out = await readAll(s))]);
  return out;
}

/** WAL-like: compressible records with some noise, and incompressible stretches (raw blocks). */
function mixed(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0; at < size; ) {
    const piece = at % (3 << 20) < 2 << 20 ? Buffer.from(`record ${at} walts lz4 frame `.repeat(40)) : randomBytes(8192);
    at += piece.copy(out, at);
  }
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('LZ4 frame decoder', () => {
  const plain = mixed(9 << 20 | 12345); // three 4 MiB blocks, the last one short
  const random = randomBytes(5 << 20);

  it.each([
    ['default (4 MiB blocks, content checksum)', []],
    ['64 KiB blocks', ['-B4']],
    ['256 KiB blocks with block checksums', ['-B5', '-BX']],
    ['1 MiB blocks without content checksum', ['-B6', '--no-frame-crc']],
    ['content size, block checksums', ['--content-size', '-BX']],
    ['high compression', ['-9']],
  ])('decodes what `lz4` writes byte for byte: %s', async (_name, opts) => {
    const frame = cliCompress(plain, opts);
    expect(sha(await decode(frame))).toBe(sha(plain));
    expect(sha(cliDecompress(frame))).toBe(sha(plain));
    if (opts.includes('--content-size')) expect(frame[4]! & 0x08).toBe(0x08);
    if (opts.includes('-BX')) expect(frame[4]! & 0x10).toBe(0x10);
  });

  it('decodes incompressible data (stored raw blocks) and is indifferent to chunking', async () => {
    const frame = cliCompress(random);
    expect((await decode(frame)).equals(random)).toBe(true);
    expect((await decode(frame, frame.length)).equals(random)).toBe(true);
    expect((await decode(frame, 1_000_003)).equals(random)).toBe(true);
    const small = cliCompress(plain.subarray(0, 300_000), ['-B4', '-BX', '--content-size']);
    expect((await decode(small, 7)).equals(plain.subarray(0, 300_000))).toBe(true);
  });

  it('decodes concatenated frames with a skippable frame between, and empty input, like `lz4 -d`', async () => {
    const skippable = Buffer.alloc(8 + 5, 0xee);
    skippable.writeUInt32LE(0x184d2a53, 0);
    skippable.writeUInt32LE(5, 4);
    const frames = Buffer.concat([cliCompress(Buffer.from('first ')), skippable, cliCompress(plain.subarray(0, 100_000), ['-B4'])]);
    const expected = Buffer.concat([Buffer.from('first '), plain.subarray(0, 100_000)]);
    expect(cliDecompress(frames).equals(expected)).toBe(true);
    expect((await decode(frames, 3)).equals(expected)).toBe(true);
    expect((await decode(Buffer.alloc(0))).length).toBe(0);
    expect((await decode(cliCompress(Buffer.alloc(0)))).length).toBe(0);
  });

  it('decodes linked blocks (lz4 -BD) that stand alone, refuses by name those that refer back', async () => {
    expect((await decode(cliCompress(random, ['-BD', '-B4']))).equals(random)).toBe(true); // raw blocks
    await expect(decode(cliCompress(plain.subarray(0, 1 << 20), ['-BD', '-B4']))).rejects.toThrow(/linked blocks, lz4 -BD/);
  });

  describe('refuses damaged frames', () => {
    const frame = cliCompress(plain); // 3 blocks, content checksum
    const firstBlock = 7 + 4; // header (magic, FLG, BD, HC), then the first block's size word
    const firstSize = frame.readUInt32LE(7) & 0x7fffffff;
    const flipped = (at: number) => {
      const f = Buffer.from(frame);
      f[at]! ^= 0x20;
      return f;
    };

    it.each([
      ['inside the header', 5],
      ['inside a block', firstBlock + 100],
      ['at a block boundary', firstBlock + firstSize],
      ['before the end mark', frame.length - 8],
      ['inside the content checksum', frame.length - 2],
    ])('truncated %s', async (_name, at) => {
      await expect(decode(frame.subarray(0, at))).rejects.toThrow(/truncated/);
      expect(() => cliDecompress(frame.subarray(0, at))).toThrow();
    });

    it('a wrong content checksum', async () => {
      await expect(decode(flipped(frame.length - 1))).rejects.toThrow(/content checksum mismatch/);
    });

    it('a bit flip in the compressed data (content checksum, or the block decoder itself)', async () => {
      await expect(decode(flipped(firstBlock + 5000))).rejects.toThrow(/checksum mismatch|cannot be decoded/);
      const unchecked = cliCompress(plain.subarray(0, 1 << 20), ['--no-frame-crc']);
      unchecked.writeUInt32LE(0x00000010, 7); // a 16-byte block cut from the middle of the sequence stream
      await expect(decode(unchecked)).rejects.toThrow(/cannot be decoded|exceeds|not an LZ4 frame|truncated/);
    });

    describe('with the SHA-256 and size recorded with the object (decodeObject `expected`)', () => {
      const expected = { sha256: sha(plain), size: plain.length };
      const fromFrame = (f: Buffer, into: string, withExpected: boolean) => {
        const obj: StoredObject = { key: 'wal/x.lz4', size: f.length, metadata: {}, body: Readable.from([f.subarray(0, 100_000), f.subarray(100_000)]) };
        const path = join(work, into);
        return decodeObject(testDeps(new MemoryStorage()), obj, ['lz4'], createWriteStream(path), withExpected ? { expected } : {}).then((d) => ({ d, path }));
      };

      it('a wrong content checksum is accepted only then: the recorded SHA-256 proves the content instead', async () => {
        const { d, path } = await fromFrame(flipped(frame.length - 1), 'crc-expected', true);
        expect(d.sha256).toBe(expected.sha256);
        expect(readFileSync(path).equals(plain)).toBe(true);
        await expect(fromFrame(flipped(frame.length - 1), 'crc-plain', false)).rejects.toThrow(/content checksum mismatch/);
        expect(() => cliDecompress(flipped(frame.length - 1))).toThrow(); // still written: `lz4 -d` checks it
      });

      it('a bit flip in the compressed data is refused either way', async () => {
        for (const at of [firstBlock + 5000, firstBlock + firstSize - 3, frame.length - 4 - 4 - 20]) {
          await expect(fromFrame(flipped(at), 'flip-expected', true)).rejects.toThrow(/does not match the recorded SHA-256|cannot be decoded|exceeds/);
          await expect(fromFrame(flipped(at), 'flip-plain', false)).rejects.toThrow(/checksum mismatch|cannot be decoded|exceeds/);
        }
      });

      it('a frame that decodes but is not the recorded content is refused', async () => {
        await expect(decodeObject(testDeps(new MemoryStorage()), { key: 'wal/x.lz4', size: frame.length, metadata: {}, body: Readable.from([frame]) }, ['lz4'], createWriteStream(join(work, 'other')), {
          expected: { sha256: expected.sha256, size: plain.length + 1 },
        })).rejects.toThrow(/does not match the recorded SHA-256\/size/);
      });
    });

    it('a wrong block checksum', async () => {
      const withBlockSums = cliCompress(plain.subarray(0, 1 << 20), ['-BX', '--no-frame-crc']);
      const size = withBlockSums.readUInt32LE(7) & 0x7fffffff;
      withBlockSums[11 + size + 1]! ^= 1;
      await expect(decode(withBlockSums)).rejects.toThrow(/block checksum mismatch/);
    });

    it('a block larger than the frame allows', async () => {
      const f = Buffer.from(frame);
      f.writeUInt32LE((4 << 20) + 1, 7);
      await expect(decode(f)).rejects.toThrow(/exceeds the frame's block maximum/);
    });

    it('a damaged header, reserved bits, a preset dictionary, the legacy format, not LZ4 at all', async () => {
      await expect(decode(flipped(4 + 1))).rejects.toThrow(/block maximum size code|header checksum mismatch|reserved/);
      await expect(decode(flipped(6))).rejects.toThrow(/header checksum mismatch/);
      const hc = (flgBd: Buffer) => (((require('lz4') as { utils: { blockChecksum(b: Buffer): number } }).utils.blockChecksum(flgBd) >>> 8) & 0xff);
      const header = (flg: number, bd: number, extra = Buffer.alloc(0)) => {
        const d = Buffer.concat([Buffer.from([flg, bd]), extra]);
        return Buffer.concat([Buffer.from([0x04, 0x22, 0x4d, 0x18]), d, Buffer.from([hc(d)]), Buffer.alloc(4)]);
      };
      expect((await decode(header(0x60, 0x70))).length).toBe(0); // a well-formed empty frame
      await expect(decode(header(0x62, 0x70))).rejects.toThrow(/reserved bits/);
      await expect(decode(header(0x60, 0x71))).rejects.toThrow(/reserved bits/);
      await expect(decode(header(0x60, 0x30))).rejects.toThrow(/block maximum size code 3/);
      await expect(decode(header(0xa0, 0x70))).rejects.toThrow(/version 2/);
      await expect(decode(header(0x61, 0x70, Buffer.alloc(4, 1)))).rejects.toThrow(/preset dictionary/);
      await expect(decode(lz4Cli(['-z', '-c', '-q', '-l'], plain.subarray(0, 1000)))).rejects.toThrow(/legacy LZ4 format/);
      await expect(decode(Buffer.from('not a frame at all'))).rejects.toThrow(/not an LZ4 frame/);
    });

    it('content size that does not match the blocks', async () => {
      const f = cliCompress(plain.subarray(0, 100_000), ['--content-size', '--no-frame-crc']);
      // FLG 0x68 (content size), BD, 8-byte size, HC: announce one byte more and fix the header checksum.
      f.writeBigUInt64LE(100_001n, 6);
      const { utils } = require('lz4') as { utils: { blockChecksum(b: Buffer): number } };
      f[14] = (utils.blockChecksum(f.subarray(4, 14)) >>> 8) & 0xff;
      await expect(decode(f)).rejects.toThrow(/announces 100001 bytes but holds 100000/);
    });
  });

  describe('lent output buffers (decoding to a file)', () => {
    const small = plain.subarray(0, 6 * (64 << 10) + 999); // seven 64 KiB blocks
    const frame = cliCompress(small, ['-B4']);

    it('never decodes into a buffer the consumer has not released, and reuses released ones', async () => {
      const dec = lz4Codec.decoder({ lendOutput: true });
      const held: Array<{ chunk: Buffer; at: number }> = [];
      let at = 0;
      dec.on('data', (chunk: Buffer) => {
        held.push({ chunk, at });
        at += chunk.length;
      });
      const ended = new Promise((resolve, reject) => dec.on('end', resolve).on('error', reject));
      dec.end(frame);
      const settle = () => new Promise((r) => setImmediate(r));
      for (let i = 0; i < 20; i++) await settle();
      expect(held.length).toBe(2); // it waits for a release instead of taking more memory
      const buffers = new Set<ArrayBufferLike>();
      while (held.length > 0) {
        const { chunk, at: from } = held.shift()!;
        // Held across many turns of the event loop: still the bytes it was handed with.
        expect(chunk.equals(small.subarray(from, from + chunk.length))).toBe(true);
        buffers.add(chunk.buffer);
        releaseChunk(chunk);
        for (let i = 0; i < 5 && held.length < 2; i++) await settle();
      }
      await ended;
      expect(at).toBe(small.length);
      expect(buffers.size).toBeLessThanOrEqual(3);
    });

    it('decodeObject writes a file through lent buffers; a slow file write still sees its own bytes', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'walts-lz4lend-'));
      const path = join(dir, 'out');
      const seen = new Set<ArrayBufferLike>();
      let written = 0;
      let mismatches = 0;
      // A file write that takes many event-loop turns, checking the chunk just before writing it.
      const file = createWriteStream(path);
      const write = file._write.bind(file);
      file._write = (chunk: Buffer, enc: BufferEncoding, cb: (err?: Error | null) => void): void => {
        const from = written;
        written += chunk.length;
        seen.add(chunk.buffer);
        const later = (n: number): void => {
          if (n > 0) return void setImmediate(() => later(n - 1));
          if (!chunk.equals(small.subarray(from, from + chunk.length))) mismatches++;
          write(chunk, enc, cb);
        };
        later(10);
      };
      expect(file).toBeInstanceOf(WriteStream);
      const obj: StoredObject = { key: 'k.lz4', size: frame.length, metadata: {}, body: Readable.from([frame]) };
      const d = await decodeObject(testDeps(new MemoryStorage()), obj, ['lz4'], file, { headBytes: 40 });
      expect(mismatches).toBe(0);
      expect(readFileSync(path).equals(small)).toBe(true);
      expect(d.sha256).toBe(sha(small));
      expect(d.head.equals(small.subarray(0, 40))).toBe(true); // kept as a copy, not a view on a reused block
      expect(seen.size).toBeLessThanOrEqual(3); // seven blocks through at most three buffers
    });

    it('many small blocks (concatenated frames) reach the file one by one: every lent chunk is released', async () => {
      const pieces = Array.from({ length: 12 }, (_, i) => Buffer.from(`piece ${i} `.repeat(i + 1)));
      const frames = Buffer.concat(pieces.map((p) => cliCompress(p, ['-B4'])));
      const path = join(mkdtempSync(join(tmpdir(), 'walts-lz4small-')), 'out');
      const obj: StoredObject = { key: 'k.lz4', size: frames.length, metadata: {}, body: Readable.from([frames]) };
      await decodeObject(testDeps(new MemoryStorage()), obj, ['lz4'], createWriteStream(path));
      expect(readFileSync(path).equals(Buffer.concat(pieces))).toBe(true);
    });

    it('a sink that is not a file keeps fresh buffers of its own', async () => {
      const chunks: Buffer[] = [];
      const obj: StoredObject = { key: 'k.lz4', size: frame.length, metadata: {}, body: Readable.from([frame]) };
      await decodeObject(testDeps(new MemoryStorage()), obj, ['lz4'], async (s) => {
        for await (const c of s) chunks.push(c as Buffer);
      });
      expect(new Set(chunks.map((c) => c.buffer)).size).toBe(chunks.length);
      expect(Buffer.concat(chunks).equals(small)).toBe(true);
    });
  });
});
