/**
 * One PostgreSQL session, reached the way libpq tools reach it (psql, pg_basebackup, WAL-E):
 *
 * | setting  | from (first wins)                                   | default                                  |
 * |----------|-----------------------------------------------------|------------------------------------------|
 * | host     | overrides.host, PGHOST                              | /var/run/postgresql if it exists, else localhost |
 * | port     | overrides.port, PGPORT                              | 5432                                     |
 * | user     | overrides.user, PGUSER                              | the OS user (effective uid), as libpq    |
 * | database | overrides.database, PGDATABASE                      | the user name                            |
 * | password | overrides.password, PGPASSWORD, PGPASSFILE/~/.pgpass| none                                     |
 * | sslmode  | PGSSLMODE (disable/allow/prefer/require/verify-ca/verify-full) | prefer                        |
 * | app name | PGAPPNAME, options.application                      | walts                                    |
 * | timeout  | options.connectTimeoutMs, PGCONNECT_TIMEOUT (s)     | 30 s                                     |
 *
 * A host starting with `/` is a unix socket directory (`<dir>/.s.PGSQL.<port>`); PGHOST/PGPORT may list
 * several comma-separated hosts, tried in order like libpq. SSL is never used on a unix socket.
 * `prefer` tries TLS without verifying the certificate, then plain; `require` does not verify the
 * certificate unless a root certificate file exists (PGSSLROOTCERT or ~/.postgresql/root.crt: then it
 * behaves like verify-ca); verify-ca/verify-full need that file (`PGSSLROOTCERT=system`: Node's CAs).
 * PGSSLCERT/PGSSLKEY (default ~/.postgresql/postgresql.{crt,key}) supply a client certificate.
 * A physical replication session (`replication: true`, what pg_receivewal opens) sends the startup
 * parameter `replication=true`, so the server starts a walsender that only accepts replication
 * commands, and uses the database name `replication` (unless overrides.database is given; PGDATABASE
 * is not read) as pg_receivewal does: that is the name its `.pgpass` line must carry, while
 * pg_hba.conf matches such sessions with the keyword `replication` whatever the database name.
 * Differences from libpq: PGCONNECT_TIMEOUT=0 (libpq: wait forever) means the 30 s default, since
 * nothing in walts may hang forever; PGSERVICE, PGHOSTADDR and PGTARGETSESSIONATTRS are not read.
 *
 * Passwords: the password file is read by walts itself, with libpq's rules (`passwordFromFile()` in
 * fe-connect.c): only when the server asks for a password and none was given, lines
 * `host:port:database:username:password`, `*` matches anything, `\` escapes `:` and `\`, the first
 * matching line wins, `#` starts a comment line, a unix-socket host matches as `localhost` only when it
 * is the default socket directory (else the directory path must match), and a file that is not a plain
 * file or is group/world accessible is ignored. node-postgres can do this itself through the `pgpass`
 * package, but it matches socket paths literally (never as `localhost`), and every use prints a
 * deprecation warning to stderr (which is PostgreSQL's log when walts runs from archive_command).
 *
 * Errors: a failure to connect is one line naming host, port, user and database (never the password):
 * a ConfigError when every server refused the role, the password or the database (or no password
 * was supplied): settings to fix, never retried; otherwise an UnavailableError, transient for
 * network problems and "starting up/too many clients". Bad settings are a ConfigError naming the variable.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import type { ConnectionOptions as TlsOptions } from 'tls';
import type { Client } from 'pg';
import { ConfigError, UnavailableError, WaltsError } from '../errors';

export const DEFAULT_SOCKET_DIR = '/var/run/postgresql';
export const DEFAULT_PORT = 5432;
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** TCP keepalive idle time: a backup session can sit idle for hours while files are copied. */
const KEEPALIVE_IDLE_MS = 30_000;
/** How long close() waits for the server to acknowledge Terminate before dropping the socket. */
const CLOSE_GRACE_MS = 5_000;

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export interface ConnectionOverrides {
  host?: string;
  port?: number | string;
  user?: string;
  database?: string;
  password?: string;
}

export interface PgNotice {
  /** NOTICE, WARNING, INFO, ... as the server sent it. */
  readonly severity: string;
  readonly message: string;
}

export interface ConnectOptions {
  /** Application name when PGAPPNAME is not set (libpq's fallback_application_name). Default `walts`. */
  application?: string;
  /** Per-host connect timeout; wins over PGCONNECT_TIMEOUT (explicit settings win over the environment). */
  connectTimeoutMs?: number;
  /** Explicit settings; each wins over its PG* variable. */
  overrides?: ConnectionOverrides;
  /** Where PG* variables (and HOME) are read. Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** NOTICE/WARNING messages the server sends in this session (e.g. pg_backup_stop's archive waits). */
  onNotice?: (notice: PgNotice) => void;
  /** A physical replication (walsender) session: see the module comment. */
  replication?: boolean;
}

/** Where a session is connected (never includes the password). */
export interface SessionTarget {
  /** Host name, IP address, or unix socket directory. */
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly ssl: boolean;
}

export interface QueryOptions {
  /**
   * Client-side limit: when it expires the query is cancelled (a CancelRequest, like psql's ^C) and
   * an UnavailableError is thrown. If the server does not react, the session is closed.
   */
  timeoutMs?: number;
}

export interface PgResult<T> {
  readonly rows: T[];
  /** Rows returned or affected (0 when the server does not say). */
  readonly rowCount: number;
}

/** Alias used by callers that import both this module's and other modules' option types. */
export type PgConnectOptions = ConnectOptions;

export interface PgSession {
  /** `server_version_num`, e.g. 150018. */
  readonly serverVersionNum: number;
  /** The server process serving this session (pg_backend_pid()). */
  readonly backendPid: number;
  readonly target: SessionTarget;
  /** True once close() was called or the connection was lost. */
  readonly closed: boolean;
  /**
   * Run one statement (or several, without params). Server errors become PgQueryError (with the
   * SQLSTATE), a lost connection or server shutdown an UnavailableError.
   */
  query<T extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[], opts?: QueryOptions): Promise<PgResult<T>>;
  /** Ask the server to cancel the running statement (CancelRequest). Best effort: false if it could not be sent. */
  cancel(): Promise<boolean>;
  /** A new, independent session to the same server with the same settings. */
  reconnect(): Promise<PgSession>;
  /** End the session (Terminate). Never throws; idempotent. */
  close(): Promise<void>;
}

/** A statement failed in the server: `sqlState` is its SQLSTATE (e.g. 42501 insufficient_privilege). */
export class PgQueryError extends WaltsError {
  readonly sqlState: string | undefined;
  constructor(message: string, sqlState: string | undefined, options?: { cause?: unknown }) {
    super('internal', message, options);
    this.sqlState = sqlState;
  }
}

// ---------------------------------------------------------------------------------------------------
// settings

export interface ConnectSettings {
  readonly targets: readonly { host: string; port: number }[];
  readonly user: string;
  readonly database: string;
  readonly sslMode: SslMode;
  readonly applicationName: string;
  readonly connectTimeoutMs: number;
  /** PGOPTIONS (server options, e.g. `-c search_path=...`). */
  readonly options: string | undefined;
  /** Password file to consult when the server asks for a password and none was given. */
  readonly passFile: string;
  /** Where an explicit password came from (`PGPASSWORD`, `overrides.password`), if any. */
  readonly passwordOrigin: string | undefined;
  /** A physical replication (walsender) session. */
  readonly replication: boolean;
  /** TLS options per attempt kind, resolved for TCP targets (undefined when not needed). */
  readonly tls: { readonly noVerify: TlsOptions; readonly verifyCa?: TlsOptions; readonly verifyFull?: TlsOptions; readonly rootCertExists: boolean };
}

/** The explicit password is kept out of the enumerable settings so that logging them cannot leak it. */
const passwords = new WeakMap<ConnectSettings, string>();

/** Resolve libpq-style settings from options and the environment. Throws ConfigError listing every problem. */
export function resolveConnectSettings(options: ConnectOptions = {}): ConnectSettings {
  const env = options.env ?? process.env;
  const o = options.overrides ?? {};
  const problems: string[] = [];
  const pick = (override: string | number | undefined, name: string): string | undefined => {
    if (override !== undefined && override !== '') return String(override);
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };

  // hosts and ports
  const hostText = pick(o.host, 'PGHOST');
  const hosts = (hostText ?? '').split(',').map((h) => h.trim() || defaultHost());
  const portText = pick(o.port, 'PGPORT');
  const ports: number[] = [];
  for (const p of (portText ?? '').split(',')) {
    const t = p.trim();
    if (t === '') {
      ports.push(DEFAULT_PORT);
      continue;
    }
    const n = /^[0-9]{1,5}$/.test(t) ? Number(t) : NaN;
    if (!(n >= 1 && n <= 65535)) problems.push(`PGPORT: invalid port number ${JSON.stringify(t)}`);
    ports.push(n);
  }
  if (ports.length !== 1 && ports.length !== hosts.length) {
    problems.push(`PGPORT: could not match ${ports.length} port numbers to ${hosts.length} hosts (PGHOST)`);
  }
  const targets = hosts.map((host, i) => ({ host, port: ports.length === 1 ? ports[0]! : (ports[i] ?? DEFAULT_PORT) }));

  // user, database
  let user = pick(o.user, 'PGUSER');
  if (user === undefined) {
    try {
      user = os.userInfo().username;
    } catch {
      problems.push('PGUSER is not set and the OS user has no name');
    }
  }
  const replication = options.replication === true;
  // pg_receivewal's streamutil.c passes dbname=replication explicitly, so PGDATABASE does not apply.
  const database = replication ? o.database || 'replication' : (pick(o.database, 'PGDATABASE') ?? user ?? '');

  // password
  let password: string | undefined;
  let passwordOrigin: string | undefined;
  if (o.password !== undefined && o.password !== '') {
    password = o.password;
    passwordOrigin = 'the given password';
  } else if (env.PGPASSWORD) {
    password = env.PGPASSWORD;
    passwordOrigin = 'PGPASSWORD';
  }
  const home = env.HOME || safeHomedir();
  const passFile = env.PGPASSFILE || path.join(home, '.pgpass');

  // ssl
  const modeText = env.PGSSLMODE || 'prefer';
  let sslMode: SslMode = 'prefer';
  if ((SSL_MODES as readonly string[]).includes(modeText)) sslMode = modeText as SslMode;
  else problems.push(`PGSSLMODE: invalid value ${JSON.stringify(modeText)} (one of ${SSL_MODES.join(', ')})`);
  const anyTcp = targets.some((t) => !isSocketDir(t.host));
  const tls = anyTcp && sslMode !== 'disable' ? resolveTls(env, home, sslMode, problems) : { noVerify: {}, rootCertExists: false };

  // timeout
  let connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS;
  if (options.connectTimeoutMs !== undefined && options.connectTimeoutMs > 0) {
    connectTimeoutMs = options.connectTimeoutMs;
  } else if (env.PGCONNECT_TIMEOUT !== undefined && env.PGCONNECT_TIMEOUT.trim() !== '') {
    const t = env.PGCONNECT_TIMEOUT.trim();
    if (!/^-?[0-9]+$/.test(t)) problems.push(`PGCONNECT_TIMEOUT: not a whole number of seconds: ${JSON.stringify(t)}`);
    else if (Number(t) > 0) connectTimeoutMs = Math.max(2, Number(t)) * 1000; // libpq: at least 2 s
  }

  if (problems.length > 0) throw new ConfigError(problems);
  const settings: ConnectSettings = {
    targets,
    user: user!,
    database,
    sslMode,
    applicationName: env.PGAPPNAME || options.application || 'walts',
    connectTimeoutMs,
    options: env.PGOPTIONS || undefined,
    passFile,
    passwordOrigin,
    replication,
    tls,
  };
  if (password !== undefined) passwords.set(settings, password);
  return settings;
}

function defaultHost(): string {
  try {
    if (fs.statSync(DEFAULT_SOCKET_DIR).isDirectory()) return DEFAULT_SOCKET_DIR;
  } catch {
    /* no local socket directory */
  }
  return 'localhost';
}

function safeHomedir(): string {
  try {
    return os.homedir();
  } catch {
    return '/';
  }
}

function isSocketDir(host: string): boolean {
  return host.startsWith('/');
}

function resolveTls(env: NodeJS.ProcessEnv, home: string, mode: SslMode, problems: string[]): ConnectSettings['tls'] {
  const dotPg = path.join(home, '.postgresql');
  const client: TlsOptions = {};
  const certFile = env.PGSSLCERT || path.join(dotPg, 'postgresql.crt');
  const keyFile = env.PGSSLKEY || path.join(dotPg, 'postgresql.key');
  if (fs.existsSync(certFile)) {
    const cert = readSetting(certFile, env.PGSSLCERT ? 'PGSSLCERT' : `client certificate ${certFile}`, problems);
    const key = readSetting(keyFile, env.PGSSLKEY ? 'PGSSLKEY' : `client key ${keyFile}`, problems);
    if (cert !== undefined) client.cert = cert;
    if (key !== undefined) client.key = key;
  } else if (env.PGSSLCERT) {
    problems.push(`PGSSLCERT: ${certFile} does not exist`);
  }
  const rootFile = env.PGSSLROOTCERT || path.join(dotPg, 'root.crt');
  const system = rootFile === 'system';
  const rootCertExists = system || fs.existsSync(rootFile);
  const noVerify: TlsOptions = { ...client, rejectUnauthorized: false };
  if (!rootCertExists) {
    if (mode === 'verify-ca' || mode === 'verify-full') {
      problems.push(
        `PGSSLMODE=${mode}: root certificate file ${rootFile} does not exist; provide it (PGSSLROOTCERT) or use sslmode require`,
      );
    }
    return { noVerify, rootCertExists: false };
  }
  let ca: Buffer | undefined;
  if (!system) ca = readSetting(rootFile, env.PGSSLROOTCERT ? 'PGSSLROOTCERT' : `root certificate ${rootFile}`, problems);
  const verifyFull: TlsOptions = { ...client, rejectUnauthorized: true, ...(ca ? { ca } : {}) };
  const verifyCa: TlsOptions = { ...verifyFull, checkServerIdentity: () => undefined };
  return { noVerify, verifyCa, verifyFull, rootCertExists: true };
}

function readSetting(file: string, what: string, problems: string[]): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    problems.push(`${what}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return undefined;
  }
}

/** The TLS settings to try, in order, for one target (false = plain). */
function sslAttempts(s: ConnectSettings, host: string): (false | TlsOptions)[] {
  if (isSocketDir(host)) return [false];
  switch (s.sslMode) {
    case 'disable':
      return [false];
    case 'allow':
      return [false, s.tls.noVerify];
    case 'prefer':
      return [s.tls.noVerify, false];
    case 'require':
      return [s.tls.rootCertExists && s.tls.verifyCa ? s.tls.verifyCa : s.tls.noVerify];
    case 'verify-ca':
      return [s.tls.verifyCa ?? s.tls.noVerify];
    case 'verify-full':
      return [s.tls.verifyFull ?? s.tls.noVerify];
  }
}

// ---------------------------------------------------------------------------------------------------
// password file

export interface PgPassKey {
  host: string;
  port: string | number;
  database: string;
  user: string;
}

/**
 * The password for `key` from password-file text, or undefined. Exactly libpq's matching: fields are
 * compared literally after removing `\` escapes, a field that is exactly `*` matches anything, lines
 * starting with `#` are comments, the first match wins, and the password ends at the first unescaped
 * `:`. `key.host` must already be the pgpass host (see pgPassHost).
 */
export function matchPgPass(text: string, key: PgPassKey): string | undefined {
  const want = [key.host, String(key.port), key.database, key.user];
  for (let line of text.split('\n')) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.startsWith('#') || line === '') continue;
    let pos = 0;
    let ok = true;
    for (const token of want) {
      const next = matchField(line, pos, token);
      if (next < 0) {
        ok = false;
        break;
      }
      pos = next;
    }
    if (!ok) continue;
    let pw = '';
    for (let i = pos; i < line.length && line[i] !== ':'; i++) {
      if (line[i] === '\\' && i + 1 < line.length) i++;
      pw += line[i];
    }
    return pw === '' ? undefined : pw;
  }
  return undefined;
}

/** pwdfMatchesString: index after the field's `:` when the field at `pos` matches `token`, else -1. */
function matchField(line: string, pos: number, token: string): number {
  if (line[pos] === '*' && line[pos + 1] === ':') return pos + 2;
  let t = 0;
  for (let i = pos; i < line.length; i++) {
    let c: string | undefined = line[i];
    let escaped = false;
    if (c === '\\') {
      c = line[++i];
      escaped = true;
    }
    if (c === ':' && !escaped && t === token.length) return i + 1;
    // An unescaped ':' may still match a ':' inside the token (e.g. an IPv6 host), as in libpq.
    if (t >= token.length || c === undefined || c !== token[t]) return -1;
    t++;
  }
  return -1;
}

/** libpq looks a unix-socket connection up as `localhost` only for the default socket directory. */
export function pgPassHost(host: string): string {
  if (host === '' || host === DEFAULT_SOCKET_DIR) return 'localhost';
  return host;
}

/** Read and search the password file; `why` explains a miss (for "no password supplied" messages). */
export function lookupPgPass(file: string, key: PgPassKey): { password?: string; why: string } {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return { why: `no password file ${file}` };
  }
  if (!st.isFile()) return { why: `password file ${file} is not a plain file, ignored` };
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    return { why: `password file ${file} has group or world access and is ignored; permissions should be u=rw (0600) or less` };
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    return { why: `cannot read password file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
  const password = matchPgPass(text, key);
  if (password === undefined) {
    return { why: `no line in ${file} matches ${key.host}:${key.port}:${key.database}:${key.user}` };
  }
  return { password, why: `password from ${file}` };
}

// ---------------------------------------------------------------------------------------------------
// connect

class NoPasswordError extends Error {}

/** Connect: try each host (and, per PGSSLMODE, with and without TLS) until one accepts. */
export async function connect(options: ConnectOptions = {}): Promise<PgSession> {
  const settings = resolveConnectSettings(options);
  return connectWith(settings, options.onNotice);
}

async function connectWith(settings: ConnectSettings, onNotice: ((n: PgNotice) => void) | undefined): Promise<PgSession> {
  const failures: string[] = [];
  let transient = false;
  let allConfig = true;
  let lastCause: unknown;
  for (const t of settings.targets) {
    const attempts = sslAttempts(settings, t.host);
    for (let i = 0; i < attempts.length; i++) {
      const ssl = attempts[i]!;
      const r = await attempt(settings, t, ssl, onNotice);
      if (r.session) return r.session;
      lastCause = r.cause;
      const where = `host=${t.host} port=${t.port} user=${settings.user} database=${settings.database}${attempts.length > 1 ? (ssl ? ' (TLS)' : ' (no TLS)') : ''}`;
      failures.push(`${where}: ${r.reason}`);
      transient = r.transient;
      // What a host answered last decides (a TLS attempt refused by a server without SSL is not).
      if (i === attempts.length - 1 || r.network) allConfig &&= r.config;
      // A server that is not there will not be there with other TLS settings either.
      if (r.network) break;
    }
  }
  const prefix = failures.length === 1 ? 'cannot connect to PostgreSQL at ' : 'cannot connect to PostgreSQL: ';
  // Every server answered that the role, password or database is wrong: a setting to fix (exit 2).
  if (allConfig && failures.length > 0) throw new ConfigError(scrub(prefix + failures.join('; '), settings));
  throw new UnavailableError(scrub(prefix + failures.join('; '), settings), { transient, cause: lastCause });
}

interface AttemptResult {
  session?: PgSession;
  reason: string;
  transient: boolean;
  /** The server refused the role, password or database (or none was supplied): configuration. */
  config: boolean;
  network: boolean;
  cause?: unknown;
}

async function attempt(
  settings: ConnectSettings,
  t: { host: string; port: number },
  ssl: false | TlsOptions,
  onNotice: ((n: PgNotice) => void) | undefined,
): Promise<AttemptResult> {
  let passwordUsed: string | undefined;
  const explicit = passwords.get(settings);
  const password = async (): Promise<string> => {
    if (explicit !== undefined) {
      passwordUsed = settings.passwordOrigin;
      return explicit;
    }
    const r = lookupPgPass(settings.passFile, { host: pgPassHost(t.host), port: t.port, database: settings.database, user: settings.user });
    if (r.password === undefined) {
      throw new NoPasswordError(`the server requested a password but none was supplied (PGPASSWORD is not set; ${r.why})`);
    }
    passwordUsed = settings.passFile;
    return r.password;
  };
  // Loaded here, not at the top: every walts command loads this module, and wal-push/wal-fetch run
  // once per WAL segment without ever talking to the database.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Client: PgClient } = require('pg') as typeof import('pg');
  const client = new PgClient({
    host: t.host,
    port: t.port,
    user: settings.user,
    database: settings.database,
    password,
    ssl: ssl === false ? false : { ...ssl },
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    application_name: settings.applicationName,
    ...(settings.options ? { options: settings.options } : {}),
    // Not in @types/pg's ClientConfig; pg sends it as the startup parameter `replication`.
    ...(settings.replication ? ({ replication: 'true' } as object) : {}),
  });
  // An 'error' event without a listener would crash the process (e.g. the server goes away while idle).
  let lostWith: Error | undefined;
  client.on('error', (e: Error) => {
    lostWith ??= e;
  });
  try {
    await withDeadline(client.connect(), settings.connectTimeoutMs + 2_000, () => destroyClient(client));
    // A physical walsender refuses SQL but knows SHOW (PostgreSQL 10+).
    const version = settings.replication
      ? Number((await client.query<{ server_version_num: string }>('SHOW server_version_num')).rows[0]?.server_version_num)
      : (await client.query<{ v: number }>("select current_setting('server_version_num')::int as v")).rows[0]!.v;
    const pid = (client as unknown as { processID: number }).processID;
    const secretKey = (client as unknown as { secretKey: number }).secretKey;
    const target: SessionTarget = { host: t.host, port: t.port, user: settings.user, database: settings.database, ssl: ssl !== false };
    const session = new Session(client, version, pid, secretKey, target, settings, onNotice, () => lostWith);
    return { session, reason: '', transient: false, network: false, config: false };
  } catch (e) {
    destroyClient(client);
    const d = classifyConnectError(e, settings.connectTimeoutMs);
    let reason = d.reason;
    if (passwordUsed && /^28/.test(sqlStateOf(e) ?? '')) reason += ` (password from ${passwordUsed})`;
    return { ...d, reason, cause: e };
  }
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EACCES', 'ENOTDIR']);
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN']);

function sqlStateOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Is this SQLSTATE one that a retry may fix (server starting/stopping, overloaded, connection gone)? */
function transientSqlState(code: string): boolean {
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code.startsWith('53');
}

/**
 * SQLSTATEs that say the connection settings are wrong: 28000 (no such role, no pg_hba.conf entry),
 * 28P01 (bad password), 3D000 (no such database). Retrying cannot change them.
 */
function configSqlState(code: string): boolean {
  return code.startsWith('28') || code === '3D000';
}

function classifyConnectError(e: unknown, timeoutMs: number): { reason: string; transient: boolean; network: boolean; config: boolean } {
  if (e instanceof NoPasswordError) return { reason: e.message, transient: false, network: false, config: true };
  const err = e as NodeJS.ErrnoException;
  const msg = oneLine(err?.message ?? String(e));
  const state = sqlStateOf(e);
  if (state) return { reason: `${msg} (SQLSTATE ${state})`, transient: transientSqlState(state), network: false, config: configSqlState(state) };
  const code = typeof err?.code === 'string' ? err.code : undefined;
  if (code && NETWORK_CODES.has(code)) {
    let reason = msg;
    if (code === 'ECONNREFUSED') reason = `connection refused (${msg}); is the server running and accepting TCP/IP connections there?`;
    if (code === 'ENOENT') reason = `no server socket (${msg}); is the server running locally and accepting connections on that socket?`;
    return { reason, transient: TRANSIENT_CODES.has(code), network: true, config: false };
  }
  if (/timeout expired|timed out/i.test(msg)) return { reason: `timed out after ${timeoutMs} ms`, transient: true, network: true, config: false };
  if (/terminated unexpectedly|ECONNRESET|socket hang up/i.test(msg)) return { reason: msg, transient: true, network: false, config: false };
  return { reason: msg, transient: false, network: false, config: false };
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

function scrub(s: string, settings: ConnectSettings): string {
  const pw = passwords.get(settings);
  return pw ? s.split(pw).join('********') : s;
}

function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout();
      reject(new Error('timeout expired'));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function destroyClient(client: Client): void {
  try {
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  } catch {
    /* already gone */
  }
}

// ---------------------------------------------------------------------------------------------------
// session

/**
 * What postgres/replication needs beyond PgSession, and nothing else may use: the pg Client (the
 * CopyBoth stream of START_REPLICATION runs on its connection) and this session's mapping of a pg
 * failure to a walts error (so replication commands fail exactly like queries).
 */
export interface SessionInternals {
  readonly client: Client;
  toError(e: unknown): WaltsError;
}

const internals = new WeakMap<PgSession, SessionInternals>();

/** The internals of a session made by connect(); throws for anything else. */
export function sessionInternals(session: PgSession): SessionInternals {
  const i = internals.get(session);
  if (!i) throw new Error('not a session made by postgres/client connect()');
  return i;
}

class Session implements PgSession {
  private ended = false;

  constructor(
    private readonly client: Client,
    readonly serverVersionNum: number,
    readonly backendPid: number,
    private readonly secretKey: number,
    readonly target: SessionTarget,
    private readonly settings: ConnectSettings,
    private readonly onNotice: ((n: PgNotice) => void) | undefined,
    private readonly lost: () => Error | undefined,
  ) {
    internals.set(this, { client, toError: (e) => this.queryError(e) });
    if (onNotice) {
      client.on('notice', (n: { severity?: string; message?: string }) => {
        try {
          onNotice({ severity: n.severity ?? 'NOTICE', message: n.message ?? '' });
        } catch {
          /* a logging callback must not break the session */
        }
      });
    }
    client.on('end', () => {
      this.ended = true;
    });
  }

  get closed(): boolean {
    return this.ended || this.lost() !== undefined;
  }

  async query<T extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[], opts: QueryOptions = {}): Promise<PgResult<T>> {
    if (this.closed) {
      const why = this.lost();
      throw new UnavailableError(`the database session is closed${why ? `: ${oneLine(why.message)}` : ''}`, { transient: true, cause: why });
    }
    const p = this.client.query(sql, params ? [...params] : undefined);
    if (!opts.timeoutMs) {
      try {
        return toResult<T>(await p);
      } catch (e) {
        throw this.queryError(e);
      }
    }
    const settled = p.then(
      (r) => ({ ok: true as const, result: toResult<T>(r) }),
      (e: unknown) => ({ ok: false as const, error: e }),
    );
    const first = await raceTimeout(settled, opts.timeoutMs);
    if (first !== 'timeout') {
      if (first.ok) return first.result;
      throw this.queryError(first.error);
    }
    // Out of time: cancel the statement, give the server a moment to react, else drop the session.
    await this.cancel();
    const after = await raceTimeout(settled, CLOSE_GRACE_MS);
    if (after === 'timeout') await this.close();
    else if (after.ok) return after.result; // finished just as we gave up
    throw new UnavailableError(`statement did not finish within ${opts.timeoutMs} ms and was cancelled`, { transient: true });
  }

  private queryError(e: unknown): WaltsError {
    if (e instanceof WaltsError) return e;
    const state = sqlStateOf(e);
    const err = e as { message?: string; hint?: string; detail?: string };
    const msg = oneLine(String(err?.message ?? e));
    if (state && !transientSqlState(state)) {
      const more = [err.detail && `DETAIL: ${oneLine(err.detail)}`, err.hint && `HINT: ${oneLine(err.hint)}`].filter(Boolean).join(' ');
      return new PgQueryError(`${msg}${more ? ` ${more}` : ''} (SQLSTATE ${state})`, state, { cause: e });
    }
    const where = `${this.target.host}:${this.target.port}`;
    return new UnavailableError(`database session to ${where} failed: ${msg}${state ? ` (SQLSTATE ${state})` : ''}`, { transient: true, cause: e });
  }

  cancel(): Promise<boolean> {
    const { host, port } = this.target;
    return new Promise<boolean>((resolve) => {
      const sock = isSocketDir(host) ? net.connect(path.join(host, `.s.PGSQL.${port}`)) : net.connect(port, host);
      let done = false;
      const finish = (ok: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false), 5_000);
      sock.on('error', () => finish(false));
      sock.on('connect', () => {
        // CancelRequest: length 16, code 80877102, pid, secret key. The server closes the socket.
        const b = Buffer.alloc(16);
        b.writeInt32BE(16, 0);
        b.writeInt32BE(80877102, 4);
        b.writeInt32BE(this.backendPid, 8);
        b.writeInt32BE(this.secretKey, 12);
        sock.end(b);
      });
      sock.on('close', () => finish(true));
    });
  }

  reconnect(): Promise<PgSession> {
    const s = this.settings;
    // The same server as this session (not necessarily the first in a PGHOST list).
    const pinned: ConnectSettings = { ...s, targets: [{ host: this.target.host, port: this.target.port }] };
    const pw = passwords.get(s);
    if (pw !== undefined) passwords.set(pinned, pw);
    return connectWith(pinned, undefined);
  }

  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await withDeadline(this.client.end(), CLOSE_GRACE_MS, () => destroyClient(this.client)).catch(() => destroyClient(this.client));
  }
}

function toResult<T>(r: unknown): PgResult<T> {
  // A multi-statement simple query answers with one result per statement: keep the last.
  const last = (Array.isArray(r) ? r[r.length - 1] : r) as { rows?: unknown[]; rowCount?: number | null } | undefined;
  return { rows: (last?.rows ?? []) as T[], rowCount: last?.rowCount ?? 0 };
}

/** p's value, or 'timeout' after ms (the timer is cleared either way). */
function raceTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    void p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}
