import type { CommandModule } from 'yargs';
import { basename } from 'node:path';
import { UsageError } from '../errors';
import { archivedAhead, lookaheadOptions, walPushWithLookahead } from '../ops/walPushLookahead';
import { parseWalFileName } from '../postgres/walName';
import { runCommand } from './run';

export const walPushCommand: CommandModule<object, { path: string }> = {
  command: 'wal-push <path>',
  describe: "archive one WAL file (PostgreSQL's archive_command)",
  builder: (y) =>
    y
      .positional('path', { type: 'string', demandOption: true, describe: '%p: the WAL file, relative to PGDATA or absolute' })
      .example("archive_command = 'walts wal-push %p'", 'in postgresql.conf, with WALTS_STORE in the server environment')
      .example('walts wal-push pg_wal/000000010000000000000003', 'by hand, from PGDATA')
      .epilogue(
        `Exit status:
  0  archived and acknowledged by the store (or identical content was already there), or pushed
     ahead by an earlier call's look-ahead, proven by its record (WALTS_PUSH_LOOKAHEAD)
  2  bad name or configuration (nothing uploaded), including: no archive at WALTS_STORE (run
     walts init), or an encrypted archive and WALTS_PGP_PUBLIC_KEY not set
  3  refused: different content already archived under that name, a segment of another
     cluster, or a truncated/foreign file (nothing overwritten)
  4  store unreachable after retries, or its directory or bucket does not exist (PostgreSQL
     keeps the file and retries; walts never creates a store directory)`,
      ) as never,
  handler: (argv) =>
    runCommand('wal-push', argv, async ({ config, deps, signal }) => {
      const r = await walPushWithLookahead(deps, { path: argv.path, cwd: process.cwd(), signal }, lookaheadOptions(config));
      return {
        wal: r.name,
        key: r.key,
        outcome: r.outcome,
        bytes_in: r.plainBytes,
        bytes_out: r.storedBytes,
        ...(r.replaced.length ? { replaced: r.replaced } : {}),
        ...(r.lookahead ? { lookahead: r.lookahead } : {}),
      };
    }, {
      retryWindow: 'command',
      // Pushed ahead by an earlier call, proven by its record (bin/walts usually answers these first).
      shortcut: (config) => (archivedAhead(argv.path, process.cwd(), lookaheadOptions(config)) ? { wal: basename(argv.path), outcome: 'archived-ahead' } : undefined),
      preflight: () => {
        if (!parseWalFileName(basename(argv.path))) throw new UsageError(`${JSON.stringify(argv.path)} is not a WAL file name; refusing to archive it`);
      },
    }),
};
