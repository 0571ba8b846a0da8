/**
 * The two command lines PostgreSQL runs once per WAL file, recognised without yargs:
 * `wal-push PATH` (archive_command `walts wal-push %p`) and `wal-fetch NAME PATH` (restore_command
 * `walts wal-fetch %f %p`). Only that command's module is loaded, and its yargs handler runs with
 * the argv yargs would have built. Anything else (a flag, a missing or extra argument, an empty
 * one, the word `help`, any other command) returns undefined and goes through the full parser
 * (cli/parser.ts), so every flag, --help and every usage error keep one implementation.
 */

export interface PerSegmentCall {
  readonly command: 'wal-push' | 'wal-fetch';
  run(): Promise<void>;
}

export function perSegmentCall(args: readonly string[]): PerSegmentCall | undefined {
  // A leading '-' may be a flag (or '--'); an empty argument is a usage error yargs reports; yargs
  // reads a last positional `help` as --help (found by the comparison in test/unit/startup.test.ts).
  if (args.some((a) => a === '' || a.startsWith('-') || a === 'help')) return undefined;
  const [command, first, second] = args;
  if (command === 'wal-push' && args.length === 2) {
    return {
      command,
      run: async () => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { walPushCommand } = require('./walPush') as typeof import('./walPush');
        await walPushCommand.handler({ _: [command], $0: 'walts', path: first as string });
      },
    };
  }
  if (command === 'wal-fetch' && args.length === 3) {
    return {
      command,
      run: async () => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { walFetchCommand } = require('./walFetch') as typeof import('./walFetch');
        await walFetchCommand.handler({ _: [command], $0: 'walts', name: first as string, dest: second as string });
      },
    };
  }
  return undefined;
}
