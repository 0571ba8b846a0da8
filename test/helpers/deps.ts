import pino from 'pino';
import type { ArchiveEncryption, ArchiveRecord } from '../../src/archive/archive';
import { ARCHIVE_KEY } from '../../src/archive/layout';
import type { Config } from '../../src/config';
import { makeCodecs, type Deps } from '../../src/deps';
import { MemoryStorage } from '../../src/storage/memory';
import type { Storage } from '../../src/storage/storage';
import { RetryBudget } from '../../src/util/retryBudget';

export interface TestDepsOptions extends Partial<Pick<Config, 'compression' | 'pgp'>> {
  /**
   * Memory stores are made archives here, as `walts init` would (every command refuses a store
   * without the archive record). `false` leaves the store as given, for tests of that refusal.
   */
  readonly archive?: false | ArchiveEncryption;
}

/** Dependencies for calling operations in-process, with a silent logger unless WALTS_TEST_LOG is set. */
export function testDeps(storage: Storage, options: TestDepsOptions = {}): Deps {
  if (options.archive !== false && storage instanceof MemoryStorage) initMemoryArchive(storage, options.archive ?? { method: 'none' });
  return {
    storage,
    codecs: makeCodecs({ compression: options.compression ?? 'lz4', pgp: options.pgp ?? {} }),
    log: pino({ level: process.env['WALTS_TEST_LOG'] ?? 'silent' }),
    // Retries above the store take no time in unit tests.
    retry: new RetryBudget({ deadlineMs: 1000, clock: { sleep: async () => {} } }),
    host: 'test-host',
    version: 'test',
    now: () => new Date('2026-11-21T12:00:00Z'),
  };
}

/** What `walts init` writes, placed directly (no put: tests that count puts stay unaffected). Keeps an existing record. */
export function initMemoryArchive(storage: MemoryStorage, encryption: ArchiveEncryption = { method: 'none' }): void {
  if (storage.objects.has(ARCHIVE_KEY)) return;
  const record: ArchiveRecord = { format: 1, created_at: '2026-11-21T11:00:00.000Z', created_by: 'test-host', walts_version: 'test', encryption };
  storage.objects.set(ARCHIVE_KEY, { data: Buffer.from(JSON.stringify(record)), metadata: {}, lastModified: new Date('2026-11-21T11:00:00Z') });
}

/** A memory store that counts puts, so "nothing uploaded" can be asserted. */
export function countingStore(): MemoryStorage & { puts: string[] } {
  const store = new MemoryStorage() as MemoryStorage & { puts: string[] };
  store.puts = [];
  const put = store.put.bind(store);
  store.put = async (key, body, options) => {
    store.puts.push(key);
    return put(key, body, options);
  };
  return store;
}
