/**
 * The full command line: every command, flag, --help and --version, through yargs. Loaded only when
 * the arguments are not one of the two forms PostgreSQL sends once per WAL file (cli/perSegment.ts):
 * building this parser and its command table costs more than half of walts' own start-up.
 */
import yargs from 'yargs';
import { backupFetchCommand } from './backupFetch';
import { backupListCommand, backupShowCommand } from './backupList';
import { backupPushCommand } from './backupPush';
import { checkCommand } from './check';
import { deleteCommand } from './delete';
import { initCommand } from './init';
import { metricsCommand } from './metrics';
import { restoreTestCommand } from './restoreTest';
import { statusCommand } from './status';
import { verifyCommand } from './verify';
import { walFetchCommand } from './walFetch';
import { walPrefetchCommand } from './walPrefetch';
import { walPushCommand } from './walPush';
import { walReceiveCommand } from './walReceive';
import { ENVIRONMENT_HELP, GLOBAL_OPTIONS } from './options';
import { UsageError } from '../errors';
import { WALTS_VERSION } from '../version';

/** Parses `args` and runs the command they name; `onCommand` learns its name before it runs. */
export async function parseAndRun(args: readonly string[], onCommand: (command: string) => void): Promise<void> {
  let command = '';
  const parser = yargs([...args])
    .scriptName('walts')
    .usage('walts <command> [options]\n\nPostgreSQL WAL archiving, base backups and point-in-time restore to S3 or a directory:\nLZ4-compressed, OpenPGP-encrypted, streamed.\n\nStart with walts init: it creates the archive at WALTS_STORE, which every other command requires.')
    .options(GLOBAL_OPTIONS)
    .command(initCommand)
    .command(walPushCommand)
    .command(walFetchCommand)
    .command(walPrefetchCommand)
    .command(walReceiveCommand)
    .command(backupPushCommand)
    .command(backupListCommand)
    .command(backupShowCommand)
    .command(backupFetchCommand)
    .command(deleteCommand)
    .command(verifyCommand)
    .command(checkCommand)
    .command(restoreTestCommand)
    .command(statusCommand)
    .command(metricsCommand)
    .middleware((argv) => {
      command = String(argv._[0] ?? '');
      onCommand(command);
    }, true)
    .demandCommand(1, 'name a command')
    .recommendCommands()
    .strict()
    .epilogue(ENVIRONMENT_HELP)
    .help()
    .alias('h', 'help')
    .version(WALTS_VERSION)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new UsageError(`${msg}${command ? ` (see walts ${command} --help)` : ' (see walts --help)'}`);
    });
  await parser.parseAsync();
}
