/**
 * Issue 11 §5: the walts commands docs/migrate-wal-e.md shows, run as it shows them, on a WAL-E
 * style configuration: an envdir directory of WALE_* and AWS_* files (WALE_S3_ENDPOINT in WAL-E's
 * `http+path://host:port` form), read by `envdir DIR walts ...` with no WALTS_* variable anywhere.
 * Real PostgreSQL 15 and s3rver: init, archive_command, backup-push, backup-list, backup-fetch with
 * an envdir restore_command (so wal-fetch too), delete retain.
 *
 * daemontools' envdir is not a dependency: test/helpers would need a package for one loop, so the
 * test writes the same loop as a shell script (each file's first line, trailing blanks removed,
 * becomes the variable named by the file; an empty file unsets it).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chownToPg, PG_OS_USER, trackClusters, type Cluster } from '../helpers/pg';
import { baseEnv, run, WALTS_BIN, type RunResult } from '../helpers/run';
import { startS3rver, type S3rverHandle } from '../helpers/s3server';

const ENVDIR_SH = `#!/bin/sh
# envdir DIR COMMAND...: daemontools' envdir, for this test
d=$1; shift
for f in "$d"/*; do
  n=\${f##*/}
  if [ -s "$f" ]; then IFS= read -r v <"$f" || true; v=$(printf '%s' "$v" | sed 's/[ \\t]*$//'); export "$n=$v"; else unset "$n"; fi
done
exec "$@"
`;

describe('the WAL-E migration guide, with an envdir of WAL-E variables (real PostgreSQL 15, s3rver)', () => {
  const reg = trackClusters();
  let s3: S3rverHandle;
  let a: Cluster;
  let envdir: string;
  let envDir: string;

  /** `envdir ENV walts ARGS...`, as the postgres user, with nothing but PATH (and PG* for backup-push). */
  const walts = (args: string[], extra: Record<string, string> = {}): Promise<RunResult> =>
    run(envdir, [envDir, WALTS_BIN, ...args], { env: { ...baseEnv(), ...extra }, cleanEnv: true, asUser: PG_OS_USER, timeoutMs: 120_000 });
  /** The guide's archive_command / restore_command, with absolute paths for this checkout. */
  const waltsLine = (args: string) => `PATH='${dirname(process.execPath)}':"$PATH" '${envdir}' '${envDir}' '${WALTS_BIN}' ${args}`;

  beforeAll(async () => {
    s3 = await startS3rver();
    const tools = await reg.tempDir('envdir-tool', { forPostgres: true });
    envdir = join(tools, 'envdir');
    writeFileSync(envdir, ENVDIR_SH);
    chmodSync(envdir, 0o755);
    // /etc/wal-e.d/env as WAL-E's documentation sets it up: one file per variable.
    envDir = await reg.tempDir('wal-e.d-env', { forPostgres: true });
    const vars: Record<string, string> = {
      WALE_S3_PREFIX: `s3://${s3.bucket}/db1`,
      WALE_S3_ENDPOINT: s3.endpoint.replace(/^http:/, 'http+path:'),
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
    };
    for (const [name, value] of Object.entries(vars)) writeFileSync(join(envDir, name), `${value}\n`, { mode: 0o600 });
    await chownToPg(envDir, true);
    await chownToPg(tools, true);
    a = await reg.createCluster({ name: 'a', conf: { archive_mode: 'on', archive_command: waltsLine('wal-push %p') } });
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await s3?.stop();
  });

  it('init, archive_command, backup-push, backup-list, backup-fetch + wal-fetch, delete retain: all through envdir', async () => {
    const init = await walts(['init', '--pgdata', a.dataDir]);
    expect(init.code).toBe(0);
    await a.start();
    await a.psql('create table t (id int primary key)');
    await a.psql('insert into t select generate_series(1, 100)');

    for (let i = 0; i < 2; i++) {
      const push = await walts(['backup-push', a.dataDir], a.pgEnv());
      expect([push.code, push.stderr]).toEqual([0, expect.stringContaining('"backup-push done"')]);
    }
    const list = await walts(['backup-list']);
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split('\n').filter((l) => /^base_/.test(l))).toHaveLength(2);

    await a.psql('insert into t select generate_series(101, 150)');
    await a.switchWalAndWaitArchived();
    expect(await a.psql("select failed_count from pg_stat_archiver")).toBe('0');
    await a.stop();

    const r = await reg.emptyCluster({ name: 'restored' });
    const fetch = await walts(['backup-fetch', r.dataDir, 'LATEST', '--restore-command', waltsLine('wal-fetch %f %p')]);
    expect([fetch.code, fetch.stderr]).toEqual([0, expect.stringContaining('"backup-fetch done"')]);
    await r.prepareRestoredDataDir({ keepSourceSettings: true });
    await r.start();
    await r.waitForRecoveryEnd(120_000);
    expect(await r.psql("select count(*) || ',' || max(id) from t")).toBe('150,150');
    expect(r.log()).toMatch(/restored log file "[0-9A-F]{24}" from archive/);
    await r.stop();

    const dry = await walts(['delete', 'retain', '1']);
    expect(dry.code).toBe(0);
    const del = await walts(['delete', 'retain', '1', '--confirm']);
    expect([del.code, del.stderr]).toEqual([0, expect.any(String)]);
    const after = await walts(['backup-list']);
    expect(after.stdout.trim().split('\n').filter((l) => /^base_/.test(l))).toHaveLength(1);
  });
});
