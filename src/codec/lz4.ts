import type { Duplex } from 'node:stream';
import type { Codec } from './codec';

// The `lz4` package is a native addon; loaded on first use so commands that never compress skip it.
type Lz4Module = {
  createEncoderStream(options?: Record<string, unknown>): Duplex;
  createDecoderStream(options?: Record<string, unknown>): Duplex;
};
let lz4: Lz4Module | undefined;
function lz4Module(): Lz4Module {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (lz4 ??= require('lz4') as Lz4Module);
}

/**
 * LZ4 frame format (the one `lz4 -d` reads): independent 4 MiB blocks and a content checksum
 * (xxHash32 of the whole plain stream), so the stock tool verifies what it decodes.
 */
export const lz4Codec: Codec = {
  name: 'lz4',
  encoder: () => lz4Module().createEncoderStream({ blockMaxSize: 4 << 20, streamChecksum: true, blockChecksum: false }),
  decoder: () => lz4Module().createDecoderStream(),
};
