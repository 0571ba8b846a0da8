/**
 * The checks run on the restored, promoted server: every database answers a query, the operator's
 * SQL file runs without error, pg_amcheck finds no corruption; and after the clean stop,
 * pg_checksums verifies every block (when the backup has data checksums). Each returns a DrillCheck;
 * none throws for a failed check (the drill records them all), only for an interruption.
 */
import { spawn } from 'node:child_process';
import type { DrillCheck } from '../../archive/drillRecord';
import { describeError } from '../../errors';
import type { PgBinaries } from './pgBinaries';
import type { DrillServer } from './server';

/** Connects to every database that allows connections and counts its catalog: each must answer. */
export async function queryEveryDatabase(server: DrillServer, firstDatabase: string): Promise<DrillCheck> {
  const answered: string[] = [];
  try {
    const first = await server.session(firstDatabase);
    let names: string[];
    try {
      names = (await first.query<{ datname: string }>('select datname from pg_database where datallowconn order by datname')).rows.map((r) => r.datname);
    } finally {
      await first.close();
    }
    for (const db of names) {
      const s = await server.session(db).catch((err: unknown) => {
        throw new Error(`database ${db}: ${describeError(err)}`);
      });
      try {
        const r = await s.query<{ n: string }>('select count(*)::text as n from pg_class');
        answered.push(`${db} (${r.rows[0]?.n ?? '?'} relations)`);
      } catch (err) {
        throw new Error(`database ${db}: ${describeError(err)}`);
      } finally {
        await s.close();
      }
    }
    return { name: 'query', ok: true, detail: `${names.length} database(s) answer: ${answered.join(', ')}` };
  } catch (err) {
    return { name: 'query', ok: false, detail: describeError(err) };
  }
}

export interface ClientTarget {
  readonly server: DrillServer;
  readonly user: string;
  readonly database: string;
}

/** psql -X -v ON_ERROR_STOP=1 -f FILE: any error fails the check (the file may `\connect` elsewhere). */
export async function runSqlFile(bin: PgBinaries, file: string, t: ClientTarget, signal?: AbortSignal): Promise<DrillCheck> {
  if (!bin.psql) return { name: 'sql', ok: false, detail: `--sql needs psql, and ${bin.dir} has none` };
  const r = await runTool(bin.psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', file], t, signal);
  if (r.code === 0) return { name: 'sql', ok: true, detail: `${file} ran without error${r.stdout.trim() ? `: ${oneLine(r.stdout)}` : ''}` };
  return { name: 'sql', ok: false, detail: `${file} failed (psql exit ${r.code ?? r.signal}): ${oneLine(r.stderr || r.stdout)}` };
}

/** pg_amcheck --all --install-missing (installs the amcheck extension in the copy where it is missing). */
export async function runAmcheck(bin: PgBinaries, t: ClientTarget, signal?: AbortSignal): Promise<DrillCheck> {
  if (!bin.amcheck) return { name: 'amcheck', ok: true, detail: `skipped: no pg_amcheck in ${bin.dir} (PostgreSQL 14+ ships it)` };
  const r = await runTool(bin.amcheck, ['--all', '--install-missing', '--no-password'], t, signal);
  if (r.code === 0) return { name: 'amcheck', ok: true, detail: 'pg_amcheck --all: no corruption found' };
  return { name: 'amcheck', ok: false, detail: `pg_amcheck --all exit ${r.code ?? r.signal}: ${oneLine(r.stdout || r.stderr)}` };
}

/** pg_checksums --check on the stopped copy: every data block against its checksum. */
export async function runChecksums(bin: PgBinaries, dataDir: string, hasChecksums: boolean, signal?: AbortSignal): Promise<DrillCheck> {
  if (!hasChecksums) return { name: 'checksums', ok: true, detail: 'skipped: the cluster has no data checksums' };
  if (!bin.checksums) return { name: 'checksums', ok: true, detail: `skipped: no pg_checksums in ${bin.dir}` };
  const r = await runTool(bin.checksums, ['--check', '-D', dataDir], undefined, signal);
  const bad = /Bad checksums:\s*(\d+)/.exec(r.stdout)?.[1];
  if (r.code === 0) return { name: 'checksums', ok: true, detail: `pg_checksums --check: ${oneLine(/Blocks scanned:\s*\d+/.exec(r.stdout)?.[0] ?? 'ok')}, no bad checksum` };
  return { name: 'checksums', ok: false, detail: `pg_checksums --check exit ${r.code ?? r.signal}${bad ? `: ${bad} bad checksum(s)` : ''}: ${oneLine(r.stderr || r.stdout)}` };
}

interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const KEEP = 64 << 10;

/** Runs a client tool against the drill server; keeps the last 64 KiB of each output stream. */
function runTool(cmd: string, args: string[], t: ClientTarget | undefined, signal?: AbortSignal): Promise<ToolResult> {
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('LC_')) env[k] = v;
  if (t) Object.assign(env, { PGHOST: t.server.socketDir, PGPORT: String(t.server.port), PGUSER: t.user, PGDATABASE: t.database, PGCONNECT_TIMEOUT: '30', PGAPPNAME: 'walts restore-test' });
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], signal });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout = (stdout + b.toString('utf8')).slice(-KEEP)));
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString('utf8')).slice(-KEEP)));
    child.on('error', (err) => resolve({ code: null, signal: null, stdout, stderr: stderr || describeError(err) }));
    child.on('close', (code, sig) => resolve({ code, signal: sig, stdout, stderr }));
  });
}

/** The first meaningful lines, joined: records and log lines are one line. */
function oneLine(text: string, max = 400): string {
  const s = text.trim().split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 4).join(' | ');
  return s.length > max ? `${s.slice(0, max)}...` : s;
}
