/** util/spool.ts: consecutive views of one buffer are held as one view (no copy); anything else is gathered. */
import { randomBytes } from 'node:crypto';
import { readAll } from '../../../src/util/streams';
import { spool } from '../../../src/util/spool';

async function* from(chunks: Buffer[]): AsyncGenerator<Buffer> {
  yield* chunks;
}

const body = async (s: Awaited<ReturnType<typeof spool>>): Promise<Buffer> => {
  const b = s.body();
  return Buffer.isBuffer(b) ? b : readAll(b);
};

describe('spool', () => {
  it('holds consecutive views of one buffer as one view of it, without a copy', async () => {
    const frame = randomBytes(3 << 20);
    const views = [frame.subarray(0, 7), frame.subarray(7, 1 << 20), frame.subarray(1 << 20, 3 << 20)];
    const s = await spool(from(views));
    const held = await body(s);
    expect(held.buffer).toBe(frame.buffer);
    expect(held.equals(frame)).toBe(true);
    expect(s.size).toBe(frame.length);
  });

  it('gathers chunks that are not consecutive in one buffer, in order', async () => {
    const a = randomBytes(1000);
    const b = randomBytes(2000);
    // Views of one buffer out of order, a gap, and other buffers: none may be joined as a view.
    const chunks = [a.subarray(500), a.subarray(0, 500), b.subarray(0, 10), b.subarray(20, 2000), Buffer.from('end')];
    const held = await body(await spool(from(chunks)));
    expect(held.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('goes to a temp file above the memory limit, views or not', async () => {
    const frame = randomBytes(300_000);
    const s = await spool(from([frame.subarray(0, 100_000), frame.subarray(100_000), Buffer.from('tail')]), 150_000);
    expect(Buffer.isBuffer(s.body())).toBe(false);
    expect((await body(s)).equals(Buffer.concat([frame, Buffer.from('tail')]))).toBe(true);
    await s.cleanup();
  });
});
