/**
 * The list of base backups in a store: a backup exists when its sentinel does. Sentinels are small
 * plain JSON objects, read in parallel.
 */
import { compareByStart, parseSentinel, type BackupSentinel } from '../backup/sentinel';
import { NotFoundError, UsageError } from '../errors';
import type { Storage } from '../storage/storage';
import { readAll } from '../util/streams';
import { BACKUP_ROOT, backupKeys, isBackupName, parseBackupKey } from './layout';

/** Every complete backup, oldest first (by start LSN). */
export async function listBackups(storage: Storage, signal?: AbortSignal): Promise<BackupSentinel[]> {
  const names = new Set<string>();
  const deleting = new Set<string>();
  for await (const o of storage.list(`${BACKUP_ROOT}/`, { signal })) {
    const parsed = parseBackupKey(o.key);
    if (parsed?.part === 'sentinel') names.add(parsed.name);
    if (parsed?.part === 'deleting') deleting.add(parsed.name);
  }
  // A tombstoned backup is being deleted (or a delete was interrupted): it is gone already.
  for (const name of deleting) names.delete(name);
  const sentinels = await mapLimit([...names], 8, (name) => readSentinel(storage, name, signal));
  return sentinels.sort(compareByStart);
}

export async function readSentinel(storage: Storage, name: string, signal?: AbortSignal): Promise<BackupSentinel> {
  const key = backupKeys.sentinel(name);
  const obj = await storage.get(key, { signal });
  return parseSentinel((await readAll(obj.body, 16 << 20)).toString('utf8'), key);
}

/** Resolves `LATEST` or a backup name to its sentinel, with a clear message when there is none. */
export async function findBackup(storage: Storage, which: string, signal?: AbortSignal): Promise<BackupSentinel> {
  if (which === 'LATEST') {
    const all = await listBackups(storage, signal);
    const latest = all[all.length - 1];
    if (!latest) throw new NotFoundError(`no complete backup in ${storage.description}`);
    return latest;
  }
  if (!isBackupName(which)) throw new UsageError(`${JSON.stringify(which)} is not a backup name (base_<24 hex>_<8 hex>) or LATEST`);
  try {
    return await readSentinel(storage, which, signal);
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(`backup ${which} does not exist (or never completed) in ${storage.description}`);
    throw err;
  }
}

/**
 * Runs `fn` over `items` with at most `limit` at a time, keeping the order of results. After the
 * first failure no new item starts; the ones in flight are awaited (so nothing still runs when this
 * returns) and the first failure is thrown: a sibling's later error (often the AbortError of work
 * the caller cancelled because of that failure) never hides the cause.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
  return results;
}
