/**
 * The drill's PostgreSQL server: the restored data directory started by walts itself (a child
 * process, never pg_ctl: walts must know at once when the server dies, and stop it on a signal).
 *
 * Isolation, whatever the backup's own configuration says (command-line settings win over
 * postgresql.conf and postgresql.auto.conf):
 * - listen_addresses = '': no TCP socket at all; only a unix socket in a private (0700) directory
 *   of the drill's run directory, with a port number picked free (it names the socket and seeds the
 *   shared memory key, so the drill never meets the production server's 5432);
 * - hba_file/ident_file of the drill (`local all all trust`): the socket directory is private, and
 *   the backup's pg_hba.conf may ask for passwords the drill host does not have;
 * - archive_mode = off, synchronous_standby_names = '' (a promoted copy must not wait for the
 *   origin's synchronous standbys), primary_conninfo = '', ssl = off, no external pid file;
 * - lc_messages = C and the log on stderr into the drill's log file (serverLog.ts reads it).
 * The server inherits walts' environment (store, keys: restore_command is walts wal-fetch) minus the
 * libpq variables and WALTS_SPOOL_DIR (the prefetch spool stays inside the copy's pg_wal).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, promises as fsp } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect, type PgSession } from '../../postgres/client';
import { ConfigError } from '../../errors';
import type { PgBinaries } from './pgBinaries';

export interface ServerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class ServerExitedError extends Error {
  constructor(readonly exit: ServerExit) {
    super(describeExit(exit));
  }
}

export interface DrillServerOptions {
  readonly bin: PgBinaries;
  readonly dataDir: string;
  /** Private run directory (0700): socket, hba file, log. */
  readonly runDir: string;
  readonly logFile: string;
  readonly dbUser: string;
}

export class DrillServer {
  readonly socketDir: string;
  private exit: ServerExit | undefined;
  private readonly exited: Promise<ServerExit>;

  private constructor(
    private readonly options: DrillServerOptions,
    readonly port: number,
    private readonly child: ChildProcess,
  ) {
    this.socketDir = join(options.runDir, 'sock');
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      child.once('error', () => {
        this.exit = { code: null, signal: null };
        resolve(this.exit);
      });
    });
  }

  static async start(options: DrillServerOptions): Promise<DrillServer> {
    const { runDir, dataDir } = options;
    const socketDir = join(runDir, 'sock');
    await fsp.mkdir(socketDir, { mode: 0o700 });
    const hba = join(runDir, 'pg_hba.conf');
    const ident = join(runDir, 'pg_ident.conf');
    await fsp.writeFile(hba, '# walts restore-test: only the private socket directory reaches this server\nlocal all all trust\n', { mode: 0o600 });
    await fsp.writeFile(ident, '', { mode: 0o600 });
    // Debian keeps postgresql.conf in /etc: the data directory then has none, and postgres will not start without one.
    if (!existsSync(join(dataDir, 'postgresql.conf'))) {
      await fsp.writeFile(join(dataDir, 'postgresql.conf'), "# written by walts restore-test: the backup had no postgresql.conf (it lives outside the data directory on the origin)\n", { mode: 0o600 });
    }
    const port = await freePort();
    const settings: Record<string, string> = {
      port: String(port),
      listen_addresses: '',
      unix_socket_directories: socketDir,
      unix_socket_permissions: '0700',
      hba_file: hba,
      ident_file: ident,
      archive_mode: 'off',
      hot_standby: 'on',
      synchronous_standby_names: '',
      primary_conninfo: '',
      ssl: 'off',
      external_pid_file: '',
      logging_collector: 'off',
      log_destination: 'stderr',
      lc_messages: 'C',
      cluster_name: 'walts-restore-test',
    };
    const args = ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && k !== 'WALTS_SPOOL_DIR') env[k] = v;
    const log = openSync(options.logFile, 'a', 0o600);
    try {
      const child = spawn(options.bin.postgres, args, { env, stdio: ['ignore', log, log], cwd: dataDir });
      return new DrillServer(options, port, child);
    } finally {
      closeSync(log);
    }
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** The exit once it happened (the server died or was stopped). */
  get exitStatus(): ServerExit | undefined {
    return this.exit;
  }

  /** A session on the private socket as `dbUser` (trust). */
  session(database: string): Promise<PgSession> {
    return connect({ env: {}, connectTimeoutMs: 10_000, application: 'walts restore-test', overrides: { host: this.socketDir, port: this.port, user: this.options.dbUser, database } });
  }

  /**
   * Waits until recovery has ended (the server promoted) and returns a session on `database`.
   * `onReplay` gets the replay position while the server is still recovering. Throws
   * ServerExitedError when the server dies, ConfigError when it refuses the role or database.
   */
  async waitForPromotion(database: string, options: { signal?: AbortSignal; onReplay?: (lsn: string) => void; pollMs?: number }): Promise<PgSession> {
    let session: PgSession | undefined;
    for (;;) {
      options.signal?.throwIfAborted();
      if (this.exit) {
        await session?.close();
        throw new ServerExitedError(this.exit);
      }
      try {
        session ??= await this.session(database);
        const r = await session.query<{ recovering: boolean; lsn: string | null }>('select pg_is_in_recovery() as recovering, pg_last_wal_replay_lsn()::text as lsn');
        const row = r.rows[0];
        if (row && !row.recovering) return session;
        if (row?.lsn) options.onReplay?.(row.lsn);
      } catch (err) {
        if (err instanceof ConfigError && !this.exit) throw err;
        await session?.close();
        session = undefined; // not accepting connections yet (before consistency), or restarting
      }
      await Promise.race([sleep(options.pollMs ?? 500, options.signal), this.exited]);
    }
  }

  /**
   * Stops the server: fast shutdown (SIGINT: a clean shutdown checkpoint, so a kept copy starts
   * without recovery), then immediate (SIGQUIT) and SIGKILL if it does not go. `clean` only when the
   * fast shutdown ended it with exit code 0.
   */
  async stop(graceMs = 300_000): Promise<{ clean: boolean; detail: string }> {
    if (this.exit) return { clean: false, detail: `${describeExit(this.exit)} before it was asked to stop` };
    for (const [sig, wait] of [['SIGINT', graceMs], ['SIGQUIT', 30_000], ['SIGKILL', 30_000]] as const) {
      this.child.kill(sig);
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([this.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), wait)))]);
      clearTimeout(timer);
      if (exit) {
        const clean = sig === 'SIGINT' && exit.code === 0;
        return { clean, detail: clean ? 'fast shutdown, clean' : `${sig === 'SIGINT' ? 'fast shutdown' : `${sig} after fast shutdown took too long`}: ${describeExit(exit)}` };
      }
    }
    return { clean: false, detail: 'the server did not stop, even on SIGKILL' };
  }
}

export function describeExit(exit: ServerExit): string {
  return exit.signal ? `the server died by ${exit.signal}` : `the server exited with code ${exit.code}`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** A TCP port nobody listens on right now (the server opens none; see the header). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no free port'))));
    });
  });
}
