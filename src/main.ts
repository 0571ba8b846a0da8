/**
 * Entry point: parses the command line, runs one command, and turns its outcome into an exit code
 * (the only place that does). SIGINT/SIGTERM abort the running operation so it can clean up (temp
 * files, multipart uploads); the caller then re-raises the signal, because PostgreSQL must see the
 * process die by that signal, never a made-up exit code (reliability.md rule 13).
 */
import yargs from 'yargs';
import { backupFetchCommand } from './cli/backupFetch';
import { backupListCommand, backupShowCommand } from './cli/backupList';
import { backupPushCommand } from './cli/backupPush';
import { deleteCommand } from './cli/delete';
import { initCommand } from './cli/init';
import { verifyCommand } from './cli/verify';
import { walFetchCommand } from './cli/walFetch';
import { walPrefetchCommand } from './cli/walPrefetch';
import { walPushCommand } from './cli/walPush';
import { ENVIRONMENT_HELP, GLOBAL_OPTIONS } from './cli/options';
import { runtime } from './cli/run';
import { describeError, UsageError } from './errors';
import { EXIT, exitCodeFor } from './exitCodes';
import { WALTS_VERSION } from './version';

export interface MainResult {
  readonly exitCode: number;
  /** Set when a signal interrupted the command: the caller re-raises it. */
  readonly signal?: NodeJS.Signals;
}

export async function main(args: readonly string[]): Promise<MainResult> {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (received) process.kill(process.pid, sig); // second signal: no more waiting for cleanup
    received = sig;
    process.removeAllListeners(sig);
    process.once(sig, onSignal);
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  runtime.signal = controller.signal;
  let fetchErrorExitCode: number | undefined;
  runtime.onConfig = (config) => (fetchErrorExitCode = config.fetchErrorExitCode);

  let command = '';
  try {
    const parser = yargs([...args])
      .scriptName('walts')
      .usage('walts <command> [options]\n\nPostgreSQL WAL archiving, base backups and point-in-time restore to S3 or a directory:\nLZ4-compressed, OpenPGP-encrypted, streamed.\n\nStart with walts init: it creates the archive at WALTS_STORE, which every other command requires.')
      .options(GLOBAL_OPTIONS)
      .command(initCommand)
      .command(walPushCommand)
      .command(walFetchCommand)
      .command(walPrefetchCommand)
      .command(backupPushCommand)
      .command(backupListCommand)
      .command(backupShowCommand)
      .command(backupFetchCommand)
      .command(deleteCommand)
      .command(verifyCommand)
      .middleware((argv) => {
        command = String(argv._[0] ?? '');
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
    return { exitCode: received ? EXIT.failure : EXIT.ok, signal: received };
  } catch (err) {
    if (received) return { exitCode: EXIT.failure, signal: received };
    const code = exitCodeFor(command, err, fetchErrorExitCode ?? envFetchErrorExitCode());
    if (!(err as { logged?: boolean }).logged) process.stderr.write(`walts${command ? ` ${command}` : ''}: ${describeError(err)}\n`);
    return { exitCode: code };
  }
}

/** When the configuration itself failed to load, the hard-error code still follows the environment. */
function envFetchErrorExitCode(): number | undefined {
  const n = Number(process.env['WALTS_FETCH_ERROR_EXIT_CODE']);
  return Number.isInteger(n) && n >= 1 && n <= 255 ? n : undefined;
}
