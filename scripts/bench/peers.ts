/**
 * Finding the peers' commands (pgBackRest, barman-cloud), installing them when allowed, and saying
 * "missing" otherwise. Detection takes the PATH to search and the installer as arguments, so the
 * missing path is unit-tested (test/unit/bench/peers.test.ts) without touching the machine.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';

export interface PeerSpec {
  /** The command whose presence means the peer is installed. */
  readonly bin: string;
  /** Debian package that provides it. */
  readonly pkg: string;
}

export const PGBACKREST: PeerSpec = { bin: 'pgbackrest', pkg: 'pgbackrest' };
export const BARMAN: PeerSpec = { bin: 'barman-cloud-wal-archive', pkg: 'barman-cli-cloud' };

/** Absolute path of an executable `bin` in the colon-separated `pathEnv`, or undefined. */
export function findCommand(bin: string, pathEnv: string): string | undefined {
  for (const dir of pathEnv.split(':').filter(Boolean)) {
    const p = join(dir, bin);
    try {
      if (!statSync(p).isFile()) continue;
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

export type Installer = (pkg: string) => { ok: boolean; detail: string };

export type PeerStatus =
  | { readonly present: true; readonly dir: string; readonly installed: boolean }
  | { readonly present: false; readonly note: string };

/**
 * Where `spec.bin` is (its directory: the peer's sibling commands live there too), after installing
 * the package if it is absent and `mayInstall`. Otherwise why it is missing, for the notes and the
 * "missing" column.
 */
export function detectPeer(spec: PeerSpec, opts: { pathEnv: string; mayInstall: boolean; install: Installer }): PeerStatus {
  const found = findCommand(spec.bin, opts.pathEnv);
  if (found) return { present: true, dir: found.slice(0, found.lastIndexOf('/')), installed: false };
  if (!opts.mayInstall) return { present: false, note: `${spec.bin} not found on the PATH searched (Debian package ${spec.pkg}); skipped` };
  const r = opts.install(spec.pkg);
  const after = findCommand(spec.bin, opts.pathEnv);
  if (after) return { present: true, dir: after.slice(0, after.lastIndexOf('/')), installed: true };
  return {
    present: false,
    note: r.ok ? `${spec.pkg} installed but ${spec.bin} is not on the PATH searched; skipped` : `${spec.pkg} could not be installed (${r.detail}); skipped`,
  };
}

/** apt-get install (with one apt-get update and retry), non-interactive. */
export const aptInstall: Installer = (pkg) => {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { env, encoding: 'utf8' });
  let r = install();
  if (r.status !== 0) {
    spawnSync('apt-get', ['update'], { env });
    r = install();
  }
  return { ok: r.status === 0, detail: (r.stderr || r.error?.message || '').trim().split('\n').pop() ?? '' };
};
