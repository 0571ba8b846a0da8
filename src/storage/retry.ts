import { setTimeout as delay } from 'node:timers/promises';
import { isTransient } from '../errors';
import type { ObjectInfo, PutOptions, Storage, StoredObject } from './storage';
import type { Readable } from 'node:stream';

export interface RetryInfo {
  op: string;
  key?: string;
  /** The attempt that just failed, from 1. */
  attempt: number;
  delayMs: number;
  error: unknown;
}

export interface RetryPolicy {
  /** No new attempt starts later than this many ms after the first one began. */
  deadlineMs: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  onRetry?: (info: RetryInfo) => void;
  /** Injectable for tests, together with `now`. */
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/**
 * Retries store operations that fail with a transient UnavailableError (restic's RetryBackend):
 * full-jitter exponential backoff (AWS architecture blog), bounded by a deadline rather than a count,
 * so a wal-push gives up in predictable time and PostgreSQL retries the segment later.
 *
 * What is not retried: NotFoundError, ObjectExistsError and non-transient errors (retrying cannot change
 * the answer); a put of a stream (it has been consumed); a listing after its first item (the consumer
 * has seen entries and a restart would repeat them). The attempt in flight at the deadline is not cut:
 * the store's own timeouts bound it.
 */
export function withRetry(storage: Storage, policy: RetryPolicy): Storage {
  const base = policy.baseDelayMs ?? 200;
  const cap = policy.maxDelayMs ?? 5000;
  const now = policy.now ?? Date.now;

  /** The delay before the next attempt, or undefined when `err` must be thrown now. */
  const backoff = (err: unknown, attempt: number, started: number, signal?: AbortSignal): number | undefined => {
    if (!isTransient(err) || signal?.aborted) return undefined;
    const ms = Math.floor(Math.random() * Math.min(cap, base * 2 ** (attempt - 1)));
    return now() + ms - started <= policy.deadlineMs ? ms : undefined;
  };
  const sleep = (ms: number, signal?: AbortSignal): Promise<void> => (policy.sleep ? policy.sleep(ms) : delay(ms, undefined, { signal }));

  async function run<T>(op: string, key: string | undefined, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const started = now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const ms = backoff(err, attempt, started, signal);
        if (ms === undefined) throw err;
        policy.onRetry?.({ op, key, attempt, delayMs: ms, error: err });
        await sleep(ms, signal);
      }
    }
  }

  async function* list(prefix: string, options?: { signal?: AbortSignal }): AsyncIterable<ObjectInfo> {
    const started = now();
    for (let attempt = 1; ; attempt++) {
      const it = storage.list(prefix, options)[Symbol.asyncIterator]();
      let first: IteratorResult<ObjectInfo>;
      try {
        first = await it.next();
      } catch (err) {
        const ms = backoff(err, attempt, started, options?.signal);
        if (ms === undefined) throw err;
        policy.onRetry?.({ op: 'list', key: prefix, attempt, delayMs: ms, error: err });
        await sleep(ms, options?.signal);
        continue;
      }
      if (first.done) return;
      try {
        yield first.value;
        yield* { [Symbol.asyncIterator]: () => it };
      } finally {
        await it.return?.(); // the consumer stopped early: let the store release its listing
      }
      return;
    }
  }

  const wrapped: Storage = {
    get description() {
      return storage.description;
    },
    get conditionalCreate() {
      return storage.conditionalCreate;
    },
    put: (key: string, body: Buffer | Readable, options?: PutOptions) =>
      Buffer.isBuffer(body) ? run('put', key, options?.signal, () => storage.put(key, body, options)) : storage.put(key, body, options),
    get: (key: string, options?: { signal?: AbortSignal }): Promise<StoredObject> => run('get', key, options?.signal, () => storage.get(key, options)),
    head: (key: string, options?: { signal?: AbortSignal }) => run('head', key, options?.signal, () => storage.head(key, options)),
    list,
    delete: (keys: readonly string[], options?: { signal?: AbortSignal }) =>
      run('delete', keys.length === 1 ? keys[0] : undefined, options?.signal, () => storage.delete(keys, options)),
    close: () => storage.close(),
  };
  const probe = storage.probeConditionalCreate?.bind(storage);
  // Each probe uses a fresh key and cleans up after itself, so a whole probe can be repeated.
  if (probe) wrapped.probeConditionalCreate = (scratch: string) => run('probe', scratch, undefined, () => probe(scratch));
  return wrapped;
}
