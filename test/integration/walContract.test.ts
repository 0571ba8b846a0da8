/**
 * The archive contract through the real `walts` binary against a real S3 server (s3rver), with a
 * fault-injecting proxy in front: exit codes, what is (not) written, retries, and hard errors.
 * reliability.md section 2 names the faults; DESIGN.md §4 the exit codes.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { trackClusters } from '../helpers/pg';
import { runWalts, WALTS_BIN } from '../helpers/run';
import { rawS3Client, startS3rver, type S3rverHandle } from '../helpers/s3server';
import { initArchive } from '../helpers/stores';
import { fakeSegment } from '../helpers/wal';

const SEG1 = '000000010000000000000001';
const SEG2 = '000000010000000000000002';

describe('wal-push / wal-fetch contract (walts binary, s3rver behind a fault proxy)', () => {
  const reg = trackClusters();
  let s3: S3rverHandle;
  let proxy: FaultProxy;
  let keys: GpgKeys;
  let otherKeys: GpgKeys;
  let work: string;
  let n = 0;

  beforeAll(async () => {
    s3 = await startS3rver();
    proxy = await startFaultProxy({ host: '127.0.0.1', port: s3.port });
    keys = await makeGpgKeys({ algo: 'ed25519' });
    otherKeys = await makeGpgKeys({ algo: 'ed25519', fresh: true });
    work = await reg.tempDir('work');
  });
  afterAll(async () => {
    await proxy?.stop();
    await s3?.stop();
    await keys?.cleanup();
    await otherKeys?.cleanup();
    await reg.cleanupAll();
  });

  /**
   * A fresh archive per test, so tests do not see each other's: made by the real `walts init`
   * (unencrypted, talking to s3rver directly so the proxy's request counts start at zero).
   */
  async function env(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const e = base();
    const { WALTS_PGP_PUBLIC_KEY: _pub, WALTS_PGP_PRIVATE_KEY: _priv, ...plain } = e;
    await initArchive({ ...plain, WALTS_S3_ENDPOINT: s3.endpoint });
    return { ...e, ...extra };
  }

  function base(): Record<string, string> {
    return {
      WALTS_STORE: `s3://${s3.bucket}/contract-${++n}`,
      WALTS_S3_ENDPOINT: proxy.endpoint,
      WALTS_S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      WALTS_RETRY_DEADLINE: '3',
      WALTS_IO_TIMEOUT: '2',
      WALTS_CONNECT_TIMEOUT: '1',
      WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath,
      WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath,
    };
  }

  function pgdata(files: Record<string, Buffer | string> = {}): string {
    const dir = join(work, `pgdata-${++n}`);
    mkdirSync(join(dir, 'pg_wal'), { recursive: true });
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, 'pg_wal', name), data);
    return dir;
  }

  const push = (e: Record<string, string>, dir: string, name: string) => runWalts(['wal-push', `pg_wal/${name}`], e, { cwd: dir, timeoutMs: 30_000 });
  const fetch = (e: Record<string, string>, name: string, dest: string) => runWalts(['wal-fetch', name, dest], e, { timeoutMs: 30_000 });
  const prefixOf = (e: Record<string, string>) => e['WALTS_STORE']!.split('/').pop()!;
  const puts = (prefix: string) => proxy.requests.filter((r) => r.method === 'PUT' && r.url.includes(prefix)).length;
  const gets = (path: string) => proxy.requests.filter((r) => r.method === 'GET' && r.url.includes(path)).length;
  /** walts' own JSON log lines on stderr. */
  const logLines = (stderr: string) =>
    stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: string; msg: string; duration_ms?: number; remaining_ms?: number });
  /** Polls (generously: the machine is loaded) until `f` holds. */
  async function waitUntil(what: string, f: () => boolean, timeoutMs = 60_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!f()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('identical re-push exits 0 and uploads nothing', async () => {
    const e = await env();
    const dir = pgdata({ [SEG1]: fakeSegment(SEG1) });
    expect((await push(e, dir, SEG1)).code).toBe(0);
    const before = puts(SEG1);
    const again = await push(e, dir, SEG1);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('already archived with identical content');
    expect(puts(SEG1)).toBe(before);
  });

  it('different content under an archived name exits 3 and leaves the store unchanged', async () => {
    const e = await env();
    const original = fakeSegment(SEG1);
    expect((await push(e, pgdata({ [SEG1]: original }), SEG1)).code).toBe(0);
    const r = await push(e, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('already archived with different content');
    const dest = join(work, `dest-${++n}`);
    expect((await fetch(e, SEG1, dest)).code).toBe(0);
    expect(require('node:fs').readFileSync(dest).equals(original)).toBe(true);
  });

  it('a segment of another cluster exits 3 and is not uploaded', async () => {
    const e = await env();
    expect((await push(e, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1)).code).toBe(0);
    const before = puts(SEG2);
    const r = await push(e, pgdata({ [SEG2]: fakeSegment(SEG2, { sysid: 1234n }) }), SEG2);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('belongs to database system 1234');
    expect(puts(SEG2)).toBe(before);
  });

  test.each([
    ['truncated', () => fakeSegment(SEG1).subarray(0, 100_000)],
    ['garbage', () => Buffer.alloc(1024 * 1024, 0x41)],
  ])('a %s file is refused (exit 3), nothing uploaded', async (_what, make) => {
    const e = await env();
    const r = await push(e, pgdata({ [SEG1]: make() }), SEG1);
    expect(r.code).toBe(3);
    expect(puts(e['WALTS_STORE']!.split('/').pop()!)).toBe(0);
  });

  test.each(['../x', '00000001000000000000000a', 'foo'])('bad name %j: exit 2 for push and fetch, nothing written', async (name) => {
    const e = await env();
    const before = proxy.requests.length;
    const dir = pgdata();
    const p = await runWalts(['wal-push', name], e, { cwd: join(dir, 'pg_wal') });
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(/not a WAL file name/);
    const f = await fetch(e, name, join(dir, 'pg_wal', 'RECOVERYXLOG'));
    expect(f.code).toBe(2);
    expect(readdirSync(join(dir, 'pg_wal'))).toEqual([]);
    expect(proxy.requests.length).toBe(before); // refused before any request
  });

  it('wal-fetch of ../../etc/passwd is refused with exit 2', async () => {
    const dest = join(work, `dest-${++n}`);
    const r = await fetch(await env(), '../../etc/passwd', dest);
    expect(r.code).toBe(2);
    expect(existsSync(dest)).toBe(false);
  });

  it('a missing segment exits 1 at once (no retries), no file', async () => {
    const dest = join(work, `dest-${++n}`);
    const r = await fetch(await env(), SEG2, dest);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/retrying/);
    expect(existsSync(dest)).toBe(false);
  });

  // One deadline end to end (issue 7): WALTS_RETRY_DEADLINE=10 gives up after 10 s, not after two
  // retry layers plus the SDK's attempts (~2x). walts' own duration_ms at give-up is the measure; the
  // wall-clock bound of the test stays generous for a loaded machine.
  test.each([
    ['refused connections (dead port)', { WALTS_S3_ENDPOINT: 'http://127.0.0.1:9' }, undefined],
    ['a store that accepts requests and never answers', { WALTS_IO_TIMEOUT: '60' }, 'hang'],
    ['a store answering 503', {}, '503'],
  ] as const)('store down (%s), WALTS_RETRY_DEADLINE=10: exit 255 at the deadline, retry lines say what is left, no file', async (_what, extra, fault) => {
    const e = await env({ WALTS_RETRY_DEADLINE: '10', ...extra });
    if (fault === 'hang') proxy.inject({ kind: 'hang', method: 'GET', pathIncludes: prefixOf(e), times: 1000 });
    if (fault === '503') proxy.inject({ kind: 'status', status: 503, method: 'GET', pathIncludes: prefixOf(e), times: 1000 });
    const dest = join(work, `dest-${++n}`);
    const r = await runWalts(['wal-fetch', SEG1, dest], e, { timeoutMs: 120_000 });
    proxy.clear();
    expect(r.code).toBe(255);
    expect(r.durationMs).toBeGreaterThanOrEqual(10_000);
    const lines = logLines(r.stderr);
    const final = lines[lines.length - 1]!;
    expect(final.msg).toMatch(/^wal-fetch failed: /);
    expect(final.duration_ms).toBeGreaterThanOrEqual(9_000);
    expect(final.duration_ms).toBeLessThanOrEqual(12_000);
    const retries = lines.filter((l) => /retrying/.test(l.msg));
    if (fault !== 'hang') expect(retries.length).toBeGreaterThan(1);
    for (const l of retries) expect(l.msg).toMatch(/\d+\.\d s left of the retry deadline/);
    expect(existsSync(dest)).toBe(false);
    expect(readdirSync(work).filter((f) => f.startsWith(`.dest-${n}`))).toEqual([]);
  });

  it('access denied during fetch: exit 255 at once (one request, no retries), not "not found", no file', async () => {
    const e = await env();
    expect((await push(e, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1)).code).toBe(0);
    const path = `${prefixOf(e)}/walts_v1/wal/0000000100000000/${SEG1}`;
    proxy.inject({ kind: 'status', status: 403, method: 'GET', pathIncludes: path, times: 100 });
    const before = gets(path);
    const dest = join(work, `dest-${++n}`);
    const r = await fetch(e, SEG1, dest);
    proxy.clear();
    expect(r.code).toBe(255);
    expect(gets(path) - before).toBe(1);
    expect(r.stderr).not.toMatch(/retrying/);
    expect(r.stderr).toMatch(/AccessDenied 403: access refused/);
    expect(existsSync(dest)).toBe(false);
  });

  it('missing S3 credentials: no retries; wal-push exits 2 (configuration), wal-fetch its hard-error code', async () => {
    const noCreds = await env({ AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_PROFILE: '', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' });
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_PROFILE']) delete noCreds[k];
    const before = proxy.requests.length;
    const p = await push(noCreds, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(/CredentialsProviderError/);
    expect(p.stderr).not.toMatch(/retrying/);
    const dest = join(work, `dest-${++n}`);
    const f = await fetch(noCreds, SEG1, dest);
    expect(f.code).toBe(255);
    expect(f.stderr).not.toMatch(/retrying/);
    expect(logLines(f.stderr)).toHaveLength(1);
    expect(proxy.requests.length).toBe(before); // nothing was sent unsigned
    expect(existsSync(dest)).toBe(false);
  });

  it('wrong private key: exit 255, no file, the passphrase never printed', async () => {
    const e = await env();
    expect((await push(e, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1)).code).toBe(0);
    const dest = join(work, `dest-${++n}`);
    const r = await fetch({ ...e, WALTS_PGP_PRIVATE_KEY: otherKeys.privateKeyPath }, SEG1, dest);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/decrypt/i);
    expect(existsSync(dest)).toBe(false);
  });

  test.each([
    ['503 on upload', { kind: 'status', status: 503, method: 'PUT' } as const, 'push'],
    ['reset on upload', { kind: 'reset', method: 'PUT' } as const, 'push'],
    ['503 on download', { kind: 'status', status: 503, method: 'GET' } as const, 'fetch'],
    ['reset on download', { kind: 'reset', method: 'GET' } as const, 'fetch'],
    ['truncated download', { kind: 'truncate-response', bytes: 1000, method: 'GET' } as const, 'fetch'],
  ])('%s once: retried and succeeds', async (_what, fault, phase) => {
    const e = await env();
    const seg = fakeSegment(SEG1);
    const dir = pgdata({ [SEG1]: seg });
    const objectPath = `${prefixOf(e)}/walts_v1/wal/0000000100000000/${SEG1}.lz4.pgp`;
    if (phase === 'push') proxy.inject({ ...fault, pathIncludes: objectPath });
    expect((await push(e, dir, SEG1)).code).toBe(0);
    if (phase === 'fetch') proxy.inject({ ...fault, pathIncludes: objectPath });
    const dest = join(work, `dest-${++n}`);
    const r = await fetch(e, SEG1, dest);
    expect(r.code).toBe(0);
    expect(require('node:fs').readFileSync(dest).equals(seg)).toBe(true);
  });

  it('an upload cut off mid-body (s3rver publishes the partial object) is never served and is replaced by the next push', async () => {
    const e = await env({ WALTS_COMPRESSION: 'none', WALTS_RETRY_DEADLINE: '1' });
    const seg = fakeSegment(SEG1);
    const dir = pgdata({ [SEG1]: seg });
    const key = `${prefixOf(e)}/walts_v1/wal/0000000100000000/${SEG1}.pgp`;
    // One cut upload; its retries are refused before they reach s3rver. (Retries cut short in turn
    // made s3rver drop the partial object again whenever the push was fast enough to get a second
    // attempt in within the 1 s deadline: the lean S3 transport is, the SDK mostly was not.)
    proxy.inject({ kind: 'truncate-request', bytes: 200_000, method: 'PUT', pathIncludes: key, times: 1 });
    proxy.inject({ kind: 'status', status: 503, method: 'PUT', pathIncludes: key, times: 100 });
    const cut = await push(e, dir, SEG1);
    proxy.clear();
    expect(cut.code).toBe(4); // store unavailable: PostgreSQL keeps the file and retries
    const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
    const client = rawS3Client(s3.endpoint);
    const partial = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
    client.destroy();
    // s3rver kept the first 200 000 bytes of a ~1 MiB object (real S3 never publishes a partial PUT).
    expect(partial.ContentLength).toBe(200_000);

    const dest = join(work, `dest-${++n}`);
    const refused = await fetch(e, SEG1, dest);
    expect(refused.code).toBe(255);
    expect(existsSync(dest)).toBe(false);

    // The short deadline above makes the cut push give up; the recovery needs no race against it
    // (a 1 s deadline failed here in CI under load).
    const calm = { ...e, WALTS_RETRY_DEADLINE: '60' };
    const again = await push(calm, dir, SEG1);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('replacing incomplete object');
    expect((await fetch(calm, SEG1, dest)).code).toBe(0);
    expect(require('node:fs').readFileSync(dest).equals(seg)).toBe(true);
  });

  it('never prints the passphrase, even when it is wrong', async () => {
    const protectedKeys = await makeGpgKeys({ algo: 'ed25519', passphrase: 'pass-phrase-that-must-not-leak' });
    try {
      const e = await env({ WALTS_PGP_PUBLIC_KEY: protectedKeys.publicKeyPath, WALTS_PGP_PRIVATE_KEY: protectedKeys.privateKeyPath, WALTS_LOG_LEVEL: 'trace' });
      expect((await push(e, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1)).code).toBe(0);
      const r = await fetch({ ...e, WALTS_PGP_PASSPHRASE: 'wrong-pass-phrase-that-must-not-leak' }, SEG1, join(work, `dest-${++n}`));
      expect(r.code).toBe(255);
      expect(r.stderr).toContain('wrong passphrase');
      expect(r.stderr + r.stdout).not.toContain('must-not-leak');
    } finally {
      await protectedKeys.cleanup();
    }
  });

  it('records that s3rver ignores If-None-Match, and still refuses conflicting content', async () => {
    const e = await env();
    expect((await push(e, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1)).code).toBe(0);
    const { GetObjectCommand } = await import('@aws-sdk/client-s3');
    const client = rawS3Client(s3.endpoint);
    // Probed once, by walts init, and kept in the archive record.
    const out = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${e['WALTS_STORE']!.split('/').pop()}/walts_v1/archive.json` }));
    const record = JSON.parse(await out.Body!.transformToString());
    client.destroy();
    expect(record.conditional_put).toEqual({ service: expect.stringContaining('s3://'), honoured: false });
    // Every upload carried the condition anyway (harmless where ignored, decisive where honoured).
    const segPuts = proxy.requests.filter((r) => r.method === 'PUT' && r.url.includes(SEG1) && r.url.includes(e['WALTS_STORE']!.split('/').pop()!));
    expect(segPuts.every((r) => r.headers['if-none-match'] === '*')).toBe(true);
  });

  it('SIGTERM during a hung fetch: walts dies by SIGTERM and leaves no file', async () => {
    const e = await env();
    expect((await push(e, pgdata({ [SEG1]: fakeSegment(SEG1) }), SEG1)).code).toBe(0);
    const path = `${prefixOf(e)}/walts_v1/wal/0000000100000000/${SEG1}.lz4.pgp`;
    proxy.inject({ kind: 'hang', method: 'GET', pathIncludes: path });
    const before = gets(path);
    const dest = join(work, `dest-${++n}`);
    const child = spawn(WALTS_BIN, ['wal-fetch', SEG1, dest], { env: { ...process.env, ...e, WALTS_IO_TIMEOUT: '30' }, stdio: 'ignore' });
    const exited = new Promise<[number | null, string | null]>((r) => child.once('exit', (c, s) => r([c, s])));
    await waitUntil('the fetch to reach the store', () => gets(path) > before);
    child.kill('SIGTERM');
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' });
    expect(existsSync(dest)).toBe(false);
  });

  it('SIGKILL mid-download leaves a temp file; the next wal-fetch removes it (its process is gone) and succeeds', async () => {
    const e = await env({ WALTS_IO_TIMEOUT: '60' });
    const seg = fakeSegment(SEG1);
    expect((await push(e, pgdata({ [SEG1]: seg }), SEG1)).code).toBe(0);
    const dir = join(pgdata(), 'pg_wal');
    proxy.inject({ kind: 'stall-response', bytes: 20_000, method: 'GET', pathIncludes: `${prefixOf(e)}/walts_v1/wal/0000000100000000/${SEG1}.lz4.pgp` });
    const child = spawn(WALTS_BIN, ['wal-fetch', SEG1, join(dir, 'RECOVERYXLOG')], { env: { ...process.env, ...e }, stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    const leftover = new RegExp(`^\\.RECOVERYXLOG\\.walts-${child.pid}-[0-9a-f]+\\.tmp$`);
    await waitUntil('the download to start writing its temp file', () => readdirSync(dir).some((f) => leftover.test(f)));
    child.kill('SIGKILL');
    await exited;
    expect(readdirSync(dir).filter((f) => leftover.test(f))).toHaveLength(1);

    const r = await runWalts(['wal-fetch', SEG1, 'pg_wal/RECOVERYXLOG'], e, { cwd: join(dir, '..'), timeoutMs: 60_000 });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/removed temp files left by wal-fetch processes that no longer exist/);
    // (walts_spool: the prefetch spool, docs/operations.md, "The prefetch spool")
    expect(readdirSync(dir).filter((f) => f !== 'walts_spool')).toEqual(['RECOVERYXLOG']);
    expect(require('node:fs').readFileSync(join(dir, 'RECOVERYXLOG')).equals(seg)).toBe(true);
  });
});
