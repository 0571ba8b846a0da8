import { Readable } from 'node:stream';
import { NotFoundError, ObjectExistsError, UnavailableError } from '../../../src/errors';
import { MemoryStorage } from '../../../src/storage/memory';
import { withRetry } from '../../../src/storage/retry';
import { RetryBudget, retrying, type RetryBudgetOptions, type RetryInfo } from '../../../src/util/retryBudget';
import type { ObjectInfo, Storage } from '../../../src/storage/storage';
import { readAll } from '../../../src/util/streams';
import { describeStorage, listKeys } from '../../contract/storage';

const transient = () => new UnavailableError('s3://b/p: get k: SlowDown 503', { transient: true });
const permanent = () => new UnavailableError('s3://b/p: get k: AccessDenied 403', { transient: false });

type Op = 'put' | 'get' | 'head' | 'list' | 'delete' | 'probe';

/** A MemoryStorage whose next calls of an operation fail with queued errors. */
class FlakyStorage extends MemoryStorage {
  readonly failures: Record<Op, unknown[]> = { put: [], get: [], head: [], list: [], delete: [], probe: [] };
  readonly calls: Record<Op, number> = { put: 0, get: 0, head: 0, list: 0, delete: 0, probe: 0 };
  /** list: fail after yielding this many entries (with the next queued list error). */
  failListAfter?: number;
  listReturned = 0;
  closed = false;

  private hit(op: Op): void {
    this.calls[op]++;
    const err = this.failures[op].shift();
    if (err) throw err;
  }
  override async put(...args: Parameters<MemoryStorage['put']>) {
    this.hit('put');
    return super.put(...args);
  }
  override async get(...args: Parameters<MemoryStorage['get']>) {
    this.hit('get');
    return super.get(...args);
  }
  override async head(...args: Parameters<MemoryStorage['head']>) {
    this.hit('head');
    return super.head(...args);
  }
  override async delete(...args: Parameters<MemoryStorage['delete']>) {
    this.hit('delete');
    return super.delete(...args);
  }
  override async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.calls.list++;
    let n = 0;
    try {
      for await (const o of super.list(prefix)) {
        if (this.failListAfter === n) {
          const err = this.failures.list.shift();
          if (err) throw err;
        }
        n++;
        yield o;
      }
      if (this.failListAfter === undefined || this.failListAfter >= n) {
        const err = this.failures.list.shift();
        if (err) throw err;
      }
    } finally {
      this.listReturned++;
    }
  }
  async probeConditionalCreate(): Promise<boolean> {
    this.hit('probe');
    return true;
  }
  override async close() {
    this.closed = true;
  }
}

/** A fake clock: sleeping advances it, so deadlines are exact and tests take no time. */
function fakeTime(extra: Partial<RetryBudgetOptions> = {}, random: () => number = Math.random) {
  let t = 1_000_000;
  const sleeps: number[] = [];
  const retries: RetryInfo[] = [];
  const budget = new RetryBudget({
    deadlineMs: 10_000,
    window: 'command',
    clock: {
      now: () => t,
      sleep: async (ms) => {
        sleeps.push(ms);
        t += ms;
      },
      random,
    },
    ...extra,
  });
  const onRetry = (info: RetryInfo) => retries.push(info);
  const wrap = (inner: Storage) => withRetry(inner, budget, onRetry);
  return { budget, wrap, sleeps, retries, advance: (ms: number) => (t += ms), now: () => t };
}

describeStorage('withRetry(memory)', async () => ({ storage: withRetry(new MemoryStorage(), new RetryBudget({ deadlineMs: 1000 })), cleanup: async () => {} }));

describe('withRetry', () => {
  afterEach(() => jest.restoreAllMocks());
  it('retries transient failures with full-jitter exponential backoff, then succeeds', async () => {
    const inner = new FlakyStorage();
    await inner.put('k', Buffer.from('v'));
    inner.failures.get.push(transient(), transient(), transient(), transient());
    const { wrap, sleeps, retries } = fakeTime({ baseDelayMs: 100, maxDelayMs: 500 });
    const s = wrap(inner);
    expect((await readAll((await s.get('k')).body)).toString()).toBe('v');
    expect(inner.calls.get).toBe(5);
    expect(retries.map((r) => [r.op, r.key, r.attempt])).toEqual([1, 2, 3, 4].map((a) => ['get', 'k', a]));
    // Attempt n waits uniformly in [0, min(cap, base * 2^(n-1))).
    [100, 200, 400, 500].forEach((bound, i) => {
      expect(sleeps[i]).toBeGreaterThanOrEqual(0);
      expect(sleeps[i]).toBeLessThan(bound);
    });
    expect(retries[0]?.error).toBeInstanceOf(UnavailableError);
  });

  it('gives up at the deadline and rethrows the last error', async () => {
    const inner = new FlakyStorage();
    const errors = Array.from({ length: 1000 }, (_, i) => new UnavailableError(`fail ${i}`, { transient: true }));
    inner.failures.head.push(...errors);
    const { wrap } = fakeTime({ deadlineMs: 30_000 });
    const err = await wrap(inner).head('k').catch((e: unknown) => e);
    expect(err).toBe(errors[inner.calls.head - 1]);
    // Capped at 5 s per wait: a 30 s deadline allows at least 6 and far fewer than 1000 attempts.
    expect(inner.calls.head).toBeGreaterThan(6);
    expect(inner.calls.head).toBeLessThan(1000);
  });

  it('counts the deadline from the first attempt, including time spent in attempts', async () => {
    const inner = new FlakyStorage();
    const { wrap, advance } = fakeTime({ deadlineMs: 1000 });
    const slow = async () => {
      advance(2000); // the attempt itself outlasts the deadline
      throw transient();
    };
    inner.head = slow;
    await expect(wrap(inner).head('k')).rejects.toBeInstanceOf(UnavailableError);
  });

  it.each([
    ['NotFoundError', () => new NotFoundError('k not found')],
    ['ObjectExistsError', () => new ObjectExistsError('k')],
    ['non-transient UnavailableError', permanent],
    ['RangeError', () => new RangeError('invalid storage key')],
  ])('never retries %s', async (_name, make) => {
    const inner = new FlakyStorage();
    const err = make();
    inner.failures.put.push(err);
    const { wrap, retries } = fakeTime();
    await expect(wrap(inner).put('k', Buffer.from('x'))).rejects.toBe(err);
    expect(inner.calls.put).toBe(1);
    expect(retries).toEqual([]);
  });

  it('retries a Buffer put but not a stream put', async () => {
    const inner = new FlakyStorage();
    const { wrap } = fakeTime();
    const s = wrap(inner);
    inner.failures.put.push(transient());
    await s.put('buf', Buffer.from('x'), { metadata: { a: 'b' } });
    expect(inner.calls.put).toBe(2);
    expect(await s.head('buf')).toMatchObject({ size: 1, metadata: { a: 'b' } });

    inner.failures.put.push(transient());
    await expect(s.put('stream', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({ transient: true });
    expect(inner.calls.put).toBe(3);
  });

  it('retries delete and head', async () => {
    const inner = new FlakyStorage();
    const { wrap, retries } = fakeTime();
    const s = wrap(inner);
    inner.failures.delete.push(transient());
    inner.failures.head.push(transient());
    await s.delete(['a', 'b']);
    expect(await s.head('a')).toBeUndefined();
    expect(retries.map((r) => [r.op, r.key])).toEqual([
      ['delete', undefined],
      ['head', 'a'],
    ]);
  });

  it('retries a listing that fails before its first entry', async () => {
    const inner = new FlakyStorage();
    for (const k of ['p/a', 'p/b']) await inner.put(k, Buffer.from(k));
    inner.failListAfter = 0;
    inner.failures.list.push(transient(), transient());
    const { wrap } = fakeTime();
    expect(await listKeys(wrap(inner), 'p/')).toEqual(['p/a', 'p/b']);
    expect(inner.calls.list).toBe(3);
  });

  it('does not retry a listing after entries were yielded', async () => {
    const inner = new FlakyStorage();
    for (const k of ['p/a', 'p/b', 'p/c']) await inner.put(k, Buffer.from(k));
    inner.failListAfter = 2;
    inner.failures.list.push(transient());
    const { wrap } = fakeTime();
    const seen: string[] = [];
    const err = await (async () => {
      for await (const o of wrap(inner).list('p/')) seen.push(o.key);
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(seen).toEqual(['p/a', 'p/b']);
    expect(inner.calls.list).toBe(1);
  });

  it('releases the inner listing when the consumer stops early', async () => {
    const inner = new FlakyStorage();
    for (const k of ['p/a', 'p/b', 'p/c']) await inner.put(k, Buffer.from(k));
    for await (const o of fakeTime().wrap(inner).list('p/')) {
      expect(o.key).toBe('p/a');
      break;
    }
    expect(inner.listReturned).toBe(1);
  });

  it('stops retrying when the signal is aborted', async () => {
    const inner = new FlakyStorage();
    inner.failures.get.push(transient(), transient(), transient());
    const controller = new AbortController();
    // The wait for the second attempt is where the abort lands: it must end the wait, not run it out.
    let waited: ((v: void) => void) | undefined;
    const budget = new RetryBudget({
      deadlineMs: 60_000,
      clock: {
        sleep: (_ms, signal) =>
          new Promise<void>((resolve, reject) => {
            waited = resolve;
            signal?.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })), { once: true });
            controller.abort();
          }),
      },
    });
    await expect(withRetry(inner, budget).get('k', { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(waited).toBeDefined();
    expect(inner.calls.get).toBe(1);
  });

  it('delegates description, conditionalCreate, probe and close', async () => {
    const inner = new FlakyStorage();
    const { wrap } = fakeTime();
    const s: Storage = wrap(inner);
    expect(s.description).toBe('memory');
    expect(s.conditionalCreate).toBe('enforced');
    inner.failures.probe.push(transient());
    expect(await s.probeConditionalCreate?.('scratch')).toBe(true);
    expect(inner.calls.probe).toBe(2);
    await s.close();
    expect(inner.closed).toBe(true);
    expect(wrap(new MemoryStorage()).probeConditionalCreate).toBeUndefined();
  });
});

const sdkError = (message: string) => Object.assign(new Error(message), { $metadata: {} }) as never;

describe('one retry budget per command', () => {
  it('gives up at the deadline (not before, not a backoff later): the last wait is cut to end at it', async () => {
    const inner = new FlakyStorage();
    inner.failures.get.push(...Array.from({ length: 1000 }, () => transient()));
    // random() near 1: every wait is the longest allowed, so an uncut wait would overshoot.
    const { wrap, now, sleeps } = fakeTime({ deadlineMs: 10_000 }, () => 0.999);
    const start = now();
    await expect(wrap(inner).get('k')).rejects.toBeInstanceOf(UnavailableError);
    expect(now() - start).toBe(10_000);
    expect(Math.max(...sleeps)).toBeLessThanOrEqual(5000);
  });

  it('is shared by every layer: a loop above the store does not add its own deadline', async () => {
    const inner = new FlakyStorage();
    inner.failures.get.push(...Array.from({ length: 1000 }, () => transient()));
    const { wrap, budget, now } = fakeTime({ deadlineMs: 10_000 });
    const s = wrap(inner);
    const start = now();
    let outer = 0;
    await expect(
      retrying(budget, { op: 'whole-fetch' }, async () => {
        outer++;
        await s.get('k');
      }),
    ).rejects.toBeInstanceOf(UnavailableError);
    expect(outer).toBe(1); // the store's retries spent the budget; no second round of them
    expect(now() - start).toBe(10_000);
  });

  it('counts time spent inside attempts, and says how long is left in each retry', async () => {
    const inner = new FlakyStorage();
    const { wrap, advance, retries, now } = fakeTime({ deadlineMs: 10_000, baseDelayMs: 100, maxDelayMs: 100 }, () => 0.5);
    inner.head = async () => {
      advance(3000);
      throw transient();
    };
    const start = now();
    await expect(wrap(inner).head('k')).rejects.toBeInstanceOf(UnavailableError);
    // 3 s per attempt + 50 ms waits: attempts start at 0, 3.05, 6.1 and 9.15 s; none after 10 s.
    expect(retries.map((r) => r.remainingMs)).toEqual([6950, 3900, 850]);
    expect(now() - start).toBe(12_150);
  });

  it('cuts an attempt that outlives what is left of the deadline', async () => {
    const inner = new FlakyStorage();
    inner.head = (_key: string, options?: { signal?: AbortSignal }) =>
      new Promise<undefined>((_resolve, reject) => options?.signal?.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))));
    const budget = new RetryBudget({ deadlineMs: 50, minAttemptMs: 10, window: 'command' });
    const err = await withRetry(inner, budget).head('k').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/no answer within \d+ ms \(the rest of the retry deadline\)/);
  });

  it("'outage' window: each run of failures gets the whole deadline again after a success", async () => {
    const inner = new FlakyStorage();
    await inner.put('k', Buffer.from('v'));
    const { wrap, advance } = fakeTime({ deadlineMs: 10_000, window: 'outage' });
    const s = wrap(inner);
    advance(60_000); // an hour-long backup would be past a command-wide deadline
    inner.failures.head.push(transient(), transient());
    expect(await s.head('k')).toMatchObject({ size: 1 });
    expect(inner.calls.head).toBe(3);
  });

  it("'command' window: no retry once the command has used its deadline", async () => {
    const inner = new FlakyStorage();
    const { wrap, advance, retries } = fakeTime({ deadlineMs: 10_000 });
    advance(10_001);
    inner.failures.head.push(transient());
    await expect(wrap(inner).head('k')).rejects.toBeInstanceOf(UnavailableError);
    expect(retries).toEqual([]);
  });

  it('the S3 multipart client retries parts under the same budget, never 4xx', async () => {
    const { budgetRetryStrategy } = await import('../../../src/storage/s3');
    const { budget, advance } = fakeTime({ deadlineMs: 10_000 }, () => 0.5);
    const seen: number[] = [];
    const strategy = budgetRetryStrategy(budget, (i) => seen.push(i.remaining_ms));
    const t0 = await strategy.acquireInitialRetryToken('');
    const t1 = await strategy.refreshRetryTokenForRetry(t0, { errorType: 'TRANSIENT' });
    expect(t1.getRetryCount()).toBe(1);
    expect(t1.getRetryDelay()).toBe(100);
    await expect(strategy.refreshRetryTokenForRetry(t1, { errorType: 'CLIENT_ERROR', error: sdkError('403') })).rejects.toThrow('403');
    advance(10_000);
    await expect(strategy.refreshRetryTokenForRetry(t1, { errorType: 'SERVER_ERROR', error: sdkError('503') })).rejects.toThrow('503');
    expect(seen).toEqual([9900]);
  });
});

describe("'outage' window with requests in parallel", () => {
  it('a request that keeps failing gives up at the deadline even while others succeed', async () => {
    const inner = new FlakyStorage();
    await inner.put('ok', Buffer.from('v'));
    inner.failures.get.push(...Array.from({ length: 1000 }, () => transient()));
    const { wrap, now } = fakeTime({ deadlineMs: 10_000, window: 'outage' });
    const s = wrap(inner);
    // Every wait of the failing get lets a successful head through (which restarts the outage window).
    const sleepy = inner.get.bind(inner);
    inner.get = async (key: string) => {
      await s.head('ok');
      return sleepy(key);
    };
    const start = now();
    await expect(s.get('k')).rejects.toBeInstanceOf(UnavailableError);
    expect(now() - start).toBeLessThanOrEqual(10_000);
  });
});
