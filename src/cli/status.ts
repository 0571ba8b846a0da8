import type { CommandModule } from 'yargs';
import { readWalObject } from '../archive/walRead';
import { connect } from '../postgres/client';
import { formatStatus } from '../ops/status/format';
import { gatherStatus, type StatusDeps } from '../ops/status/gather';
import { runCommand, type CommandContext } from './run';

interface Args {
  json?: boolean;
  pg: boolean;
}

/** The status dependencies from a command's context: the store, its codecs, libpq for PostgreSQL. */
export function statusDeps(ctx: CommandContext, options: { pg: boolean; signal: AbortSignal; pgTimeoutMs?: number }): StatusDeps {
  const { deps } = ctx;
  return {
    storage: deps.storage,
    readWal: async (key, signal) => (await readWalObject(deps, key, true, signal)).data ?? Buffer.alloc(0),
    connectPg: options.pg ? () => connect({ application: 'walts', ...(options.pgTimeoutMs ? { connectTimeoutMs: options.pgTimeoutMs } : {}) }) : undefined,
    pgTimeoutMs: options.pgTimeoutMs,
    now: () => deps.now(),
    log: ctx.log,
    version: deps.version,
    signal: options.signal,
  };
}

export const statusCommand: CommandModule<object, Args> = {
  command: 'status',
  describe: 'what the archive holds and how archiving goes: store, WAL, backups, recovery window, restore drill, PostgreSQL',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', describe: 'the report as one JSON object (snake_case; unknown facts are {"unknown": "why"})' })
      .option('pg', { type: 'boolean', default: true, describe: 'also ask PostgreSQL (libpq environment: PGHOST, PGPORT, PGUSER, ...); --no-pg to skip' })
      .example('walts status', 'sections for people')
      .example('walts status --json | jq .pitr_window', 'for scripts')
      .epilogue(
        `Reports, never judges: a store that cannot be read, a failing archive_command or an old backup are
shown in the report (like pgbackrest info and barman status); walts check and walts metrics with
alert rules are what fail or alert. Facts that cannot be proven from what was read are shown as
unknown, with the reason. The .ready file count needs pg_monitor (or superuser).
Exit status:
  0  the report was printed (whatever it shows)
  2  usage or configuration error (nothing printed)`,
      ) as never,
  handler: (argv) =>
    runCommand('status', argv, async (ctx) => {
      const report = await gatherStatus(statusDeps(ctx, { pg: argv.pg, signal: ctx.signal }));
      ctx.signal.throwIfAborted();
      process.stdout.write(argv.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
      return { store_reachable: report.store.reachable, pg_reachable: report.postgres?.reachable };
    }, { quietSuccess: true }),
};
