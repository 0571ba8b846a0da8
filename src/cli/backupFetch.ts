import { resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import type { Config } from '../config';
import { UsageError } from '../errors';
import { shellWord, type RecoveryTarget } from '../backup/recovery';
import { backupFetch } from '../ops/backupFetch';
import { formatBytes } from './format';
import { runCommand } from './run';

interface Args {
  dest: string;
  name: string;
  'target-time'?: string;
  'target-lsn'?: string;
  'target-name'?: string;
  'target-immediate'?: boolean;
  'target-action'?: string;
  'target-timeline'?: string;
  'restore-command'?: string;
  recovery: boolean;
  'archive-mode': string;
  tablespace?: string[];
  parallel?: number;
}

export const backupFetchCommand: CommandModule<object, Args> = {
  command: 'backup-fetch <dest> <name>',
  describe: 'restore a base backup into a new data directory, set up to recover from the archive (to its end, or a target)',
  builder: (y) =>
    y
      .positional('dest', { type: 'string', demandOption: true, describe: 'new data directory (absent or empty)' })
      .positional('name', { type: 'string', demandOption: true, describe: 'backup name, or LATEST' })
      .option('target-time', { type: 'string', describe: "recover to this time, e.g. '2026-11-21 22:30:01+00'", group: 'Point-in-time recovery:' })
      .option('target-lsn', { type: 'string', describe: 'recover to this LSN, e.g. 0/3000060', group: 'Point-in-time recovery:' })
      .option('target-name', { type: 'string', describe: 'recover to a restore point (pg_create_restore_point)', group: 'Point-in-time recovery:' })
      .option('target-immediate', { type: 'boolean', describe: 'stop as soon as the backup is consistent', group: 'Point-in-time recovery:' })
      .option('target-action', { type: 'string', choices: ['pause', 'promote', 'shutdown'], describe: 'what the server does at the target (PostgreSQL default: pause)', group: 'Point-in-time recovery:' })
      .option('target-timeline', { type: 'string', describe: 'latest (default), current, or a timeline number', group: 'Point-in-time recovery:' })
      .option('restore-command', { type: 'string', describe: "restore_command to write (default: this walts' wal-fetch with the same store and keys); must contain %p", group: 'Point-in-time recovery:' })
      .option('recovery', { type: 'boolean', default: true, describe: 'write recovery.signal and restore_command (--no-recovery: the files only)', group: 'Point-in-time recovery:' })
      .option('archive-mode', { type: 'string', choices: ['off', 'preserve'], default: 'off', describe: "off: write archive_mode = off, so the copy never archives into its origin's archive; preserve: keep the backup's setting" })
      .option('tablespace', { type: 'string', array: true, describe: 'where a tablespace goes: OID_OR_NAME=DIR, one per tablespace (its recorded path restores it in place)' })
      .option('parallel', { type: 'number', describe: 'volumes downloaded and decoded at once (default: WALTS_CONCURRENCY)' })
      .example('walts backup-fetch /var/lib/postgresql/15/main LATEST', 'restore the newest backup, set up to recover to the end of the archive')
      .example("walts backup-fetch /srv/pg/restore LATEST --target-time '2026-11-21 22:30:01+00'", 'the newest backup that finished before that time, set up to recover to it')
      .example('walts backup-fetch /srv/pg/restore base_000000010000000000000004_00000028 --tablespace fast=/mnt/fast', 'a given backup, one tablespace moved')
      .epilogue(
        `By default recovery.signal is created and restore_command (plus any --target-* setting) is added
to postgresql.auto.conf: start the server and it recovers from the archive, to its end when no
target is given, then promotes. --no-recovery restores the files only. archive_mode = off is
added too unless --archive-mode=preserve, so the copy never archives into its origin's archive.
A backup with tablespaces needs --tablespace for each (the backup's metadata alone never decides
where files go outside DEST). No secret is ever written into the data directory: the server needs
the passphrase (WALTS_PGP_PASSPHRASE_FILE) and store credentials in its own environment.
Exit status: 0 restored and verified; 1 no such backup; 2 bad options, destination not empty,
target before every backup or beyond the archived WAL (nothing written); 3 the backup is damaged
or unsafe (a file, volume or manifest fails verification, a volume is missing, a link or a path
outside DEST, a tablespace not placed with --tablespace); 4 store unavailable, or disk full at
DEST. After a failure once writing began, DEST has no global/pg_control and cannot be started.`,
      ) as never,
  handler: (argv) =>
    runCommand('backup-fetch', argv, async ({ deps, config, signal }) => {
      const target: RecoveryTarget = {
        time: argv['target-time'],
        lsn: argv['target-lsn'],
        name: argv['target-name'],
        immediate: argv['target-immediate'],
        action: argv['target-action'] as RecoveryTarget['action'],
        timeline: argv['target-timeline'],
      };
      const hasTarget = Object.values(target).some((v) => v !== undefined && v !== false);
      if (!argv.recovery && (hasTarget || argv['restore-command'] !== undefined)) {
        throw new UsageError('--no-recovery restores the files only: it cannot be combined with --target-* or --restore-command');
      }
      const r = await backupFetch(deps, {
        dest: argv.dest,
        which: argv.name,
        target,
        tablespaceMap: parseTablespaceOptions(argv.tablespace ?? []),
        restoreCommand: argv.recovery ? (argv['restore-command'] ?? defaultRestoreCommand(config, argv as unknown as Record<string, unknown>)) : undefined,
        archiveMode: argv['archive-mode'] === 'preserve' ? 'preserve' : 'off',
        verifyKeyPath: config.signing.verifyKeyPath,
        parallel: Math.max(1, Math.floor(argv.parallel ?? config.concurrency)),
        signal,
      });
      if (process.stdout.isTTY) {
        process.stdout.write(`restored ${r.backup.name} into ${r.dest}: ${r.files} files, ${formatBytes(r.bytes)}, every file verified\n`);
        process.stdout.write(r.recoveryConfigured ? 'recovery.signal and restore_command written: start the server to recover from the archive\n' : 'files only (--no-recovery): no recovery settings written\n');
        if (r.archiveMode === 'off') process.stdout.write('archive_mode = off written: this copy does not archive (--archive-mode=preserve keeps the setting)\n');
      }
      return { backup: r.backup.name, dest: r.dest, files: r.files, bytes: r.bytes, recovery: r.recoveryConfigured, archive_mode: r.archiveMode };
    }),
};

function parseTablespaceOptions(values: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const v of values) {
    const eq = v.indexOf('=');
    const dir = v.slice(eq + 1);
    if (eq <= 0 || !dir.startsWith('/')) throw new UsageError(`--tablespace ${JSON.stringify(v)}: expected OID_OR_NAME=/absolute/dir`);
    map.set(v.slice(0, eq), resolve(dir));
  }
  return map;
}

/** Flags that point walts at the same store and keys; none of them is a secret. */
const CARRIED_FLAGS = ['store', 's3-endpoint', 's3-force-path-style', 's3-region', 'pgp-private-key', 'pgp-passphrase-file'] as const;

/**
 * restore_command for the restored server: this walts' wal-fetch, with the configuration file and
 * the store/key flags given on this command line (the server's environment supplies the rest, as it
 * does for archive_command). Credentials and passphrases are never written.
 */
export function defaultRestoreCommand(config: Config, argv: Record<string, unknown>): string {
  // bin/walts.js is started by the bin/walts front, which is what restore_command must call.
  const words = [process.argv[1] ? resolve(process.argv[1]).replace(/\/walts\.js$/, '/walts') : 'walts'];
  if (config.configFile) words.push('--config', resolve(config.configFile));
  for (const flag of CARRIED_FLAGS) {
    const v = argv[flag];
    if (v !== undefined && v !== false) words.push(`--${flag}`, v === true ? 'true' : String(v));
  }
  return [...words.map(shellWord), 'wal-fetch', '%f', '%p'].join(' ');
}
