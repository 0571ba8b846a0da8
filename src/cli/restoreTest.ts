import { userInfo } from 'node:os';
import type { CommandModule } from 'yargs';
import type { DrillRecord } from '../archive/drillRecord';
import { refuseRoot, restoreTest, type RestoreTestResult } from '../ops/restoreTest/drill';
import { defaultRestoreCommand } from './backupFetch';
import { terminalProgress } from './progress';
import { runCommand } from './run';

interface Args {
  name: string;
  'target-time'?: string;
  sql?: string;
  dest?: string;
  keep?: boolean;
  'pg-bin'?: string;
  'db-user'?: string;
  database?: string;
  amcheck: boolean;
  json?: boolean;
  parallel?: number;
}

export const restoreTestCommand: CommandModule<object, Args> = {
  command: 'restore-test [name]',
  describe: 'restore drill: restore a backup into a scratch directory, replay, check it answers, record the result in the store',
  builder: (y) =>
    y
      .positional('name', { type: 'string', default: 'LATEST', describe: 'backup name, or LATEST' })
      .option('target-time', { type: 'string', describe: "replay to this time and promote there, e.g. '2026-11-21 22:30:01+00' (default: the end of the archive)" })
      .option('sql', { type: 'string', describe: 'SQL file run with psql -v ON_ERROR_STOP=1 on the restored server; any error fails the drill' })
      .option('dest', { type: 'string', describe: 'data directory to restore into (absent or empty); default a temporary directory' })
      .option('keep', { type: 'boolean', describe: 'with --dest: leave the restored, promoted cluster there, stopped' })
      .option('pg-bin', { type: 'string', describe: "PostgreSQL binaries of the backup's major version (default: pg_config --bindir, else /usr/lib/postgresql/<major>/bin)" })
      .option('db-user', { type: 'string', describe: 'role the checks connect as (default: PGUSER, else the OS user name)' })
      .option('database', { type: 'string', describe: 'database the checks and --sql start in (default: PGDATABASE, else postgres)' })
      .option('amcheck', { type: 'boolean', default: true, describe: 'run pg_amcheck --all --install-missing (--no-amcheck skips it)' })
      .option('json', { type: 'boolean', describe: 'the drill record as JSON on stdout (also when the drill fails)' })
      .option('parallel', { type: 'number', describe: 'volumes downloaded and decoded at once (default: WALTS_CONCURRENCY)' })
      .example('walts restore-test', 'nightly: the newest backup, replayed to the end of the archive, then checked and removed')
      .example("walts restore-test LATEST --target-time '2026-11-21 22:30:01+00' --sql /etc/walts/drill.sql", 'to a point in time, with your own checks')
      .example('walts restore-test --dest /srv/restore/latest --keep', "the Barman job: the latest backup restored into a volume, left stopped")
      .epilogue(
        `Runs as the database OS user (PostgreSQL refuses root):
  runuser -u postgres -- walts restore-test
Fetches the backup (every digest verified) and starts PostgreSQL on it: a private unix socket, no
TCP, restore_command = this walts' wal-fetch, archive_mode = off. Replays to the end of the
archive (proved against its newest segment: a missing segment fails) or to --target-time (then
promotes); every database must answer a query; runs --sql and pg_amcheck; stops the server
cleanly; runs pg_checksums --check when the cluster has data checksums; removes the copy unless
--keep. Every drill is recorded in the store (walts_v1/drills/), passed or failed, for status and
metrics; --json prints the record.
Exit status:
  0  the drill passed and is recorded
  1  the drill failed (recorded): the server did not start, reach consistency or the target, a
     database did not answer, --sql or pg_amcheck failed, the stop was not clean; or no backup
  2  bad options, running as root, --dest not empty, no binaries of the backup's major version
  3  the archive is damaged (recorded): a backup file or volume fails its digest, or WAL that
     replay needs is missing or fails its digest
  4  store unavailable, or the drill's record could not be written
A signal stops the server, removes the copy (unless --keep), records the drill as interrupted,
and is re-raised.`,
      ) as never,
  handler: (argv) =>
    runCommand(
      'restore-test',
      argv,
      async ({ deps, config, signal }) => {
        const progress = terminalProgress('replaying WAL');
        const result = await restoreTest(deps, {
          which: argv.name,
          targetTime: argv['target-time'],
          sqlFile: argv.sql,
          dest: argv.dest,
          keep: argv.keep === true,
          pgBin: argv['pg-bin'],
          dbUser: argv['db-user'] ?? process.env['PGUSER'] ?? userInfo().username,
          database: argv.database ?? process.env['PGDATABASE'] ?? 'postgres',
          amcheck: argv.amcheck,
          restoreCommand: defaultRestoreCommand(config, argv as unknown as Record<string, unknown>),
          verifyKeyPath: config.signing.verifyKeyPath,
          parallel: Math.max(1, Math.floor(argv.parallel ?? config.concurrency)),
          signal,
          onStep: process.stderr.isTTY
            ? (step) => {
                progress?.end();
                process.stderr.write(`${step}\n`);
              }
            : undefined,
          onReplay: progress ? (done, total) => progress.update(done, total) : undefined,
        });
        progress?.end();
        process.stdout.write(argv.json ? `${JSON.stringify({ ...result.record, record_key: result.recordKey ?? null, kept_in: result.keptIn ?? null }, null, 2)}\n` : summary(result));
        if (result.failure) throw result.failure;
        return { backup: result.record.backup, ok: true, record: result.recordKey, reached_lsn: result.record.reached_lsn, kept_in: result.keptIn };
      },
      { preflight: () => refuseRoot(process.getuid?.()) },
    ),
};

function summary(r: RestoreTestResult): string {
  const d: DrillRecord = r.record;
  const target = d.target.kind === 'time' ? `--target-time ${d.target.time}` : 'the end of the archive';
  const lines = [`restore drill of ${d.backup}: ${d.ok ? 'PASSED' : 'FAILED'} in ${d.duration_seconds.toFixed(1)} s (target: ${target})`];
  if (d.reached_lsn) lines.push(`replay reached ${d.reached_lsn} on timeline ${d.reached_timeline ?? '?'}${d.reached_time ? `, last commit ${d.reached_time}` : ''}`);
  const width = Math.max(...d.checks.map((c) => c.name.length), 4);
  for (const c of d.checks) lines.push(`  ${c.ok ? 'ok    ' : 'FAILED'}  ${c.name.padEnd(width)}  ${c.detail}`);
  if (d.error) lines.push(`error: ${d.error}`);
  lines.push(r.recordKey ? `recorded as ${r.recordKey}` : 'NOT recorded: the store refused the record');
  if (r.keptIn) lines.push(`restored cluster kept (stopped) in ${r.keptIn}`);
  return `${lines.join('\n')}\n`;
}
