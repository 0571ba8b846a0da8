/**
 * Which PostgreSQL binaries the drill runs: those of the backup's major version (a data directory
 * only starts under its own major). Looked for, in order:
 *   1. `--pg-bin DIR` (the operator's choice: nothing else is tried);
 *   2. `pg_config --bindir`, when pg_config is on PATH and that directory holds the right major;
 *   3. `/usr/lib/postgresql/<major>/bin` (Debian and Ubuntu packages).
 * `postgres --version` decides the major; psql and pg_amcheck are taken from the same directory.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../../errors';

export interface PgBinaries {
  readonly dir: string;
  /** `postgres (PostgreSQL) 15.10 (Debian ...)` */
  readonly version: string;
  readonly postgres: string;
  /** psql runs `--sql FILE`; undefined when the directory has none. */
  readonly psql?: string;
  /** pg_amcheck (PostgreSQL 14+); undefined when absent: the check is skipped with a note. */
  readonly amcheck?: string;
  /** pg_checksums --check after the clean stop, when the backup has data checksums. */
  readonly checksums?: string;
}

/** What the search needs from the machine (tests give their own). */
export interface BinaryProbe {
  isExecutable(path: string): boolean;
  /** stdout of a command, or undefined when it cannot run or fails. */
  output(command: string, args: readonly string[]): Promise<string | undefined>;
}

export const machineProbe: BinaryProbe = {
  isExecutable(path) {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  },
  output(command, args) {
    return new Promise((resolve) => {
      execFile(command, [...args], { timeout: 30_000, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout) => resolve(err ? undefined : stdout.toString()));
    });
  },
};

/** The major version in `postgres --version` output (`postgres (PostgreSQL) 15.10` → 15). */
export function parseMajor(versionLine: string): number | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(versionLine);
  if (!m) return undefined;
  const major = Number(m[1]);
  // Before 10 the major was two numbers (9.6); walts never restores those, but say it right.
  return major >= 10 ? major : undefined;
}

export async function findPgBinaries(major: number, pgBin: string | undefined, probe: BinaryProbe = machineProbe): Promise<PgBinaries> {
  const tried: string[] = [];
  const candidates: string[] = [];
  if (pgBin !== undefined) candidates.push(pgBin);
  else {
    const fromConfig = (await probe.output('pg_config', ['--bindir']))?.trim();
    if (fromConfig) candidates.push(fromConfig);
    candidates.push(`/usr/lib/postgresql/${major}/bin`);
  }
  for (const dir of candidates) {
    const postgres = join(dir, 'postgres');
    if (!probe.isExecutable(postgres)) {
      tried.push(`${dir}: no postgres binary`);
      continue;
    }
    const version = (await probe.output(postgres, ['--version']))?.trim() ?? '';
    const found = parseMajor(version);
    if (found !== major) {
      tried.push(`${dir}: ${version === '' ? 'postgres --version failed' : `PostgreSQL ${found ?? version}`}`);
      continue;
    }
    const optional = (name: string) => (probe.isExecutable(join(dir, name)) ? join(dir, name) : undefined);
    return { dir, version, postgres, psql: optional('psql'), amcheck: optional('pg_amcheck'), checksums: optional('pg_checksums') };
  }
  throw new UsageError(`no PostgreSQL ${major} server binaries found for the backup (tried ${tried.join('; ')}); install PostgreSQL ${major} or give --pg-bin DIR`);
}
