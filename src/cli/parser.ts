/**
 * The full command line: every command, flag, --help and --version, through yargs. Loaded only when
 * the arguments are not one of the two forms PostgreSQL sends once per WAL file (cli/perSegment.ts):
 * building this parser and its command table costs more than half of walts' own start-up.
 */
import yargs, { type Argv, type CommandModule } from 'yargs';
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

/** Every command, in the order --help (and the man page, scripts/man.ts) lists them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each command types its own arguments
export const COMMANDS: readonly CommandModule<any, any>[] = [
  initCommand,
  walPushCommand,
  walFetchCommand,
  walPrefetchCommand,
  walReceiveCommand,
  backupPushCommand,
  backupListCommand,
  backupShowCommand,
  backupFetchCommand,
  deleteCommand,
  verifyCommand,
  checkCommand,
  restoreTestCommand,
  statusCommand,
  metricsCommand,
];

export const USAGE =
  'walts <command> [options]\n\nPostgreSQL WAL archiving, base backups and point-in-time restore to S3 or a directory:\nLZ4-compressed, OpenPGP-encrypted, streamed.\n\nStart with walts init: it creates the archive at WALTS_STORE, which every other command requires.';

/** Parses `args` and runs the command they name; `onCommand` learns its name before it runs. */
export async function parseAndRun(args: readonly string[], onCommand: (command: string) => void): Promise<void> {
  await buildParser(args, Math.min(110, process.stdout.columns || 100), onCommand).parseAsync();
}

/**
 * The one yargs parser, for running commands and for the man page, which renders its --help at a
 * fixed `width`.
 */
export function buildParser(args: readonly string[], width: number, onCommand: (command: string) => void = () => undefined): Argv {
  let command = '';
  let parser: Argv = yargs([...args]).scriptName('walts').usage(USAGE).options(GLOBAL_OPTIONS);
  for (const c of COMMANDS) parser = parser.command(c);
  return parser
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
    .wrap(width)
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new UsageError(`${msg}${command ? ` (see walts ${command} --help)` : ' (see walts --help)'}`);
    });
}
