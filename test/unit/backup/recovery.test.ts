import { execFileSync } from 'node:child_process';
import { checkBackupReachesTime, checkRecoveryTarget, checkRestoreCommand, chooseForTargetTime, quote, recoverySettings, shellWord } from '../../../src/backup/recovery';
import type { BackupSentinel } from '../../../src/backup/sentinel';
import { UsageError } from '../../../src/errors';

function backup(name: string, start: string, finish: string): BackupSentinel {
  return { name, start_time: start, finish_time: finish } as Partial<BackupSentinel> as BackupSentinel;
}

// Oldest first, as listBackups returns them.
const BACKUPS = [
  backup('base_000000010000000000000004_00000028', '2026-11-20T22:00:00.000Z', '2026-11-20T22:10:00.000Z'),
  backup('base_000000010000000000000009_00000028', '2026-11-21T22:00:00.000Z', '2026-11-21T22:10:00.000Z'),
  backup('base_00000001000000000000000E_00000028', '2026-11-22T22:00:00.000Z', '2026-11-22T22:10:00.000Z'),
];

describe('checkRecoveryTarget', () => {
  it('accepts no target, and each single valid target', () => {
    expect(checkRecoveryTarget({})).toEqual([]);
    expect(checkRecoveryTarget({ time: '2026-11-21 22:30:01+00', action: 'promote', timeline: 'latest' })).toEqual([]);
    expect(checkRecoveryTarget({ lsn: '0/3000060', timeline: '2' })).toEqual([]);
    expect(checkRecoveryTarget({ name: 'before-upgrade', timeline: 'current' })).toEqual([]);
    expect(checkRecoveryTarget({ immediate: true })).toEqual([]);
    expect(checkRecoveryTarget({ immediate: false, time: '2026-11-21T22:30:01Z' })).toEqual([]);
  });

  it('refuses two targets', () => {
    expect(checkRecoveryTarget({ time: '2026-11-21 22:30:01+00', lsn: '0/3000060' })).toEqual(['give at most one of --target-time, --target-lsn, --target-name, --target-immediate']);
    expect(checkRecoveryTarget({ name: 'x', immediate: true })).toHaveLength(1);
  });

  it('names the option of each bad value, and reports every problem at once', () => {
    expect(checkRecoveryTarget({ time: 'yesterday' })).toEqual([expect.stringMatching(/^--target-time: "yesterday" is not a timestamp/)]);
    expect(checkRecoveryTarget({ time: '2026-13-01 00:00:00+00' })).toEqual([expect.stringMatching(/^--target-time/)]);
    expect(checkRecoveryTarget({ lsn: '0/XYZ' })).toEqual([expect.stringMatching(/^--target-lsn: "0\/XYZ" is not an LSN/)]);
    expect(checkRecoveryTarget({ lsn: '3000060' })).toEqual([expect.stringMatching(/^--target-lsn/)]);
    expect(checkRecoveryTarget({ timeline: 'newest' })).toEqual(['--target-timeline must be latest, current or a number, got "newest"']);
    expect(checkRecoveryTarget({ timeline: '-1' })).toEqual([expect.stringMatching(/^--target-timeline/)]);
    expect(checkRecoveryTarget({ name: '' })).toEqual(['--target-name must be 1 to 63 bytes']);
    expect(checkRecoveryTarget({ name: 'x'.repeat(64) })).toEqual(['--target-name must be 1 to 63 bytes']);
    const all = checkRecoveryTarget({ time: 'bad', lsn: 'bad', timeline: 'bad' });
    expect(all).toHaveLength(4);
    expect(all.map((p) => p.split(/[: ]/)[0])).toEqual(['give', '--target-time', '--target-lsn', '--target-timeline']);
  });
});

describe('recoverySettings', () => {
  it('writes restore_command and the target settings, quoted for postgresql.conf', () => {
    expect(recoverySettings('walts wal-fetch %f %p', { time: "2026-11-21 22:30:01+00", action: 'promote', timeline: 'latest' })).toEqual([
      "restore_command = 'walts wal-fetch %f %p'",
      "recovery_target_time = '2026-11-21 22:30:01+00'",
      "recovery_target_action = 'promote'",
      "recovery_target_timeline = 'latest'",
    ]);
    expect(recoverySettings('cmd', { lsn: '0/3000060' })).toEqual(["restore_command = 'cmd'", "recovery_target_lsn = '0/3000060'"]);
    expect(recoverySettings('cmd', { immediate: true })).toEqual(["restore_command = 'cmd'", "recovery_target = 'immediate'"]);
    expect(recoverySettings('cmd', {})).toEqual(["restore_command = 'cmd'"]);
  });

  it("doubles single quotes inside values", () => {
    expect(recoverySettings("'/opt/my walts' wal-fetch %f %p", { name: "it's here" })).toEqual([
      "restore_command = '''/opt/my walts'' wal-fetch %f %p'",
      "recovery_target_name = 'it''s here'",
    ]);
    expect(quote("a'b''c")).toBe("'a''b''''c'");
    expect(quote('')).toBe("''");
  });

  it('doubles backslashes, which PostgreSQL reads as escapes (rp\\x would become rpx), and refuses control characters', () => {
    expect(quote('rp\\x')).toBe("'rp\\\\x'");
    expect(quote('end\\')).toBe("'end\\\\'");
    expect(quote("\\'")).toBe("'\\\\'''");
    for (const bad of ['a\nb', 'a\rb', 'a\u0000b', 'tab\there']) expect(() => quote(bad)).toThrow(UsageError);
  });

  it('checkRecoveryTarget refuses newlines in --target-name and --target-time; an impossible date', () => {
    expect(checkRecoveryTarget({ name: 'a\nrestore_command = x' })).toEqual(['--target-name must not contain a newline, NUL or other control character']);
    expect(checkRecoveryTarget({ time: '2027-02-30 00:00:00+00' })).toEqual([`--target-time: "2027-02-30 00:00:00+00" is not a timestamp (e.g. '2026-11-21 22:30:01+00')`]);
  });
});

describe('checkRestoreCommand', () => {
  it('refuses an empty or blank command, one with a newline, and one without %p', () => {
    expect(checkRestoreCommand('')[0]).toMatch(/^--restore-command must not be empty/);
    expect(checkRestoreCommand('   ')[0]).toMatch(/^--restore-command must not be empty/);
    expect(checkRestoreCommand('cp /a/%f %p\nrm -rf /')[0]).toMatch(/newline/);
    expect(checkRestoreCommand('true')[0]).toMatch(/must contain %p/);
    expect(checkRestoreCommand('cp /archive/%f "%p"')).toEqual([]);
  });
});

describe('shellWord', () => {
  it('leaves plain words alone and quotes the rest so that /bin/sh reads them back exactly', () => {
    expect(shellWord('/usr/local/bin/walts')).toBe('/usr/local/bin/walts');
    expect(shellWord('--store=s3://bucket/prefix')).toBe('--store=s3://bucket/prefix');
    expect(shellWord('/opt/my walts')).toBe("'/opt/my walts'");
    expect(shellWord("it's")).toBe(`'it'\\''s'`);
    expect(shellWord('')).toBe("''");
    const nasty = ["it's", 'a b', '$HOME', '`id`', 'x;rm -rf /', '"q"', 'tab\there', 'new\nline', '*', '%f', ''];
    const echoed = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${nasty.map(shellWord).join(' ')}`]).toString('utf8');
    expect(echoed.split('\0').slice(0, -1)).toEqual(nasty);
  });
});

describe('chooseForTargetTime', () => {
  it('chooses the newest backup that finished before the target', () => {
    expect(chooseForTargetTime(BACKUPS, '2026-11-22 12:00:00+00').name).toBe(BACKUPS[1]!.name);
    expect(chooseForTargetTime(BACKUPS, '2026-11-23T00:00:00Z').name).toBe(BACKUPS[2]!.name);
    // At exactly the finish time a backup can reach the target; during it, it cannot.
    expect(chooseForTargetTime(BACKUPS, '2026-11-21 22:10:00+00').name).toBe(BACKUPS[1]!.name);
    expect(chooseForTargetTime(BACKUPS, '2026-11-21 22:05:00+00').name).toBe(BACKUPS[0]!.name);
    // Offsets are honoured: 23:05+01 is 22:05 UTC.
    expect(chooseForTargetTime(BACKUPS, '2026-11-21 23:05:00+01').name).toBe(BACKUPS[0]!.name);
  });

  it('refuses a target before the end of the oldest backup, naming that backup', () => {
    const err = (() => {
      try {
        chooseForTargetTime(BACKUPS, '2026-11-20 22:05:00+00');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain(BACKUPS[0]!.name);
    expect((err as Error).message).toContain('2026-11-20T22:10:00.000Z');
    expect((err as Error).message).toMatch(/before the end of the oldest backup/);
  });

  it('refuses when there is no backup, and a target that is not a time', () => {
    expect(() => chooseForTargetTime([], '2026-11-21 22:00:00+00')).toThrow(new UsageError('there is no complete backup to restore'));
    expect(() => chooseForTargetTime(BACKUPS, 'noon')).toThrow(UsageError);
  });
});

describe('checkBackupReachesTime', () => {
  it('accepts a target at or after the end of the backup and refuses one before it', () => {
    expect(() => checkBackupReachesTime(BACKUPS[1]!, '2026-11-21 22:10:00+00')).not.toThrow();
    expect(() => checkBackupReachesTime(BACKUPS[1]!, '2026-11-22 00:00:00+00')).not.toThrow();
    expect(() => checkBackupReachesTime(BACKUPS[1]!, '2026-11-21 22:09:59+00')).toThrow(UsageError);
    expect(() => checkBackupReachesTime(BACKUPS[1]!, '2026-11-21 22:09:59+00')).toThrow(BACKUPS[1]!.name);
    expect(() => checkBackupReachesTime(BACKUPS[1]!, '2026-11-21 22:09:59+00')).toThrow(/choose an older backup or LATEST/);
  });
});
