/**
 * Test helper: run external commands (PostgreSQL tools, gpg, lz4, the walts CLI) without throwing.
 *
 * - `run()` never rejects because of a non-zero exit status or a signal: the caller asserts on
 *   `code` / `signal` / `stdout` / `stderr`. It only rejects if the command cannot be spawned at all.
 * - `timeoutMs` kills the whole process group (the child is spawned detached into its own group, so a
 *   `runuser` wrapper and whatever it started die together) with SIGKILL and resolves with
 *   `signal: 'SIGKILL'` and `timedOut: true`.
 * - `asUser` runs the command as another OS user through `runuser -u USER -- env K=V ... cmd args`.
 *   It only has an effect when the test process is root (that is the case in this repo's CI/dev box,
 *   where PostgreSQL refuses to run as root); as a non-root user the command runs as the current user.
 *   The environment is handed over with `env(1)` on the command line because runuser resets HOME,
 *   SHELL, USER and LOGNAME and, depending on /etc/login.defs, PATH.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface RunOptions {
  /** Extra environment variables, layered on top of the base environment. */
  env?: Record<string, string | undefined>;
  /**
   * When true, do NOT inherit process.env: the child sees only a minimal base (PATH, LANG, TZ, HOME)
   * plus `env`. Use it for hermetic runs (PostgreSQL servers, walts under test).
   */
  cleanEnv?: boolean;
  cwd?: string;
  /** Written to the child's stdin, which is then closed. Without it stdin is /dev/null. */
  input?: Buffer | string;
  /** Kill the process group with SIGKILL after this many ms. Default: no timeout. */
  timeoutMs?: number;
  /** Run as this OS user (only when the test process is root; see above). */
  asUser?: string;
}

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Raw stdout, for binary output. */
  stdoutBuf: Buffer;
  timedOut: boolean;
  durationMs: number;
}

export const REPO_ROOT = path.resolve(__dirname, '../..');
export const WALTS_BIN = path.resolve(__dirname, '../../bin/walts');

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Minimal, predictable environment for hermetic children. */
export function baseEnv(): Record<string, string> {
  return {
    // bin/walts runs `node` from PATH: the node running the tests comes first.
    PATH: `${path.dirname(process.execPath)}:${process.env.PATH || '/usr/local/bin:/usr/bin:/bin'}`,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TZ: 'UTC',
    // Replaced by the target user's home when running asUser as root (see wrapCommand).
    HOME: process.env.HOME || os.homedir(),
  };
}

function definedEntries(env: Record<string, string | undefined>): [string, string][] {
  return Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined);
}

/** uid/gid/home of a local user, from /etc/passwd (no getpwnam in Node). */
export function lookupUser(name: string): { uid: number; gid: number; home: string } {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[0] === name);
  if (!line) throw new Error(`OS user ${name} does not exist`);
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' };
}

/**
 * Build the argv for running `cmd args` as `asUser` with exactly `env` (when root).
 * Exported for pg.ts, which needs the same wrapping for pg_ctl/psql/pgbench.
 */
export function wrapCommand(
  cmd: string,
  args: string[],
  env: Record<string, string | undefined>,
  asUser: string | undefined,
  cleanEnv: boolean,
): { cmd: string; args: string[]; spawnEnv: NodeJS.ProcessEnv } {
  let entries = definedEntries(env);
  if (asUser && isRoot()) {
    // Identity variables must describe the target user, not root (HOME=/root is unreadable for
    // postgres and makes e.g. the AWS SDK or gpg look in the wrong place).
    const ident = new Set(['HOME', 'USER', 'LOGNAME', 'SHELL']);
    entries = entries.filter(([k]) => !ident.has(k));
    const pw = lookupUser(asUser);
    entries.unshift(['HOME', pw.home], ['USER', asUser], ['LOGNAME', asUser]);
    for (const [k] of entries) {
      if (k.includes('=') || k === '') throw new Error(`invalid environment variable name: ${JSON.stringify(k)}`);
    }
    const envArgs = entries.map(([k, v]) => `${k}=${v}`);
    return {
      cmd: 'runuser',
      args: ['-u', asUser, '--', 'env', ...(cleanEnv ? ['-i'] : []), ...envArgs, cmd, ...args],
      // runuser itself needs a sane PATH; what the target command sees is decided by `env` above.
      spawnEnv: cleanEnv ? { PATH: baseEnv().PATH } : { ...process.env },
    };
  }
  const spawnEnv: NodeJS.ProcessEnv = cleanEnv ? {} : { ...process.env };
  for (const [k, v] of entries) spawnEnv[k] = v;
  return { cmd, args, spawnEnv };
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const cleanEnv = opts.cleanEnv ?? false;
  const env: Record<string, string | undefined> = cleanEnv ? { ...baseEnv(), ...(opts.env ?? {}) } : { ...(opts.env ?? {}) };
  const w = wrapCommand(cmd, args, env, opts.asUser, cleanEnv);
  const started = Date.now();
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(w.cmd, w.args, {
      cwd: opts.cwd,
      env: w.spawnEnv,
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // own process group: lets the timeout kill runuser *and* its child
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          try {
            child.kill('SIGKILL');
          } catch {
            /* already gone */
          }
        }
      }, opts.timeoutMs);
    }
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {
        /* EPIPE if the child exits without reading: the exit status tells the story */
      });
      child.stdin!.end(opts.input);
    }
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const stdoutBuf = Buffer.concat(out);
      resolve({
        code,
        signal,
        stdout: stdoutBuf.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBuf,
        timedOut,
        durationMs: Date.now() - started,
      });
    });
  });
}

/** Like run(), but rejects with a descriptive error unless the command exits 0. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `command failed (code=${r.code} signal=${r.signal}${r.timedOut ? ' TIMEOUT' : ''}): ` +
        `${[cmd, ...args].join(' ')}${opts.asUser && isRoot() ? ` [as ${opts.asUser}]` : ''}\n` +
        `--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
    );
  }
  return r;
}

/** Environment variables that must not leak from the developer's shell into a walts run under test. */
function isLeakyVar(k: string): boolean {
  return k.startsWith('WALTS_') || k.startsWith('AWS_') || k.startsWith('PG');
}

/**
 * Run the walts CLI (`bin/walts ...args`, with this test's node first on PATH).
 *
 * The child inherits process.env MINUS any WALTS_*, AWS_* and PG* variables (so a developer's shell
 * cannot change test outcomes), plus `env`. With `opts.asUser` (e.g. 'postgres' when root) it runs as
 * that user, which is what archive_command/restore_command do in real life. Pass `opts.cleanEnv` for a
 * fully hermetic run.
 */
export function runWalts(
  args: string[],
  env: Record<string, string | undefined> = {},
  opts: Omit<RunOptions, 'env'> = {},
): Promise<RunResult> {
  const merged: Record<string, string | undefined> = {};
  if (!opts.cleanEnv) {
    for (const [k, v] of Object.entries(process.env)) if (!isLeakyVar(k)) merged[k] = v;
  }
  // The AWS SDK warns about Node 20 on every start; keep test output (and PG logs) clean.
  merged.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  Object.assign(merged, env);
  // cleanEnv=true because we already built the complete environment ourselves.
  return run(WALTS_BIN, args, { ...opts, env: { ...baseEnv(), ...merged }, cleanEnv: true });
}

/** The real lz4 CLI, as an independent decoder/encoder for interop tests. */
export async function lz4Decompress(inFile: string, outFile: string): Promise<void> {
  await runOk('lz4', ['-d', '-f', '-q', inFile, outFile]);
}

export async function lz4Compress(inFile: string, outFile: string): Promise<void> {
  await runOk('lz4', ['-z', '-f', '-q', inFile, outFile]);
}

/**
 * Run `cmd args` once the current process has died, however it dies (normal exit, crash, SIGKILL of
 * a jest worker). process.on('exit') is useless for this under jest: test files get a sandboxed copy
 * of `process` whose 'exit' event never fires. So we start a tiny detached watchdog shell that polls
 * `kill -0 <our pid>` every second. Returns a cancel function (call it when the resource has been
 * cleaned up normally); it kills the watchdog's process group.
 */
export function runWhenThisProcessDies(cmd: string, args: string[], env?: NodeJS.ProcessEnv): () => void {
  const script = 'p=$1; shift; while kill -0 "$p" 2>/dev/null; do sleep 1; done; exec "$@"';
  const child = spawn('sh', ['-c', script, 'walts-test-reaper', String(process.pid), cmd, ...args], {
    detached: true,
    stdio: 'ignore',
    env: env ?? process.env,
    cwd: '/',
  });
  child.on('error', () => undefined);
  child.unref();
  let cancelled = false;
  return () => {
    if (cancelled || child.pid === undefined) return;
    cancelled = true;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
}
