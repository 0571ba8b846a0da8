import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { StoreConfig } from '../../../src/config';
import { ConfigError, NotFoundError, ObjectExistsError, UnavailableError } from '../../../src/errors';
import { openStorage } from '../../../src/storage/open';
import { S3Storage } from '../../../src/storage/s3';
import { readAll } from '../../../src/util/streams';
import { describeStorage, digestOf, listKeys, randomStream } from '../../contract/storage';
import { startFaultProxy, type FaultProxy } from '../../helpers/faultProxy';
import { s3StoreConfig, startS3rver, type S3rverHandle } from '../../helpers/s3server';

let server: S3rverHandle;
let prefixes = 0;
const nextPrefix = (): string => `t${++prefixes}-${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  server = await startS3rver();
});
afterAll(async () => {
  await server?.stop();
});

// The production path: openStorage = S3Storage wrapped in withRetry. s3rver lists `a/x` before `a.b`
// (and its continuation tokens then skip keys): a server quirk, real S3 lists in byte order.
describeStorage(
  's3 (s3rver)',
  async () => {
    const storage = openStorage(s3StoreConfig(server.endpoint, server.bucket, nextPrefix()));
    return { storage, cleanup: () => storage.close() };
  },
  { nestedListOrderBroken: true },
);

// The same contract with every request through the AWS SDK (WALTS_S3_CLIENT=sdk): still the path for
// profiles, roles, AWS endpoints and anything else the lean transport leaves to it (storage/s3Lean.ts),
// and no other s3rver test takes it any more.
describeStorage(
  's3 (s3rver), AWS SDK only',
  async () => {
    const storage = openStorage(s3StoreConfig(server.endpoint, server.bucket, nextPrefix(), { s3: { client: 'sdk' } }));
    return { storage, cleanup: () => storage.close() };
  },
  { nestedListOrderBroken: true },
);

describe('S3Storage against s3rver', () => {
  const opened: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });
  const s3 = (config: StoreConfig): S3Storage => {
    const s = new S3Storage(config);
    opened.push(s);
    return s;
  };

  it('reports whether the service honours If-None-Match (s3rver is known not to)', async () => {
    const s = s3(s3StoreConfig(server.endpoint, server.bucket, nextPrefix()));
    expect(s.conditionalCreate).toBe('unverified');
    const honoured = await s.probeConditionalCreate('scratch');
    console.log(`s3rver honours If-None-Match: * → ${honoured}`);
    expect(typeof honoured).toBe('boolean');
    expect(await listKeys(s, '')).toEqual([]); // the probe cleaned up
  });

  it('keeps keys under the prefix and strips it when listing', async () => {
    const prefix = nextPrefix();
    const s = s3(s3StoreConfig(server.endpoint, server.bucket, prefix));
    await s.put('a/b', Buffer.from('x'));
    const root = s3(s3StoreConfig(server.endpoint, server.bucket, ''));
    expect(await listKeys(root, `${prefix}/`)).toEqual([`${prefix}/a/b`]);
    expect(await listKeys(s, '')).toEqual(['a/b']);
    expect(s.description).toBe(`s3://${server.bucket}/${prefix} at ${server.endpoint}`);
  });

  it('sends If-None-Match only when asked and not switched off', async () => {
    const proxy = await startFaultProxy({ host: '127.0.0.1', port: server.port });
    try {
      const on = s3(s3StoreConfig(proxy.endpoint, server.bucket, nextPrefix()));
      await on.put('k', Buffer.from('1'), { ifAbsent: true });
      await on.put('k2', Buffer.from('1'));
      const off = s3(s3StoreConfig(proxy.endpoint, server.bucket, nextPrefix(), { s3: { conditionalPut: 'off' } }));
      await off.put('k', Buffer.from('1'), { ifAbsent: true });
      const puts = proxy.requests.filter((r) => r.method === 'PUT');
      expect(puts.map((r) => r.headers['if-none-match'])).toEqual(['*', undefined, undefined]);
      expect(s3(s3StoreConfig(proxy.endpoint, server.bucket, '', { s3: { conditionalPut: 'on' } })).conditionalCreate).toBe('enforced');
    } finally {
      await proxy.stop();
    }
  });

  it('multipart-uploads a large stream of unknown size and aborts nothing on success', async () => {
    const proxy = await startFaultProxy({ host: '127.0.0.1', port: server.port });
    try {
      const s = s3(s3StoreConfig(proxy.endpoint, server.bucket, nextPrefix()));
      const src = randomStream(40 * 1024 * 1024);
      await s.put('big', src.stream, { metadata: { sha256: 'x' } });
      const parts = proxy.requests.filter((r) => r.method === 'PUT' && r.url.includes('partNumber='));
      expect(parts.length).toBe(5); // 8 MiB parts: 8 × 5 = 40 MiB
      expect(proxy.requests.some((r) => r.method === 'DELETE')).toBe(false);
      const obj = await s.get('big');
      expect(obj.metadata).toEqual({ sha256: 'x' });
      expect(await digestOf(obj.body)).toEqual({ sha256: src.digest(), size: 40 * 1024 * 1024 });
    } finally {
      await proxy.stop();
    }
  });

  it('falls back to us-east-1 when no region is configured anywhere', async () => {
    const saved = { r: process.env['AWS_REGION'], d: process.env['AWS_DEFAULT_REGION'], c: process.env['AWS_CONFIG_FILE'] };
    delete process.env['AWS_REGION'];
    delete process.env['AWS_DEFAULT_REGION'];
    process.env['AWS_CONFIG_FILE'] = '/nonexistent/walts-test-aws-config';
    try {
      const s = s3(s3StoreConfig(server.endpoint, server.bucket, nextPrefix(), { s3: { region: undefined } }));
      await s.put('r', Buffer.from('x'));
      expect(await s.head('r')).toMatchObject({ size: 1 });
    } finally {
      for (const [k, v] of [['AWS_REGION', saved.r], ['AWS_DEFAULT_REGION', saved.d], ['AWS_CONFIG_FILE', saved.c]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('names a missing bucket as a configuration error, not as a missing object', async () => {
    const s = s3(s3StoreConfig(server.endpoint, 'no-such-bucket', nextPrefix()));
    const err = await s.get('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as UnavailableError).transient).toBe(false);
    expect((err as Error).message).toBe(`s3://no-such-bucket/${(s as unknown as { prefix: string }).prefix.replace(/\/$/, '')}: get x: NoSuchBucket 404`);
  });

  it('passes an abort signal through', async () => {
    const s = s3(s3StoreConfig(server.endpoint, server.bucket, nextPrefix()));
    await s.put('x', Buffer.from('x'));
    await expect(s.get('x', { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it.each([
    ['a single PUT', 4 * 1024 * 1024],
    ['a multipart upload', undefined],
  ])('fails %s at once with the error of a failing body stream', async (_how, size) => {
    const s = s3(s3StoreConfig(server.endpoint, server.bucket, nextPrefix(), { ioTimeoutMs: 120_000 }));
    const broken = new Error('source broke');
    const body = Readable.from(
      (async function* () {
        yield Buffer.alloc(size ? 1024 * 1024 : 17 * 1024 * 1024);
        throw broken;
      })(),
    );
    const started = Date.now();
    await expect(s.put('broken', body, { size })).rejects.toBe(broken);
    expect(Date.now() - started).toBeLessThan(60_000); // not the 120 s idle timeout (generous: the machine may be loaded)
  });

  it('refuses a body shorter than its announced size at once', async () => {
    const s = s3(s3StoreConfig(server.endpoint, server.bucket, nextPrefix(), { ioTimeoutMs: 120_000 }));
    const started = Date.now();
    await expect(s.put('short', Readable.from([Buffer.alloc(10)]), { size: 100 })).rejects.toThrow('body ended after 10 of the 100 bytes announced');
    expect(Date.now() - started).toBeLessThan(60_000); // not the 120 s idle timeout
  });

  it('reports per-key failures of DeleteObjects', async () => {
    const s = s3(s3StoreConfig(server.endpoint, server.bucket, 'pfx'));
    // s3rver never fails single keys: stand in for the service's answer.
    (s as unknown as { client: { send: () => Promise<unknown> } }).client.send = async () => ({
      Errors: [
        { Key: 'pfx/a', Code: 'AccessDenied', Message: 'Access Denied' },
        { Key: 'pfx/b', Code: 'AccessDenied', Message: 'Access Denied' },
      ],
    });
    const err = await s.delete(['a', 'b']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError); // access refused: a setting to fix, not retried
    expect((err as Error).message).toBe('s3://walts-test/pfx: delete a: AccessDenied (and 1 more): access refused; check the access key and the bucket policy');
    (s as unknown as { client: { send: () => Promise<unknown> } }).client.send = async () => ({ Errors: [{ Key: 'pfx/a', Code: 'InternalError' }] });
    const transient = await s.delete(['a']).catch((e: unknown) => e);
    expect(transient).toBeInstanceOf(UnavailableError);
    expect((transient as UnavailableError).transient).toBe(true);
  });
});

describe('S3 faults through a proxy', () => {
  let proxy: FaultProxy;
  const opened: Array<{ close(): Promise<void> }> = [];
  beforeEach(async () => {
    proxy = await startFaultProxy({ host: '127.0.0.1', port: server.port });
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await proxy.stop();
  });
  const store = (overrides: Parameters<typeof s3StoreConfig>[3] = {}) => {
    const s = openStorage(s3StoreConfig(proxy.endpoint, server.bucket, nextPrefix(), overrides));
    opened.push(s);
    return s;
  };
  const count = (method: string, key: string) =>
    proxy.requests.filter((r) => r.method === method && new URL(r.url, 'http://proxy').pathname.endsWith(`/${key}`)).length;

  it('retries a 503 SlowDown on PUT and on GET', async () => {
    const s = store();
    proxy.inject({ kind: 'status', status: 503, method: 'PUT' });
    await s.put('k503', Buffer.from('payload'));
    expect(count('PUT', 'k503')).toBe(2);
    proxy.inject({ kind: 'status', status: 503, method: 'GET', pathIncludes: 'k503' });
    expect((await readAll((await s.get('k503')).body)).toString()).toBe('payload');
    expect(count('GET', 'k503')).toBe(2);
  });

  it('retries a multipart upload part (the SDK, under the same budget) and completes the object', async () => {
    const s = store();
    const warnings: string[] = [];
    const logged = openStorage(s3StoreConfig(proxy.endpoint, server.bucket, nextPrefix()), { warn: (_o, msg) => warnings.push(msg) });
    opened.push(logged);
    void s;
    // The second part's first PUT fails; a stream cannot be re-sent whole, so only the part is retried.
    proxy.inject({ kind: 'status', status: 503, method: 'PUT', pathIncludes: 'partNumber=2' });
    const data = Buffer.alloc(17 * 1024 * 1024, 3);
    await logged.put('multi', Readable.from([data]));
    expect(proxy.requests.filter((r) => r.method === 'PUT' && r.url.includes('multi?') && r.url.includes('partNumber=2')).length).toBe(2);
    expect(warnings).toEqual([expect.stringMatching(/^upload part failed, retrying in \d+ ms \(\d+\.\d s left of the retry deadline\)$/)]);
    expect((await readAll((await logged.get('multi')).body)).equals(data)).toBe(true);
  });

  it('retries a connection reset on PUT and on GET', async () => {
    const s = store();
    proxy.inject({ kind: 'reset', method: 'PUT' });
    await s.put('kreset', Buffer.from('payload'));
    expect(count('PUT', 'kreset')).toBe(2);
    proxy.inject({ kind: 'reset', method: 'GET', pathIncludes: 'kreset' });
    expect((await readAll((await s.get('kreset')).body)).toString()).toBe('payload');
    expect(count('GET', 'kreset')).toBe(2);
  });

  it('retries (one SDK attempt each) until the deadline, then fails transient', async () => {
    const s = store({ retryDeadlineMs: 1500 });
    // 500 rather than 503: the SDK backs off longer on throttling, this keeps the test short.
    proxy.inject({ kind: 'status', status: 500, method: 'PUT', times: 1000 });
    const started = Date.now();
    const err = await s.put('always500', Buffer.from('x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).transient).toBe(true);
    expect((err as Error).message).toMatch(/^s3:\/\/walts-test\/t\d+-[0-9a-f]+: put always500: InternalError 500$/);
    expect(count('PUT', 'always500')).toBeGreaterThan(3);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('turns a 403 on GET into a ConfigError (access refused: not retried, exit 2), never NotFoundError, without secrets', async () => {
    const s = store();
    await s.put('k403', Buffer.from('x'));
    proxy.inject({ kind: 'status', status: 403, method: 'GET', times: 10 });
    const err = await s.get('k403').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(/: get k403: AccessDenied 403: access refused; check the access key and the bucket policy/);
    expect((err as Error).message).not.toMatch(/S3RVER|Signature|Credential|Authorization/i);
    expect(count('GET', 'k403')).toBe(1); // not retried
  });

  it('treats a 404 on HEAD as absent, and a 403 on HEAD as an error', async () => {
    const s = store();
    expect(await s.head('nothing')).toBeUndefined();
    proxy.inject({ kind: 'status', status: 403, method: 'HEAD' });
    await expect(s.head('nothing')).rejects.toBeInstanceOf(ConfigError);
  });

  it('fails a hung request within the deadline', async () => {
    const s = store({ ioTimeoutMs: 1000, retryDeadlineMs: 2000 });
    proxy.inject({ kind: 'hang', method: 'GET', times: 1000 });
    const started = Date.now();
    const err = await s.get('hung').catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).transient).toBe(true);
    // The I/O timeout ends the first attempts; the last one is cut where the deadline falls.
    expect((err as Error).message).toMatch(/: get hung: (TimeoutError|no answer within \d+ ms \(the rest of the retry deadline\))$/);
    expect(elapsed).toBeGreaterThanOrEqual(1000);
    expect(elapsed).toBeLessThan(12_000);
  });

  it('reports a body cut short as a transient error, not as a short object', async () => {
    const s = store();
    await s.put('cut', randomBytes(256 * 1024));
    proxy.inject({ kind: 'truncate-response', bytes: 1000, method: 'GET', pathIncludes: 'cut' });
    const obj = await s.get('cut');
    expect(obj.size).toBe(256 * 1024);
    const err = await readAll(obj.body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).transient).toBe(true);
  });

  it('maps 412 on create-if-absent to ObjectExistsError (as an enforcing service answers)', async () => {
    const s = store();
    proxy.inject({ kind: 'status', status: 412, method: 'PUT' });
    await expect(s.put('taken', Buffer.from('x'), { ifAbsent: true })).rejects.toBeInstanceOf(ObjectExistsError);
  });

  it('retries 409 ConditionalRequestConflict on a Buffer put', async () => {
    const s = store();
    proxy.inject({ kind: 'status', status: 409, method: 'PUT' });
    await s.put('conflict', Buffer.from('x'), { ifAbsent: true });
    expect(count('PUT', 'conflict')).toBe(2);
  });

  it('tells the operator to switch conditional PUT off when the service answers 501', async () => {
    const s = store();
    proxy.inject({ kind: 'status', status: 501, method: 'PUT' });
    const err = await s.put('x', Buffer.from('x'), { ifAbsent: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).transient).toBe(false);
    expect((err as Error).message).toContain('WALTS_S3_CONDITIONAL_PUT=off');
    proxy.inject({ kind: 'status', status: 501, method: 'PUT' });
    expect(await s.probeConditionalCreate?.('scratch')).toBe(false);
  });

  it('does not retry a stream put (it cannot be replayed)', async () => {
    const s = store();
    proxy.inject({ kind: 'status', status: 503, method: 'PUT' });
    const err = await s.put('streamed', Readable.from([Buffer.from('abc')]), { size: 3 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ transient: true });
    expect(count('PUT', 'streamed')).toBe(1);
  });
});
