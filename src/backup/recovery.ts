/**
 * Recovery settings a restored data directory gets (PostgreSQL 12+: `recovery.signal` plus settings
 * in `postgresql.auto.conf`), and the choice of base backup for a target. Pure.
 */
import { NotFoundError, UsageError } from '../errors';
import { parsePgTimestamp } from '../postgres/timestamp';
import { parseLsn } from '../postgres/walName';
import type { BackupSentinel } from './sentinel';

export interface RecoveryTarget {
  readonly time?: string;
  readonly lsn?: string;
  readonly name?: string;
  readonly immediate?: boolean;
  readonly action?: 'pause' | 'promote' | 'shutdown';
  readonly timeline?: string;
}

/** Checks the options before anything is touched; returns the problems, each naming its option. */
export function checkRecoveryTarget(t: RecoveryTarget): string[] {
  const problems: string[] = [];
  const targets = [t.time, t.lsn, t.name, t.immediate ? 'immediate' : undefined].filter((x) => x !== undefined);
  if (targets.length > 1) problems.push('give at most one of --target-time, --target-lsn, --target-name, --target-immediate');
  if (t.time !== undefined && !parsePgTimestamp(t.time)) problems.push(`--target-time: ${JSON.stringify(t.time)} is not a timestamp (e.g. '2026-11-21 22:30:01+00')`);
  if (t.lsn !== undefined) {
    try {
      parseLsn(t.lsn);
    } catch {
      problems.push(`--target-lsn: ${JSON.stringify(t.lsn)} is not an LSN (e.g. 0/3000060)`);
    }
  }
  if (t.name !== undefined && (t.name === '' || t.name.length > 63)) problems.push('--target-name must be 1 to 63 characters');
  if (t.timeline !== undefined && !/^(latest|current|\d+)$/.test(t.timeline)) problems.push(`--target-timeline must be latest, current or a number, got ${JSON.stringify(t.timeline)}`);
  return problems;
}

/** `postgresql.auto.conf` lines for recovery; values quoted as PostgreSQL's config parser expects. */
export function recoverySettings(restoreCommand: string, t: RecoveryTarget): string[] {
  const lines = [`restore_command = ${quote(restoreCommand)}`];
  if (t.time !== undefined) lines.push(`recovery_target_time = ${quote(t.time)}`);
  if (t.lsn !== undefined) lines.push(`recovery_target_lsn = ${quote(t.lsn)}`);
  if (t.name !== undefined) lines.push(`recovery_target_name = ${quote(t.name)}`);
  if (t.immediate) lines.push(`recovery_target = 'immediate'`);
  if (t.action !== undefined) lines.push(`recovery_target_action = ${quote(t.action)}`);
  if (t.timeline !== undefined) lines.push(`recovery_target_timeline = ${quote(t.timeline)}`);
  return lines;
}

/** A value for postgresql.conf: single quotes, embedded quotes doubled. */
export function quote(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Shell-quotes one word for restore_command (run by /bin/sh). */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_\-./=:@%+]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * For LATEST with a target time: the newest backup that finished before the target (a backup is
 * consistent only at its stop point). Refuses a target older than every backup.
 */
export function chooseForTargetTime(backups: readonly BackupSentinel[], targetTime: string): BackupSentinel {
  const target = parsePgTimestamp(targetTime);
  if (!target) throw new UsageError(`--target-time: ${JSON.stringify(targetTime)} is not a timestamp`);
  const eligible = backups.filter((b) => Date.parse(b.finish_time) <= target.epochMs);
  const chosen = eligible[eligible.length - 1];
  const oldest = backups[0];
  if (!oldest) throw new NotFoundError('there is no complete backup to restore');
  if (!chosen) {
    throw new UsageError(`--target-time ${targetTime} is before the end of the oldest backup (${oldest.name}, finished ${oldest.finish_time}); no backup can reach it`);
  }
  return chosen;
}

/** With a named backup and a target time: the backup must have finished before the target. */
export function checkBackupReachesTime(backup: BackupSentinel, targetTime: string): void {
  const target = parsePgTimestamp(targetTime);
  if (target && Date.parse(backup.finish_time) > target.epochMs) {
    throw new UsageError(`--target-time ${targetTime} is before backup ${backup.name} finished (${backup.finish_time}); choose an older backup or LATEST`);
  }
}
