import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { StoreConfig } from '../config';
import type { S3Target } from './s3Transport';

/**
 * When the lean S3 transport may replace the SDK: only when it sends exactly the request the SDK
 * would, with the same credentials, region and URL. Every condition below mirrors one step of the
 * SDK's resolution (checked against the SDK in test/unit/storage/s3Lean.test.ts); anything else, or
 * anything doubtful, returns the reason the SDK is used instead.
 *
 * - Credentials: the SDK's default chain starts with the environment (AWS_ACCESS_KEY_ID and
 *   AWS_SECRET_ACCESS_KEY, both non-empty, plus AWS_SESSION_TOKEN), skipped when AWS_PROFILE is set.
 * - Environment: no AWS_* variable beyond those below. Any other (AWS_PROFILE, AWS_CONFIG_FILE,
 *   AWS_ENDPOINT_URL_S3, AWS_USE_FIPS_ENDPOINT, AWS_CREDENTIAL_EXPIRATION, AWS_REQUEST_CHECKSUM_...)
 *   changes what the SDK does, so it decides.
 * - Shared files: neither ~/.aws/config nor ~/.aws/credentials exists (the SDK reads region, FIPS,
 *   dual-stack, endpoint and checksum settings from them). Without them and without AWS_REGION the
 *   SDK's region lookup fails and S3Storage falls back to us-east-1, as here.
 * - Endpoint: a custom WALTS_S3_ENDPOINT (for AWS itself the SDK adds CRC32 checksums to PutObject
 *   and validates them on GetObject: not done here, so AWS endpoints stay on the SDK), an http(s) URL
 *   with no path, credentials, query or fragment. Path style when forced or when the host is an IP
 *   address; virtual-hosted otherwise, for bucket names without dots.
 */

/** AWS_* variables that change nothing the SDK does for these requests (or that we read the same way). */
const KNOWN_ENV = new Set([
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_REGION',
  // Read by the SDK's region lookup only inside AWS_EXECUTION_ENV (Lambda), which is not allowed here.
  'AWS_DEFAULT_REGION',
  // Instance metadata is the chain's last link, never reached with environment credentials.
  'AWS_EC2_METADATA_DISABLED',
  'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED',
  // Read by the AWS CLI and other SDKs, not by the JavaScript SDK v3 (s3Lean.test.ts checks the
  // installed @aws-sdk and @smithy code never names it).
  'AWS_CA_BUNDLE',
]);

/** A region the SDK's endpoint rules accept as a host label. */
const REGION = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

export interface LeanChoice {
  readonly target?: S3Target;
  /** Why the SDK is used, when `target` is undefined. */
  readonly reason?: string;
}

export function chooseLeanS3(
  config: StoreConfig,
  env: NodeJS.ProcessEnv = process.env,
  fileExists: (path: string) => boolean = existsSync,
): LeanChoice {
  if (config.s3.client === 'sdk') return { reason: 'WALTS_S3_CLIENT=sdk' };
  const unknown = Object.keys(env).filter((k) => k.startsWith('AWS_') && !KNOWN_ENV.has(k));
  if (unknown.length > 0) return { reason: `${unknown.sort().join(', ')} set` };
  const accessKeyId = env['AWS_ACCESS_KEY_ID'];
  const secretAccessKey = env['AWS_SECRET_ACCESS_KEY'];
  if (!accessKeyId || !secretAccessKey) return { reason: 'no credentials in the environment' };
  const home = env['HOME'] || (env['USERPROFILE'] || env['HOMEPATH'] ? undefined : homedir());
  if (home === undefined) return { reason: 'home directory not from HOME' };
  for (const file of ['config', 'credentials']) {
    if (fileExists(join(home, '.aws', file))) return { reason: `~/.aws/${file} exists` };
  }
  const region = config.s3.region ?? env['AWS_REGION'] ?? 'us-east-1';
  if (!REGION.test(region)) return { reason: 'region not a plain host label' };
  if (!config.s3.endpoint) return { reason: 'AWS endpoint (flexible checksums)' };
  const url = parseEndpoint(config.s3.endpoint);
  if (!url) return { reason: 'endpoint with a path, query or credentials' };
  const bucket = config.bucket ?? '';
  const isIp = IPV4.test(url.hostname) || url.hostname.startsWith('[');
  let pathStyle: boolean;
  if (config.s3.forcePathStyle || isIp) pathStyle = true;
  else if (/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) pathStyle = false;
  else return { reason: 'bucket name not usable as a host label' };
  const sessionToken = env['AWS_SESSION_TOKEN'];
  return {
    target: {
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      pathStyle,
      bucket,
      region,
      credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) },
    },
  };
}

function parseEndpoint(endpoint: string): { protocol: 'http:' | 'https:'; hostname: string; port?: number } | undefined {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) return undefined;
  if (!/^([a-z0-9-]+\.)*[a-z0-9-]+$/.test(url.hostname) && !/^\[[0-9a-f:.]+\]$/.test(url.hostname)) return undefined;
  return { protocol: url.protocol, hostname: url.hostname, port: url.port === '' ? undefined : Number(url.port) };
}
