/**
 * Start-up cost of the two per-segment calls (docs/performance.md, "Start-up path"): one wal-push and
 * one wal-fetch of one 16 MiB segment, each a fresh `bin/walts` process, on an s3rver store (through a
 * counting proxy) and on a directory store, interleaved with `node -e 0` as the reference for how
 * loaded the machine is at that moment. Prints medians, page faults (first touches of memory, the
 * cost that load does not blur) and the store requests each call made.
 *
 *   npm run build && npm run bench:startup -- [--runs 15] \
 *     [--walts before=/path/to/other/checkout/bin/walts,after=bin/walts]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startFaultProxy } from '../test/helpers/faultProxy';
import { startS3rver } from '../test/helpers/s3server';
import { fakeSegment } from '../test/helpers/wal';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? (args[i + 1] as string) : dflt;
};
const RUNS = Number(opt('runs', '15'));
/** One or more builds to compare, `label=path/to/bin/walts`, comma-separated; each gets its own stores. */
const VARIANTS = opt('walts', `walts=${join(__dirname, '../bin/walts')}`)
  .split(',')
  .map((v) => (v.includes('=') ? [v.slice(0, v.indexOf('=')), resolve(v.slice(v.indexOf('=') + 1))] : [v, resolve(v)]) as [string, string]);
const SEG = 16 * 1024 * 1024;

function segName(i: number): string {
  return `00000001000000000000${(i + 16).toString(16).toUpperCase().padStart(4, '0')}`;
}

const faults: Record<string, number[]> = {};

/**
 * Wall time of one process, in seconds; its minor page faults are kept under `label` (GNU time).
 * Asynchronous: the counting proxy lives in this process.
 */
async function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv, cwd: string, label?: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', 'FAULTS %R', cmd, ...argv], { env, cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (code !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${code}: ${stderr}`);
  const f = /FAULTS (\d+)/.exec(stderr);
  if (label && f) (faults[label] ??= []).push(Number(f[1]));
  return ms / 1000;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'walts-bench-startup-'));
  const s3 = await startS3rver();
  const proxy = await startFaultProxy({ host: '127.0.0.1', port: s3.port });
  try {
    const base: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      WALTS_LOG_LEVEL: 'warn',
    };
    const s3Env = (prefix: string): NodeJS.ProcessEnv => ({
      ...base,
      WALTS_STORE: `s3://${s3.bucket}/${prefix}`,
      WALTS_S3_ENDPOINT: proxy.endpoint,
      WALTS_S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    const pgdata = join(work, 'pgdata');
    mkdirSync(join(pgdata, 'pg_wal/archive_status'), { recursive: true });
    // Every wal-fetch gets a restore directory of its own: a prefetcher started by an earlier call
    // lingers and would answer the next call from its spool without starting Node (a cold call is
    // what this script measures).
    let restores = 0;
    const freshRestore = (): string => {
      const dir = join(work, `restore-${restores++}`);
      mkdirSync(join(dir, 'pg_wal'), { recursive: true });
      return dir;
    };
    const stores: Array<{ variant: string; walts: string; kind: string; env: NodeJS.ProcessEnv }> = [];
    for (const [variant, walts] of VARIANTS) {
      mkdirSync(join(work, `store-${variant}`));
      stores.push({ variant, walts, kind: 's3', env: s3Env(variant) });
      stores.push({ variant, walts, kind: 'file', env: { ...base, WALTS_STORE: `file://${join(work, `store-${variant}`)}` } });
    }
    for (const { walts, env } of stores) await timed(walts, ['init'], env, work);

    const times: Record<string, number[]> = { node: [] };
    const requests: Record<string, string[][]> = {};
    for (let i = 0; i < RUNS; i++) {
      const name = segName(i);
      writeFileSync(join(pgdata, 'pg_wal', name), fakeSegment(name, { segSize: SEG, seed: String(i) }));
      (times['node'] as number[]).push(await timed(process.execPath, ['-e', '0'], base, work, 'node'));
      for (const { variant, walts, kind, env } of stores) {
        for (const [cmd, argv, cwd] of [
          ['wal-push', ['wal-push', `pg_wal/${name}`], pgdata],
          ['wal-fetch', ['wal-fetch', name, `pg_wal/${name}`], freshRestore()],
        ] as const) {
          const seen = proxy.requests.length;
          const label = `${variant} ${cmd} ${kind}`;
          (times[label] ??= []).push(await timed(walts, [...argv], env, cwd, label));
          if (kind === 's3') (requests[`${variant} ${cmd}`] ??= []).push(proxy.requests.slice(seen).map((r) => `${r.method} ${decodeURIComponent(r.url.split('?')[0] ?? '').replace(/^\/[^/]+\/[^/]+\//, '')}${r.url.includes('list-type') ? ' (list)' : ''}`));
        }
      }
      rmSync(join(pgdata, 'pg_wal', name));
    }
    console.log(`${RUNS} runs, 16 MiB segments, Node ${process.version}; ${VARIANTS.map(([l, p]) => `${l}=${p}`).join(', ')}`);
    for (const [k, xs] of Object.entries(times)) {
      console.log(`${k.padEnd(24)} median ${median(xs).toFixed(3)} s  min ${Math.min(...xs).toFixed(3)}  max ${Math.max(...xs).toFixed(3)}  page faults median ${median(faults[k] ?? [0])}`);
    }
    for (const [cmd, lists] of Object.entries(requests)) console.log(`${cmd} s3 requests (last run): ${(lists.at(-1) ?? []).join(', ')}`);
  } finally {
    await proxy.stop();
    await s3.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
