/**
 * Entry point: parses the command line, runs one command, and turns its outcome into an exit code
 * (the only place that does). SIGINT/SIGTERM abort the running operation so it can clean up (temp
 * files, multipart uploads); the caller then re-raises the signal, because PostgreSQL must see the
 * process die by that signal, never a made-up exit code (reliability.md rule 13).
 */
import { runtime } from './cli/run';
import { perSegmentCall } from './cli/perSegment';
import { describeError } from './errors';
import { EXIT, exitCodeFor } from './exitCodes';

export interface MainResult {
  readonly exitCode: number;
  /** Set when a signal interrupted the command: the caller re-raises it. */
  readonly signal?: NodeJS.Signals;
}

export interface MainOptions {
  /** Always use the full yargs parser (tests compare it with the per-segment fast dispatch). */
  readonly fullParser?: boolean;
}

export async function main(args: readonly string[], options: MainOptions = {}): Promise<MainResult> {
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
    // PostgreSQL's per-WAL-file calls skip building the full parser (cli/perSegment.ts).
    const direct = options.fullParser ? undefined : perSegmentCall(args);
    if (direct) {
      command = direct.command;
      await direct.run();
    } else {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { parseAndRun } = require('./cli/parser') as typeof import('./cli/parser');
      await parseAndRun(args, (name) => (command = name));
    }
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
