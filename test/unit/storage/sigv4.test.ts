/**
 * walts's SigV4 signer against the SDK's own (`@smithy/signature-v4`, configured as the S3 client
 * configures it) on generated requests: both must produce the same headers and the same signature.
 * s3rver does not verify SigV4 signatures (it only checks the access key id), so this is the check
 * that the lean transport signs as real S3 expects.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { canonicalQuery, EMPTY_SHA256, signS3Request, uriEncodePath, type Credentials } from '../../../src/storage/sigv4';

/** node:crypto in the shape the SDK signer takes (its own hashing is not what is under test). */
class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return this.h.digest();
  }
}

function bytes(d: string | ArrayBuffer | ArrayBufferView): string | Buffer {
  if (typeof d === 'string') return d;
  return ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d);
}

async function sdkSign(method: string, host: string, path: string, query: Record<string, string>, headers: Record<string, string>, credentials: Credentials, region: string, date: Date): Promise<Record<string, string>> {
  const signer = new SignatureV4({ service: 's3', region, credentials, sha256: Sha256, uriEscapePath: false, applyChecksum: true });
  const signed = await signer.sign(
    { method, protocol: 'https:', hostname: host, path, query, headers: { ...headers, host }, body: undefined } as never,
    { signingDate: date },
  );
  return (signed as unknown as { headers: Record<string, string> }).headers;
}

/** Deterministic pseudo-random choices, so a failure can be replayed from its seed. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

const PIECES = ['a', 'Z', '0', ' ', '~', '+', '=', '&', '?', '%', '#', '!', "'", '(', ')', '*', ',', ';', ':', '@', '$', 'é', '中', '😀', '-', '_', '.', '..', '/', 'x y', '%20', 'wal_005', '000000010000000000000005.lz4'];

function text(pick: (n: number) => number, len: number, pieces = PIECES): string {
  let s = '';
  for (let i = 0; i < len; i++) s += pieces[pick(pieces.length)];
  return s;
}

describe('signS3Request signs exactly as @smithy/signature-v4', () => {
  const seeds = Array.from({ length: 300 }, (_, i) => i + 1);
  it.each(seeds)('generated request %i', async (seed) => {
    const pick = rng(seed * 7919);
    const region = ['us-east-1', 'eu-central-1', 'ap-southeast-2', 'garage'][pick(4)] as string;
    const credentials: Credentials = {
      accessKeyId: `AK${randomBytes(8).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64'),
      ...(pick(2) ? { sessionToken: randomBytes(60).toString('base64') } : {}),
    };
    const kind = pick(4);
    const method = ['GET', 'HEAD', 'GET', 'PUT'][kind] as string;
    const key = `prefix/${text(pick, 1 + pick(12))}`.replace(/\/+$/, '/k');
    const pathStyle = pick(2) === 1;
    const path = uriEncodePath(pathStyle ? `/bucket-1/${key}` : `/${key}`);
    const query: Record<string, string> =
      kind === 2
        ? { 'list-type': '2', prefix: text(pick, pick(6)), ...(pick(2) ? { 'continuation-token': text(pick, 1 + pick(20)) } : {}) }
        : kind === 3 ? { 'x-id': 'PutObject' } : kind === 0 ? { 'x-id': 'GetObject' } : {};
    const headers: Record<string, string> = {};
    let payloadHash = EMPTY_SHA256;
    if (method === 'PUT') {
      const body = randomBytes(pick(2000));
      payloadHash = createHash('sha256').update(body).digest('hex');
      headers['content-type'] = 'application/octet-stream';
      headers['content-length'] = String(body.length);
      if (pick(2)) headers['if-none-match'] = '*';
      for (let i = pick(4); i > 0; i--) headers[`x-amz-meta-${text(pick, 1 + pick(5), ['a', 'b', '0', '-'])}`] = `  ${text(pick, pick(8), ['v', ' ', '  ', '=', '+', '/', 'A', '\t'])}  `;
      if (pick(2)) headers['x-amz-server-side-encryption'] = 'aws:kms';
      if (pick(2)) headers['x-amz-server-side-encryption-aws-kms-key-id'] = 'arn:aws:kms:eu-central-1:123456789012:key/abcd';
      if (pick(2)) headers['x-amz-storage-class'] = 'STANDARD_IA';
    }
    const host = pathStyle ? ['127.0.0.1:9000', 'minio.example', '[::1]:9000'][pick(3)] as string : 'bucket-1.s3.example.net';
    const date = new Date(Date.UTC(2020 + pick(8), pick(12), 1 + pick(28), pick(24), pick(60), pick(60), pick(1000)));

    const ours = signS3Request({ method, path, query, headers: { ...headers, host }, payloadHash }, credentials, region, date);
    const sdk = await sdkSign(method, host, path, query, { ...headers, 'x-amz-content-sha256': payloadHash }, credentials, region, date);
    expect(ours).toEqual(sdk);
  });

  it('encodes paths and queries as S3 wants them (RFC 3986, / kept in paths)', () => {
    expect(uriEncodePath("/b/p/a b+c~=ü!'()*")).toBe('/b/p/a%20b%2Bc~%3D%C3%BC%21%27%28%29%2A');
    expect(canonicalQuery({ prefix: 'a b/', 'list-type': '2', 'continuation-token': 'x+y/=' })).toBe('continuation-token=x%2By%2F%3D&list-type=2&prefix=a%20b%2F');
  });
});
