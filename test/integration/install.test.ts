/**
 * Issue 11 §4: the package a user installs, and a production install from a clone. `npm pack` of this checkout, then a global install of
 * the tarball into a temporary prefix without dev dependencies (as docs/install.md says), then the
 * installed `walts` (not this checkout's bin/) creates an archive on s3rver and round-trips a WAL
 * segment through wal-push and wal-fetch.
 *
 * The pack uses --ignore-scripts: the dist/ other integration tests run from right now must not be
 * deleted and rebuilt under them (scripts/prepare.js does that for a real `npm pack`). The install
 * prefers npm's local cache and asks the registry only for what is missing.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { trackClusters } from '../helpers/pg';
import { REPO_ROOT, run, runOk, type RunResult } from '../helpers/run';
import { s3rverEnv, startS3rver, type S3rverHandle } from '../helpers/s3server';
import { fakeSegment } from '../helpers/wal';

const SEG = '000000010000000000000001';

/**
 * npm builds the lz4 addon with node-gyp, against the running Node.js's own headers (beside its
 * binary: /usr/include/node for /usr/bin/node, include/node in a Node.js package) rather than a
 * download: CI's network reaches only the package registries, and its unprivileged user has no npm
 * configuration that says where the headers are (root's ~/.npmrc does).
 */
const NODE_DIR = resolve(dirname(process.execPath), '..');
const NPM_ENV: Record<string, string> = existsSync(join(NODE_DIR, 'include', 'node', 'node.h')) ? { npm_config_nodedir: NODE_DIR } : {};

describe('npm pack, then a global install without dev dependencies', () => {
  const reg = trackClusters();
  let work: string;
  let prefix: string;
  let s3: S3rverHandle;
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };

  beforeAll(async () => {
    work = await reg.tempDir('install');
    prefix = join(work, 'prefix');
    s3 = await startS3rver();
    const packed = await runOk('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], { cwd: REPO_ROOT, timeoutMs: 120_000 });
    const tarball = join(work, packed.stdout.trim().split('\n').pop() as string);
    await runOk(
      'npm',
      ['install', '--global', '--prefix', prefix, tarball, '--omit=dev', '--allow-scripts=lz4', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'],
      { cwd: work, timeoutMs: 300_000, env: NPM_ENV },
    );
  }, 420_000);
  afterAll(async () => {
    await s3?.stop();
    await reg.cleanupAll();
  });

  /** The installed command, with only the environment given (plus PATH, for node). */
  const installed = (args: string[], env: Record<string, string>, cwd = work): Promise<RunResult> =>
    run(join(prefix, 'bin', 'walts'), args, { env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env }, cleanEnv: true, cwd, timeoutMs: 60_000 });

  it('installs the command and its man page, and no dev dependency', async () => {
    const r = await installed(['--version'], {});
    expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    expect(existsSync(join(prefix, 'share', 'man', 'man1', 'walts.1'))).toBe(true);
    const modules = readdirSync(join(prefix, 'lib', 'node_modules', 'walts', 'node_modules'));
    for (const dev of Object.keys(pkg.devDependencies)) expect(modules).not.toContain(dev.split('/')[0]);
    expect(modules).toContain('lz4');
  });

  it('the installed walts archives a segment to S3 and fetches it back, byte for byte', async () => {
    const env = s3rverEnv(s3, 'installed');
    expect((await installed(['init'], env)).code).toBe(0);
    const pgdata = join(work, 'pgdata');
    mkdirSync(join(pgdata, 'pg_wal'), { recursive: true });
    const segment = fakeSegment(SEG);
    writeFileSync(join(pgdata, 'pg_wal', SEG), segment);
    const push = await installed(['wal-push', `pg_wal/${SEG}`], env, pgdata);
    expect([push.code, push.stderr]).toEqual([0, expect.stringContaining('"outcome":"uploaded"')]);
    const dest = join(work, 'RECOVERYXLOG');
    const fetch = await installed(['wal-fetch', SEG, dest], { ...env, WALTS_PREFETCH: '0' });
    expect(fetch.code).toBe(0);
    expect(readFileSync(dest).equals(segment)).toBe(true);
  });

  it('npm ci --omit=dev in a clone succeeds without building (no typescript), and walts then says dist/ is missing', async () => {
    // A clone's files that npm ci and the prepare script use (a copy: this checkout keeps its dist/).
    const clone = join(work, 'clone');
    mkdirSync(join(clone, 'scripts'), { recursive: true });
    for (const f of ['package.json', 'package-lock.json', 'scripts/prepare.js', 'bin']) cpSync(join(REPO_ROOT, f), join(clone, f), { recursive: true });
    const ci = await run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: clone, timeoutMs: 300_000, env: NPM_ENV });
    expect([ci.code, ci.stderr]).toEqual([0, expect.stringContaining('dev dependencies omitted, so dist/ is not built')]);
    expect(existsSync(join(clone, 'node_modules', 'typescript'))).toBe(false);
    const r = await run(join(clone, 'bin', 'walts'), ['--version'], { env: {}, cleanEnv: true });
    expect([r.code, r.stderr]).toEqual([2, expect.stringContaining('dist/ is not built here')]);
  }, 300_000);
});
