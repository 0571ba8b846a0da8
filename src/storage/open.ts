import type { StoreConfig } from '../config';
import { describeError } from '../errors';
import { FsStorage } from './fs';
import { withRetry } from './retry';
import type { Storage } from './storage';

export interface StorageLog {
  warn(obj: object, msg: string): void;
}

/** The configured store, with deadline-bounded retries of transient failures. */
export function openStorage(config: StoreConfig, log?: StorageLog): Storage {
  let storage: Storage;
  if (config.kind === 'file') {
    if (!config.directory) throw new RangeError(`file store without a directory: ${config.url}`);
    storage = new FsStorage(config.directory);
  } else {
    // Loaded only here: requiring the AWS SDK costs ~50 ms, paid once per WAL segment by wal-push,
    // and a directory store must not pay it at all.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { S3Storage } = require('./s3') as typeof import('./s3');
    storage = new S3Storage(config, { log });
  }
  return withRetry(storage, {
    deadlineMs: config.retryDeadlineMs,
    onRetry: ({ op, key, attempt, delayMs, error }) =>
      log?.warn({ store: storage.description, op, key, attempt, delayMs, err: describeError(error) }, 'store request failed, retrying'),
  });
}
