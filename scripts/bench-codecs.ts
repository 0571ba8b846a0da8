/**
 * `npm run bench:codecs -- FILE...`: compression and decompression speed (MB/s of plain bytes,
 * median of 3 rounds) and ratio of the LZ4 block coders walts can use, on real files (a WAL segment,
 * a base-backup tar), in 4 MiB blocks as walts' frames hold them; and zstd from node:zlib (level 3,
 * the default of `zstd` and of WALTS_COMPRESSION=zstd) where the running Node.js has it.
 *
 * Candidates: `lz4` (the package's native blocks, today's), `js` (lz4BlockJs.ts), and `lz4-napi`
 * when it can be required (it is not a dependency: `NODE_PATH=/some/prefix/node_modules` brings it).
 * `BENCH_LZ4=/path/to/lz4` takes the `lz4` package from elsewhere (one built for another Node.js).
 * lz4-napi has no call that writes into a given buffer or decodes an unprefixed block: its block
 * output is size-prefixed and fresh per call, so it is measured the way walts would have to use it.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import * as zlib from 'node:zlib';
import { decodeBlockJs, encodeBlockJs, encodeBoundJs } from '../src/codec/lz4BlockJs';
import { ZSTD_LEVEL } from '../src/codec/zstd';

const BLOCK = 4 << 20;
const ROUNDS = 3;

interface Coder {
  name: string;
  /** Compresses one block; the compressed bytes (a view is fine). */
  encode(block: Buffer): Buffer;
  /** Decompresses one block of known plain size. */
  decode(compressed: Buffer, plainSize: number): Buffer;
}

function blockCoders(): Coder[] {
  const out = Buffer.allocUnsafe(encodeBoundJs(BLOCK));
  const plain = Buffer.allocUnsafe(BLOCK);
  const coders: Coder[] = [];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const lz4 = require(process.env['BENCH_LZ4'] ?? 'lz4') as { encodeBlock(i: Buffer, o: Buffer): number; decodeBlock(i: Buffer, o: Buffer): number };
    coders.push({
      name: 'lz4 (native blocks, node-gyp)',
      encode: (b) => Buffer.from(out.subarray(0, lz4.encodeBlock(b, out))),
      decode: (c, n) => plain.subarray(0, lz4.decodeBlock(c, plain.subarray(0, n))),
    });
  } catch (err) {
    process.stderr.write(`lz4 package: ${(err as Error).message}\n`);
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const napi = require('lz4-napi') as { compressSync(b: Buffer): Buffer; uncompressSync(b: Uint8Array): Buffer };
    coders.push({
      name: 'lz4-napi (prebuilt, lz4_flex)',
      encode: (b) => napi.compressSync(b).subarray(4), // strip its 4-byte size prefix: a plain block
      decode: (c, n) => {
        const prefixed = Buffer.allocUnsafe(4 + c.length);
        prefixed.writeUInt32LE(n, 0);
        c.copy(prefixed, 4);
        return napi.uncompressSync(prefixed);
      },
    });
  } catch {
    process.stderr.write('lz4-napi: not installed (NODE_PATH=<prefix>/node_modules to include it)\n');
  }
  coders.push({
    name: 'js (lz4BlockJs.ts)',
    encode: (b) => Buffer.from(out.subarray(0, encodeBlockJs(b, out))),
    decode: (c, n) => plain.subarray(0, decodeBlockJs(c, plain.subarray(0, n))),
  });
  return coders;
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

function time(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

function row(file: string, name: string, plainBytes: number, storedBytes: number, enc: number[], dec: number[]): string {
  const mbs = (s: number) => (plainBytes / 1e6 / s).toFixed(0);
  return `| ${file} | ${name} | ${(storedBytes / 1e6).toFixed(2)} MB (${((100 * storedBytes) / plainBytes).toFixed(1)} %) | ${mbs(median(enc))} | ${mbs(median(dec))} |`;
}

function main(): void {
  const files = process.argv.slice(2);
  if (files.length === 0) throw new Error('usage: bench-codecs FILE...');
  process.stdout.write(`Node.js ${process.version}, ${ROUNDS} rounds, medians\n\n| file | coder | stored (of plain) | compress MB/s | decompress MB/s |\n|---|---|---|---|---|\n`);
  for (const path of files) {
    const data = readFileSync(path);
    const name = `${basename(path)} (${(data.length / 1e6).toFixed(1)} MB)`;
    const blocks: Buffer[] = [];
    for (let p = 0; p < data.length; p += BLOCK) blocks.push(data.subarray(p, Math.min(p + BLOCK, data.length)));
    for (const coder of blockCoders()) {
      let compressed: Buffer[] = [];
      const enc: number[] = [];
      const dec: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        enc.push(time(() => (compressed = blocks.map((b) => coder.encode(b)))));
        dec.push(
          time(() => {
            compressed.forEach((c, i) => {
              const back = coder.decode(c, blocks[i]!.length);
              if (back.length !== blocks[i]!.length) throw new Error(`${coder.name}: block ${i} decoded to ${back.length} bytes`);
            });
          }),
        );
      }
      compressed.forEach((c, i) => {
        if (!coder.decode(c, blocks[i]!.length).equals(blocks[i]!)) throw new Error(`${coder.name}: block ${i} does not round-trip`);
      });
      process.stdout.write(row(name, coder.name, data.length, compressed.reduce((s, c) => s + 4 + c.length, 0), enc, dec) + '\n');
    }
    const z = zlib as unknown as { zstdCompressSync?: (b: Buffer, o: object) => Buffer; zstdDecompressSync?: (b: Buffer) => Buffer; constants: Record<string, number> };
    if (z.zstdCompressSync && z.zstdDecompressSync) {
      let stored: Buffer = Buffer.alloc(0);
      const enc: number[] = [];
      const dec: number[] = [];
      const params = { params: { [z.constants.ZSTD_c_compressionLevel!]: ZSTD_LEVEL, [z.constants.ZSTD_c_checksumFlag!]: 1 } };
      for (let r = 0; r < ROUNDS; r++) {
        enc.push(time(() => (stored = z.zstdCompressSync!(data, params))));
        dec.push(time(() => z.zstdDecompressSync!(stored)));
      }
      if (!z.zstdDecompressSync(stored).equals(data)) throw new Error('zstd does not round-trip');
      process.stdout.write(row(name, `zstd level ${ZSTD_LEVEL} (node:zlib)`, data.length, stored.length, enc, dec) + '\n');
    } else {
      process.stderr.write(`zstd: node:zlib of Node.js ${process.version} has none (22.15 or later)\n`);
    }
  }
}

main();
