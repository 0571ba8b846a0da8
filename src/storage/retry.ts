import { UnavailableError } from '../errors';
import { retrying, type RetryBudget, type RetryInfo } from '../util/retryBudget';
import type { ObjectInfo, PutOptions, Storage, StoredObject } from './storage';
import type { Readable } from 'node:stream';

export type { RetryInfo } from '../util/retryBudget';

/**
 * Retries store operations that fail with a transient UnavailableError (restic's RetryBackend),
 * under the command's one RetryBudget (util/retryBudget.ts): full-jitter backoff, bounded by the
 * deadline rather than a count, so a wal-push gives up in predictable time and PostgreSQL retries
 * the segment later, and a wal-fetch stops recovery in the time the operator configured.
 *
 * What is not retried: NotFoundError, ObjectExistsError and non-transient errors (retrying cannot change
 * the answer); a put of a stream (it has been consumed); a listing after its first item (the consumer
 * has seen entries and a restart would repeat them).
 *
 * Each attempt is cut when it outlives what is left of the budget (at least the budget's minimum
 * attempt time): a request hanging on a dead connection at the deadline does not add its whole I/O
 * timeout. A `get` is cut only until its answer starts; the body's reads are bounded by the store's
 * idle timeout.
 */
export function withRetry(storage: Storage, budget: RetryBudget, onRetry?: (info: RetryInfo) => void): Storage {
  /** One attempt of `fn` with a signal that also fires when the attempt outlives the budget. */
  async function attempt<T>(op: string, key: string | undefined, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const cut = new AbortController();
    const ms = budget.attemptTimeoutMs();
    const timer = setTimeout(() => cut.abort(), ms);
    timer.unref?.();
    try {
      return await fn(signal ? AbortSignal.any([signal, cut.signal]) : cut.signal);
    } catch (err) {
      if (cut.signal.aborted && !signal?.aborted) {
        throw new UnavailableError(`${storage.description}: ${op}${key ? ` ${key}` : ''}: no answer within ${ms} ms (the rest of the retry deadline)`, { transient: true, cause: err });
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  function run<T>(op: string, key: string | undefined, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return retrying(budget, { op, key, signal, onRetry }, () => attempt(op, key, signal, fn));
  }

  async function* list(prefix: string, options?: { signal?: AbortSignal }): AsyncIterable<ObjectInfo> {
    let it!: AsyncIterator<ObjectInfo>;
    // Only the first page is retried (see above); later pages are bounded by the store's timeouts.
    // The cut applies to the first page only (its timer is cleared once the page is in).
    const first = await run('list', prefix, options?.signal, (signal) => {
      it = storage.list(prefix, { signal })[Symbol.asyncIterator]();
      return it.next();
    });
    if (first.done) return;
    try {
      yield first.value;
      yield* { [Symbol.asyncIterator]: () => it };
    } finally {
      await it.return?.(); // the consumer stopped early: let the store release its listing
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
      Buffer.isBuffer(body) ? run('put', key, options?.signal, (signal) => storage.put(key, body, { ...options, signal })) : storage.put(key, body, options),
    get: (key: string, options?: { signal?: AbortSignal }): Promise<StoredObject> =>
      // The cut's timer is cleared once the answer starts, so it never fires on a body being read.
      run('get', key, options?.signal, (signal) => storage.get(key, { signal })),
    head: (key: string, options?: { signal?: AbortSignal }) => run('head', key, options?.signal, (signal) => storage.head(key, { signal })),
    list,
    delete: (keys: readonly string[], options?: { signal?: AbortSignal }) =>
      run('delete', keys.length === 1 ? keys[0] : undefined, options?.signal, (signal) => storage.delete(keys, { signal })),
    close: () => storage.close(),
  };
  const probe = storage.probeConditionalCreate?.bind(storage);
  // Each probe uses a fresh key and cleans up after itself, so a whole probe can be repeated.
  if (probe) wrapped.probeConditionalCreate = (scratch: string) => run('probe', scratch, undefined, () => probe(scratch));
  return wrapped;
}

