import { createHash, createHmac } from 'node:crypto';

/**
 * AWS Signature Version 4 for S3 requests sent by the lean transport (s3Transport.ts), written to
 * sign exactly as the SDK's `@smithy/signature-v4` does for S3 (single-encoded paths, no path
 * normalisation, the payload's SHA-256 signed in `x-amz-content-sha256`). The unit test
 * test/unit/storage/sigv4.test.ts checks every signature against that signer on generated requests;
 * s3rver does not verify SigV4 signatures, so that test is the signer's real check.
 */

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface RequestToSign {
  readonly method: string;
  /** The path as sent: each segment already URI-encoded (`uriEncodePath`). */
  readonly path: string;
  /** Query parameters, unencoded. */
  readonly query: Readonly<Record<string, string>>;
  /** Header names in lower case; must include `host`. */
  readonly headers: Readonly<Record<string, string>>;
  /** Hex SHA-256 of the body (of the empty string when there is none). */
  readonly payloadHash: string;
}

export const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');

/** Headers a proxy may change in flight: the SDK leaves them out of the signature, and so do we. */
const UNSIGNABLE = new Set([
  'authorization',
  'cache-control',
  'connection',
  'expect',
  'from',
  'keep-alive',
  'max-forwards',
  'pragma',
  'referer',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'x-amzn-trace-id',
]);

/**
 * The headers to send: `request.headers` plus x-amz-date, x-amz-content-sha256, the session token
 * and Authorization, signed for `region` / service `s3` at `now`.
 */
export function signS3Request(request: RequestToSign, credentials: Credentials, region: string, now: Date): Record<string, string> {
  const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, ''); // 20261202T180811Z
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = {
    ...request.headers,
    'x-amz-date': amzDate,
    'x-amz-content-sha256': request.payloadHash,
    ...(credentials.sessionToken ? { 'x-amz-security-token': credentials.sessionToken } : {}),
  };
  const names = Object.keys(headers)
    .map((n) => n.toLowerCase())
    .filter((n) => !UNSIGNABLE.has(n))
    .sort();
  const lower: Record<string, string> = {};
  for (const [n, v] of Object.entries(headers)) lower[n.toLowerCase()] = v;
  const canonicalHeaders = names.map((n) => `${n}:${String(lower[n]).trim().replace(/\s+/g, ' ')}\n`).join('');
  const signedHeaders = names.join(';');
  const canonicalRequest = [request.method, request.path, canonicalQuery(request.query), canonicalHeaders, signedHeaders, request.payloadHash].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${credentials.secretAccessKey}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(stringToSign, 'utf8').digest('hex');
  headers['authorization'] = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return headers;
}

/** RFC 3986 encoding as S3 wants it: everything but unreserved characters, `/` kept between segments. */
export function uriEncodePath(path: string): string {
  return path.split('/').map(uriEncode).join('/');
}

export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The query string as sent and as signed: encoded pairs sorted by name. */
export function canonicalQuery(query: Readonly<Record<string, string>>): string {
  return Object.keys(query)
    .sort()
    .map((k) => `${uriEncode(k)}=${uriEncode(query[k] ?? '')}`)
    .join('&');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
