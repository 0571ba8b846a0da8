/** backup-list and backup-show: what is in the store, oldest first, from the sentinels alone. */
import { openArchive } from '../archive/archive';
import { findBackup, listBackups } from '../archive/catalog';
import type { BackupSentinel } from '../backup/sentinel';
import type { Deps } from '../deps';

/** An empty list is only said of an archive known to exist (not of a missing or unmounted store). */
export async function backupList(deps: Deps, signal?: AbortSignal): Promise<BackupSentinel[]> {
  await openArchive(deps.storage, signal);
  return listBackups(deps.storage, signal);
}

export async function backupShow(deps: Deps, which: string, signal?: AbortSignal): Promise<BackupSentinel> {
  await openArchive(deps.storage, signal);
  return findBackup(deps.storage, which, signal);
}
