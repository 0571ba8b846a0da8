import type { Codec } from './codec';
import { Lz4FrameDecoder } from './lz4Frame';
import { Lz4FrameEncoder, type Lz4NativeEncode } from './lz4FrameEncoder';

// The `lz4` package is a native addon; loaded on first use so commands that never compress skip it.
let lz4: Lz4NativeEncode | undefined;
function lz4Module(): Lz4NativeEncode {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (lz4 ??= require('lz4') as Lz4NativeEncode);
}

/**
 * LZ4 frame format (the one `lz4 -d` reads): independent 4 MiB blocks and a content checksum
 * (xxHash32 of the whole plain stream), so the stock tool verifies what it decodes. Written and
 * read by our own framing around the package's native block coder and xxHash32: the encoder
 * (lz4FrameEncoder.ts) writes what the package's encoder stream writes, byte for byte, with less
 * fresh memory; the decoder (lz4Frame.ts) accepts what `lz4` writes and reuses its buffers.
 */
export const lz4Codec: Codec = {
  name: 'lz4',
  encoder: (options) => new Lz4FrameEncoder(lz4Module(), options),
  decoder: (options) => new Lz4FrameDecoder(lz4Module(), { lendOutput: options?.lendOutput === true, skipContentChecksum: options?.plainVerified === true }),
};
