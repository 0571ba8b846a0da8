/**
 * Zstandard (`WALTS_COMPRESSION=zstd`), from Node.js' own zlib: no addon, nothing to build or
 * install. Objects are standard zstd frames with a content checksum (XXH64), key suffix `.zst`, so
 * stock `zstd -d` reads them. node:zlib has zstd from Node.js 22.15 (and 23.8); on an older Node.js
 * writing with zstd is refused at configuration time and reading a `.zst` object is a
 * configuration error naming the version needed, never an integrity error: the object is fine,
 * this Node.js cannot read it.
 */
import type { Duplex } from 'node:stream';
import * as zlib from 'node:zlib';
import { ConfigError } from '../errors';
import type { Codec } from './codec';

/** zstd's own default level (the `zstd` command's): on WAL, about LZ4's speed at a better ratio (docs/codecs.md). */
export const ZSTD_LEVEL = 3;
export const ZSTD_SUFFIX = 'zst';
export const ZSTD_MIN_NODE = '22.15.0';
/**
 * The largest window a stored object may ask the decoder for: 2^24 = 16 MiB. Walts writes level 3,
 * whose window is at most 2^21 for any input (zstd's level table), so this refuses only frames it
 * never writes, and bounds a hostile object's memory (zstd's own limit is 2^27).
 */
const WINDOW_LOG_MAX = 24;

interface ZstdZlib {
  createZstdCompress(options?: { params?: Record<number, number> }): Duplex;
  createZstdDecompress(options?: { params?: Record<number, number> }): Duplex;
  constants: Record<string, number>;
}

function zstdZlib(): ZstdZlib | undefined {
  const z = zlib as unknown as Partial<ZstdZlib>;
  return typeof z.createZstdCompress === 'function' && typeof z.createZstdDecompress === 'function' ? (z as ZstdZlib) : undefined;
}

/** Whether this Node.js has zstd in node:zlib. */
export function zstdAvailable(): boolean {
  return zstdZlib() !== undefined;
}

/** Why zstd cannot be used here, naming the fix. */
export function zstdUnavailableReason(doing: string): string {
  return `${doing} needs Zstandard, which Node.js ${process.version} does not have: run walts with Node.js ${ZSTD_MIN_NODE} or later (22.15+, 23.8+, 24)`;
}

function need(doing: string): ZstdZlib {
  const z = zstdZlib();
  if (!z) throw new ConfigError(zstdUnavailableReason(doing));
  return z;
}

export const zstdCodec: Codec = {
  name: ZSTD_SUFFIX,
  encoder: () => {
    const z = need('WALTS_COMPRESSION=zstd');
    return z.createZstdCompress({ params: { [z.constants.ZSTD_c_compressionLevel!]: ZSTD_LEVEL, [z.constants.ZSTD_c_checksumFlag!]: 1 } });
  },
  decoder: () => {
    const z = need(`reading a .${ZSTD_SUFFIX} object`);
    return z.createZstdDecompress({ params: { [z.constants.ZSTD_d_windowLogMax!]: WINDOW_LOG_MAX } });
  },
};
