import { Readable } from 'node:stream';
import { NotFoundError, ObjectExistsError, UnavailableError } from '../../../src/errors';
import { MemoryStorage } from '../../../src/storage/memory';
import { withRetry, type RetryInfo, type RetryPolicy } from '../../../src/storage/retry';
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
function fakeTime(extra: Partial<RetryPolicy> = {}) {
  let t = 1_000_000;
  const sleeps: number[] = [];
  const retries: RetryInfo[] = [];
  const policy: RetryPolicy = {
    deadlineMs: 10_000,
    now: () => t,
    sleep: async (ms) => {
      sleeps.push(ms);
      t += ms;
    },
    onRetry: (info) => retries.push(info),
    ...extra,
  };
  return { policy, sleeps, retries, advance: (ms: number) => (t += ms) };
}

describeStorage('withRetry(memory)', async () => ({ storage: withRetry(new MemoryStorage(), { deadlineMs: 1000 }), cleanup: async () => {} }));

describe('withRetry', () => {
  afterEach(() => jest.restoreAllMocks());
  it('retries transient failures with full-jitter exponential backoff, then succeeds', async () => {
    const inner = new FlakyStorage();
    await inner.put('k', Buffer.from('v'));
    inner.failures.get.push(transient(), transient(), transient(), transient());
    const { policy, sleeps, retries } = fakeTime({ baseDelayMs: 100, maxDelayMs: 500 });
    const s = withRetry(inner, policy);
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
    const { policy } = fakeTime({ deadlineMs: 30_000 });
    const err = await withRetry(inner, policy).head('k').catch((e: unknown) => e);
    expect(err).toBe(errors[inner.calls.head - 1]);
    // Capped at 5 s per wait: a 30 s deadline allows at least 6 and far fewer than 1000 attempts.
    expect(inner.calls.head).toBeGreaterThan(6);
    expect(inner.calls.head).toBeLessThan(1000);
  });

  it('counts the deadline from the first attempt, including time spent in attempts', async () => {
    const inner = new FlakyStorage();
    const { policy, advance } = fakeTime({ deadlineMs: 1000 });
    const slow = async () => {
      advance(2000); // the attempt itself outlasts the deadline
      throw transient();
    };
    inner.head = slow;
    await expect(withRetry(inner, policy).head('k')).rejects.toBeInstanceOf(UnavailableError);
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
    const { policy, retries } = fakeTime();
    await expect(withRetry(inner, policy).put('k', Buffer.from('x'))).rejects.toBe(err);
    expect(inner.calls.put).toBe(1);
    expect(retries).toEqual([]);
  });

  it('retries a Buffer put but not a stream put', async () => {
    const inner = new FlakyStorage();
    const { policy } = fakeTime();
    const s = withRetry(inner, policy);
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
    const { policy, retries } = fakeTime();
    const s = withRetry(inner, policy);
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
    const { policy } = fakeTime();
    expect(await listKeys(withRetry(inner, policy), 'p/')).toEqual(['p/a', 'p/b']);
    expect(inner.calls.list).toBe(3);
  });

  it('does not retry a listing after entries were yielded', async () => {
    const inner = new FlakyStorage();
    for (const k of ['p/a', 'p/b', 'p/c']) await inner.put(k, Buffer.from(k));
    inner.failListAfter = 2;
    inner.failures.list.push(transient());
    const { policy } = fakeTime();
    const seen: string[] = [];
    const err = await (async () => {
      for await (const o of withRetry(inner, policy).list('p/')) seen.push(o.key);
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(seen).toEqual(['p/a', 'p/b']);
    expect(inner.calls.list).toBe(1);
  });

  it('releases the inner listing when the consumer stops early', async () => {
    const inner = new FlakyStorage();
    for (const k of ['p/a', 'p/b', 'p/c']) await inner.put(k, Buffer.from(k));
    for await (const o of withRetry(inner, fakeTime().policy).list('p/')) {
      expect(o.key).toBe('p/a');
      break;
    }
    expect(inner.listReturned).toBe(1);
  });

  it('stops retrying when the signal is aborted', async () => {
    const inner = new FlakyStorage();
    inner.failures.get.push(transient(), transient(), transient());
    jest.spyOn(Math, 'random').mockReturnValue(0.5); // a 5 s wait: the abort comes first
    const controller = new AbortController();
    const s = withRetry(inner, { deadlineMs: 60_000, baseDelayMs: 10_000, maxDelayMs: 10_000 });
    const p = s.get('k', { signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    const started = Date.now();
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(inner.calls.get).toBe(1);
  });

  it('delegates description, conditionalCreate, probe and close', async () => {
    const inner = new FlakyStorage();
    const { policy } = fakeTime();
    const s: Storage = withRetry(inner, policy);
    expect(s.description).toBe('memory');
    expect(s.conditionalCreate).toBe('enforced');
    inner.failures.probe.push(transient());
    expect(await s.probeConditionalCreate?.('scratch')).toBe(true);
    expect(inner.calls.probe).toBe(2);
    await s.close();
    expect(inner.closed).toBe(true);
    expect(withRetry(new MemoryStorage(), policy).probeConditionalCreate).toBeUndefined();
  });
});
