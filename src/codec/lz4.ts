import type { Codec } from './codec';
import { Lz4FrameDecoder } from './lz4Frame';
import { Lz4FrameEncoder } from './lz4FrameEncoder';
import { lz4Blocks } from './lz4Blocks';

/**
 * LZ4 frame format (the one `lz4 -d` reads): independent 4 MiB blocks and a content checksum
 * (xxHash32 of the whole plain stream), so the stock tool verifies what it decodes. Written and
 * read by our own framing (lz4FrameEncoder.ts, lz4Frame.ts) around a block coder chosen on first
 * use (lz4Blocks.ts: the `lz4` package's native one when it loads, else plain JavaScript), so
 * commands that never compress load neither, and a native addon that cannot load never stops
 * archiving.
 */
export const lz4Codec: Codec = {
  name: 'lz4',
  encoder: (options) => new Lz4FrameEncoder(lz4Blocks(), options),
  decoder: (options) => new Lz4FrameDecoder(lz4Blocks(), { lendOutput: options?.lendOutput === true, skipContentChecksum: options?.plainVerified === true }),
};
