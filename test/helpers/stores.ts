/**
 * Real stores for integration tests, described the way an operator configures walts: as the
 * environment of archive_command / restore_command.
 */
import type { ClusterRegistry } from './pg';
import { runWalts } from './run';
import { s3rverEnv, startS3rver, type S3rverHandle } from './s3server';

export type StoreKind = 'file' | 's3';

export interface TestStore {
  readonly kind: StoreKind;
  /** WALTS_* and AWS_* variables that point walts at this store. */
  readonly env: Record<string, string>;
  /** For file stores: the directory. For s3: s3rver's data dir. */
  readonly dir: string;
  readonly s3?: S3rverHandle;
  stop(): Promise<void>;
}

export interface StartStoreOptions {
  /**
   * Run the real `walts init` on the new store (default), with these extra settings (e.g.
   * WALTS_PGP_PUBLIC_KEY for an archive recorded as encrypted). `false`: leave it uninitialised.
   */
  readonly init?: false | Record<string, string>;
}

/**
 * A store as an operator sets one up: the directory (owned by the postgres user) or the bucket
 * exists, then `walts init` makes it an archive. The one place tests create archives.
 */
export async function startStore(kind: StoreKind, registry: ClusterRegistry, prefix = 'cluster-a', options: StartStoreOptions = {}): Promise<TestStore> {
  const store = await makeStore(kind, registry, prefix);
  if (options.init !== false) {
    try {
      await initArchive({ ...store.env, ...(options.init ?? {}) });
    } catch (err) {
      await store.stop();
      throw err;
    }
  }
  return store;
}

/** `walts init` through the real CLI; throws with its output unless it exits 0. */
export async function initArchive(env: Record<string, string>, args: string[] = []): Promise<string> {
  const r = await runWalts(['init', ...args], env, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`walts init exited ${r.code ?? r.signal}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

async function makeStore(kind: StoreKind, registry: ClusterRegistry, prefix: string): Promise<TestStore> {
  if (kind === 'file') {
    const dir = await registry.tempDir(`store-${prefix}`, { forPostgres: true });
    return { kind, dir, env: { WALTS_STORE: `file://${dir}` }, stop: async () => {} };
  }
  const s3 = await startS3rver();
  return {
    kind,
    dir: s3.dir,
    s3,
    env: s3rverEnv(s3, prefix),
    stop: () => s3.stop(),
  };
}

/** archive_command / restore_command lines calling this checkout's walts with the test's node. */
export function waltsCommand(args: string): string {
  const path = require('node:path') as typeof import('node:path');
  const bin = path.resolve(__dirname, '../../bin/walts');
  return `PATH='${path.dirname(process.execPath)}':"$PATH" '${bin}' ${args}`;
}
