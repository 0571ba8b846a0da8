/**
 * The codec items: the lz4 native module and openpgp load and work, here, under this Node.js.
 * A native module built for another Node.js version (after an upgrade) fails to load only when
 * first used: without this item that is the first wal-push after the upgrade, at night.
 */
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { lz4Codec } from '../../codec/lz4';
import { fail, message, ok, type CheckItem } from './item';

/** The walts installation (where `npm rebuild` must run): dist/ops/check → the package root. */
const INSTALL_DIR = resolve(__dirname, '../../..');
const SAMPLE = Buffer.from('walts check: lz4 round trip '.repeat(64));

export async function checkCodecs(): Promise<CheckItem[]> {
  return [await checkLz4(), checkOpenpgp()];
}

async function checkLz4(): Promise<CheckItem> {
  try {
    const chunks: Buffer[] = [];
    await pipeline(
      Readable.from([SAMPLE]),
      lz4Codec.encoder(),
      lz4Codec.decoder(),
      new Writable({ write: (c: Buffer, _e, done) => (chunks.push(c), done()) }),
    );
    if (!Buffer.concat(chunks).equals(SAMPLE)) throw new Error('decoded bytes differ from the input');
    return ok('codec lz4', `lz4 native module loads and round-trips under Node.js ${process.version}`);
  } catch (err) {
    const text = message(err);
    const builtElsewhere = /NODE_MODULE_VERSION|ERR_DLOPEN_FAILED|compiled against|invalid ELF|wrong ELF|undefined symbol|\.node\b/i.test(text) || (err as NodeJS.ErrnoException).code === 'ERR_DLOPEN_FAILED';
    return fail(
      'codec lz4',
      `the lz4 native module does not work under Node.js ${process.version}: ${text}`,
      builtElsewhere
        ? `it was built for another Node.js version: run \`npm rebuild lz4\` in ${INSTALL_DIR} (as the user that installed walts)`
        : `reinstall it: \`npm rebuild lz4\` (or \`npm ci\`) in ${INSTALL_DIR}`,
    );
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
