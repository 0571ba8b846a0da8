/**
 * wal-push and wal-fetch start once per 16 MiB of WAL: loading the CLI must not pull in the database
 * driver, the AWS SDK, openpgp or the LZ4 addon, and each per-segment call loads only what its store
 * and settings need (docs/performance.md, "Start-up path"). The per-segment fast dispatch
 * (cli/perSegment.ts) must answer exactly as the full yargs parser does.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { perSegmentCall } from '../../src/cli/perSegment';
import { s3rverEnv, startS3rver, type S3rverHandle } from '../helpers/s3server';
import { fakeSegment } from '../helpers/wal';

const root = join(__dirname, '../..');
const HEAVY = /node_modules\/(pg|openpgp|@aws-sdk\/[^/]+|@smithy\/[^/]+|lz4|yargs)\//;

interface Outcome {
  exitCode: number;
  stderr: string;
  /** Heavy packages in require.cache when the command ended, e.g. `@aws-sdk/client-s3`. */
  loaded: string[];
}

/**
 * src/ transpiled once into a temp directory: a child that loads the TypeScript compiler for every
 * run would take seconds each on a loaded machine. Bare imports resolve through NODE_PATH.
 */
let built: string | undefined;
function buildOnce(): string {
  if (built) return built;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ts = require('typescript') as typeof import('typescript');
  const out = mkdtempSync(join(tmpdir(), 'walts-startup-build-'));
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const rel = join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.ts')) {
        const { outputText } = ts.transpileModule(readFileSync(join(root, rel), 'utf8'), {
          fileName: rel,
          compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
        });
        mkdirSync(join(out, dir), { recursive: true });
        writeFileSync(join(out, rel.replace(/\.ts$/, '.js')), outputText);
      }
    }
  };
  walk('src');
  writeFileSync(join(out, 'package.json'), readFileSync(join(root, 'package.json'))); // src/version.ts reads it
  return (built = out);
}
afterAll(() => built && rmSync(built, { recursive: true, force: true }));

const MARK = '\n--- startup test result ---\n';

/** Runs `main(args)` in a fresh Node process, as bin/walts.js does, and reports what it loaded. */
function runMain(args: string[], cwd: string, env: Record<string, string>, fullParser = false): Promise<Outcome> {
  const script = `
    let stderr = '';
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk, ...rest) => { stderr += chunk; return write(chunk, ...rest); };
    require(${JSON.stringify(join(buildOnce(), 'src/main.js'))}).main(${JSON.stringify(args)}, { fullParser: ${fullParser} }).then(({ exitCode }) => {
      const loaded = [...new Set(Object.keys(require.cache).map((k) => (k.match(${HEAVY}) || [])[1]).filter(Boolean))].sort();
      process.stdout.write(${JSON.stringify(MARK)} + JSON.stringify({ exitCode, stderr, loaded }));
    });`;
  const base: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    HOME: process.env['HOME'] ?? '',
    NODE_PATH: join(root, 'node_modules'),
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { cwd, env: { ...base, ...env } }, (err, stdout, stderr) => {
      if (err || !stdout.includes(MARK)) reject(new Error(`${err?.message ?? 'no result'}\n${stdout}\n${stderr}`));
      else resolve(JSON.parse(stdout.slice(stdout.lastIndexOf(MARK) + MARK.length)) as Outcome);
    });
  });
}

it('loading the CLI does not load pg, the AWS SDK, openpgp, lz4 or yargs', () => {
  const script = `require('./src/main'); const heavy = Object.keys(require.cache).filter((k) => /node_modules\\/(pg|openpgp|@aws-sdk|lz4|yargs)\\//.test(k)); process.stdout.write(JSON.stringify(heavy));`;
  const out = execFileSync(process.execPath, ['-r', './scripts/register-ts.js', '-e', script], { cwd: root, encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual([]);
});

describe('what one per-segment call loads', () => {
  let work: string;
  let s3: S3rverHandle;
  const seg = '000000010000000000000005';
  let fileEnv: Record<string, string>;
  let s3Env: Record<string, string>;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'walts-startup-'));
    mkdirSync(join(work, 'store'));
    mkdirSync(join(work, 'pgdata/pg_wal'), { recursive: true });
    mkdirSync(join(work, 'restore/pg_wal'), { recursive: true });
    writeFileSync(join(work, 'pgdata/pg_wal', seg), fakeSegment(seg));
    s3 = await startS3rver();
    fileEnv = { WALTS_STORE: `file://${join(work, 'store')}`, WALTS_LOG_LEVEL: 'warn' };
    s3Env = { ...s3rverEnv(s3, 'startup'), WALTS_LOG_LEVEL: 'warn' };
    for (const env of [fileEnv, s3Env]) expect((await runMain(['init'], work, env)).exitCode).toBe(0);
  });
  afterAll(async () => {
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  // As PostgreSQL calls them: from the data directory, `%p` relative to it.
  const push = (): [string[], string] => [['wal-push', `pg_wal/${seg}`], join(work, 'pgdata')];
  const fetch = (): [string[], string] => [['wal-fetch', seg, `pg_wal/${seg}`], join(work, 'restore')];

  it('wal-push and wal-fetch on a directory store without a key: only lz4, never yargs, the AWS SDK, openpgp or pg', async () => {
    const pushed = await runMain(...push(), fileEnv);
    expect(pushed).toMatchObject({ exitCode: 0, stderr: '' });
    expect(pushed.loaded).toEqual(['lz4']);
    const fetched = await runMain(...fetch(), fileEnv);
    expect(fetched).toMatchObject({ exitCode: 0, stderr: '' });
    expect(fetched.loaded).toEqual(['lz4']);
    rmSync(join(work, 'restore/pg_wal', seg));
  });

  it('wal-push and wal-fetch on S3 with environment credentials: the lean transport, no AWS SDK, openpgp, yargs or pg', async () => {
    for (const [args, cwd] of [push(), fetch()]) {
      const out = await runMain(args, cwd, s3Env);
      expect(out).toMatchObject({ exitCode: 0, stderr: '' });
      expect(out.loaded).toEqual(['lz4']);
    }
    rmSync(join(work, 'restore/pg_wal', seg));
  });

  // Where the transport would not send exactly what the SDK sends, the SDK does it all, as before.
  it.each([
    ['WALTS_S3_CLIENT=sdk', { WALTS_S3_CLIENT: 'sdk' }],
    ['a setting the SDK reads (AWS_CREDENTIAL_EXPIRATION)', { AWS_CREDENTIAL_EXPIRATION: '2999-01-01T00:00:00Z' }],
  ])('with %s: the S3 client, not lib-storage (multipart only), openpgp, yargs or pg', async (_name, extra) => {
    for (const [args, cwd] of [push(), fetch()]) {
      const out = await runMain(args, cwd, { ...s3Env, ...extra });
      expect(out).toMatchObject({ exitCode: 0, stderr: '' });
      expect(out.loaded).toContain('@aws-sdk/client-s3');
      expect(out.loaded).toContain('lz4');
      expect(out.loaded.filter((p) => /lib-storage|openpgp|yargs|^pg$/.test(p))).toEqual([]);
    }
    rmSync(join(work, 'restore/pg_wal', seg));
  });
});

describe('per-segment fast dispatch', () => {
  it('takes exactly the forms PostgreSQL sends and nothing else', () => {
    expect(perSegmentCall(['wal-push', 'pg_wal/000000010000000000000001'])?.command).toBe('wal-push');
    expect(perSegmentCall(['wal-fetch', '000000010000000000000001', 'pg_wal/RECOVERYXLOG'])?.command).toBe('wal-fetch');
    for (const args of [
      [],
      ['wal-push'],
      ['wal-push', 'a', 'b'],
      ['wal-push', '--help'],
      ['wal-push', '-h'],
      ['wal-push', ''],
      ['wal-push', 'help'],
      ['wal-fetch', '000000010000000000000001', 'help'],
      ['wal-push', '--', 'pg_wal/000000010000000000000001'],
      ['wal-push', 'pg_wal/000000010000000000000001', '--store=file:///x'],
      ['--log-level', 'debug', 'wal-push', 'pg_wal/000000010000000000000001'],
      ['wal-fetch', '000000010000000000000001'],
      ['wal-fetch', '000000010000000000000001', 'p', '--fetch-error-exit-code', '1'],
      ['wal-fetch', '000000010000000000000001', 'p', 'q'],
      ['init'],
      ['backup-list'],
    ]) {
      expect(perSegmentCall(args)).toBeUndefined();
    }
  });

  // Arguments and settings that end before the store is touched, so both runs can be compared whole.
  const cases: Array<{ args: string[]; env: Record<string, string> }> = [
    { args: ['wal-push', 'pg_wal/000000010000000000000001'], env: {} },
    { args: ['wal-push', 'pg_wal/000000010000000000000001'], env: { WALTS_STORE: 'file://relative/dir' } },
    { args: ['wal-push', 'pg_wal/000000010000000000000001'], env: { WALTS_STORE: 'file:///nonexistent', WALTS_NO_SUCH_SETTING: '1' } },
    { args: ['wal-push', 'notawalfile'], env: {} },
    { args: ['wal-push', '123'], env: {} },
    { args: ['wal-push', 'version'], env: {} },
    { args: ['wal-push', 'completion'], env: {} },
    { args: ['wal-push', 'true'], env: {} },
    { args: ['wal-fetch', '000000010000000000000001', 'pg_wal/RECOVERYXLOG'], env: {} },
    { args: ['wal-fetch', '000000010000000000000001', 'pg_wal/RECOVERYXLOG'], env: { WALTS_FETCH_ERROR_EXIT_CODE: '1' } },
    { args: ['wal-fetch', '000000010000000000000001', 'pg_wal/RECOVERYXLOG'], env: { WALTS_STORE: 's3://bucket/p', WALTS_COMPRESSION: 'zstd' } },
    { args: ['wal-fetch', '0x10', '1e3'], env: {} },
    { args: ['wal-fetch', 'version', 'RECOVERYHISTORY'], env: {} },
  ];
  it.each(cases)('answers $args with $env exactly as the full parser does', async ({ args, env }) => {
    const work = mkdtempSync(join(tmpdir(), 'walts-dispatch-'));
    try {
      const fast = await runMain(args, work, env);
      const full = await runMain(args, work, env, true);
      expect(fast.exitCode).not.toBe(0);
      expect({ exitCode: fast.exitCode, stderr: fast.stderr }).toEqual({ exitCode: full.exitCode, stderr: full.stderr });
      expect(fast.loaded).not.toContain('yargs');
      expect(full.loaded).toContain('yargs');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
