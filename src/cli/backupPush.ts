import type { CommandModule } from 'yargs';
import { UsageError } from '../errors';
import { backupPush } from '../ops/backupPush';
import { backupPushRemote } from '../ops/backupPushRemote';
import { formatBytes, parseSize } from './format';
import { terminalProgress } from './progress';
import { runCommand } from './run';

interface Args {
  pgdata?: string;
  remote?: boolean;
  fast?: boolean;
  'volume-size': string;
  'archive-timeout': number;
  host?: string;
  port?: number;
  username?: string;
  dbname?: string;
}

export const backupPushCommand: CommandModule<object, Args> = {
  command: 'backup-push [pgdata]',
  describe: 'take a base backup of the running cluster on <pgdata> (non-exclusive), or with --remote over the replication protocol',
  builder: (y) =>
    y
      .positional('pgdata', { type: 'string', describe: "the cluster's data directory, on this host (not with --remote)" })
      .option('remote', {
        type: 'boolean',
        describe: 'take the backup over the replication protocol (BASE_BACKUP) as a replication user, from a host that cannot see the data directory',
      })
      .option('fast', { type: 'boolean', describe: 'request an immediate checkpoint instead of a spread one' })
      .option('volume-size', { type: 'string', default: '1GiB', describe: 'tar bytes per stored volume' })
      .option('archive-timeout', { type: 'number', default: 300, describe: "seconds to wait for the backup's WAL to be archived" })
      .option('host', { type: 'string', describe: 'server host or socket directory [PGHOST]', group: 'Connection (libpq conventions; PGPASSWORD or ~/.pgpass for passwords):' })
      .option('port', { type: 'number', describe: 'server port [PGPORT]', group: 'Connection (libpq conventions; PGPASSWORD or ~/.pgpass for passwords):' })
      .option('username', { type: 'string', describe: 'user with pg_backup_start rights, or (--remote) the REPLICATION attribute [PGUSER]', group: 'Connection (libpq conventions; PGPASSWORD or ~/.pgpass for passwords):' })
      .option('dbname', { type: 'string', describe: 'database to connect to [PGDATABASE]', group: 'Connection (libpq conventions; PGPASSWORD or ~/.pgpass for passwords):' })
      .example('walts backup-push /var/lib/postgresql/15/main', 'nightly, from cron or a systemd timer, as the postgres user')
      .example('PGHOST=/var/run/postgresql walts backup-push --fast $PGDATA', 'right now, with an immediate checkpoint')
      .example('PGHOST=db1 PGUSER=walts_backup walts backup-push --remote', 'from a backup host (pg_hba.conf: a host replication line for that user)')
      .epilogue(
        `The backup exists once its sentinel is written, after every volume, the manifest and every WAL
file from its start to its stop segment are in the store (archive_command must be walts wal-push).
--remote connects with replication=true (libpq environment, .pgpass with database "replication",
TLS), needs PostgreSQL 15 or later, and stores the backup exactly as a local one.
Exit status: 0 backup complete; 2 bad options or not a data directory, no archive at WALTS_STORE
(run walts init), or an encrypted archive and no WALTS_PGP_PUBLIC_KEY; 3 the store belongs to
another cluster; 4 store or database unavailable, or the WAL did not arrive in time. On any failure
or on SIGINT/SIGTERM the server leaves backup mode and no backup is listed.`,
      ) as never,
  handler: (argv) =>
    runCommand('backup-push', argv, async ({ deps, config, signal }) => {
      const volumeSize = parseSize(argv['volume-size']);
      if (!volumeSize || volumeSize < 1024 * 1024) throw new UsageError(`--volume-size must be at least 1MiB, got ${JSON.stringify(argv['volume-size'])}`);
      if (argv.remote === true && argv.pgdata !== undefined) throw new UsageError('--remote takes no data directory: the server sends its files over the replication connection');
      if (argv.remote !== true && argv.pgdata === undefined) throw new UsageError('give the data directory of the cluster on this host, or --remote to back up over the replication protocol');
      const progress = terminalProgress('backup-push');
      try {
        const common = {
          fast: argv.fast === true,
          volumeSize,
          archiveTimeoutMs: argv['archive-timeout'] * 1000,
          connection: { connectTimeoutMs: config.store.connectTimeoutMs, overrides: { host: argv.host, port: argv.port, user: argv.username, database: argv.dbname } },
          signal,
          onProgress: progress?.update,
          signingKeyPath: config.signing.keyPath,
          concurrency: config.concurrency,
        };
        const b = argv.remote === true ? await backupPushRemote(deps, common) : await backupPush(deps, { ...common, pgdata: argv.pgdata! });
        progress?.end();
        if (process.stdout.isTTY) process.stdout.write(`backup ${b.name} complete: ${b.file_count} files, ${formatBytes(b.data_size)} stored as ${formatBytes(b.stored_size)}\n`);
        return { backup: b.name, start_lsn: b.start_lsn, stop_lsn: b.stop_lsn, files: b.file_count, bytes_in: b.data_size, bytes_out: b.stored_size, volumes: b.volumes.length };
      } finally {
        progress?.end();
      }
    }),
};
