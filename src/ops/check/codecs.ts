/**
 * The codec items: LZ4 (and whether its native coder loads), zstd and openpgp work here, under this Node.js.
 * A native module built for another Node.js version (after an upgrade) fails to load only when
 * first used: without this item that is the first wal-push after the upgrade, at night.
 */
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import type { Codec } from '../../codec/codec';
import { lz4Codec } from '../../codec/lz4';
import { lz4Blocks, nativeLz4Failure } from '../../codec/lz4Blocks';
import { zstdAvailable, zstdCodec, zstdUnavailableReason, ZSTD_MIN_NODE } from '../../codec/zstd';
import type { Compression } from '../../config';
import { fail, message, ok, skip, warn, type CheckItem } from './item';

/** The walts installation (where `npm rebuild` must run): dist/ops/check → the package root. */
const INSTALL_DIR = resolve(__dirname, '../../..');
const SAMPLE = Buffer.from('walts check: codec round trip '.repeat(64));

/** `compression`: what the configuration writes with (undefined: configuration incomplete). */
export async function checkCodecs(compression?: Compression): Promise<CheckItem[]> {
  return [await checkLz4(), await checkZstd(compression), checkOpenpgp()];
}

async function roundTrip(codec: Codec): Promise<void> {
  const chunks: Buffer[] = [];
  await pipeline(Readable.from([SAMPLE]), codec.encoder(), codec.decoder(), new Writable({ write: (c: Buffer, _e, done) => (chunks.push(c), done()) }));
  if (!Buffer.concat(chunks).equals(SAMPLE)) throw new Error('decoded bytes differ from the input');
}

/**
 * LZ4 always works (the JavaScript block coder is the fallback, lz4Blocks.ts); the item warns when
 * the native coder does not load, since then LZ4 runs several times slower (docs/codecs.md).
 */
async function checkLz4(): Promise<CheckItem> {
  try {
    await roundTrip(lz4Codec);
  } catch (err) {
    return fail('codec lz4', `LZ4 does not round-trip under Node.js ${process.version}: ${message(err)}`, `reinstall walts' dependencies: \`npm ci\` in ${INSTALL_DIR}`);
  }
  const failure = nativeLz4Failure();
  if (lz4Blocks().impl === 'native' || !failure) return ok('codec lz4', `lz4 native module loads and round-trips under Node.js ${process.version}`);
  const text = message(failure);
  const builtElsewhere = /NODE_MODULE_VERSION|ERR_DLOPEN_FAILED|compiled against|self-register|invalid ELF|wrong ELF|undefined symbol|\.node\b/i.test(text) || (failure as NodeJS.ErrnoException).code === 'ERR_DLOPEN_FAILED';
  return warn(
    'codec lz4',
    `LZ4 works with the JavaScript block coder (several times slower to compress); the lz4 native module does not load under Node.js ${process.version}: ${text}`,
    builtElsewhere
      ? `it was built for another Node.js version or skipped at install (--ignore-scripts): run \`npm rebuild lz4\` in ${INSTALL_DIR} (as the user that installed walts)`
      : `reinstall it with install scripts allowed: \`npm rebuild lz4\` (or \`npm ci\`) in ${INSTALL_DIR}`,
  );
}

/** zstd: must work when configured; otherwise said whether `.zst` objects could be read here. */
async function checkZstd(compression?: Compression): Promise<CheckItem> {
  if (!zstdAvailable()) {
    if (compression === 'zstd') return fail('codec zstd', zstdUnavailableReason('WALTS_COMPRESSION=zstd'), `upgrade Node.js to ${ZSTD_MIN_NODE} or later, or set WALTS_COMPRESSION=lz4`);
    return skip('codec zstd', `not configured; Node.js ${process.version} cannot read .zst objects either (needs ${ZSTD_MIN_NODE} or later)`);
  }
  try {
    await roundTrip(zstdCodec);
    return ok('codec zstd', `zstd (node:zlib) round-trips under Node.js ${process.version}${compression === 'zstd' ? '' : ' (not configured for writing)'}`);
  } catch (err) {
    return fail('codec zstd', `zstd does not round-trip under Node.js ${process.version}: ${message(err)}`, 'see the message');
  }
}

function checkOpenpgp(): CheckItem {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pgp = require('openpgp') as typeof import('openpgp');
    if (typeof pgp.encrypt !== 'function') throw new Error('openpgp.encrypt is missing');
    return ok('codec openpgp', 'openpgp loads');
  } catch (err) {
    return fail('codec openpgp', `openpgp does not load: ${message(err)}`, `reinstall walts' dependencies: \`npm ci\` in ${INSTALL_DIR}`);
  }
}
