import pino from 'pino';
import type { Config } from '../../src/config';
import { makeCodecs, type Deps } from '../../src/deps';
import type { Storage } from '../../src/storage/storage';
import { RetryBudget } from '../../src/util/retryBudget';

/** Dependencies for calling operations in-process, with a silent logger unless WALTS_TEST_LOG is set. */
export function testDeps(storage: Storage, codecConfig: Partial<Pick<Config, 'compression' | 'pgp'>> = {}): Deps {
  return {
    storage,
    codecs: makeCodecs({ compression: codecConfig.compression ?? 'lz4', pgp: codecConfig.pgp ?? {} }),
    log: pino({ level: process.env['WALTS_TEST_LOG'] ?? 'silent' }),
    // Retries above the store take no time in unit tests.
    retry: new RetryBudget({ deadlineMs: 1000, clock: { sleep: async () => {} } }),
    host: 'test-host',
    version: 'test',
    now: () => new Date('2026-11-21T12:00:00Z'),
  };
}
