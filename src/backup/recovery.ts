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
  if (t.name !== undefined && (t.name === '' || Buffer.byteLength(t.name) > 63)) problems.push('--target-name must be 1 to 63 bytes');
  if (t.timeline !== undefined && !/^(latest|current|[1-9]\d{0,9})$/.test(t.timeline)) problems.push(`--target-timeline must be latest, current or a number, got ${JSON.stringify(t.timeline)}`);
  for (const [option, value] of [['--target-time', t.time], ['--target-name', t.name]] as const) {
    if (value !== undefined && !isConfigValue(value)) problems.push(`${option} must not contain a newline, NUL or other control character`);
  }
  return problems;
}

/** Checks --restore-command: a real command, one line (PostgreSQL runs it with /bin/sh for every WAL file). */
export function checkRestoreCommand(command: string): string[] {
  if (command.trim() === '') return ['--restore-command must not be empty (omit it for the default, or give --no-recovery for files only)'];
  if (!isConfigValue(command)) return ['--restore-command must not contain a newline, NUL or other control character'];
  if (!command.includes('%p')) return ['--restore-command must contain %p (where PostgreSQL wants the file)'];
  return [];
}

/** A value postgresql.auto.conf can hold on one line: no control characters (newline, CR, NUL, ...). */
export function isConfigValue(value: string): boolean {
  return !/[\x00-\x1f\x7f]/.test(value);
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

/**
 * A value for postgresql.conf / postgresql.auto.conf. PostgreSQL's configuration scanner reads a
 * quoted string with C-like escapes: a backslash escapes the next character (`\x` reads as `x`) and
 * `''` is a quote. So backslashes are doubled and quotes doubled. A value with a control character
 * (a newline ends the line, NUL ends the string) cannot be written: refused, never mangled.
 */
export function quote(value: string): string {
  if (!isConfigValue(value)) throw new UsageError(`a configuration value cannot contain a newline, NUL or other control character: ${JSON.stringify(value)}`);
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
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
