/**
 * The lean S3 transport against the AWS SDK on the same canned answers: S3Storage must end the same
 * way whichever sends the request (same walts error class, transiency and message; same object,
 * metadata and listing). The server is a plain node:http server; nothing here checks signatures
 * (sigv4.test.ts does).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StoreConfig } from '../../../src/config';
import { S3Storage } from '../../../src/storage/s3';
import { readAll } from '../../../src/util/streams';

process.env['AWS_ACCESS_KEY_ID'] = 'AKPARITY';
process.env['AWS_SECRET_ACCESS_KEY'] = 'parity-secret';
delete process.env['AWS_SESSION_TOKEN'];
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

interface Canned {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

let server: Server;
let answer: Canned;
const seen: IncomingMessage[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req);
    req.resume();
    req.on('end', () => {
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(req.method === 'HEAD' ? undefined : answer.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function config(client: 'auto' | 'sdk'): StoreConfig {
  const { port } = server.address() as AddressInfo;
  return {
    url: 's3://bkt/p',
    kind: 's3',
    bucket: 'bkt',
    prefix: 'p/',
    connectTimeoutMs: 2000,
    ioTimeoutMs: 2000,
    retryDeadlineMs: 1000,
    s3: { endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, region: 'us-east-1', conditionalPut: 'on', client },
  };
}

type Op = (s: S3Storage) => Promise<unknown>;
const ops: Record<string, Op> = {
  get: async (s) => {
    const o = await s.get('k');
    return { ...o, body: (await readAll(o.body)).toString() };
  },
  head: (s) => s.head('k'),
  put: (s) => s.put('k', Buffer.from('x'), { ifAbsent: true, metadata: { sha256: 'ab' } }),
  list: async (s) => {
    const out = [];
    for await (const o of s.list('')) out.push(o);
    return out;
  },
};

/** What S3Storage returned or threw, as comparable data. */
async function outcome(client: 'auto' | 'sdk', op: Op): Promise<unknown> {
  const s = new S3Storage(config(client));
  seen.length = 0;
  try {
    return { ok: await op(s) };
  } catch (err) {
    const e = err as Error & { transient?: boolean };
    return { error: e.constructor.name, transient: e.transient, message: e.message };
  } finally {
    await s.close();
    // Not two SDK runs compared: the first request of `auto` is the transport's (no SDK invocation id).
    expect(seen[0]?.headers['amz-sdk-invocation-id'] === undefined).toBe(client === 'auto');
  }
}

const errors: Canned[] = [
  { status: 403 },
  { status: 404 },
  { status: 400 },
  { status: 500 },
  { status: 503 },
  { status: 301, headers: { 'x-amz-bucket-region': 'eu-west-1' } },
  { status: 404, body: '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchBucket</Code><Message>m</Message></Error>' },
  { status: 404, body: '<Error><Code>NoSuchKey</Code></Error>' },
  { status: 403, body: '<Error><Code>AccessDenied</Code></Error>' },
  { status: 403, body: '<Error><Code>RequestTimeTooSkewed</Code></Error>' },
  { status: 503, body: '<Error><Code>SlowDown</Code></Error>' },
  { status: 409, body: '<Error><Code>ConditionalRequestConflict</Code></Error>' },
  { status: 412, body: '<Error><Code>PreconditionFailed</Code></Error>' },
  { status: 501, body: '<Error><Code>NotImplemented</Code></Error>' },
  { status: 403, body: '<Error><Code>A&amp;B</Code></Error>' },
  { status: 502, headers: { 'content-type': 'text/html' }, body: '<html><body><h1>Bad gateway</h1></body></html>' },
  { status: 418, body: 'not xml' },
  { status: 400, body: '{"Code":"x"}' },
];

describe.each(Object.keys(ops))('%s', (name) => {
  it.each(errors)('ends as the SDK does on $status $body', async (canned) => {
    answer = canned;
    const sdk = await outcome('sdk', ops[name] as Op);
    const lean = await outcome('auto', ops[name] as Op);
    expect(lean).toEqual(sdk);
  });
});

it('reads an object, its metadata and its date as the SDK does', async () => {
  answer = {
    status: 200,
    headers: { 'content-length': '5', 'last-modified': 'Wed, 02 Dec 2026 18:08:11 GMT', 'x-amz-meta-sha256': 'abc', 'x-amz-meta-Mixed-Case': 'V a l', etag: '"x"' },
    body: 'hello',
  };
  for (const op of [ops['get'], ops['head']] as Op[]) {
    const sdk = await outcome('sdk', op);
    expect(sdk).toMatchObject({ ok: { size: 5, metadata: { sha256: 'abc', 'mixed-case': 'V a l' } } });
    expect(await outcome('auto', op)).toEqual(sdk);
  }
});

it('lists as the SDK does: entities decoded, pages followed with their continuation token', async () => {
  const page = (keys: string[], next?: string): string =>
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><Prefix>p/</Prefix>` +
    keys.map((k) => `<Contents><Key>${k}</Key><LastModified>2026-12-02T18:08:11.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>7</Size><StorageClass>STANDARD</StorageClass></Contents>`).join('') +
    `<IsTruncated>${next ? 'true' : 'false'}</IsTruncated>${next ? `<NextContinuationToken>${next}</NextContinuationToken>` : ''}</ListBucketResult>`;
  const pages: Record<string, string> = {
    '': page(['p/a&amp;b', 'p/c &lt;d&gt; &#233;&#x4E2D;', 'other/x'], 'tok+1/=&amp;'),
    'tok+1/=&': page(['p/ z ', 'p/~q'], undefined),
  };
  const tokens: Record<string, string[]> = { sdk: [], auto: [] };
  const results: Record<string, unknown> = {};
  for (const client of ['sdk', 'auto'] as const) {
    const handler = (req: IncomingMessage): void => {
      const token = new URL(req.url ?? '', 'http://x').searchParams.get('continuation-token') ?? '';
      tokens[client]?.push(token);
      answer = { status: 200, headers: { 'content-type': 'application/xml' }, body: pages[token] ?? '<Error><Code>Bad</Code></Error>' };
    };
    server.on('request', handler);
    answer = { status: 200, body: pages[''] };
    results[client] = await outcome(client, ops['list'] as Op);
    server.off('request', handler);
  }
  expect(results['sdk']).toEqual({ ok: [
    { key: 'a&b', size: 7, lastModified: new Date('2026-12-02T18:08:11.000Z'), metadata: {} },
    { key: 'c <d> é中', size: 7, lastModified: new Date('2026-12-02T18:08:11.000Z'), metadata: {} },
    { key: ' z ', size: 7, lastModified: new Date('2026-12-02T18:08:11.000Z'), metadata: {} },
    { key: '~q', size: 7, lastModified: new Date('2026-12-02T18:08:11.000Z'), metadata: {} },
  ] });
  expect(results['auto']).toEqual(results['sdk']);
  expect(tokens['auto']).toEqual(tokens['sdk']);
});
