import { mapLimit } from '../../../src/archive/catalog';

describe('mapLimit', () => {
  it('keeps order and the limit', async () => {
    let running = 0;
    let most = 0;
    const r = await mapLimit([1, 2, 3, 4, 5], 2, async (n) => {
      most = Math.max(most, ++running);
      await new Promise((res) => setImmediate(res));
      running--;
      return n * 10;
    });
    expect(r).toEqual([10, 20, 30, 40, 50]);
    expect(most).toBe(2);
  });

  it('throws the first failure, not a sibling it cancelled; waits for the work in flight; starts nothing new', async () => {
    const stop = new AbortController();
    const started: number[] = [];
    let settled = 0;
    const err = await mapLimit([0, 1, 2, 3], 2, async (i) => {
      started.push(i);
      try {
        if (i === 0) {
          await new Promise((res) => setImmediate(res));
          stop.abort();
          throw new Error('the real cause');
        }
        await new Promise((_, reject) => stop.signal.addEventListener('abort', () => reject(Object.assign(new Error('The operation was aborted'), { name: 'AbortError' }))));
      } finally {
        settled++;
      }
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('the real cause');
    expect(started).toEqual([0, 1]);
    expect(settled).toBe(2);
  });
});
