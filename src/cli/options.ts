import type { Options } from 'yargs';

/**
 * Flags shared by every command. Each overrides the environment variable named in its description;
 * PostgreSQL's archive_command and restore_command normally rely on the environment alone.
 * There is deliberately no flag for the passphrase: argv is visible to every local user.
 */
export const GLOBAL_OPTIONS: Record<string, Options> = {
  config: { type: 'string', describe: 'env-style file with WALTS_* (and AWS_*) settings [WALTS_CONFIG]', group: 'Store and keys:' },
  store: { type: 'string', describe: 's3://bucket/prefix or file:///abs/dir [WALTS_STORE, aliases WALE_S3_PREFIX, WALG_S3_PREFIX]', group: 'Store and keys:' },
  's3-endpoint': { type: 'string', describe: 'S3-compatible endpoint URL [WALTS_S3_ENDPOINT]', group: 'Store and keys:' },
  's3-force-path-style': { type: 'boolean', describe: 'path-style bucket addressing [WALTS_S3_FORCE_PATH_STYLE]', group: 'Store and keys:' },
  's3-region': { type: 'string', describe: 'region, when AWS_REGION/profile do not set it [WALTS_S3_REGION]', group: 'Store and keys:' },
  's3-sse': { type: 'string', describe: 'server-side encryption: AES256 | aws:kms [WALTS_S3_SSE]', group: 'Store and keys:' },
  's3-sse-kms-key-id': { type: 'string', describe: 'KMS key for aws:kms [WALTS_S3_SSE_KMS_KEY_ID]', group: 'Store and keys:' },
  's3-storage-class': { type: 'string', describe: 'e.g. STANDARD_IA [WALTS_S3_STORAGE_CLASS]', group: 'Store and keys:' },
  's3-client': { type: 'string', describe: 'auto | sdk: sdk sends every request through the AWS SDK [WALTS_S3_CLIENT]', group: 'Store and keys:' },
  's3-conditional-put': { type: 'string', describe: 'auto | on | off: use If-None-Match on uploads [WALTS_S3_CONDITIONAL_PUT]', group: 'Store and keys:' },
  compression: { type: 'string', describe: 'lz4 (default) | zstd (Node.js 22.15+) | none [WALTS_COMPRESSION]', group: 'Store and keys:' },
  'pgp-public-key': { type: 'string', describe: 'OpenPGP public key file; set = encrypt [WALTS_PGP_PUBLIC_KEY]', group: 'Store and keys:' },
  'pgp-private-key': { type: 'string', describe: 'OpenPGP private key file, for reading [WALTS_PGP_PRIVATE_KEY]', group: 'Store and keys:' },
  'pgp-passphrase-file': { type: 'string', describe: 'file holding the private key passphrase [WALTS_PGP_PASSPHRASE_FILE]', group: 'Store and keys:' },
  'backup-signing-key': { type: 'string', describe: 'Ed25519 private key: backup-push signs each backup [WALTS_BACKUP_SIGNING_KEY]', group: 'Store and keys:' },
  'backup-verify-key': { type: 'string', describe: 'Ed25519 public key: backup-fetch accepts only backups it signed [WALTS_BACKUP_VERIFY_KEY]', group: 'Store and keys:' },
  'log-level': { type: 'string', describe: 'trace|debug|info|warn|error|silent [WALTS_LOG_LEVEL]', group: 'Behaviour:' },
  'connect-timeout': { type: 'number', describe: 'seconds to connect (default 10) [WALTS_CONNECT_TIMEOUT]', group: 'Behaviour:' },
  'io-timeout': { type: 'number', describe: 'seconds a request may stall (default 60) [WALTS_IO_TIMEOUT]', group: 'Behaviour:' },
  'retry-deadline': { type: 'number', describe: 'seconds to keep retrying transient store errors (default 60) [WALTS_RETRY_DEADLINE]', group: 'Behaviour:' },
  'spool-dir': { type: 'string', describe: 'local state of look-ahead and prefetch (default: walts_spool in pg_wal), and wal-receive staging (default: the temp directory) [WALTS_SPOOL_DIR]', group: 'Behaviour:' },
  'push-lookahead': { type: 'number', describe: 'wal-push: other .ready files one call also uploads (default 16, 0 = off) [WALTS_PUSH_LOOKAHEAD]', group: 'Behaviour:' },
  prefetch: { type: 'number', describe: 'wal-fetch: following segments downloaded ahead (default 16, 0 = off) [WALTS_PREFETCH]', group: 'Behaviour:' },
  concurrency: { type: 'number', describe: 'transfers in flight at once (default 4) [WALTS_CONCURRENCY]', group: 'Behaviour:' },
  'fetch-partial': { type: 'string', describe: "wal-fetch: serve a receiver's partial segment when the complete one is not archived (on|off, default on) [WALTS_FETCH_PARTIAL]", group: 'Behaviour:' },
};

export const ENVIRONMENT_HELP = [
  'Environment: every flag above has a WALTS_* variable (in brackets); a flag wins over its variable.',
  'AWS credentials and region come from the standard AWS chain (AWS_ACCESS_KEY_ID and',
  'AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, instance role).',
  'WALTS_PGP_PASSPHRASE or WALTS_PGP_PASSPHRASE_FILE unlocks a protected private key.',
  'Unknown WALTS_* names are errors. WAL-E and WAL-G names are read as their walts setting',
  '(WALE_S3_PREFIX and WALG_S3_PREFIX as WALTS_STORE, WALE_S3_ENDPOINT, ...) or refused with a',
  'pointer (WALE_GPG_KEY_ID: use WALTS_PGP_PUBLIC_KEY): docs/migrate-wal-e.md. In a config file',
  "an unquoted value ends at ' #' (a comment).",
  'Logs are JSON lines on stderr. Full guide: docs/ in the walts repository.',
].join('\n');
