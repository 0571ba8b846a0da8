import { readFileSync, statSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { awsEnvFromConfigFile, loadConfig } from '../config';
import { makeDeps } from '../deps';
import { ChecksFailedError, describeError, UsageError } from '../errors';
import { EXIT } from '../exitCodes';
import { createLogger } from '../log';
import { check } from '../ops/check/check';
import { checkConfiguration } from '../ops/check/configuration';
import type { PgMode } from '../ops/check/postgres';
import { connect } from '../postgres/client';
import { RetryBudget } from '../util/retryBudget';
import { jsonReport, NAGIOS, nagiosLine, nagiosUnknown, summarize, summaryLine, textReport } from './checkReport';
import { readConfigFile, runtime } from './run';

interface Args {
  json?: boolean;
  nagios?: boolean;
  'for-retention'?: boolean;
  'switch-wal'?: boolean;
  timeout: number;
  pg?: boolean;
  host?: string;
  port?: number;
  username?: string;
  dbname?: string;
}

const CONNECTION = 'Connection (libpq conventions; PGPASSWORD or ~/.pgpass for passwords):';

export const checkCommand: CommandModule<object, Args> = {
  command: 'check',
  describe: 'preflight: configuration, store rights, keys, codecs and PostgreSQL settings, each with its fix',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', describe: 'the report as JSON' })
      .option('nagios', { type: 'boolean', describe: 'one line for a monitoring plugin (Nagios/Icinga/Zabbix/Sensu): WALTS OK|WARNING|CRITICAL - ...' })
      .option('for-retention', { type: 'boolean', describe: 'this host runs walts delete: a store that refuses delete fails the check (default: a warning)' })
      .option('switch-wal', { type: 'boolean', describe: 'make PostgreSQL switch WAL files and wait until that file is in this store (end to end)' })
      .option('timeout', { type: 'number', default: 60, describe: 'seconds --switch-wal waits for the WAL file' })
      .option('pg', { type: 'boolean', describe: 'require PostgreSQL (default: check it when reachable); --no-pg: do not connect' })
      .option('host', { type: 'string', describe: 'server host or socket directory [PGHOST]', group: CONNECTION })
      .option('port', { type: 'number', describe: 'server port [PGPORT]', group: CONNECTION })
      .option('username', { type: 'string', describe: 'user (a superuser or one granted pg_read_all_settings) [PGUSER]', group: CONNECTION })
      .option('dbname', { type: 'string', describe: 'database to connect to [PGDATABASE]', group: CONNECTION })
      .example('walts check', 'as the postgres user, with the same environment as archive_command: after setup and every change')
      .example('walts check --switch-wal --for-retention', 'on the database host that also runs walts delete: proves archiving end to end')
      .example('walts check --nagios', 'from Nagios/Icinga (NRPE) or any monitoring that runs plugins')
      .example('walts check --json --no-pg', 'on a restore host without a server, for a script')
      .epilogue(
        `Items: configuration; codec lz4 (warns when the native lz4 module does not load under this
Node.js: the slower JavaScript coder stands in), codec zstd, codec openpgp; postgres, wal_level, archive_mode, archive_command (runs walts wal-push %p, with this
store where the command line tells), archive_timeout, archiver (pg_stat_archiver is not failing);
store (reachable, credentials accepted), archive (walts init done), cluster (the archive belongs to
this server's system identifier); public key (encrypts), private key (decrypts what the public key
encrypts); store list, store put, store get, store delete: a probe object under walts_v1/probe/,
encoded and decoded as wal-push and wal-fetch do, written and removed again. Without
--for-retention a refused delete is a warning (archiving hosts may be put-only) and the probe is
left behind, named. PostgreSQL is reached as backup-push reaches it; not reachable and not required
(--pg) it is skipped. The server's own environment is not visible to check: --switch-wal proves
that archive_command reaches this store.
Exit status:
  0  every item passed (warnings do not fail the check)
  2  bad command-line options: nothing was checked
  3  one or more items failed (the report names each, with its fix; a configuration error is the
     failed configuration item, listing every problem)
With --nagios, the Nagios plugin codes: 0 OK, 1 WARNING (warnings only), 2 CRITICAL (any item
failed), 3 UNKNOWN (check itself could not run); the line goes to stdout.`,
      ) as never,
  handler: async (argv) => {
    if (argv.json && argv.nagios) throw new UsageError('--json and --nagios cannot be combined');
    if (!(argv.timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got ${JSON.stringify(argv.timeout)}`);
    const sources = { env: process.env, flags: argv as Record<string, unknown>, readFile: readConfigFile, fileMode: (path: string) => statSync(path).mode };
    const { item: configItem, config } = checkConfiguration(() => loadConfig(sources));
    if (config) {
      runtime.onConfig?.(config);
      Object.assign(process.env, awsEnvFromConfigFile(sources, argv as Record<string, unknown>));
    }
    const log = createLogger(config?.logLevel ?? 'info', { cmd: 'check' });
    const deps = config ? makeDeps(config, log, new RetryBudget({ deadlineMs: config.store.retryDeadlineMs, window: 'outage' })) : undefined;
    const pg: PgMode = argv.pg === true || argv['switch-wal'] ? 'require' : argv.pg === false ? 'off' : 'auto';
    let items;
    try {
      items = await check({
        configItem,
        config,
        deps,
        pg,
        connect: () => connect({ connectTimeoutMs: config?.store.connectTimeoutMs, overrides: { host: argv.host, port: argv.port, user: argv.username, database: argv.dbname } }),
        readFile: (path) => readFileSync(path, 'utf8'),
        forRetention: argv['for-retention'] === true,
        switchWalTimeoutMs: argv['switch-wal'] ? argv.timeout * 1000 : undefined,
        signal: runtime.signal,
      });
    } catch (err) {
      if (!argv.nagios) throw err;
      process.stdout.write(nagiosUnknown(describeError(err)) + '\n');
      throw new ChecksFailedError(describeError(err), NAGIOS.unknown); // main.ts prints it to stderr too
    } finally {
      await deps?.storage.close();
    }
    const summary = summarize(items);
    log.debug({ failed: summary.failed, warnings: summary.warnings }, 'check done');
    if (argv.nagios) {
      const { line, exitCode } = nagiosLine(items);
      process.stdout.write(line + '\n');
      if (exitCode !== NAGIOS.ok) throw Object.assign(new ChecksFailedError(line, exitCode), { logged: true });
      return;
    }
    process.stdout.write(argv.json ? jsonReport(items) : textReport(items));
    if (!summary.ok) throw Object.assign(new ChecksFailedError(summaryLine(summary), EXIT.integrity), { logged: true });
  },
};
