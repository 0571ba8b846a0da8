/**
 * The LZ4 block coder under our frame encoder and decoder: the `lz4` package's native one when its
 * addon loads, else the plain JavaScript one (lz4BlockJs.ts). Both write and read the same block
 * format, so the frames are the same format either way (`lz4 -d` reads both) and any object is
 * readable whichever coder wrote it. Checksums are always our xxHash32 (xxhash32.ts).
 *
 * Why this order, by measurement (docs/codecs.md): the native coder is the fastest here, the
 * JavaScript one always loads (no install script, no ABI to match after a Node.js upgrade), and
 * `lz4-napi` lost to both on the way we use it (a fresh buffer per block, a size prefix to strip).
 * The native addon fails to load when the install skipped scripts (pnpm, bun, `--ignore-scripts`:
 * "invalid ELF header") or after a Node.js major upgrade without `npm rebuild` ("Module did not
 * self-register"); then archiving goes on with the JavaScript coder, slower, and `walts check`
 * warns, saying why and how to get the native one back (`npm rebuild lz4`).
 */
import type { Lz4NativeEncode } from './lz4FrameEncoder';
import { decodeBlockJs, encodeBlockJs, encodeBoundJs } from './lz4BlockJs';
import { Xxh32 } from './xxhash32';

export interface Lz4Blocks extends Lz4NativeEncode {
  /** `native` (the `lz4` package's addon) or `js`. */
  readonly impl: 'native' | 'js';
}

const utils: Lz4NativeEncode['utils'] = {
  blockChecksum: (data) => new Xxh32().update(data).digest(),
  streamChecksum: (data, state) => {
    const xxh = (state as Xxh32 | null) ?? new Xxh32();
    return data === null ? xxh.digest() : xxh.update(data);
  },
};

export const jsBlocks: Lz4Blocks = { impl: 'js', encodeBlock: encodeBlockJs, decodeBlock: decodeBlockJs, encodeBound: encodeBoundJs, utils };

/** Why the native addon did not load (undefined: it loaded, or was not tried yet). */
let nativeFailure: Error | undefined;
let chosen: Lz4Blocks | undefined;

/** The native coder when it loads, else JavaScript. Chosen on first use, once per thread. */
export function lz4Blocks(): Lz4Blocks {
  // Silent here: a warning per archive_command call would fill PostgreSQL's log; `walts check`
  // reports the JavaScript coder in use and the fix (ops/check/codecs.ts).
  return (chosen ??= loadNative() ?? jsBlocks);
}

/** The native coder, or undefined (the reason kept for `nativeLz4Failure`). */
export function loadNative(): Lz4Blocks | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const lz4 = require('lz4') as Lz4NativeEncode;
    // The package loads its addon lazily in places: touch both entry points now, not mid-object.
    if (typeof lz4.encodeBlock !== 'function' || typeof lz4.decodeBlock !== 'function') throw new Error('the lz4 package has no encodeBlock/decodeBlock');
    const probe = Buffer.from('lz4 probe lz4 probe lz4 probe');
    const out = Buffer.alloc(lz4.encodeBound(probe.length));
    const n = lz4.encodeBlock(probe, out);
    const back = Buffer.alloc(probe.length);
    if (n <= 0 || lz4.decodeBlock(out.subarray(0, n), back) !== probe.length || !back.equals(probe)) throw new Error('the lz4 native block coder does not round-trip');
    nativeFailure = undefined;
    return { impl: 'native', encodeBlock: lz4.encodeBlock, decodeBlock: lz4.decodeBlock, encodeBound: lz4.encodeBound, utils };
  } catch (err) {
    nativeFailure = err as Error;
    return undefined;
  }
}

/** Why the native coder is not in use, once `lz4Blocks()` chose: undefined when it is. */
export function nativeLz4Failure(): Error | undefined {
  lz4Blocks();
  return nativeFailure;
}
