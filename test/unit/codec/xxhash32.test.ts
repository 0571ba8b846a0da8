/** Our streaming xxHash32 (src/codec/xxhash32.ts) against the lz4 package's native one. */
import { randomBytes } from 'node:crypto';
import { Xxh32 } from '../../../src/codec/xxhash32';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const native = (require('lz4') as { utils: { streamChecksum(d: Buffer | null, s: unknown): unknown } }).utils;

describe('xxHash32', () => {
  it('equals the native streaming hash for every size and chunking, aligned or not', () => {
    const data = randomBytes((1 << 20) + 77);
    for (const size of [0, 1, 3, 15, 16, 17, 31, 100, 4096, 65_537, data.length - 1]) {
      for (const step of [1, 3, 7, 16, 17, 4099, 1 << 20]) {
        if (step < 16 && size > 5000) continue;
        for (const offset of [0, 1]) {
          const input = data.subarray(offset, offset + size);
          const ours = new Xxh32();
          let state: unknown = null;
          for (let i = 0; i < input.length; i += step) {
            ours.update(input.subarray(i, i + step));
            state = native.streamChecksum(input.subarray(i, i + step), state);
          }
          const want = (native.streamChecksum(null, state) as number) >>> 0;
          expect({ size, step, offset, hash: ours.digest() }).toEqual({ size, step, offset, hash: want });
        }
      }
    }
  });
});
