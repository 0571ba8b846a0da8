/**
 * When S3Storage may use the lean transport, and that it then sends the request the SDK sends: the
 * same URL and the same headers (but the SDK's own telemetry headers), captured from S3Storage's own
 * SDK client just before it would go on the wire.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { StoreConfig } from '../../../src/config';
import { S3Storage } from '../../../src/storage/s3';
import { chooseLeanS3 } from '../../../src/storage/s3Lean';
import type { S3Client } from '@aws-sdk/client-s3';
import { s3Requests, type S3Transport, type TransportRequest } from '../../../src/storage/s3Transport';

const env = { AWS_ACCESS_KEY_ID: 'AKLEAN', AWS_SECRET_ACCESS_KEY: 'lean-secret', HOME: '/nonexistent-home' };

function config(s3: Partial<StoreConfig['s3']> = {}, bucket = 'bkt'): StoreConfig {
  return {
    url: `s3://${bucket}/p`,
    kind: 's3',
    bucket,
    prefix: 'p/',
    connectTimeoutMs: 1000,
    ioTimeoutMs: 1000,
    retryDeadlineMs: 1000,
    s3: { endpoint: 'http://127.0.0.1:9000', forcePathStyle: true, conditionalPut: 'auto', client: 'auto', ...s3 },
  };
}

describe('chooseLeanS3', () => {
  const none = (): boolean => false;
  const reason = (c: StoreConfig, e: NodeJS.ProcessEnv, exists: (p: string) => boolean = none): string | undefined => chooseLeanS3(c, e, exists).reason;

  it('takes environment credentials, a custom endpoint and the region as the SDK resolves it', () => {
    expect(chooseLeanS3(config(), env, none).target).toEqual({
      protocol: 'http:', hostname: '127.0.0.1', port: 9000, pathStyle: true, bucket: 'bkt', region: 'us-east-1',
      credentials: { accessKeyId: 'AKLEAN', secretAccessKey: 'lean-secret' },
    });
    expect(chooseLeanS3(config(), { ...env, AWS_REGION: 'eu-west-3', AWS_SESSION_TOKEN: 'tok', AWS_CA_BUNDLE: '/x', AWS_DEFAULT_REGION: 'x' }, none).target).toMatchObject({
      region: 'eu-west-3', credentials: { sessionToken: 'tok' },
    });
    expect(chooseLeanS3(config({ region: 'garage' }), { ...env, AWS_REGION: 'eu-west-3' }, none).target?.region).toBe('garage');
  });

  it('leaves everything else to the SDK', () => {
    expect(reason(config({ client: 'sdk' }), env)).toBe('WALTS_S3_CLIENT=sdk');
    expect(reason(config(), { ...env, AWS_PROFILE: 'p' })).toMatch(/AWS_PROFILE/); // the SDK then skips environment keys
    expect(reason(config(), { ...env, AWS_PROFILE: '' })).toMatch(/AWS_PROFILE/);
    for (const name of ['AWS_ENDPOINT_URL_S3', 'AWS_USE_FIPS_ENDPOINT', 'AWS_USE_DUALSTACK_ENDPOINT', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_CREDENTIAL_EXPIRATION', 'AWS_REQUEST_CHECKSUM_CALCULATION', 'AWS_EXECUTION_ENV']) {
      expect(reason(config(), { ...env, [name]: 'x' })).toMatch(name);
    }
    expect(reason(config(), { ...env, AWS_SECRET_ACCESS_KEY: '' })).toMatch(/no credentials/);
    expect(reason(config(), { AWS_ACCESS_KEY_ID: 'a', HOME: '/h' })).toMatch(/no credentials/);
    expect(reason(config(), env, (p) => p === '/nonexistent-home/.aws/config')).toMatch(/config exists/);
    expect(reason(config(), env, (p) => p === '/nonexistent-home/.aws/credentials')).toMatch(/credentials exists/);
    expect(reason(config(), { ...env, AWS_REGION: '' })).toMatch(/region/);
    expect(reason(config({ endpoint: undefined }), env)).toMatch(/AWS endpoint/);
    expect(reason(config({ endpoint: 'https://h.example/base' }), env)).toMatch(/path/);
    expect(reason(config({ endpoint: 'https://u:p@h.example' }), env)).toMatch(/credentials/);
    expect(reason(config({ endpoint: 'https://h.example/?x=1' }), env)).toMatch(/query/);
    expect(reason(config({ forcePathStyle: false }, 'b.c'), env)).toBeUndefined(); // an IP host: path style anyway
    expect(reason(config({ forcePathStyle: false, endpoint: 'https://minio.example' }, 'b.c'), env)).toMatch(/host label/);
  });

  it('names no AWS_* variable as harmless that the installed SDK reads', () => {
    // AWS_CA_BUNDLE is allowed because the JavaScript SDK never reads it: keep that true on upgrades.
    const hits: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (path.includes('dist-cjs') && name.endsWith('.js') && readFileSync(path, 'utf8').includes('AWS_CA_BUNDLE')) hits.push(path);
      }
    };
    for (const scope of ['@aws-sdk', '@smithy']) walk(join(__dirname, '../../../node_modules', scope));
    expect(hits).toEqual([]);
  });
});

describe('the transport sends what the SDK sends', () => {
  // The SDK resolves credentials and region when it sends: the environment stays set throughout.
  const saved = { ...process.env };
  beforeAll(() => {
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    Object.assign(process.env, env, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
  });
  afterAll(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  /** S3Storage's own SDK client and transport for `c`. */
  function both(c: StoreConfig): { client: S3Client; transport: S3Transport; storage: S3Storage } {
    const storage = new S3Storage(c);
    const inner = storage as unknown as { client: S3Client; lean?: S3Transport };
    if (!inner.lean) throw new Error(`no transport for ${JSON.stringify(c.s3)}: ${chooseLeanS3(c).reason}`);
    return { client: inner.client, transport: inner.lean, storage };
  }

  /** The request the SDK client would send for `command`, stopped after signing. */
  async function captured(client: S3Client, command: object): Promise<{ hostname: string; port?: number; path: string; headers: Record<string, string> }> {
    let request: { hostname: string; port?: number; path: string; query: Record<string, string>; headers: Record<string, string> } | undefined;
    const name = 'captureRequest';
    client.middlewareStack.add(
      (() => async (args: { request: unknown }) => {
        request = args.request as typeof request;
        throw new Error('captured');
      }) as never,
      { step: 'finalizeRequest', priority: 'low', name },
    );
    try {
      await expect(client.send(command as never)).rejects.toThrow('captured');
    } finally {
      client.middlewareStack.remove(name);
    }
    if (!request) throw new Error('nothing captured');
    // The order of parameters on the wire does not matter (the signature covers them sorted).
    // Encoded as @smithy/querystring-builder encodes it on the wire (RFC 3986).
    const rfc3986 = (x: string): string => encodeURIComponent(x).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    const qs = Object.entries(request.query)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${rfc3986(k)}=${rfc3986(v)}`)
      .join('&');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(request.headers)) {
      // The SDK's telemetry (not sent by the transport) and its signature over them.
      if (!['amz-sdk-invocation-id', 'amz-sdk-request', 'x-amz-user-agent', 'user-agent', 'authorization'].includes(k.toLowerCase())) headers[k.toLowerCase()] = v;
    }
    return { hostname: request.hostname, port: request.port, path: qs ? `${request.path}?${qs}` : request.path, headers };
  }

  function ours(transport: S3Transport, req: TransportRequest, amzDate: string): { hostname: string; path: string; headers: Record<string, string> } {
    const d = amzDate.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z');
    const out = transport.prepare(req, new Date(d));
    const { authorization, ...headers } = out.headers;
    expect(authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKLEAN\//);
    return { ...out, headers };
  }

  const endpoints: Array<[Partial<StoreConfig['s3']>, string?]> = [
    [{ endpoint: 'http://127.0.0.1:9000', forcePathStyle: true }],
    [{ endpoint: 'http://127.0.0.1:9000', forcePathStyle: false }],
    [{ endpoint: 'http://127.0.0.1:9000', forcePathStyle: false }, 'b.with.dots'],
    [{ endpoint: 'http://[::1]:9000', forcePathStyle: false }],
    [{ endpoint: 'https://minio.example', forcePathStyle: false, region: 'eu-central-1' }],
    [{ endpoint: 'https://minio.example/', forcePathStyle: true, region: 'garage' }, 'b.with.dots'],
    [{ endpoint: 'http://localhost:9000', forcePathStyle: false }],
    [{ endpoint: 'https://s3.eu-west-1.amazonaws.com', forcePathStyle: false, region: 'eu-west-1' }],
  ];

  it.each(endpoints)('for %j (bucket %s)', async (s3, bucket = 'my-bucket') => {
    const c = config(s3, bucket);
    const { client, transport, storage } = both(c);
    const { S3 } = { S3: await import('@aws-sdk/client-s3') };
    try {
      const keys = ['p/000000010000000000000005', 'p/a b+c~=ü/x', "p/!'()*%20&?#"];
      for (const Key of keys) {
        for (const [command, req] of [
          [new S3.GetObjectCommand({ Bucket: bucket, Key }), s3Requests.getObject(Key)],
          [new S3.HeadObjectCommand({ Bucket: bucket, Key }), s3Requests.headObject(Key)],
          [new S3.ListObjectsV2Command({ Bucket: bucket, Prefix: Key }), s3Requests.listObjectsV2(Key, undefined)],
          [new S3.ListObjectsV2Command({ Bucket: bucket, Prefix: Key, ContinuationToken: 'a+b/=c d' }), s3Requests.listObjectsV2(Key, 'a+b/=c d')],
        ] as const) {
          const sdk = await captured(client, command);
          expect(ours(transport, req, sdk.headers['x-amz-date'] as string)).toEqual({ hostname: sdk.hostname, path: sdk.path, headers: sdk.headers });
        }
      }
      // PutObject as S3Storage sends it: metadata, If-None-Match, SSE-KMS, storage class; 3 MiB asks 100 Continue.
      for (const body of [Buffer.from('segment'), Buffer.alloc(3 * 1024 * 1024, 7)]) {
        const Metadata = { sha256: 'ab', 'walts-format': '1' };
        const sdk = await captured(client, new S3.PutObjectCommand({ Bucket: bucket, Key: keys[1], Body: body, Metadata, IfNoneMatch: '*', ServerSideEncryption: 'aws:kms', SSEKMSKeyId: 'kid', StorageClass: 'STANDARD_IA' }));
        const req = s3Requests.putObject(keys[1] as string, body, { metadata: Metadata, ifNoneMatch: true, sse: 'aws:kms', sseKmsKeyId: 'kid', storageClass: 'STANDARD_IA' });
        expect(ours(transport, req, sdk.headers['x-amz-date'] as string)).toEqual({ hostname: sdk.hostname, path: sdk.path, headers: sdk.headers });
        const plain = await captured(client, new S3.PutObjectCommand({ Bucket: bucket, Key: keys[0], Body: body }));
        expect(ours(transport, s3Requests.putObject(keys[0] as string, body, {}), plain.headers['x-amz-date'] as string)).toEqual({ hostname: plain.hostname, path: plain.path, headers: plain.headers });
      }
    } finally {
      await storage.close();
    }
  });
});
