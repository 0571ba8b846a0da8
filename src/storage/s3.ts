import { randomBytes } from 'node:crypto';
import { PassThrough, pipeline, Transform, type Readable } from 'node:stream';
import type { PutObjectCommandInput, S3Client, S3ClientConfig, StorageClass } from '@aws-sdk/client-s3';
import type { RetryStrategyV2, RetryToken } from '@smithy/types';
import type { StoreConfig } from '../config';
import { ConfigError, NotFoundError, ObjectExistsError, UnavailableError, WaltsError } from '../errors';
import { RetryBudget } from '../util/retryBudget';
import { chooseLeanS3 } from './s3Lean';
import { S3ResponseError, S3Transport } from './s3Transport';
import { assertValidKey, type ObjectInfo, type PutOptions, type Storage, type StoredObject } from './storage';

/**
 * The AWS SDK, loaded on first use: with the lean transport (s3Transport.ts) a wal-push or wal-fetch
 * never needs it, and loading it costs ~130 ms of start-up (docs/performance.md, "A lean S3 transport").
 */
function sdk(): typeof import('@aws-sdk/client-s3') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
}

/** Largest stream of known size sent as one PutObject (no buffering); above it, or unknown: multipart. */
export const SINGLE_PUT_MAX = 64 * 1024 * 1024;
/**
 * Multipart part size. Memory is about (QUEUE_SIZE + 1) × PART_SIZE per upload; 8 MiB × 10,000 parts
 * allows 78 GiB for a stream of unknown size, far above a backup volume (about 1 GiB plus at most one
 * 1 GiB relation file). Measured with scripts/bench-memory.ts: 16 MiB parts put backup-push of
 * incompressible data over 256 MiB RSS on S3 (251-273 MiB); 8 MiB parts 221-249 MiB, at the same speed.
 * A known size picks larger parts.
 */
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
const MAX_PARTS = 10_000;
/** DeleteObjects accepts at most 1000 keys per request. */
const DELETE_BATCH = 1000;

export interface S3Log {
  warn(obj: object, msg: string): void;
}

/**
 * The S3 (or S3-compatible) store. GetObject, HeadObject, ListObjectsV2 and PutObject of a Buffer go
 * through the lean transport (s3Transport.ts) when it sends exactly what the SDK would (s3Lean.ts);
 * everything else, and everything when it does not, through the AWS SDK, loaded on first use.
 * The SDK (and the transport) makes one attempt per request: retrying is `withRetry`'s,
 * under the command's one retry budget. The exception is a multipart upload's parts (a stream cannot
 * be re-sent whole): they go through a second client whose SDK retries ask the same budget
 * (`budgetRetryStrategy`), so no layer adds time of its own.
 * Every failure leaves here as NotFoundError (a real 404 for the key, nothing else), ObjectExistsError
 * (412 on create-if-absent), ConfigError (credentials or access refused: retrying cannot help) or
 * UnavailableError, classified in `classify`.
 */
export class S3Storage implements Storage {
  readonly description: string;
  readonly conditionalCreate: 'enforced' | 'unverified';
  /** The SDK client, created on first use (everything the lean transport does not do, or all with WALTS_S3_CLIENT=sdk). */
  private sdkClient?: S3Client;
  /** The lean transport when it sends exactly what the SDK would (s3Lean.ts); undefined: the SDK does all. */
  private lean?: S3Transport;
  private readonly bucket: string;
  private readonly prefix: string;
  /** `s3://bucket/prefix`, the start of every message. */
  private readonly location: string;
  private readonly log?: S3Log;
  private readonly budget: RetryBudget;
  private readonly makeClient: (retry: Pick<S3ClientConfig, 'maxAttempts' | 'retryStrategy'>) => S3Client;
  /** For multipart uploads only, created on first use. */
  private uploadClient?: S3Client;

  constructor(
    private readonly config: StoreConfig,
    options: { log?: S3Log; budget?: RetryBudget } = {},
  ) {
    if (config.kind !== 's3' || !config.bucket) throw new RangeError(`not an S3 store: ${config.url}`);
    this.bucket = config.bucket;
    this.prefix = config.prefix;
    this.log = options.log;
    this.budget = options.budget ?? new RetryBudget({ deadlineMs: config.retryDeadlineMs, window: 'outage' });
    this.location = `s3://${this.bucket}/${this.prefix.replace(/\/$/, '')}`.replace(/\/$/, '');
    this.description = config.s3.endpoint ? `${this.location} at ${config.s3.endpoint}` : this.location;
    this.conditionalCreate = config.s3.conditionalPut === 'on' ? 'enforced' : 'unverified';

    // The SDK warns about Node.js 20 once per process on stderr, which is PostgreSQL's log for
    // wal-push (bin/walts.js says the same for the CLI; this covers library use). Node.js 22 and
    // later draw no warning, so nothing is silenced there.
    if (Number(process.versions.node.split('.')[0]) < 22) process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
    const sdkLogger = {
      // The SDK's info/debug output is per-request noise; its warnings (e.g. a failed streaming
      // request it cannot retry) go to our log instead of the console default.
      trace: () => {},
      debug: () => {},
      info: () => {},
      error: () => {},
      warn: (...args: unknown[]) => this.log?.warn({ store: this.location, sdk: args.map(String).join(' ') }, 'AWS SDK warning'),
    };
    this.makeClient = (retry) => new (sdk().S3Client)({
      region: config.s3.region ?? defaultRegion,
      endpoint: config.s3.endpoint,
      forcePathStyle: config.s3.forcePathStyle,
      // With the us-east-1 fallback, a bucket in another region answers 301: let the SDK follow it.
      followRegionRedirects: true,
      ...retry,
      logger: sdkLogger,
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      requestHandler: new (require('@smithy/node-http-handler') as typeof import('@smithy/node-http-handler')).NodeHttpHandler({
        connectionTimeout: config.connectTimeoutMs,
        // An idle timeout (no byte sent or received for ioTimeoutMs), not `requestTimeout`: that one is
        // a wall-clock limit on the whole request that would cut large parts on a slow link (and by
        // default only logs a warning on the console).
        socketTimeout: config.ioTimeoutMs,
        httpAgent: { keepAlive: true, maxSockets: 16 },
        httpsAgent: { keepAlive: true, maxSockets: 16 },
        logger: sdkLogger,
      }),
      // Measured against s3rver 3.7.1: with the SDK default (WHEN_SUPPORTED) a stream PutObject is sent
      // aws-chunked with a CRC32 trailer, which s3rver stores verbatim (1000 bytes put, 1043 read back);
      // some other S3-compatible services reject the new checksum headers (reliability rule 34). So every
      // custom endpoint gets WHEN_REQUIRED; AWS keeps the default (CRC32 in flight). Buffer bodies stay
      // covered by the signed payload SHA-256 either way, and walts checks plaintext SHA-256 end to end.
      ...(config.s3.endpoint ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' } : {}),
    });
    const lean = chooseLeanS3(config);
    if (lean.target) this.lean = new S3Transport(lean.target, { connectTimeoutMs: config.connectTimeoutMs, ioTimeoutMs: config.ioTimeoutMs });
  }

  /** The SDK client for single requests. One attempt: withRetry retries under the command's budget (two layers would each spend it). */
  private get client(): S3Client {
    return (this.sdkClient ??= this.makeClient({ maxAttempts: 1 }));
  }

  /**
   * One request through the lean transport when there is one, else through the SDK. An answer the
   * SDK's region redirect would follow (301 naming the bucket's region) sends this call and every
   * later one to the SDK, which follows it as it always has.
   */
  private async via<T>(lean: (t: S3Transport) => Promise<T>, viaSdk: () => Promise<T>): Promise<T> {
    const transport = this.lean;
    if (!transport) return viaSdk();
    try {
      return await lean(transport);
    } catch (err) {
      if (!(err instanceof S3ResponseError && err.isRegionRedirect)) throw err;
      this.lean = undefined;
      transport.destroy();
      return viaSdk();
    }
  }

  /** The client for multipart uploads: the SDK retries each part, as long as the budget allows. */
  private partsClient(): S3Client {
    return (this.uploadClient ??= this.makeClient({ retryStrategy: budgetRetryStrategy(this.budget, (info) => this.log?.warn({ store: this.location, ...info }, `upload part failed, retrying in ${info.delay_ms} ms (${(info.remaining_ms / 1000).toFixed(1)} s left of the retry deadline)`)) }));
  }

  async put(key: string, body: Buffer | Readable, options: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    const ifNoneMatch = options.ifAbsent === true && this.config.s3.conditionalPut !== 'off';
    await this.putObject(key, body, options, ifNoneMatch);
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<StoredObject> {
    assertValidKey(key);
    try {
      const out = await this.via(
        (t) => t.getObject(this.k(key), options.signal),
        async () => {
          const o = await this.client.send(new (sdk().GetObjectCommand)({ Bucket: this.bucket, Key: this.k(key) }), { abortSignal: options.signal });
          return { contentLength: o.ContentLength, lastModified: o.LastModified, metadata: o.Metadata, body: o.Body as Readable };
        },
      );
      return {
        key,
        size: out.contentLength ?? 0,
        lastModified: out.lastModified,
        metadata: lowerKeys(out.metadata),
        body: this.wrapBody(out.body, key),
      };
    } catch (err) {
      if (isMissingKey(err)) throw new NotFoundError(`${key} not found in ${this.location}`);
      throw this.classify(err, 'get', key);
    }
  }

  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    try {
      const out = await this.via(
        (t) => t.headObject(this.k(key), options.signal),
        async () => {
          const o = await this.client.send(new (sdk().HeadObjectCommand)({ Bucket: this.bucket, Key: this.k(key) }), { abortSignal: options.signal });
          return { contentLength: o.ContentLength, lastModified: o.LastModified, metadata: o.Metadata };
        },
      );
      return { key, size: out.contentLength ?? 0, lastModified: out.lastModified, metadata: lowerKeys(out.metadata) };
    } catch (err) {
      // A HEAD answer has no body, so a missing bucket is also a bare 404 here; the next PUT reports it.
      if (isMissingKey(err)) return undefined;
      throw this.classify(err, 'head', key);
    }
  }

  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      let page;
      try {
        const continuation = token;
        page = await this.via(
          (t) => t.listObjectsV2(this.prefix + prefix, continuation, options.signal),
          async () => {
            const p = await this.client.send(new (sdk().ListObjectsV2Command)({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: continuation }), { abortSignal: options.signal });
            return {
              contents: (p.Contents ?? []).map((o) => ({ key: o.Key, size: o.Size, lastModified: o.LastModified })),
              isTruncated: p.IsTruncated === true,
              nextContinuationToken: p.NextContinuationToken,
            };
          },
        );
      } catch (err) {
        throw this.classify(err, 'list', prefix || '/');
      }
      // S3 returns keys in UTF-8 byte order, which is code-unit order for the ASCII keys walts writes.
      for (const o of page.contents) {
        if (o.key === undefined || !o.key.startsWith(this.prefix)) continue;
        yield { key: o.key.slice(this.prefix.length), size: o.size ?? 0, lastModified: o.lastModified, metadata: {} };
      }
      token = page.isTruncated ? page.nextContinuationToken : undefined;
    } while (token);
  }

  async delete(keys: readonly string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    keys.forEach(assertValidKey);
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      let out;
      try {
        out = await this.client.send(
          new (sdk().DeleteObjectsCommand)({ Bucket: this.bucket, Delete: { Objects: batch.map((k) => ({ Key: this.k(k) })), Quiet: true } }),
          { abortSignal: options.signal },
        );
      } catch (err) {
        throw this.classify(err, 'delete', batch.length === 1 ? String(batch[0]) : `${batch.length} keys`);
      }
      // DeleteObjects answers 200 even when single keys fail: each failure is listed in Errors.
      const failed = out.Errors ?? [];
      const first = failed[0];
      if (first) {
        const code = first.Code ?? 'Error';
        const more = failed.length > 1 ? ` (and ${failed.length - 1} more)` : '';
        const key = first.Key?.startsWith(this.prefix) ? first.Key.slice(this.prefix.length) : first.Key;
        if (ACCESS_CODES.has(code)) throw new ConfigError(`${this.location}: delete ${key}: ${code}${more}: access refused; check the access key and the bucket policy`);
        throw new UnavailableError(`${this.location}: delete ${key}: ${code}${more}`, { transient: TRANSIENT_CODES.has(code) });
      }
    }
  }

  /**
   * PUTs a small object under `scratchPrefix` twice with If-None-Match: *. The service honours the
   * condition iff the second PUT fails with 412. The probe key is always removed.
   */
  async probeConditionalCreate(scratchPrefix: string): Promise<boolean> {
    const name = `conditional-put-probe-${randomBytes(8).toString('hex')}`;
    const key = scratchPrefix.replace(/\/+$/, '') ? `${scratchPrefix.replace(/\/+$/, '')}/${name}` : name;
    assertValidKey(key);
    const probe = Buffer.from('walts conditional create probe\n');
    try {
      await this.putObject(key, probe, {}, true);
      await this.putObject(key, probe, {}, true);
      return false;
    } catch (err) {
      if (err instanceof ObjectExistsError) return true;
      if (err instanceof NotImplementedError) return false;
      throw err;
    } finally {
      await this.delete([key]).catch((err: unknown) =>
        this.log?.warn({ store: this.location, key, err: (err as Error).message }, 'could not delete the conditional-create probe object'),
      );
    }
  }

  async close(): Promise<void> {
    this.lean?.destroy();
    this.sdkClient?.destroy();
    this.uploadClient?.destroy();
  }

  private async putObject(key: string, body: Buffer | Readable, options: PutOptions, ifNoneMatch: boolean): Promise<void> {
    const params: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: this.k(key),
      Metadata: options.metadata ? { ...options.metadata } : undefined,
      ServerSideEncryption: this.config.s3.sse,
      SSEKMSKeyId: this.config.s3.sseKmsKeyId,
      StorageClass: this.config.s3.storageClass as StorageClass | undefined,
      IfNoneMatch: ifNoneMatch ? '*' : undefined,
    };
    // A failing body stream must end the request at once and be what the caller sees: otherwise the
    // request idles until the I/O timeout and the root cause is lost (or its 'error' goes unhandled).
    const abort = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
    let bodyError: unknown;
    const fail = (err: unknown): void => {
      bodyError ??= err;
      abort.abort();
    };
    try {
      if (Buffer.isBuffer(body)) {
        const buffer = body;
        await this.via(
          (t) => t.putObject(params.Key as string, buffer, { metadata: params.Metadata, ifNoneMatch, sse: params.ServerSideEncryption, sseKmsKeyId: params.SSEKMSKeyId, storageClass: params.StorageClass }, signal),
          async () => void (await this.client.send(new (sdk().PutObjectCommand)({ ...params, Body: buffer }), { abortSignal: signal })),
        );
      } else if (options.size !== undefined && options.size <= SINGLE_PUT_MAX) {
        // Streamed straight through without buffering; the SDK does not retry a stream (it cannot replay it).
        const exact = exactLength(body, options.size, `${this.location}: put ${key}`, fail);
        await this.client.send(new (sdk().PutObjectCommand)({ ...params, Body: exact, ContentLength: options.size }), { abortSignal: signal });
      } else {
        // lib-storage reads the body itself and fails on its error, aborting the multipart upload
        // (rule 32) before it returns; cutting it short here would skip that cleanup.
        body.on('error', (err) => (bodyError ??= err));
        const partSize = Math.max(PART_SIZE, Math.ceil((options.size ?? 0) / MAX_PARTS));
        const abortController = new AbortController();
        const onAbort = (): void => abortController.abort();
        options.signal?.addEventListener('abort', onAbort, { once: true });
        try {
          // Loaded only here: every WAL segment fits one PutObject, and lib-storage costs start-up time.
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          const { Upload } = require('@aws-sdk/lib-storage') as typeof import('@aws-sdk/lib-storage');
          await new Upload({ client: this.partsClient(), params: { ...params, Body: body }, partSize, queueSize: QUEUE_SIZE, leavePartsOnError: false, abortController }).done();
        } finally {
          options.signal?.removeEventListener('abort', onAbort);
        }
      }
    } catch (err) {
      if (bodyError !== undefined) throw bodyError;
      const status = httpStatus(err);
      if (status === 412) throw new ObjectExistsError(key);
      if (ifNoneMatch && (status === 501 || errorCode(err) === 'NotImplemented')) {
        throw new NotImplementedError(
          `${this.location}: put ${key}: the store does not implement conditional PUT (If-None-Match); set WALTS_S3_CONDITIONAL_PUT=off`,
        );
      }
      throw this.classify(err, 'put', key);
    }
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  /** Body errors (reset, idle timeout mid-download) reach the reader as UnavailableError too. */
  private wrapBody(body: Readable, key: string): Readable {
    const out = new PassThrough();
    body.on('error', (err) => out.destroy(this.classify(err, 'read', key)));
    out.on('close', () => {
      if (!body.readableEnded) body.destroy(); // the reader gave up: release the socket
    });
    return body.pipe(out);
  }

  /**
   * The one place S3 and network failures become walts errors. Messages carry the operation, key,
   * S3 error code and HTTP status only: never the SDK message, headers or anything signed.
   */
  private classify(err: unknown, op: string, key: string): Error {
    if (err instanceof WaltsError || isAbort(err)) return err as Error;
    const status = httpStatus(err);
    const code = errorCode(err);
    const where = `${this.location}: ${op} ${key}`;
    if (status !== undefined) {
      if ((ACCESS_CODES.has(code) || status === 403) && !TRANSIENT_CODES.has(code)) {
        return new ConfigError(`${where}: ${code} ${status}: access refused; check the access key and the bucket policy (AWS_ACCESS_KEY_ID, AWS_PROFILE, WALTS_STORE)`);
      }
      const transient = status >= 500 ? status !== 501 : status === 408 || status === 429 || status < 300 || TRANSIENT_CODES.has(code);
      return new UnavailableError(`${where}: ${code} ${status}`, { transient });
    }
    if (NETWORK_CODES.has(code) || (err as Error)?.name === 'TimeoutError') {
      return new UnavailableError(`${where}: ${code}`, { transient: true });
    }
    if (/ProviderError$/.test((err as Error)?.name ?? '')) {
      // Credential/region lookup failed locally (no AWS credentials found): a setting to fix, not an outage.
      return new ConfigError(`${where}: ${(err as Error).name}: ${firstLine((err as Error).message)} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)`);
    }
    return err instanceof Error ? err : new Error(String(err)); // a bug, or the caller's body stream failing
  }
}

/**
 * `body` passed through, failing (via `fail`) unless it carries exactly `size` bytes: a short body would
 * leave the request waiting for the rest until the I/O timeout.
 */
function exactLength(body: Readable, size: number, where: string, fail: (err: unknown) => void): Readable {
  let seen = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      done(seen > size ? new RangeError(`${where}: body is longer than the ${size} bytes announced`) : null, chunk);
    },
    flush(done) {
      done(seen === size ? null : new RangeError(`${where}: body ended after ${seen} of the ${size} bytes announced`));
    },
  });
  pipeline(body, check, (err) => {
    if (err) fail(err);
  });
  return check;
}

/** Region from the AWS default chain (AWS_REGION, profile), else us-east-1 (fine for S3-compatibles). */
async function defaultRegion(): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS } = require('@smithy/core/config') as typeof import('@smithy/core/config');
  try {
    return await loadConfig(NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS)();
  } catch {
    return 'us-east-1';
  }
}

/** The store answered 501 to If-None-Match: not transient, and the probe reads it as "not honoured". */
class NotImplementedError extends UnavailableError {
  constructor(message: string) {
    super(message, { transient: false });
  }
}

const TRANSIENT_CODES = new Set([
  'SlowDown',
  'RequestTimeout',
  'InternalError',
  'ServiceUnavailable',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'PriorRequestNotComplete',
  'ConditionalRequestConflict', // 409: a concurrent conditional write was in flight
  'OperationAborted',
  // 403, but the SDK corrects its clock offset from this answer: the next attempt is signed right.
  'RequestTimeTooSkewed',
]);

/** Answers that mean the credentials or the policy are wrong: the same on every retry. */
const ACCESS_CODES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AllAccessDisabled',
  'AccountProblem',
]);

/**
 * SDK retries that ask the command's budget: transient, throttling and server errors are retried
 * with its backoff while time is left; anything else (4xx) is not.
 */
export function budgetRetryStrategy(budget: RetryBudget, onRetry?: (info: { attempt: number; delay_ms: number; remaining_ms: number; err: string }) => void): RetryStrategyV2 {
  type Token = RetryToken & { firstFailure?: number };
  const token = (count: number, delay: number, firstFailure?: number): Token => ({ getRetryCount: () => count, getRetryDelay: () => delay, firstFailure });
  return {
    acquireInitialRetryToken: async () => token(0, 0),
    refreshRetryTokenForRetry: async (previous, info) => {
      const attempt = previous.getRetryCount() + 1;
      const firstFailure = (previous as Token).firstFailure ?? budget.clock.now();
      const ms = info.errorType === 'CLIENT_ERROR' ? undefined : budget.nextDelay(attempt, firstFailure);
      if (ms === undefined) throw info.error ?? new Error('no retry');
      onRetry?.({ attempt, delay_ms: ms, remaining_ms: Math.max(0, budget.remainingMs() - ms), err: errorCode(info.error) });
      return token(attempt, ms, firstFailure);
    },
    recordSuccess: () => budget.succeeded(),
  };
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'TimeoutError',
]);

/** Only a real 404 for the key: a 404 NoSuchBucket is a configuration error, not "not archived". */
function isMissingKey(err: unknown): boolean {
  return httpStatus(err) === 404 && errorCode(err) !== 'NoSuchBucket';
}

function httpStatus(err: unknown): number | undefined {
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function errorCode(err: unknown): string {
  const e = err as { Code?: unknown; code?: unknown; name?: unknown; message?: unknown };
  for (const c of [e?.Code, e?.code, e?.name]) if (typeof c === 'string' && c !== '' && c !== 'Error') return c;
  // Node reports a server closing the socket mid-answer as a plain Error.
  if (typeof e?.message === 'string' && /socket hang up/i.test(e.message)) return 'ECONNRESET';
  return 'Error';
}

function isAbort(err: unknown): boolean {
  return (err as Error)?.name === 'AbortError';
}

function lowerKeys(meta: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta ?? {})) out[k.toLowerCase()] = v;
  return out;
}

function firstLine(s: string): string {
  return (s.split('\n')[0] ?? '').slice(0, 200);
}

