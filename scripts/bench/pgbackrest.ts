/** pgBackRest configuration files for the bench: one S3 repository behind the TLS proxy, LZ4. */
import { writeFileSync } from 'node:fs';

export interface PgbrRepo {
  readonly bucket: string;
  /** Port of the TLS proxy in front of s3rver (pgBackRest speaks S3 only over HTTPS). */
  readonly proxyPort: number;
}

/**
 * Writes a config with the repository and logging settings in [global]; `extra` lines follow (lock and
 * spool paths, async settings, a stanza section). Options given on the command line override it.
 */
export function writePgbrConf(file: string, repo: PgbrRepo, extra: readonly string[]): void {
  writeFileSync(
    file,
    [
      '[global]',
      'repo1-type=s3',
      `repo1-s3-bucket=${repo.bucket}`,
      'repo1-s3-region=us-east-1',
      'repo1-s3-endpoint=127.0.0.1',
      `repo1-storage-port=${repo.proxyPort}`,
      'repo1-storage-verify-tls=n',
      'repo1-s3-uri-style=path',
      'repo1-s3-key=S3RVER',
      'repo1-s3-key-secret=S3RVER',
      'compress-type=lz4',
      'log-level-console=warn',
      'log-level-file=off',
      'start-fast=y',
      'archive-check=n',
      ...extra,
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
}
