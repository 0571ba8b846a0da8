/**
 * The zstd codec (node:zlib): a standard frame the stock `zstd` tool reads, chosen by
 * WALTS_COMPRESSION=zstd with the `.zst` suffix; on a Node.js without zstd, a configuration error
 * naming the version for writing and for reading, never an integrity error.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { makeCodecs } from '../../../src/codec/make';
import { zstdAvailable, zstdCodec } from '../../../src/codec/zstd';
import { ConfigError } from '../../../src/errors';
import { pipeStages, readAll } from '../../../src/util/streams';

async function through(stages: unknown[], input: Buffer): Promise<Buffer> {
  let out: Buffer = Buffer.alloc(0);
  await pipeStages([Readable.from([input]), ...stages, async (s: AsyncIterable<Buffer>) => void (out = await readAll(s))]);
  return out;
}

const sample = Buffer.concat([Buffer.from('walts zstd '.repeat(100_000)), randomBytes(50_000)]);

describe('zstd codec', () => {
  it('is written with WALTS_COMPRESSION=zstd under the .zst suffix, and read for .zst whatever is configured', () => {
    expect(makeCodecs({ compression: 'zstd', pgp: {} }).writeSuffix).toBe('.zst');
    const lz4Set = makeCodecs({ compression: 'lz4', pgp: {} });
    expect(lz4Set.writeSuffix).toBe('.lz4');
    if (zstdAvailable()) expect(lz4Set.decoders(['zst'])).toHaveLength(1);
  });

  (zstdAvailable() ? it : it.skip)('round-trips a zstd frame that stock zstd -d reads; a corrupt one is refused', async () => {
    const enc = await through([zstdCodec.encoder()], sample);
    expect(enc.readUInt32LE(0)).toBe(0xfd2fb528); // zstd frame magic
    expect(enc.length).toBeLessThan(sample.length / 4);
    expect((await through([zstdCodec.decoder()], enc)).equals(sample)).toBe(true);
    expect(execFileSync('zstd', ['-d', '-c'], { input: enc, maxBuffer: 64 << 20 }).equals(sample)).toBe(true);
    const stock = execFileSync('zstd', ['-c', '-q'], { input: sample, maxBuffer: 64 << 20 });
    expect((await through([zstdCodec.decoder()], stock)).equals(sample)).toBe(true);
    const bad = Buffer.from(enc);
    bad[bad.length - 2] = bad[bad.length - 2]! ^ 0xff; // inside the content checksum
    await expect(through([zstdCodec.decoder()], bad)).rejects.toThrow();
  });

  (zstdAvailable() ? it : it.skip)('refuses a frame asking for a window above 16 MiB', async () => {
    const wide = execFileSync('zstd', ['-c', '-q', '--long=25'], { input: sample, maxBuffer: 64 << 20 });
    await expect(through([zstdCodec.decoder()], wide)).rejects.toThrow(/window|memory|Frame requires too much/i);
  });

  (zstdAvailable() ? it.skip : it)(`without zstd in node:zlib (Node.js ${process.version}): configuration errors naming 22.15`, () => {
    expect(() => zstdCodec.encoder()).toThrow(ConfigError);
    expect(() => zstdCodec.encoder()).toThrow(/WALTS_COMPRESSION=zstd needs Zstandard.*Node\.js 22\.15\.0 or later/);
    expect(() => makeCodecs({ compression: 'lz4', pgp: {} }).decoders(['zst'])).toThrow(/reading a \.zst object needs Zstandard.*22\.15\.0/);
  });
});
