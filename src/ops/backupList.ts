/** backup-list and backup-show: what is in the store, oldest first, from the sentinels alone. */
import { findBackup, listBackups } from '../archive/catalog';
import type { BackupSentinel } from '../backup/sentinel';
import type { Deps } from '../deps';

export function backupList(deps: Deps, signal?: AbortSignal): Promise<BackupSentinel[]> {
  return listBackups(deps.storage, signal);
}

export function backupShow(deps: Deps, which: string, signal?: AbortSignal): Promise<BackupSentinel> {
  return findBackup(deps.storage, which, signal);
}
