import type { StoreConfig } from '../config';
import { describeError } from '../errors';
import { RetryBudget } from '../util/retryBudget';
import { FsStorage } from './fs';
import { withRetry } from './retry';
import type { Storage } from './storage';

export interface StorageLog {
  warn(obj: object, msg: string): void;
}

/**
 * The configured store, with transient failures retried under `budget`: the command's one retry
 * budget, shared with every other layer that retries (without one: WALTS_RETRY_DEADLINE per outage).
 */
export function openStorage(
  config: StoreConfig,
  log?: StorageLog,
  budget: RetryBudget = new RetryBudget({ deadlineMs: config.retryDeadlineMs, window: 'outage' }),
): Storage {
  let storage: Storage;
  if (config.kind === 'file') {
    if (!config.directory) throw new RangeError(`file store without a directory: ${config.url}`);
    storage = new FsStorage(config.directory);
  } else {
    // Loaded only here: a directory store must not pay for S3 code at all. (s3.ts itself loads the
    // AWS SDK only for what its lean transport does not do: docs/performance.md, "A lean S3 transport".)
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { S3Storage } = require('./s3') as typeof import('./s3');
    storage = new S3Storage(config, { log, budget });
  }
  return withRetry(storage, budget, ({ op, key, attempt, delayMs, remainingMs, error }) =>
    log?.warn(
      { store: storage.description, op, key, attempt, delay_ms: delayMs, remaining_ms: remainingMs, err: describeError(error) },
      `store request failed, retrying in ${delayMs} ms (${(remainingMs / 1000).toFixed(1)} s left of the retry deadline)`,
    ),
  );
}
