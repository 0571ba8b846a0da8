/**
 * The composition root: turns a Config into the dependencies operations receive. The only place
 * that chooses implementations; everything below takes what it needs as arguments.
 */
import { hostname } from 'node:os';
import type { CodecSet } from './codec/chain';
import { makeCodecs } from './codec/make';
import type { Config } from './config';
import type { Logger } from './log';
import { openStorage } from './storage/open';
import type { Storage } from './storage/storage';
import { RetryBudget } from './util/retryBudget';
import { WALTS_VERSION } from './version';

export { makeCodecs };

export interface Deps {
  readonly storage: Storage;
  readonly codecs: CodecSet;
  readonly log: Logger;
  /** The command's one retry budget: the store's retries and any retry loop above it share it. */
  readonly retry: RetryBudget;
  readonly host: string;
  readonly version: string;
  now(): Date;
}

export function makeDeps(config: Config, log: Logger, retry: RetryBudget = new RetryBudget({ deadlineMs: config.store.retryDeadlineMs, window: 'outage' })): Deps {
  return {
    storage: openStorage(config.store, log, retry),
    codecs: makeCodecs(config),
    log,
    retry,
    host: hostname(),
    version: WALTS_VERSION,
    now: () => new Date(),
  };
}
