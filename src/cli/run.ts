/**
 * The bridge between a yargs handler and an operation: load the configuration, build the
 * dependencies, run, log one line with the outcome, release the store. Errors propagate to main.ts,
 * which alone decides the exit code.
 */
import { readFileSync, statSync } from 'node:fs';
import { awsEnvFromConfigFile, loadConfig, type Config } from '../config';
import { makeDeps, type Deps } from '../deps';
import { describeError } from '../errors';
import { createLogger, type Logger } from '../log';
import { RetryBudget } from '../util/retryBudget';

export interface CommandContext {
  readonly config: Config;
  readonly deps: Deps;
  readonly log: Logger;
  readonly signal: AbortSignal;
}

/** Filled in by main.ts before yargs runs handlers. */
export const runtime: { signal: AbortSignal; onConfig?: (config: Config) => void } = { signal: new AbortController().signal };

export function readConfigFile(path: string): { text: string; mode: number } {
  return { text: readFileSync(path, 'utf8'), mode: statSync(path).mode };
}

export interface RunOptions {
  /** Argument checks that need no configuration: run first, so a bad argument is exit 2 whatever the setup. */
  preflight?: () => void;
  /** Failures that are a normal answer (wal-fetch's "not in the archive"): logged at info, not as errors. */
  isExpected?: (err: unknown) => boolean;
  /** Commands whose output is on stdout (lists) log their success at debug only. */
  quietSuccess?: boolean;
  /**
   * How WALTS_RETRY_DEADLINE is counted (util/retryBudget.ts): 'command' (wal-push, wal-fetch: the
   * whole command ends by the deadline) or 'outage' (long commands: each outage gets the deadline).
   */
  retryWindow?: 'command' | 'outage';
  /**
   * Answers the command from local state before the store client and codecs are loaded (wal-push:
   * a push record left by look-ahead). Returns the fields of the success line, or undefined to run.
   */
  shortcut?: (config: Config) => Record<string, unknown> | undefined;
}

export async function runCommand(
  command: string,
  argv: Record<string, unknown>,
  body: (ctx: CommandContext) => Promise<Record<string, unknown>>,
  options: RunOptions = {},
): Promise<void> {
  options.preflight?.();
  const sources = { env: process.env, flags: argv, readFile: readConfigFile, fileMode: (path: string) => statSync(path).mode };
  const config = loadConfig(sources);
  runtime.onConfig?.(config);
  // AWS_* settings from a config file reach the SDK's credential chain like real environment variables.
  Object.assign(process.env, awsEnvFromConfigFile(sources, argv));
  const log = createLogger(config.logLevel, { cmd: command });
  const answered = options.shortcut?.(config);
  if (answered) {
    log.info(answered, `${command} done`);
    return;
  }
  const budget = new RetryBudget({ deadlineMs: config.store.retryDeadlineMs, window: options.retryWindow ?? 'outage' });
  const deps = makeDeps(config, log, budget);
  const started = Date.now();
  try {
    const fields = await body({ config, deps, log, signal: runtime.signal });
    const line = { ...fields, duration_ms: Date.now() - started };
    if (options.quietSuccess) log.debug(line, `${command} done`);
    else log.info(line, `${command} done`);
  } catch (err) {
    if (options.isExpected?.(err)) {
      log.info({ outcome: (err as { kind?: string }).kind, duration_ms: Date.now() - started }, `${command}: ${describeError(err)}`);
      (err as { logged?: boolean }).logged = true;
      throw err;
    }
    log.error({ ...errorFields(err), duration_ms: Date.now() - started }, `${command} failed: ${describeError(err)}`);
    (err as { logged?: boolean }).logged = true;
    throw err;
  } finally {
    await deps.storage.close();
  }
}

function errorFields(err: unknown): Record<string, unknown> {
  const kind = (err as { kind?: string }).kind ?? 'internal';
  return kind === 'internal' ? { error_kind: kind, stack: (err as Error).stack } : { error_kind: kind };
}
