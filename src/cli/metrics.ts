import type { CommandModule } from 'yargs';
import { UsageError } from '../errors';
import { DEFAULT_LISTEN, parseListen } from '../ops/metrics/listen';
import { runCommand } from './run';
import { statusDeps } from './status';

interface Args {
  listen: string;
  refresh: number;
  'refresh-timeout': number;
  textfile?: string;
  'database-label'?: string;
  pg: boolean;
}

export const metricsCommand: CommandModule<object, Args> = {
  command: 'metrics',
  describe: `Prometheus metrics over HTTP (default ${DEFAULT_LISTEN}/metrics), or one file for node_exporter (--textfile)`,
  builder: (y) =>
    y
      .option('listen', { type: 'string', default: DEFAULT_LISTEN, describe: 'HOST:PORT, [IPv6]:PORT, or :PORT for every interface' })
      .option('refresh', { type: 'number', default: 60, describe: 'seconds between background refreshes from the store and PostgreSQL' })
      .option('refresh-timeout', { type: 'number', default: 30, describe: 'seconds after which a refresh is abandoned and the store counts as down (walts_up 0)' })
      .option('textfile', { type: 'string', describe: 'write the metrics once to this file (atomically: temp + rename) and exit; name it *.prom' })
      .option('database-label', { type: 'string', describe: 'value of the database label on every series (default: the store location, e.g. s3://bucket/prefix)' })
      .option('pg', { type: 'boolean', default: true, describe: 'also ask PostgreSQL (libpq environment); --no-pg on a host without it' })
      .example('walts metrics', `serve on ${DEFAULT_LISTEN}`)
      .example('walts metrics --listen :10432 --database-label main', 'every interface, for a Prometheus on another host')
      .example('walts metrics --textfile /var/lib/node_exporter/textfile/walts.prom', 'from a timer, for node_exporter')
      .epilogue(
        `Scrapes never wait for the store: values are gathered in the background every --refresh seconds
and served from memory; a refresh that takes longer than --refresh-timeout is abandoned and the
store reported down (walts_up 0). Metric names and alert rules: docs/monitoring.md.
Exit status:
  0  --textfile written (walts_up inside says whether the store was read); serving until SIGTERM
  2  usage or configuration error, or the address cannot be bound`,
      ) as never,
  handler: (argv) =>
    runCommand('metrics', argv, async (ctx) => {
      const listen = argv.textfile ? undefined : parseListen(argv.listen);
      const database = argv['database-label'] ?? ctx.deps.storage.description;
      const nowMs = () => ctx.deps.now().getTime();
      // Loaded here: prom-client and the status code are not needed by any other command.
      const { renderMetrics } = await import('../ops/metrics/exposition');
      const { Refresher } = await import('../ops/metrics/refresher');
      const { startMetricsServer } = await import('../ops/metrics/server');
      const { writeTextfile } = await import('../ops/metrics/textfile');
      const { gatherStatus } = await import('../ops/status/gather');
      const refresher = new Refresher({
        // PostgreSQL gets half the refresh timeout: a hanging server never costs the store's answer.
        gather: (signal) => gatherStatus(statusDeps(ctx, { pg: argv.pg, signal: AbortSignal.any([signal, ctx.signal]), pgTimeoutMs: (argv['refresh-timeout'] * 1000) / 2 })),
        intervalMs: argv.refresh * 1000,
        timeoutMs: argv['refresh-timeout'] * 1000,
        nowMs,
        withPostgres: argv.pg,
        storeDescription: ctx.deps.storage.description,
        version: ctx.deps.version,
        onRefresh: (r) => {
          if (!r.store.reachable) ctx.log.warn({ error: r.store.error }, 'metrics: the store could not be read (walts_up 0)');
          else if (r.postgres && !r.postgres.reachable) ctx.log.warn({ error: r.postgres.error }, 'metrics: PostgreSQL could not be queried (walts_pg_up 0)');
          else ctx.log.debug({ duration_s: r.duration_seconds }, 'metrics: refreshed');
        },
      });
      if (argv.textfile) {
        const state = await refresher.refreshOnce();
        ctx.signal.throwIfAborted();
        await writeTextfile(argv.textfile, await renderMetrics(state, nowMs(), database));
        return { textfile: argv.textfile, store_reachable: state.report?.store.reachable };
      }
      const server = await startMetricsServer({ listen: listen!, state: () => refresher.state(), nowMs, database, onError: (err) => ctx.log.error({ err }, 'rendering metrics failed') });
      const where = `${server.address.family === 'IPv6' ? `[${server.address.address}]` : server.address.address}:${server.address.port}`;
      ctx.log.info({ listen: where, refresh_s: argv.refresh, database }, `metrics: serving http://${where}/metrics`);
      refresher.start();
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await server.close();
      await refresher.stop();
      return { listen: where };
    }, {
      // Bad arguments are exit 2 before any configuration or store is looked at.
      preflight: () => {
        if (!(argv.refresh > 0) || !(argv['refresh-timeout'] > 0)) throw new UsageError('--refresh and --refresh-timeout must be positive numbers of seconds');
        if (!argv.textfile) parseListen(argv.listen);
      },
    }),
};
