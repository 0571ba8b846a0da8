import { createHash } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { canonicalQuery, EMPTY_SHA256, signS3Request, uriEncodePath, type Credentials } from './sigv4';
import { decodeXml, xmlElements, xmlText } from './xml';

/**
 * A small S3 client over node:http(s) for the requests a WAL segment needs (GetObject, HeadObject,
 * ListObjectsV2, PutObject of a Buffer), so wal-push and wal-fetch do not load the AWS SDK
 * (docs/performance.md, "A lean S3 transport"). S3Storage uses it only where it sends what the SDK
 * would send (see s3Lean.ts); everything else stays on the SDK.
 *
 * One attempt per call, like the SDK client S3Storage builds (maxAttempts 1): retrying is withRetry's.
 * Failures are shaped as the SDK's are (`$metadata.httpStatusCode`, the S3 error code as `name` and
 * `Code`, Node's socket errors as they come, `TimeoutError`, `AbortError`), so S3Storage.classify reads
 * both the same way.
 */

export interface S3Target {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port?: number;
  /** Path style: the bucket is the first path segment; otherwise it is the first label of the host. */
  readonly pathStyle: boolean;
  readonly bucket: string;
  readonly region: string;
  readonly credentials: Credentials;
}

export interface TransportTimeouts {
  /** No TCP connection within this: TimeoutError (the SDK's connectionTimeout). */
  readonly connectTimeoutMs: number;
  /** No byte sent or received for this long: TimeoutError (the SDK's socketTimeout). */
  readonly ioTimeoutMs: number;
}

export interface ObjectHead {
  readonly contentLength: number | undefined;
  readonly lastModified: Date | undefined;
  /** `x-amz-meta-*` headers, the prefix removed. */
  readonly metadata: Record<string, string> | undefined;
}

export interface ListPage {
  readonly contents: Array<{ key: string | undefined; size: number | undefined; lastModified: Date | undefined }>;
  readonly isTruncated: boolean;
  readonly nextContinuationToken: string | undefined;
}

export interface PutHeaders {
  readonly metadata?: Readonly<Record<string, string>>;
  readonly ifNoneMatch?: boolean;
  readonly sse?: string;
  readonly sseKmsKeyId?: string;
  readonly storageClass?: string;
}

export interface TransportRequest {
  readonly method: string;
  /** The full object key (store prefix included), unencoded; '' for the bucket itself. */
  readonly key: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer;
}

/** The SDK's threshold (S3 `expectContinueHeader` default): bodies of 2 MiB or more ask first. */
const EXPECT_CONTINUE_MIN = 2 * 1024 * 1024;
/** How long the SDK waits for `100 Continue` before it sends the body anyway. */
const CONTINUE_WAIT_MS = 6000;

/**
 * An S3 error answer, shaped like the SDK's ServiceException for S3Storage.classify: `name`/`Code` is
 * the S3 error code (`NotFound` for a bodiless 404, as the SDK names it), `$metadata.httpStatusCode` the
 * status. `bucketRegion` is the `x-amz-bucket-region` header, set on the answers the SDK's region
 * redirect follows (S3Storage hands those calls to the SDK).
 */
export class S3ResponseError extends Error {
  readonly Code: string;
  readonly $metadata: { httpStatusCode: number };
  readonly bucketRegion?: string;
  constructor(status: number, code: string, bucketRegion: string | undefined) {
    super(`${code} (HTTP ${status})`);
    this.name = code;
    this.Code = code;
    this.$metadata = { httpStatusCode: status };
    this.bucketRegion = bucketRegion;
  }

  /** The SDK would retry this call in the bucket's region (followRegionRedirects). */
  get isRegionRedirect(): boolean {
    return this.bucketRegion !== undefined && (this.$metadata.httpStatusCode === 301 || (this.$metadata.httpStatusCode === 400 && this.Code === 'IllegalLocationConstraintException'));
  }
}

export class S3Transport {
  private readonly agent: HttpAgent;

  constructor(
    private readonly target: S3Target,
    private readonly timeouts: TransportTimeouts,
    /** The signing clock: tests pass a fixed one. */
    private readonly now: () => Date = () => new Date(),
  ) {
    const options = { keepAlive: true, maxSockets: 16 };
    this.agent = target.protocol === 'https:' ? new HttpsAgent(options) : new HttpAgent(options);
  }

  async getObject(key: string, signal?: AbortSignal): Promise<ObjectHead & { body: Readable }> {
    const res = await this.send({ ...s3Requests.getObject(key), signal });
    return { ...objectHead(res), body: res };
  }

  async headObject(key: string, signal?: AbortSignal): Promise<ObjectHead> {
    const res = await this.send({ ...s3Requests.headObject(key), signal });
    res.resume();
    return objectHead(res);
  }

  async listObjectsV2(prefix: string, continuationToken: string | undefined, signal?: AbortSignal): Promise<ListPage> {
    const res = await this.send({ ...s3Requests.listObjectsV2(prefix, continuationToken), signal });
    const xml = (await readAll(res)).toString('utf8');
    const result = xmlElements(xml, 'ListBucketResult')[0] ?? '';
    const contents = xmlElements(result, 'Contents').map((c) => {
      const size = xmlText(c, 'Size');
      const lastModified = xmlText(c, 'LastModified');
      return {
        key: decodeXml(xmlText(c, 'Key') ?? ''),
        size: size === undefined ? undefined : Number(size),
        lastModified: lastModified === undefined ? undefined : new Date(lastModified),
      };
    });
    const token = xmlText(result, 'NextContinuationToken');
    return { contents, isTruncated: xmlText(result, 'IsTruncated') === 'true', nextContinuationToken: token === undefined ? undefined : decodeXml(token) };
  }

  async putObject(key: string, body: Buffer, headers: PutHeaders, signal?: AbortSignal): Promise<void> {
    const res = await this.send({ ...s3Requests.putObject(key, body, headers), signal });
    res.resume();
  }

  destroy(): void {
    this.agent.destroy();
  }

  /**
   * The request as sent: host name, path with query, signed headers. The URL is formed as the SDK's
   * endpoint rules form it for this target (s3Lean.test.ts compares both).
   */
  prepare(req: TransportRequest, now: Date): { hostname: string; path: string; headers: Record<string, string> } {
    const t = this.target;
    const hostname = t.pathStyle ? t.hostname : `${t.bucket}.${t.hostname}`;
    const host = t.port === undefined ? hostname : `${hostname}:${t.port}`;
    const path = uriEncodePath(t.pathStyle ? `/${t.bucket}/${req.key}` : `/${req.key}`);
    const qs = canonicalQuery(req.query);
    const payloadHash = req.body ? createHash('sha256').update(req.body).digest('hex') : EMPTY_SHA256;
    const headers = signS3Request({ method: req.method, path, query: req.query, headers: { ...req.headers, host }, payloadHash }, t.credentials, t.region, now);
    if (req.body !== undefined && req.body.length >= EXPECT_CONTINUE_MIN) headers['expect'] = '100-continue';
    return { hostname, path: qs ? `${path}?${qs}` : path, headers };
  }

  /**
   * One signed request; resolves with the response once its status is 2xx, else rejects with an
   * S3ResponseError built from the error body.
   */
  private send(req: TransportRequest & { signal?: AbortSignal }): Promise<IncomingMessage> {
    const { hostname, path, headers } = this.prepare(req, this.now());
    const expectContinue = headers['expect'] !== undefined;
    // As the SDK does: a request that waits for 100 Continue gets a connection of its own.
    const agent = expectContinue ? (this.target.protocol === 'https:' ? new HttpsAgent({ keepAlive: false }) : new HttpAgent({ keepAlive: false })) : this.agent;

    return new Promise<IncomingMessage>((resolve, reject) => {
      const signal = req.signal;
      if (signal?.aborted) return reject(abortError(signal));
      const send = this.target.protocol === 'https:' ? httpsRequest : httpRequest;
      const cr: ClientRequest = send({ hostname: hostname.replace(/^\[(.*)\]$/, '$1'), port: this.target.port, method: req.method, path, headers, agent }, (res) => {
        const status = res.statusCode ?? -1;
        if (status >= 200 && status < 300) return resolve(res);
        readAll(res).then(
          (body) => reject(responseError(status, body, res)),
          (err: unknown) => reject(err),
        );
      });
      let settledResponse: IncomingMessage | undefined;
      cr.once('response', (res) => (settledResponse = res));
      cr.on('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ETIMEDOUT' ? Object.assign(err, { name: 'TimeoutError' }) : err));

      if (signal) {
        const onAbort = (): void => {
          const err = abortError(signal);
          cr.destroy();
          settledResponse?.destroy(err);
          reject(err);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        cr.once('close', () => signal.removeEventListener('abort', onAbort));
      }

      const connectTimer = setTimeout(() => {
        cr.destroy();
        reject(timeoutError(`no connection to the store within ${this.timeouts.connectTimeoutMs} ms`));
      }, this.timeouts.connectTimeoutMs);
      cr.once('socket', (socket) => {
        if (socket.connecting) socket.once('connect', () => clearTimeout(connectTimer));
        else clearTimeout(connectTimer);
      });
      cr.once('close', () => clearTimeout(connectTimer));
      cr.setTimeout(this.timeouts.ioTimeoutMs, () => {
        if (settledResponse?.complete) return void cr.socket?.destroy();
        const err = timeoutError(`no byte from the store for ${this.timeouts.ioTimeoutMs} ms`);
        settledResponse?.destroy(err);
        cr.destroy();
        reject(err);
      });

      if (!req.body) return void cr.end();
      const body = req.body;
      if (!expectContinue) return void cr.end(body);
      // The SDK's writeRequestBody: wait for 100 Continue (or an early answer, e.g. 412) up to 6 s.
      let sent = false;
      const sendBody = (): void => {
        if (sent) return;
        sent = true;
        clearTimeout(wait);
        cr.end(body);
      };
      const wait = setTimeout(sendBody, CONTINUE_WAIT_MS);
      cr.once('continue', sendBody);
      cr.once('response', (res: IncomingMessage) => {
        clearTimeout(wait);
        if (sent) return;
        // Answered before the body was asked for (e.g. 412): the request can never complete, so its
        // connection is closed once the answer is read rather than left open with the body unsent.
        sent = true;
        res.once('end', () => cr.destroy());
      });
      cr.once('error', () => clearTimeout(wait));
    });
  }
}

/** The four requests, as the SDK's S3 client serialises them (s3Lean.test.ts compares both). */
export const s3Requests = {
  getObject: (key: string): TransportRequest => ({ method: 'GET', key, query: { 'x-id': 'GetObject' } }),
  headObject: (key: string): TransportRequest => ({ method: 'HEAD', key, query: {} }),
  listObjectsV2: (prefix: string, continuationToken: string | undefined): TransportRequest => ({
    method: 'GET',
    key: '',
    query: { 'list-type': '2', prefix, ...(continuationToken === undefined ? {} : { 'continuation-token': continuationToken }) },
  }),
  putObject: (key: string, body: Buffer, h: PutHeaders): TransportRequest => {
    const headers: Record<string, string> = {};
    if (h.ifNoneMatch) headers['if-none-match'] = '*';
    for (const [k, v] of Object.entries(h.metadata ?? {})) headers[`x-amz-meta-${k.toLowerCase()}`] = v;
    if (h.sse !== undefined) headers['x-amz-server-side-encryption'] = h.sse;
    if (h.storageClass !== undefined) headers['x-amz-storage-class'] = h.storageClass;
    if (h.sseKmsKeyId !== undefined) headers['x-amz-server-side-encryption-aws-kms-key-id'] = h.sseKmsKeyId;
    headers['content-type'] = 'application/octet-stream';
    headers['content-length'] = String(body.length);
    return { method: 'PUT', key, query: { 'x-id': 'PutObject' }, headers, body };
  },
};

function objectHead(res: IncomingMessage): ObjectHead {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (name.startsWith('x-amz-meta-') && value !== undefined) metadata[name.slice('x-amz-meta-'.length)] = Array.isArray(value) ? value.join(', ') : value;
  }
  const length = res.headers['content-length'];
  const modified = res.headers['last-modified'];
  return {
    contentLength: length === undefined ? undefined : Number(length),
    lastModified: modified === undefined ? undefined : new Date(modified),
    metadata,
  };
}

/**
 * The SDK's error code rule (restXml): the body's <Code>, else `NotFound` for a 404, else `Unknown`;
 * a body that is not XML at all fails the SDK's parser, whose error is a plain `Error`.
 * (test/unit/storage/s3Parity.test.ts compares both on canned answers.)
 */
function responseError(status: number, body: Buffer, res: IncomingMessage): S3ResponseError {
  const xml = body.toString('utf8');
  const code = xmlText(xml, 'Code');
  const region = res.headers['x-amz-bucket-region'];
  const name = code !== undefined && code !== '' ? decodeXml(code) : xml.trim() !== '' && !xml.trim().startsWith('<') ? 'Error' : status === 404 ? 'NotFound' : 'Unknown';
  return new S3ResponseError(status, name, typeof region === 'string' ? region : undefined);
}

function readAll(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.once('end', () => resolve(Buffer.concat(chunks)));
    res.once('error', reject);
  });
}

function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError' });
}

/** As the SDK's node-http-handler builds it: name AbortError, the signal's reason as cause. */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return Object.assign(new Error('Request aborted', { cause: reason }), { name: 'AbortError' });
  return Object.assign(new Error(reason === undefined ? 'Request aborted' : String(reason)), { name: 'AbortError' });
}
