/**
 * A real S3 HTTP server for tests: s3rver 3.7.1 in a child process (see s3rver-child.js for why a child),
 * on 127.0.0.1, a free port and a fresh temp directory, with one bucket.
 */
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoreConfig } from '../../src/config';

// s3rver accepts only its built-in account. Set unconditionally so a developer's real AWS credentials
// are never offered to the test server, and keep the SDK off the network looking for others.
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER';
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER';
delete process.env['AWS_SESSION_TOKEN'];
process.env['AWS_EC2_METADATA_DISABLED'] = 'true';
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

export interface S3rverHandle {
  endpoint: string;
  port: number;
  bucket: string;
  /** s3rver's data directory (objects are files under `<dir>/<bucket>/`). */
  dir: string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;

export async function startS3rver(bucket = 'walts-test'): Promise<S3rverHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'walts-s3rver-'));
  const child = fork(join(__dirname, 's3rver-child.js'), [dir, bucket], {
    execArgv: ['--openssl-legacy-provider'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('s3rver did not start in time')), START_TIMEOUT_MS);
      child.once('message', (msg: { port?: number; error?: string }) => {
        clearTimeout(timer);
        if (msg.port) resolve(msg.port);
        else reject(new Error(`s3rver failed to start: ${msg.error}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with code ${code} before it listened`));
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    port,
    bucket,
    dir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A complete StoreConfig for an S3 store at `endpoint`, with timeouts short enough for tests. */
/** The environment that points walts at `prefix` in this s3rver (its fixed credentials, path style). */
export function s3rverEnv(s3: Pick<S3rverHandle, 'bucket' | 'endpoint'>, prefix: string): Record<string, string> {
  return {
    WALTS_STORE: `s3://${s3.bucket}/${prefix}`,
    WALTS_S3_ENDPOINT: s3.endpoint,
    WALTS_S3_FORCE_PATH_STYLE: 'true',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_EC2_METADATA_DISABLED: 'true',
    // WALTS_S3_CLIENT=sdk in the test's environment: the walts processes use the AWS SDK alone too.
    ...(process.env['WALTS_S3_CLIENT'] === 'sdk' ? { WALTS_S3_CLIENT: 'sdk' } : {}),
  };
}

export function s3StoreConfig(
  endpoint: string,
  bucket: string,
  prefix: string,
  overrides: Partial<Omit<StoreConfig, 's3'>> & { s3?: Partial<StoreConfig['s3']> } = {},
): StoreConfig {
  const p = prefix.replace(/^\/+|\/+$/g, '');
  const { s3, ...rest } = overrides;
  return {
    url: `s3://${bucket}/${p}`,
    kind: 's3',
    bucket,
    prefix: p ? `${p}/` : '',
    connectTimeoutMs: 2000,
    ioTimeoutMs: 5000,
    retryDeadlineMs: 3000,
    ...rest,
    // WALTS_S3_CLIENT=sdk in the test's environment runs every S3 test through the AWS SDK alone.
    s3: { endpoint, forcePathStyle: true, region: 'us-east-1', conditionalPut: 'auto', client: process.env['WALTS_S3_CLIENT'] === 'sdk' ? 'sdk' : 'auto', ...s3 },
  };
}

/** A plain SDK client on s3rver, for tests that look at or plant raw objects behind walts' back. */
export function rawS3Client(endpoint: string): import('@aws-sdk/client-s3').S3Client {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { S3Client } = require('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
  return new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
}
