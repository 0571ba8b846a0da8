/**
 * Test harness: real, throw-away PostgreSQL 15 clusters for integration tests.
 *
 * Every cluster lives in its own temp dir, listens on its own free TCP port on 127.0.0.1 and on a unix
 * socket in its own socket dir, and is never the system-wide cluster. Typical use:
 *
 *   const pg = trackClusters();
 *   afterAll(() => pg.cleanupAll());           // stops servers and removes dirs, even after failures
 *   const src = await pg.createCluster({ name: 'src', dataChecksums: true,
 *                                        env: { WALTS_STORE: 'file:///...' } });
 *   src.setConf({ archive_mode: 'on', archive_command: `node ${WALTS_BIN} wal-push %p` });
 *   await src.start();
 *   await src.psql('select 1');
 *
 * ROOT vs NON-ROOT
 * PostgreSQL refuses to run as root. When the test process is root (process.getuid() === 0, as on the
 * dev box and in CI) every PostgreSQL binary (initdb, pg_ctl, psql, pgbench, pg_basebackup, ...) runs as
 * the `postgres` OS user through `runuser -u postgres -- env -i K=V ... <binary>`. As a non-root user
 * the binaries simply run as the current user. The database superuser is always called `postgres`.
 *
 * PERMISSIONS (root only) - what this harness changes, and why:
 *  - os.tmpdir() (/tmp, mode 1777) is traversable by everyone: nothing to do.
 *  - The per-test base dir comes from fs.mkdtemp, which creates it with mode 0700 (root only): we chmod
 *    it to 0755 so that postgres can traverse into it. Nothing else is chmod-ed.
 *  - Each cluster's own dir (<base>/<name>/, holding data/, sock/ and postgres.log) is chowned to
 *    postgres, so initdb/pg_ctl/pg_basebackup can create the data dir (0700, postgres-owned, as
 *    PostgreSQL demands), the socket and the log there. Root (the test process) can still read
 *    everything, so log() and direct file inspection work.
 *  - Dirs that walts must write to from archive_command/restore_command (a file:// store, a marker dir)
 *    come from registry.tempDir(name, { forPostgres: true }) / makeTempDir(...): chowned to postgres.
 *  - The walts checkout (path.resolve(__dirname, '../..'), /work/main here) is NOT modified: it and its
 *    parents are already 0755 root-owned, so postgres can read and execute bin/walts and node_modules.
 *    checkRepoAccessible() verifies that once per process and fails with an explanation otherwise
 *    (fix: `chmod o+rx` on the offending parent dir, or clone the repo somewhere world-readable).
 *
 * ENVIRONMENT OF THE SERVER (how WALTS_* variables reach archive_command)
 * The server is started with a *clean* environment: a minimal base (PATH, LANG/LC_ALL=C.UTF-8, TZ=UTC,
 * HOME/USER/LOGNAME of the server's OS user) plus `cluster.env`. It is handed over explicitly on the
 * command line: `runuser -u postgres -- env -i PATH=... WALTS_X=... pg_ctl start ...`; pg_ctl execs the
 * postmaster with its own environment, and the archiver/startup process run archive_command /
 * restore_command through /bin/sh with that environment. Nothing from the developer's shell (PG*,
 * AWS_*, WALTS_*) leaks in. `cluster.env` is read at every start(), so change it and restart() to apply.
 *
 * CONFIGURATION
 * initdb appends `include_if_exists = 'walts_test.conf'` to postgresql.conf; setConf() merges settings
 * into that file (fully rewritten each time, so the last value wins and nothing piles up). Because it
 * lives in the data dir, it travels with pg_basebackup/backup-fetch copies; prepareRestoredDataDir()
 * rebinds port/socket and strips archive/recovery settings for the copy. postgresql.auto.conf (ALTER
 * SYSTEM) is read after it and therefore still wins.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { REPO_ROOT, RunResult, baseEnv, isRoot, lookupUser, run, runOk, runWhenThisProcessDies, wrapCommand } from './run';

export const PG_BINDIR = process.env.WALTS_TEST_PG_BINDIR || '/usr/lib/postgresql/15/bin';
/** OS user the PostgreSQL binaries run as (undefined: the current user). */
export const PG_OS_USER: string | undefined = isRoot() ? 'postgres' : undefined;
/** Database superuser name in every test cluster. */
export const PG_SUPERUSER = 'postgres';

const REQUIRED_BINARIES = ['initdb', 'pg_ctl', 'postgres', 'psql', 'pg_basebackup', 'pgbench', 'pg_controldata'];

export function pgBin(name: string): string {
  return path.join(PG_BINDIR, name);
}

/** True when the PostgreSQL 15 binaries the harness needs are installed (and, as root, user postgres exists). */
export function pgAvailable(): boolean {
  return pgUnavailableReason() === undefined;
}

function pgUnavailableReason(): string | undefined {
  for (const b of REQUIRED_BINARIES) {
    try {
      fs.accessSync(pgBin(b), fs.constants.X_OK);
    } catch {
      return `${pgBin(b)} is missing or not executable`;
    }
  }
  if (PG_OS_USER) {
    try {
      lookupUser(PG_OS_USER);
    } catch {
      return `tests run as root but OS user '${PG_OS_USER}' does not exist (PostgreSQL refuses to run as root)`;
    }
  }
  return undefined;
}

/** Throw a clear error (never skip silently) when PostgreSQL is not usable here. */
export function assertPgAvailable(): void {
  const why = pgUnavailableReason();
  if (why) {
    throw new Error(
      `PostgreSQL 15 is required for integration tests but is not usable: ${why}. ` +
        `Install postgresql-15 (Debian: apt-get install postgresql-15) or set WALTS_TEST_PG_BINDIR.`,
    );
  }
}

let repoChecked: Promise<void> | undefined;
/** As root: verify that the postgres user can read/execute the walts checkout (for archive_command). */
export function checkRepoAccessible(): Promise<void> {
  if (!PG_OS_USER) return Promise.resolve();
  repoChecked ??= (async () => {
    const r = await run(
      'test',
      ['-x', REPO_ROOT, '-a', '-r', path.join(REPO_ROOT, 'package.json'), '-a', '-x', path.join(REPO_ROOT, 'node_modules')],
      { asUser: PG_OS_USER, cleanEnv: true, cwd: '/' },
    );
    if (r.code !== 0) {
      throw new Error(
        `OS user ${PG_OS_USER} cannot read/traverse the walts checkout ${REPO_ROOT} (or its node_modules); ` +
          `archive_command would fail. Make the checkout and its parent dirs world-readable+traversable ` +
          `(chmod o+rx on each parent dir) or clone it elsewhere. ${r.stderr}`,
      );
    }
  })();
  return repoChecked;
}

// ---------------------------------------------------------------------------------------------------
// temp dirs, ownership, ports

export async function chownToPg(p: string, recursive = false): Promise<void> {
  if (!PG_OS_USER) return;
  const { uid, gid } = lookupUser(PG_OS_USER);
  if (!recursive) {
    await fs.promises.chown(p, uid, gid);
    return;
  }
  await runOk('chown', ['-R', `${uid}:${gid}`, p]);
}

/** mkdtemp in os.tmpdir(), chmod 0755 so that the postgres user can traverse it. */
export async function makeBaseDir(prefix = 'walts-test-'): Promise<string> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), prefix));
  await fs.promises.chmod(dir, 0o755);
  return dir;
}

/** Create <parent>/<name>; with forPostgres it is owned by the postgres OS user (when root). */
export async function makeTempDir(parent: string, name: string, opts: { forPostgres?: boolean } = {}): Promise<string> {
  const dir = path.join(parent, sanitize(name));
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o755 });
  if (opts.forPostgres) await chownToPg(dir);
  return dir;
}

function sanitize(name: string): string {
  // Keep unix socket paths short (108-byte limit) and shell-safe.
  const s = name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 32);
  return s || 'x';
}

const handedOutPorts = new Set<number>();
/** A TCP port on 127.0.0.1 that was free a moment ago (start() retries on a bind race). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
      });
    });
    if (port && !handedOutPorts.has(port)) {
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new Error('could not find a free TCP port');
}

// ---------------------------------------------------------------------------------------------------
// configuration file handling

export const MANAGED_CONF = 'walts_test.conf';

/** Settings removed from a copy (basebackup / backup-fetch) by default: they belong to the source. */
export const SOURCE_ONLY_SETTINGS = [
  'archive_mode',
  'archive_command',
  'archive_library',
  'archive_timeout',
  'restore_command',
  'archive_cleanup_command',
  'recovery_end_command',
  'recovery_target',
  'recovery_target_lsn',
  'recovery_target_name',
  'recovery_target_time',
  'recovery_target_xid',
  'recovery_target_inclusive',
  'recovery_target_timeline',
  'recovery_target_action',
  'primary_conninfo',
  'primary_slot_name',
];

function quoteConf(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Parse `key = value` lines as written by us (or by ALTER SYSTEM). Good enough for these two files. */
function parseConf(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const mm = /^([A-Za-z0-9_.]+)\s*=?\s*(.*)$/.exec(line);
    if (!mm) continue;
    let v = mm[2]!.trim();
    if (v.startsWith("'")) {
      let out = '';
      for (let i = 1; i < v.length; i++) {
        const c = v[i]!;
        if (c === '\\' && i + 1 < v.length) {
          out += v[++i];
        } else if (c === "'") {
          if (v[i + 1] === "'") {
            out += "'";
            i++;
          } else break;
        } else out += c;
      }
      v = out;
    } else {
      v = v.replace(/\s*#.*$/, '');
    }
    m.set(mm[1]!.toLowerCase(), v);
  }
  return m;
}

function renderConf(settings: Map<string, string>, header: string): string {
  let s = `# ${header}\n`;
  for (const [k, v] of settings) s += `${k} = ${quoteConf(v)}\n`;
  return s;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------------
// Cluster

export interface ClusterOptions {
  name: string;
  dataChecksums?: boolean;
  walSegSizeMb?: number;
  /** Extra postgresql.conf settings (on top of the harness defaults). */
  conf?: Record<string, string>;
  /** Extra environment for the server process (and so for archive_command / restore_command). */
  env?: Record<string, string>;
  /** Parent dir for the cluster dir. Default: a fresh mkdtemp dir, removed by destroy(). */
  baseDir?: string;
}

export interface StartOptions {
  /** pg_ctl -t (seconds). Default 60. */
  timeoutSec?: number;
  /** false: pg_ctl -W, return without waiting for the server to accept connections. */
  wait?: boolean;
}

export class Cluster {
  readonly name: string;
  /** The cluster's own dir: data/, sock/, postgres.log. Owned by postgres when root. */
  readonly dir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  port: number;
  /** Extra environment for the server (read at each start()). */
  env: Record<string, string>;
  /** OS user running the binaries (undefined: current user). */
  readonly osUser: string | undefined = PG_OS_USER;
  /** A base dir this cluster created itself and removes on destroy(). */
  private ownBaseDir: string | undefined;
  private destroyed = false;
  private cancelWatchdog: () => void;

  constructor(args: { name: string; dir: string; port: number; env?: Record<string, string>; ownBaseDir?: string }) {
    this.name = args.name;
    this.dir = args.dir;
    this.dataDir = path.join(args.dir, 'data');
    this.socketDir = path.join(args.dir, 'sock');
    this.logFile = path.join(args.dir, 'postgres.log');
    this.port = args.port;
    this.env = { ...(args.env ?? {}) };
    this.ownBaseDir = args.ownBaseDir;
    // Safety net: if this test process dies without destroy() (crash, forgotten afterAll, killed
    // jest worker), a detached watchdog stops the server ("immediate") so no postmaster is left behind.
    const w = wrapCommand(pgBin('pg_ctl'), ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'], baseEnv(), PG_OS_USER, true);
    this.cancelWatchdog = runWhenThisProcessDies(w.cmd, w.args, w.spawnEnv);
  }

  /** Client environment for libpq tools and for walts (backup-push connects with these). */
  pgEnv(): Record<string, string> {
    return { PGHOST: this.socketDir, PGPORT: String(this.port), PGUSER: PG_SUPERUSER, PGDATABASE: 'postgres' };
  }

  /** Run a PostgreSQL binary from PG_BINDIR as the cluster's OS user with a clean environment. */
  runBin(bin: string, args: string[], opts: { env?: Record<string, string>; input?: string | Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
    return run(pgBin(bin), args, {
      asUser: this.osUser,
      cleanEnv: true,
      env: opts.env,
      input: opts.input,
      timeoutMs: opts.timeoutMs ?? 300_000,
      cwd: fs.existsSync(this.dir) ? this.dir : '/',
    });
  }

  private async runBinOk(bin: string, args: string[], opts: { env?: Record<string, string>; input?: string | Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
    const r = await this.runBin(bin, args, opts);
    if (r.code !== 0) {
      throw new Error(
        `[cluster ${this.name}] ${bin} ${args.join(' ')} failed (code=${r.code} signal=${r.signal}${r.timedOut ? ' TIMEOUT' : ''})\n` +
          `--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
      );
    }
    return r;
  }

  // -- configuration ----------------------------------------------------------------------------

  private confPath(): string {
    return path.join(this.dataDir, MANAGED_CONF);
  }

  /** Current managed settings (walts_test.conf). */
  getConf(): Record<string, string> {
    try {
      return Object.fromEntries(parseConf(fs.readFileSync(this.confPath(), 'utf8')));
    } catch {
      return {};
    }
  }

  /**
   * Merge settings into walts_test.conf (included from postgresql.conf). A value of '' is written as
   * an empty string (e.g. archive_command = ''); use unsetConf() to remove a key. Takes effect on the
   * next start()/restart(), or reload() for sighup settings.
   */
  setConf(settings: Record<string, string>): void {
    const m = new Map(Object.entries(this.getConf()));
    for (const [k, v] of Object.entries(settings)) m.set(k.toLowerCase(), v);
    this.writeConf(m);
  }

  unsetConf(keys: string[]): void {
    const m = new Map(Object.entries(this.getConf()));
    for (const k of keys) m.delete(k.toLowerCase());
    this.writeConf(m);
  }

  private writeConf(m: Map<string, string>): void {
    const p = this.confPath();
    fs.writeFileSync(p, renderConf(m, 'managed by test/helpers/pg.ts (setConf); rewritten on every change'), { mode: 0o600 });
    if (PG_OS_USER) {
      const { uid, gid } = lookupUser(PG_OS_USER);
      fs.chownSync(p, uid, gid);
    }
  }

  /**
   * Put the (stopped) cluster into archive recovery at next start: merge `settings` (restore_command,
   * recovery_target_*, ...) into the config and create recovery.signal (standby.signal with standby).
   */
  async setRecovery(settings: Record<string, string>, opts: { standby?: boolean } = {}): Promise<void> {
    this.setConf(settings);
    const sig = path.join(this.dataDir, opts.standby ? 'standby.signal' : 'recovery.signal');
    await fs.promises.writeFile(sig, '', { mode: 0o600 });
    await chownToPg(sig);
  }

  /**
   * Make a copied data dir (pg_basebackup, walts backup-fetch) startable as THIS cluster: bind it to
   * this cluster's port/socket and, unless keepSourceSettings, drop archive/recovery settings that
   * came from the source, both from walts_test.conf and from postgresql.auto.conf. If the data dir has
   * no include for walts_test.conf (not made by this harness) one is appended to postgresql.conf.
   * fixOwnership (root only): chown -R the data dir to postgres and chmod it 0700, for data dirs
   * written by a process running as root.
   */
  async prepareRestoredDataDir(opts: { keepSourceSettings?: boolean; fixOwnership?: boolean } = {}): Promise<void> {
    if (opts.fixOwnership && PG_OS_USER) {
      await chownToPg(this.dataDir, true);
      await fs.promises.chmod(this.dataDir, 0o700);
    }
    const pgconf = path.join(this.dataDir, 'postgresql.conf');
    const pgconfText = fs.existsSync(pgconf) ? fs.readFileSync(pgconf, 'utf8') : '';
    if (!pgconfText.includes(MANAGED_CONF)) {
      fs.appendFileSync(pgconf, `\ninclude_if_exists = '${MANAGED_CONF}'\n`);
      if (PG_OS_USER) await chownToPg(pgconf);
    }
    const m = new Map(Object.entries(this.getConf()));
    if (!opts.keepSourceSettings) {
      for (const k of SOURCE_ONLY_SETTINGS) m.delete(k);
      const auto = path.join(this.dataDir, 'postgresql.auto.conf');
      if (fs.existsSync(auto)) {
        const kept = fs
          .readFileSync(auto, 'utf8')
          .split('\n')
          .filter((l) => {
            const mm = /^\s*([A-Za-z0-9_.]+)\s*=/.exec(l);
            return !(mm && SOURCE_ONLY_SETTINGS.includes(mm[1]!.toLowerCase()));
          });
        fs.writeFileSync(auto, kept.join('\n'));
      }
    }
    m.set('port', String(this.port));
    m.set('unix_socket_directories', this.socketDir);
    m.set('listen_addresses', '127.0.0.1');
    this.writeConf(m);
    await fs.promises.mkdir(this.socketDir, { recursive: true, mode: 0o755 });
    await chownToPg(this.socketDir);
  }

  // -- lifecycle --------------------------------------------------------------------------------

  /** postmaster PID if a postmaster for this data dir is alive. */
  postmasterPid(): number | undefined {
    let text: string;
    try {
      text = fs.readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8');
    } catch {
      return undefined;
    }
    const pid = Number(text.split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    try {
      process.kill(pid, 0);
      return pid;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
    }
  }

  isRunning(): boolean {
    return this.postmasterPid() !== undefined;
  }

  private serverEnv(): Record<string, string> {
    return { ...baseEnv(), ...this.env };
  }

  async start(opts: StartOptions = {}): Promise<void> {
    if (this.destroyed) throw new Error(`[cluster ${this.name}] already destroyed`);
    const t = opts.timeoutSec ?? 60;
    for (let attempt = 1; ; attempt++) {
      const logBefore = this.logSize();
      const r = await this.runBin(
        'pg_ctl',
        ['-D', this.dataDir, '-l', this.logFile, opts.wait === false ? '-W' : '-w', '-t', String(t), 'start'],
        { env: this.serverEnv(), timeoutMs: (t + 30) * 1000 },
      );
      if (r.code === 0) return;
      const newLog = this.log().slice(logBefore);
      if (attempt < 4 && /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(newLog) && !this.isRunning()) {
        // Lost a port race with another test worker: take another port.
        this.port = await freePort();
        this.setConf({ port: String(this.port) });
        continue;
      }
      throw new Error(
        `[cluster ${this.name}] pg_ctl start failed (code=${r.code}${r.timedOut ? ' TIMEOUT' : ''})\n` +
          `--- pg_ctl stdout ---\n${r.stdout}\n--- pg_ctl stderr ---\n${r.stderr}\n--- server log (tail) ---\n${this.logTail(80)}`,
      );
    }
  }

  /** pg_ctl stop -m mode; no-op when not running; escalates to immediate, then SIGKILL. */
  async stop(mode: 'smart' | 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!this.isRunning()) return;
    const r = await this.runBin('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop'], { timeoutMs: 90_000 });
    if (r.code === 0 || !this.isRunning()) return;
    if (mode !== 'immediate') {
      await this.runBin('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'], { timeoutMs: 60_000 });
    }
    const pid = this.postmasterPid();
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (mode !== 'immediate') {
      throw new Error(`[cluster ${this.name}] pg_ctl stop -m ${mode} failed: ${r.stderr}\n${this.logTail(40)}`);
    }
  }

  async restart(opts: StartOptions = {}): Promise<void> {
    await this.stop('fast');
    await this.start(opts);
  }

  /** pg_ctl reload (SIGHUP): apply sighup-context settings written with setConf(). */
  async reload(): Promise<void> {
    await this.runBinOk('pg_ctl', ['-D', this.dataDir, 'reload']);
  }

  /** Stop (fast, then harder) and remove the cluster dir. Idempotent. */
  async destroy(opts: { keepFiles?: boolean } = {}): Promise<void> {
    if (this.destroyed) return;
    try {
      await this.stop('fast');
    } catch {
      await this.stop('immediate').catch(() => undefined);
    }
    this.destroyed = true;
    this.cancelWatchdog();
    if (!opts.keepFiles) {
      await fs.promises.rm(this.ownBaseDir ?? this.dir, { recursive: true, force: true });
    }
  }

  // -- clients ----------------------------------------------------------------------------------

  /** psql -XAtq -v ON_ERROR_STOP=1 via the unix socket; returns trimmed stdout; throws on error. */
  async psql(sql: string, db = 'postgres'): Promise<string> {
    const r = await this.psqlRun(sql, db);
    if (r.code !== 0) {
      throw new Error(`[cluster ${this.name}] psql failed (code=${r.code}): ${r.stderr.trim()}\nSQL: ${sql}`);
    }
    return r.stdout.trim();
  }

  /** Like psql() but never throws: inspect code/stderr (e.g. to assert an error). */
  psqlRun(sql: string, db = 'postgres', timeoutMs = 120_000): Promise<RunResult> {
    return this.runBin('psql', ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db, '-f', '-'], {
      env: { ...this.pgEnv(), PGDATABASE: db, PGCONNECT_TIMEOUT: '10' },
      input: sql,
      timeoutMs,
    });
  }

  /** pgbench with PGHOST/PGPORT/PGUSER/PGDATABASE set for this cluster; throws on failure. */
  async pgbench(args: string[]): Promise<RunResult> {
    return this.runBinOk('pgbench', args, { env: this.pgEnv(), timeoutMs: 600_000 });
  }

  /** Poll `select pg_is_in_recovery()` until false. Throws (with the log) if the server dies or time runs out. */
  async waitForRecoveryEnd(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (!this.isRunning()) {
        throw new Error(`[cluster ${this.name}] server is not running while waiting for recovery to end\n${this.logTail(80)}`);
      }
      const r = await this.psqlRun('select pg_is_in_recovery()', 'postgres', 15_000);
      if (r.code === 0 && r.stdout.trim() === 'f') return;
      last = r.code === 0 ? `pg_is_in_recovery=${r.stdout.trim()}` : r.stderr.trim();
      await sleep(200);
    }
    throw new Error(`[cluster ${this.name}] recovery did not end within ${timeoutMs} ms (last: ${last})\n${this.logTail(80)}`);
  }

  /**
   * pg_switch_wal() and wait until the switched-out segment is archived. Returns its file name.
   * Throws with the log on timeout (e.g. archive_command keeps failing).
   */
  async switchWalAndWaitArchived(timeoutMs = 60_000): Promise<string> {
    const seg = await this.psql('select pg_walfile_name(pg_switch_wal())');
    await this.waitForArchived(seg, timeoutMs);
    return seg;
  }

  /**
   * Wait until WAL file walFile has been archived: no pg_wal/archive_status/<f>.ready is left, and
   * either <f>.done exists or pg_stat_archiver.last_archived_wal has reached it.
   */
  async waitForArchived(walFile: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const status = path.join(this.dataDir, 'pg_wal', 'archive_status');
    let state = '';
    while (Date.now() < deadline) {
      if (!fs.existsSync(path.join(status, `${walFile}.ready`))) {
        if (fs.existsSync(path.join(status, `${walFile}.done`))) return;
        state = await this.psql(
          "select coalesce(last_archived_wal,'') || '|' || failed_count || '|' || coalesce(last_failed_wal,'') from pg_stat_archiver",
        );
        const last = (state.split('|')[0] ?? '').slice(0, 24);
        if (last.length === 24 && last >= walFile.slice(0, 24)) return;
      }
      await sleep(100);
    }
    state = await this.psql(
      "select coalesce(last_archived_wal,'') || '|' || failed_count || '|' || coalesce(last_failed_wal,'') from pg_stat_archiver",
    ).catch((e: Error) => e.message);
    throw new Error(
      `[cluster ${this.name}] ${walFile} not archived within ${timeoutMs} ms (last_archived|failed_count|last_failed: ${state})\n${this.logTail(60)}`,
    );
  }

  /** pg_controldata output as key -> value. */
  async controlData(): Promise<Record<string, string>> {
    const r = await this.runBinOk('pg_controldata', ['-D', this.dataDir]);
    const out: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return out;
  }

  // -- logs -------------------------------------------------------------------------------------

  private logSize(): number {
    try {
      return fs.statSync(this.logFile).size;
    } catch {
      return 0;
    }
  }

  /** Whole server log (stderr of the postmaster and of archive/restore commands). */
  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  logTail(lines = 50): string {
    return this.log().split('\n').slice(-lines).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------------
// factories

/** Harness defaults, applied before opts.conf. */
export function defaultConf(c: Cluster): Record<string, string> {
  return {
    listen_addresses: '127.0.0.1',
    port: String(c.port),
    unix_socket_directories: c.socketDir,
    // fsync=off: tests need speed, and it only matters if the *OS* crashes. Process crashes (kill -9,
    // pg_ctl stop -m immediate) are unaffected because the kernel page cache survives them. walts' own
    // fsync calls are not affected by this setting.
    fsync: 'off',
    shared_buffers: '32MB',
    max_connections: '40',
    // wal_level=replica and max_wal_senders=10 are the PG15 defaults: enough for pg_basebackup.
    log_line_prefix: '%m [%p] %b ',
    log_checkpoints: 'on',
    // Keep WAL small and checkpoints frequent enough that tests produce segments predictably.
    max_wal_size: '256MB',
    min_wal_size: '80MB',
  };
}

async function newClusterShell(name: string, baseDir: string | undefined, env?: Record<string, string>): Promise<Cluster> {
  assertPgAvailable();
  await checkRepoAccessible();
  let ownBaseDir: string | undefined;
  if (!baseDir) {
    baseDir = await makeBaseDir(`walts-pg-${sanitize(name).slice(0, 16)}-`);
    ownBaseDir = baseDir;
  }
  const dir = path.join(baseDir, sanitize(name));
  if (fs.existsSync(dir)) throw new Error(`cluster dir ${dir} already exists (duplicate cluster name?)`);
  await fs.promises.mkdir(dir, { mode: 0o755 });
  await chownToPg(dir);
  const c = new Cluster({ name, dir, port: await freePort(), env, ownBaseDir });
  await fs.promises.mkdir(c.socketDir, { mode: 0o755 });
  await chownToPg(c.socketDir);
  return c;
}

/** initdb a new cluster (not started). */
export async function createCluster(opts: ClusterOptions): Promise<Cluster> {
  const c = await newClusterShell(opts.name, opts.baseDir, opts.env);
  const args = ['-D', c.dataDir, '-U', PG_SUPERUSER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'];
  if (opts.dataChecksums) args.push('--data-checksums');
  if (opts.walSegSizeMb) args.push(`--wal-segsize=${opts.walSegSizeMb}`);
  const r = await c.runBin('initdb', args, { timeoutMs: 120_000 });
  if (r.code !== 0) {
    await c.destroy();
    throw new Error(`[cluster ${opts.name}] initdb failed (code=${r.code})\n${r.stdout}\n${r.stderr}`);
  }
  fs.appendFileSync(path.join(c.dataDir, 'postgresql.conf'), `\n# test harness settings\ninclude_if_exists = '${MANAGED_CONF}'\n`);
  c.setConf({ ...defaultConf(c), ...(opts.conf ?? {}) });
  return c;
}

/**
 * A Cluster object whose data dir does not exist yet (e.g. the target of `walts backup-fetch`).
 * After the data dir has been filled, call prepareRestoredDataDir() and then start().
 */
export async function emptyCluster(opts: { name: string; env?: Record<string, string>; baseDir?: string }): Promise<Cluster> {
  return newClusterShell(opts.name, opts.baseDir, opts.env);
}

/**
 * pg_basebackup -X none -c fast from src into a new Cluster (new port and socket dir, not started).
 * No WAL is included: the copy must recover from the archive (set restore_command + recovery.signal).
 * Archive/recovery settings inherited from src are stripped (opts.keepSourceSettings to keep them).
 * Without opts.baseDir the copy gets its own mkdtemp base dir (independent of src.destroy()).
 * Note: with archive_mode=on on src, pg_basebackup waits until the backup's last WAL segment has been
 * archived, so src's archive_command must work.
 */
export async function basebackup(
  src: Cluster,
  opts: { name: string; env?: Record<string, string>; baseDir?: string; keepSourceSettings?: boolean; timeoutMs?: number },
): Promise<Cluster> {
  const c = await newClusterShell(opts.name, opts.baseDir, opts.env);
  const r = await c.runBin(
    'pg_basebackup',
    ['-D', c.dataDir, '-X', 'none', '-c', 'fast', '--no-sync', '-h', src.socketDir, '-p', String(src.port), '-U', PG_SUPERUSER],
    { timeoutMs: opts.timeoutMs ?? 180_000 },
  );
  if (r.code !== 0) {
    await c.destroy();
    throw new Error(`[basebackup ${src.name} -> ${opts.name}] pg_basebackup failed (code=${r.code}${r.timedOut ? ' TIMEOUT' : ''})\n${r.stdout}\n${r.stderr}`);
  }
  await c.prepareRestoredDataDir({ keepSourceSettings: opts.keepSourceSettings });
  return c;
}

// ---------------------------------------------------------------------------------------------------
// registry for robust cleanup

export interface ClusterRegistry {
  /** The registry's mkdtemp base dir (0755), created on first use. */
  baseDir(): Promise<string>;
  createCluster(opts: ClusterOptions): Promise<Cluster>;
  basebackup(src: Cluster, opts: { name: string; env?: Record<string, string>; keepSourceSettings?: boolean; timeoutMs?: number }): Promise<Cluster>;
  emptyCluster(opts: { name: string; env?: Record<string, string> }): Promise<Cluster>;
  /** Register a cluster made elsewhere. */
  track(c: Cluster): Cluster;
  /** <base>/<name>, owned by postgres with forPostgres (e.g. a file:// store archive_command writes to). */
  tempDir(name: string, opts?: { forPostgres?: boolean }): Promise<string>;
  readonly clusters: readonly Cluster[];
  /** Print every cluster's log tail to stderr (call from a catch or when debugging). */
  dumpLogs(lines?: number): void;
  /**
   * Stop every cluster and remove the base dir. Never throws. WALTS_TEST_KEEP=1 keeps the files
   * (servers are still stopped) and prints where they are.
   */
  cleanupAll(): Promise<void>;
}

export function trackClusters(): ClusterRegistry {
  const clusters: Cluster[] = [];
  let base: Promise<string> | undefined;
  const baseDir = () => (base ??= makeBaseDir('walts-test-'));
  const track = (c: Cluster) => {
    clusters.push(c);
    return c;
  };
  return {
    baseDir,
    clusters,
    track,
    async createCluster(opts) {
      return track(await createCluster({ ...opts, baseDir: opts.baseDir ?? (await baseDir()) }));
    },
    async basebackup(src, opts) {
      return track(await basebackup(src, { ...opts, baseDir: await baseDir() }));
    },
    async emptyCluster(opts) {
      return track(await emptyCluster({ ...opts, baseDir: await baseDir() }));
    },
    async tempDir(name, opts = {}) {
      return makeTempDir(await baseDir(), name, opts);
    },
    dumpLogs(lines = 60) {
      for (const c of clusters) {
        process.stderr.write(`===== server log of cluster ${c.name} (${c.logFile}) =====\n${c.logTail(lines)}\n`);
      }
    },
    async cleanupAll() {
      const keep = process.env.WALTS_TEST_KEEP === '1';
      for (const c of clusters.splice(0).reverse()) {
        try {
          await c.destroy({ keepFiles: keep });
        } catch (e) {
          process.stderr.write(`cleanup of cluster ${c.name} failed: ${(e as Error).message}\n`);
        }
      }
      if (base) {
        const dir = await base.catch(() => undefined);
        base = undefined;
        if (dir) {
          if (keep) process.stderr.write(`WALTS_TEST_KEEP=1: test files kept in ${dir}\n`);
          else await fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined);
        }
      }
    },
  };
}
