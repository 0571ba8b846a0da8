/**
 * Configuration: command-line flags, then environment variables, then an optional env-style file
 * (`--config` / `WALTS_CONFIG`), first match wins. Pure apart from the injected file reader: every
 * problem is collected and reported at once, each naming its setting, before anything is touched.
 */
import { ConfigError } from './errors';

export type Compression = 'lz4' | 'zstd' | 'none';
export type ConditionalPut = 'auto' | 'on' | 'off';

export interface StoreConfig {
  /** The store URL as given (without credentials: walts never takes them in the URL). */
  readonly url: string;
  readonly kind: 's3' | 'file';
  /** s3: bucket name; file: absolute directory. */
  readonly bucket?: string;
  readonly directory?: string;
  /** Key prefix inside the bucket, '' or ending in '/'. */
  readonly prefix: string;
  readonly s3: {
    readonly endpoint?: string;
    readonly forcePathStyle: boolean;
    readonly region?: string;
    readonly sse?: 'AES256' | 'aws:kms';
    readonly sseKmsKeyId?: string;
    readonly storageClass?: string;
    readonly conditionalPut: ConditionalPut;
    /** `sdk`: every request through the AWS SDK; `auto`: the lean transport where it is exact (storage/s3Lean.ts). */
    readonly client: 'auto' | 'sdk';
  };
  readonly connectTimeoutMs: number;
  readonly ioTimeoutMs: number;
  /** How long one operation keeps retrying transient failures before giving up. */
  readonly retryDeadlineMs: number;
}

export interface Config {
  readonly store: StoreConfig;
  readonly compression: Compression;
  readonly pgp: {
    readonly publicKeyPath?: string;
    readonly privateKeyPath?: string;
    /** Kept out of every message and log; see `redact`. */
    readonly passphrase?: string;
  };
  /** Signed backups (docs/security.md): the signing key on the database host, the verify key where restores happen. */
  readonly signing: {
    readonly keyPath?: string;
    readonly verifyKeyPath?: string;
  };
  readonly logLevel: string;
  /** Exit code of wal-fetch for a hard error (anything but "not found"). */
  readonly fetchErrorExitCode: number;
  /**
   * Local state of wal-push look-ahead and wal-fetch prefetch (docs/performance.md). Absolute; when
   * unset, `walts_spool` in the directory of the WAL file (pg_wal).
   */
  readonly spoolDir?: string;
  /** wal-push: how many other `.ready` files one call may also upload (0 = look-ahead off). */
  readonly pushLookahead: number;
  /** wal-fetch: how many following segments to download ahead into the spool (0 = prefetch off). */
  readonly prefetch: number;
  /** Transfers in flight at once within one command (look-ahead, prefetch, backup volumes). */
  readonly concurrency: number;
  /**
   * wal-fetch: serve a receiver's partial segment when the complete one is not archived (default
   * on; docs/streaming.md "Restoring with streamed WAL" says why, and when to turn it off).
   */
  readonly fetchPartial: boolean;
  /** The file the configuration came from, if any (backup-fetch names it in restore_command). */
  readonly configFile?: string;
}

/** Setting name → flag name. Flags are optional overrides for humans; PostgreSQL uses the environment. */
export const SETTINGS = {
  WALTS_STORE: 'store',
  WALTS_S3_ENDPOINT: 's3-endpoint',
  WALTS_S3_FORCE_PATH_STYLE: 's3-force-path-style',
  WALTS_S3_REGION: 's3-region',
  WALTS_S3_SSE: 's3-sse',
  WALTS_S3_SSE_KMS_KEY_ID: 's3-sse-kms-key-id',
  WALTS_S3_STORAGE_CLASS: 's3-storage-class',
  WALTS_S3_CONDITIONAL_PUT: 's3-conditional-put',
  WALTS_S3_CLIENT: 's3-client',
  WALTS_COMPRESSION: 'compression',
  WALTS_PGP_PUBLIC_KEY: 'pgp-public-key',
  WALTS_PGP_PRIVATE_KEY: 'pgp-private-key',
  WALTS_PGP_PASSPHRASE_FILE: 'pgp-passphrase-file',
  WALTS_PGP_PASSPHRASE: undefined, // secret: environment or config file only, never argv
  WALTS_BACKUP_SIGNING_KEY: 'backup-signing-key',
  WALTS_BACKUP_VERIFY_KEY: 'backup-verify-key',
  WALTS_LOG_LEVEL: 'log-level',
  WALTS_CONNECT_TIMEOUT: 'connect-timeout',
  WALTS_IO_TIMEOUT: 'io-timeout',
  WALTS_RETRY_DEADLINE: 'retry-deadline',
  WALTS_FETCH_ERROR_EXIT_CODE: 'fetch-error-exit-code',
  WALTS_SPOOL_DIR: 'spool-dir',
  WALTS_PUSH_LOOKAHEAD: 'push-lookahead',
  WALTS_PREFETCH: 'prefetch',
  WALTS_CONCURRENCY: 'concurrency',
  WALTS_FETCH_PARTIAL: 'fetch-partial',
} as const satisfies Record<string, string | undefined>;

export type SettingName = keyof typeof SETTINGS;
export type Flags = Readonly<Record<string, unknown>>;
export type Env = Readonly<Record<string, string | undefined>>;

export interface ConfigSources {
  env: Env;
  flags?: Flags;
  /** Reads a file for `--config` and `*_FILE` settings; throws like fs.readFileSync. */
  readFile: (path: string) => { text: string; mode: number };
  /** Mode bits of a file (like fs.statSync().mode), for files read later such as the private key. */
  fileMode?: (path: string) => number;
}

/** Variables walts itself reads besides SETTINGS. */
const OTHER_KNOWN = ['WALTS_CONFIG'];
/**
 * Reserved for the test suite's own knobs (WALTS_TEST_PG_BINDIR, ...), which may be in the
 * environment of a developer's shell: never read by walts, never an error.
 */
const RESERVED_PREFIX = 'WALTS_TEST_';

/**
 * Names of WAL-E (`WALE_*`) and WAL-G (`WALG_*`, and the two `AWS_*` names WAL-G reads that the AWS
 * SDK does not) for something walts also has: each is read as its walts setting (`means`, after
 * `translate` where the format differs) or refused with a pointer to what walts does instead. A
 * `WALE_*` or `WALG_*` name not in this table is refused too: a migrated environment must never be
 * half-read, silently (docs/migrate-wal-e.md).
 */
type ForeignName =
  | { readonly means: SettingName; readonly translate?: (value: string) => Translated }
  | { readonly refuse: string };
type Translated = { readonly value: string; readonly implies?: Partial<Record<SettingName, string>> } | { readonly problem: string };

const S3_OR_DIRECTORY = 'walts stores to S3 (WALTS_STORE=s3://bucket/prefix) or a directory (WALTS_STORE=file:///dir) only';
const OPENPGP_KEYS =
  'walts encrypts to an OpenPGP public key file (WALTS_PGP_PUBLIC_KEY, e.g. from gpg --export KEYID > key.asc) and decrypts, where restores happen, with the private key file (WALTS_PGP_PRIVATE_KEY)';

export const FOREIGN_SETTINGS: Readonly<Record<string, ForeignName>> = {
  // WAL-E
  WALE_S3_PREFIX: { means: 'WALTS_STORE' },
  WALE_FILE_PREFIX: { means: 'WALTS_STORE', translate: (v) => fileStore(v.replace(/^file:\/\/localhost\//, 'file:///')) },
  WALE_S3_ENDPOINT: { means: 'WALTS_S3_ENDPOINT', translate: waleEndpoint },
  WALE_GPG_KEY_ID: {
    refuse: 'is not read by walts, and without WALTS_PGP_PUBLIC_KEY nothing would be encrypted: export the key to a file (gpg --export KEYID > key.asc), set WALTS_PGP_PUBLIC_KEY to it and unset WALE_GPG_KEY_ID',
  },
  WALE_WABS_PREFIX: { refuse: `is a WAL-E Azure store: ${S3_OR_DIRECTORY}` },
  WALE_SWIFT_PREFIX: { refuse: `is a WAL-E Swift store: ${S3_OR_DIRECTORY}` },
  WALE_GS_PREFIX: { refuse: `is a WAL-E Google Cloud Storage store: ${S3_OR_DIRECTORY}` },
  WALE_LOG_DESTINATION: { refuse: 'is not read by walts: it logs JSON lines on stderr (PostgreSQL\'s log for archive_command), level WALTS_LOG_LEVEL' },
  // WAL-G
  WALG_S3_PREFIX: { means: 'WALTS_STORE' },
  WALG_FILE_PREFIX: { means: 'WALTS_STORE', translate: (v) => fileStore(v.startsWith('/') ? `file://${v}` : v) },
  WALG_GS_PREFIX: { refuse: `is a WAL-G Google Cloud Storage store: ${S3_OR_DIRECTORY}` },
  WALG_AZ_PREFIX: { refuse: `is a WAL-G Azure store: ${S3_OR_DIRECTORY}` },
  WALG_SWIFT_PREFIX: { refuse: `is a WAL-G Swift store: ${S3_OR_DIRECTORY}` },
  WALG_SSH_PREFIX: { refuse: `is a WAL-G SSH store: ${S3_OR_DIRECTORY}` },
  AWS_ENDPOINT: { means: 'WALTS_S3_ENDPOINT' },
  AWS_S3_FORCE_PATH_STYLE: { means: 'WALTS_S3_FORCE_PATH_STYLE' },
  WALG_S3_SSE: { means: 'WALTS_S3_SSE' },
  WALG_S3_SSE_KMS_ID: { means: 'WALTS_S3_SSE_KMS_KEY_ID' },
  WALG_S3_STORAGE_CLASS: { means: 'WALTS_S3_STORAGE_CLASS' },
  WALG_S3_CA_CERT_FILE: { refuse: 'is not read by walts: give Node.js the CA bundle with NODE_EXTRA_CA_CERTS=FILE' },
  WALG_COMPRESSION_METHOD: {
    means: 'WALTS_COMPRESSION',
    translate: (v) => (v === 'lzma' || v === 'brotli' ? { problem: `walts does not write ${v}: set WALTS_COMPRESSION (lz4 is the default) and unset WALG_COMPRESSION_METHOD` } : { value: v }),
  },
  WALG_UPLOAD_CONCURRENCY: { means: 'WALTS_CONCURRENCY' },
  WALG_DOWNLOAD_CONCURRENCY: { refuse: 'is not read by walts: transfers in flight are WALTS_CONCURRENCY, WAL segments wal-fetch downloads ahead are WALTS_PREFETCH' },
  WALG_PREFETCH_DIR: { refuse: 'is not read by walts: its prefetch and look-ahead state is in WALTS_SPOOL_DIR' },
  WALG_LOG_LEVEL: { means: 'WALTS_LOG_LEVEL', translate: (v) => ({ NORMAL: { value: 'info' }, DEVEL: { value: 'debug' }, ERROR: { value: 'error' } })[v] ?? { problem: `must be NORMAL, DEVEL or ERROR (or set WALTS_LOG_LEVEL), got ${JSON.stringify(v)}` } },
  WALG_PGP_KEY: { refuse: `is not read by walts: ${OPENPGP_KEYS}` },
  WALG_PGP_KEY_PATH: { refuse: `is not read by walts (WAL-G's key is the private key): ${OPENPGP_KEYS}` },
  WALG_PGP_KEY_PASSPHRASE: { refuse: 'is not read by walts: the private key passphrase is WALTS_PGP_PASSPHRASE_FILE (or WALTS_PGP_PASSPHRASE)' },
  WALG_GPG_KEY_ID: { refuse: `is not read by walts, and nothing would be encrypted: ${OPENPGP_KEYS}` },
  WALG_LIBSODIUM_KEY: { refuse: `is not read by walts, and nothing would be encrypted: ${OPENPGP_KEYS}` },
  WALG_LIBSODIUM_KEY_PATH: { refuse: `is not read by walts, and nothing would be encrypted: ${OPENPGP_KEYS}` },
  WALG_CSE_KMS_ID: { refuse: `is not read by walts, and nothing would be encrypted: ${OPENPGP_KEYS}` },
  WALG_DELTA_MAX_STEPS: { refuse: 'is not read by walts: every walts base backup is a full backup (no delta backups); unset it' },
  WALG_DELTA_ORIGIN: { refuse: 'is not read by walts: every walts base backup is a full backup (no delta backups); unset it' },
};
/** Prefixes whose names must be in FOREIGN_SETTINGS: anything else under them is refused. */
const FOREIGN_PREFIXES: Readonly<Record<string, string>> = { WALE_: 'WAL-E', WALG_: 'WAL-G' };

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
/** Settings that make a config file sensitive: it must then be private to its owner. */
const SECRET_SETTINGS = ['WALTS_PGP_PASSPHRASE', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'];

export function loadConfig(sources: ConfigSources): Config {
  const problems: string[] = [];
  const flags = sources.flags ?? {};
  const configFile = str(flags['config']) ?? sources.env['WALTS_CONFIG'];
  const fileValues = configFile ? readConfigFile(configFile, sources, problems) : {};
  const envForeign = checkNames(sources.env, 'in the environment', problems);
  const fileForeign = configFile ? checkNames(fileValues, `in ${configFile}`, problems) : {};

  // Flag, then environment (a walts name before a WAL-E/WAL-G one), then the file (the same way).
  const get = (name: SettingName): string | undefined => {
    const flag = SETTINGS[name];
    const fromFlag = flag ? str(flags[flag]) : undefined;
    return fromFlag ?? nonEmpty(sources.env[name]) ?? envForeign[name] ?? nonEmpty(fileValues[name]) ?? fileForeign[name];
  };
  const seconds = (name: SettingName, dflt: number): number => {
    const raw = get(name);
    if (raw === undefined) return dflt * 1000;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) {
      problems.push(`${name} must be a positive number of seconds, got ${JSON.stringify(raw)}`);
      return dflt * 1000;
    }
    return Math.round(n * 1000);
  };

  const store = parseStoreUrl(get('WALTS_STORE'), problems);
  const sse = get('WALTS_S3_SSE');
  if (sse !== undefined && sse !== 'AES256' && sse !== 'aws:kms') problems.push(`WALTS_S3_SSE must be AES256 or aws:kms, got ${JSON.stringify(sse)}`);
  const sseKmsKeyId = get('WALTS_S3_SSE_KMS_KEY_ID');
  if (sseKmsKeyId && sse !== 'aws:kms') problems.push('WALTS_S3_SSE_KMS_KEY_ID is set but WALTS_S3_SSE is not aws:kms');
  const conditionalPut = get('WALTS_S3_CONDITIONAL_PUT') ?? 'auto';
  if (!['auto', 'on', 'off'].includes(conditionalPut)) problems.push(`WALTS_S3_CONDITIONAL_PUT must be auto, on or off, got ${JSON.stringify(conditionalPut)}`);
  const s3Client = get('WALTS_S3_CLIENT') ?? 'auto';
  if (s3Client !== 'auto' && s3Client !== 'sdk') problems.push(`WALTS_S3_CLIENT must be auto or sdk, got ${JSON.stringify(s3Client)}`);
  const forcePathStyle = bool('WALTS_S3_FORCE_PATH_STYLE', get('WALTS_S3_FORCE_PATH_STYLE'), problems);
  const endpoint = get('WALTS_S3_ENDPOINT');
  if (endpoint !== undefined && !/^https?:\/\/[^/\s]+/.test(endpoint)) problems.push(`WALTS_S3_ENDPOINT must be an http(s):// URL, got ${JSON.stringify(endpoint)}`);

  const compression = get('WALTS_COMPRESSION') ?? 'lz4';
  // zstd is accepted whatever this Node.js has: writing with it on one without is refused by the
  // codec (codec/zstd.ts, naming the version needed), while reading other objects goes on.
  if (compression !== 'lz4' && compression !== 'zstd' && compression !== 'none') problems.push(`WALTS_COMPRESSION must be lz4, zstd or none, got ${JSON.stringify(compression)}`);

  const logLevel = get('WALTS_LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`WALTS_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);

  const exitRaw = get('WALTS_FETCH_ERROR_EXIT_CODE') ?? '255';
  const fetchErrorExitCode = Number(exitRaw);
  if (!Number.isInteger(fetchErrorExitCode) || fetchErrorExitCode < 1 || fetchErrorExitCode > 255) {
    problems.push(`WALTS_FETCH_ERROR_EXIT_CODE must be an integer from 1 to 255, got ${JSON.stringify(exitRaw)}`);
  }

  const privateKeyPath = get('WALTS_PGP_PRIVATE_KEY');
  if (privateKeyPath && sources.fileMode) {
    let mode: number | undefined;
    try {
      mode = sources.fileMode(privateKeyPath);
    } catch {
      // Reported by the command that needs the key, when it reads it: wal-push never does.
    }
    if (mode !== undefined && (mode & 0o077) !== 0) problems.push(`WALTS_PGP_PRIVATE_KEY: ${privateKeyPath} is readable by group or others (chmod 600 it)`);
  }

  const passphraseFile = get('WALTS_PGP_PASSPHRASE_FILE');
  let passphrase = nonEmpty(sources.env['WALTS_PGP_PASSPHRASE']) ?? nonEmpty(fileValues['WALTS_PGP_PASSPHRASE']);
  if (passphraseFile) {
    try {
      const { text, mode } = sources.readFile(passphraseFile);
      if ((mode & 0o077) !== 0) problems.push(`WALTS_PGP_PASSPHRASE_FILE: ${passphraseFile} is readable by group or others (chmod 600 it)`);
      passphrase = text.replace(/\r?\n$/, '');
    } catch (err) {
      problems.push(`WALTS_PGP_PASSPHRASE_FILE: cannot read ${passphraseFile}: ${errCode(err)}`);
    }
  }

  const count = (name: SettingName, dflt: number, min: number, max: number): number => {
    const raw = get(name);
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
      return dflt;
    }
    return n;
  };
  const spoolDir = get('WALTS_SPOOL_DIR');
  if (spoolDir !== undefined && (!spoolDir.startsWith('/') || spoolDir.split('/').some((p) => p === '..' || p === '.'))) {
    problems.push(`WALTS_SPOOL_DIR must be an absolute path without '.' or '..' parts, got ${JSON.stringify(spoolDir)}`);
  }
  const pushLookahead = count('WALTS_PUSH_LOOKAHEAD', 16, 0, 256);
  const prefetch = count('WALTS_PREFETCH', 16, 0, 256);
  const concurrency = count('WALTS_CONCURRENCY', 4, 1, 64);
  const fetchPartialRaw = get('WALTS_FETCH_PARTIAL');
  const fetchPartial = fetchPartialRaw === undefined ? true : bool('WALTS_FETCH_PARTIAL', fetchPartialRaw, problems);

  const connectTimeoutMs = seconds('WALTS_CONNECT_TIMEOUT', 10);
  const ioTimeoutMs = seconds('WALTS_IO_TIMEOUT', 60);
  const retryDeadlineMs = seconds('WALTS_RETRY_DEADLINE', 60);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    store: {
      ...(store as Omit<StoreConfig, 's3' | 'connectTimeoutMs' | 'ioTimeoutMs' | 'retryDeadlineMs'>),
      s3: {
        endpoint,
        forcePathStyle,
        region: get('WALTS_S3_REGION'),
        sse: sse as StoreConfig['s3']['sse'],
        sseKmsKeyId,
        storageClass: get('WALTS_S3_STORAGE_CLASS'),
        conditionalPut: conditionalPut as ConditionalPut,
        client: s3Client as 'auto' | 'sdk',
      },
      connectTimeoutMs,
      ioTimeoutMs,
      retryDeadlineMs,
    },
    compression: compression as Compression,
    pgp: { publicKeyPath: get('WALTS_PGP_PUBLIC_KEY'), privateKeyPath, passphrase },
    signing: { keyPath: get('WALTS_BACKUP_SIGNING_KEY'), verifyKeyPath: get('WALTS_BACKUP_VERIFY_KEY') },
    logLevel,
    fetchErrorExitCode,
    spoolDir: spoolDir?.replace(/\/+$/, '') || spoolDir,
    pushLookahead,
    prefetch,
    concurrency,
    fetchPartial,
    configFile,
  };
}

function parseStoreUrl(url: string | undefined, problems: string[]): Partial<StoreConfig> | undefined {
  if (url === undefined) {
    problems.push('WALTS_STORE is not set (s3://bucket/prefix or file:///absolute/dir)');
    return undefined;
  }
  if (/\s/.test(url)) {
    problems.push(`WALTS_STORE must not contain whitespace, got ${JSON.stringify(url)}`);
    return undefined;
  }
  let m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(\/.*)?$/.exec(url);
  if (m) {
    const path = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
    if (path.split('/').some((p) => p === '..' || p === '.') || path.includes('//')) {
      problems.push(`WALTS_STORE: the prefix of ${url} must not contain empty, '.' or '..' parts`);
    }
    return { url, kind: 's3', bucket: m[1], prefix: path ? `${path}/` : '' };
  }
  m = /^file:\/\/(\/.*)$/.exec(url);
  if (m) {
    const dir = (m[1] ?? '').replace(/\/+$/, '') || '/';
    if (dir.split('/').some((p) => p === '..' || p === '.')) problems.push(`WALTS_STORE: ${url} must not contain '.' or '..' parts`);
    return { url, kind: 'file', directory: dir, prefix: '' };
  }
  problems.push(`WALTS_STORE must look like s3://bucket/prefix or file:///absolute/dir, got ${JSON.stringify(url)}`);
  return undefined;
}

/**
 * Parses `KEY=VALUE` lines as systemd's EnvironmentFile and `envdir` users write them, strictly:
 * - blank lines and lines starting with `#` are comments; `export ` before a key is allowed;
 * - a value in single or double quotes is taken literally; after the closing quote only spaces and
 *   a `# comment` may follow;
 * - an unquoted value ends at a `#` that follows whitespace (`KEY=value   # note`); trailing spaces
 *   are dropped; a `#` inside a word (`a#b`) is part of the value;
 * - any other line (no `=`, a bad key, an unclosed quote) is reported, with its line number, in
 *   `problems` when given, so a typo never becomes a setting or silently disappears.
 */
export function parseEnvFile(text: string, problems?: string[]): Record<string, string> {
  const values: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    const value = m?.[1] !== undefined ? parseValue(m[2] ?? '') : undefined;
    if (!m || m[1] === undefined || value === undefined) {
      problems?.push(`line ${index + 1} is not KEY=VALUE, KEY="VALUE" or a # comment: ${JSON.stringify(line.length > 60 ? line.slice(0, 60) + '…' : line)}`);
      return;
    }
    values[m[1]] = value;
  });
  return values;
}

/** The value part of a line (see parseEnvFile), or undefined when it is malformed. */
function parseValue(rest: string): string | undefined {
  const quote = rest[0];
  if (quote === '"' || quote === "'") {
    const close = rest.indexOf(quote, 1);
    if (close < 0) return undefined;
    const after = rest.slice(close + 1);
    if (!/^\s*(#.*)?$/.test(after)) return undefined;
    return rest.slice(1, close);
  }
  const comment = /\s#/.exec(rest);
  return (comment ? rest.slice(0, comment.index) : rest).trimEnd();
}

/**
 * Every WALTS_* name must be a setting walts reads (a typo would otherwise be ignored), and every
 * WAL-E or WAL-G name is read as its walts setting or refused (FOREIGN_SETTINGS): WALE_GPG_KEY_ID in
 * particular, which would otherwise leave the archive unencrypted. Returns the walts settings the
 * foreign names give; a walts name and a foreign one (or two foreign ones) for the same setting must
 * agree.
 */
function checkNames(values: Env, where: string, problems: string[]): Partial<Record<SettingName, string>> {
  const given: Partial<Record<SettingName, { value: string; from: string }>> = {};
  const implied: Partial<Record<SettingName, string>> = {};
  for (const [name, raw] of Object.entries(values)) {
    if (raw === undefined) continue;
    if (name.startsWith('WALTS_')) {
      if (name in SETTINGS || OTHER_KNOWN.includes(name) || name.startsWith(RESERVED_PREFIX)) continue;
      const hint = closest(name, [...Object.keys(SETTINGS), ...OTHER_KNOWN]);
      problems.push(`${name} (${where}) is not a walts setting${hint ? `; did you mean ${hint}?` : ''}`);
      continue;
    }
    const entry = FOREIGN_SETTINGS[name];
    if (!entry) {
      const tool = Object.entries(FOREIGN_PREFIXES).find(([prefix]) => name.startsWith(prefix))?.[1];
      if (tool) problems.push(`${name} (${where}) is a ${tool} setting walts does not read; unset it (docs/migrate-wal-e.md lists the walts names)`);
      continue;
    }
    if ('refuse' in entry) {
      problems.push(`${name} (${where}) ${entry.refuse}`);
      continue;
    }
    const value = nonEmpty(raw);
    if (value === undefined) continue;
    const t = entry.translate ? entry.translate(value) : { value };
    if ('problem' in t) {
      problems.push(`${name} (${where}) ${t.problem}`);
      continue;
    }
    const setting = entry.means;
    const own = nonEmpty(values[setting]);
    const other = given[setting];
    const clash = own !== undefined && !sameValue(setting, own, t.value) ? { name: setting, value: own } : other && !sameValue(setting, other.value, t.value) ? { name: other.from, value: other.value } : undefined;
    if (clash) {
      const what = setting === 'WALTS_STORE' ? 'stores' : 'values';
      const alias = clash.name === setting ? `its alias ${name}` : name;
      problems.push(`${clash.name} and ${alias} are both set (${where}) to different ${what} (${JSON.stringify(clash.value)}, ${JSON.stringify(raw)}); unset ${name}`);
      continue;
    }
    given[setting] ??= { value: t.value, from: name };
    for (const [s, v] of Object.entries(t.implies ?? {}) as [SettingName, string][]) implied[s] ??= v;
  }
  const out: Partial<Record<SettingName, string>> = { ...implied };
  for (const [s, g] of Object.entries(given) as [SettingName, { value: string }][]) out[s] = g.value;
  return out;
}

/** Two values of one setting mean the same (a store URL with or without its trailing /). */
function sameValue(setting: SettingName, a: string, b: string): boolean {
  return setting === 'WALTS_STORE' ? a.replace(/\/+$/, '') === b.replace(/\/+$/, '') : a === b;
}

/** A WAL-E/WAL-G directory store as a walts file:// URL (checked by parseStoreUrl like any other). */
function fileStore(url: string): Translated {
  return url.startsWith('file:///') ? { value: url } : { problem: `must be an absolute directory (walts reads it as WALTS_STORE=file:///dir), got ${JSON.stringify(url)}` };
}

/**
 * WAL-E's endpoint, `https+path://host:port` (scheme, then + the S3 calling format: `path` or
 * `virtualhost`), as WALTS_S3_ENDPOINT, with path-style addressing for `+path`. A plain http(s)://
 * URL is taken as it is.
 */
function waleEndpoint(v: string): Translated {
  const m = /^(https?)(?:\+(path|virtualhost))?:\/\/([^/\s]+)\/?$/.exec(v);
  if (!m) return { problem: `must look like https+path://host:port (WAL-E) or https://host:port, got ${JSON.stringify(v)}; or set WALTS_S3_ENDPOINT and WALTS_S3_FORCE_PATH_STYLE instead` };
  return { value: `${m[1]}://${m[3]}`, ...(m[2] === 'path' ? { implies: { WALTS_S3_FORCE_PATH_STYLE: 'true' } } : {}) };
}

/** The known name within edit distance 2 of `name`, if exactly one is closest. */
function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

function readConfigFile(path: string, sources: ConfigSources, problems: string[]): Record<string, string> {
  try {
    const { text, mode } = sources.readFile(path);
    const lineProblems: string[] = [];
    const values = parseEnvFile(text, lineProblems);
    for (const p of lineProblems) problems.push(`WALTS_CONFIG: ${path}: ${p}`);
    if ((mode & 0o077) !== 0 && SECRET_SETTINGS.some((s) => values[s] !== undefined)) {
      problems.push(`WALTS_CONFIG: ${path} holds secrets but is readable by group or others (chmod 600 it)`);
    }
    return values;
  } catch (err) {
    problems.push(`WALTS_CONFIG: cannot read ${path}: ${errCode(err)}`);
    return {};
  }
}

/**
 * Environment for the AWS SDK: values from the config file fill in `AWS_*` variables the process
 * does not have, so a file-configured walts finds its credentials and region the usual way.
 */
export function awsEnvFromConfigFile(sources: ConfigSources, flags: Flags = {}): Record<string, string> {
  const path = str(flags['config']) ?? sources.env['WALTS_CONFIG'];
  if (!path) return {};
  try {
    return Object.fromEntries(Object.entries(parseEnvFile(sources.readFile(path).text)).filter(([k]) => k.startsWith('AWS_') && sources.env[k] === undefined));
  } catch {
    return {}; // loadConfig reports the unreadable file
  }
}

function bool(name: string, raw: string | undefined, problems: string[]): boolean {
  if (raw === undefined) return false;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  problems.push(`${name} must be true or false, got ${JSON.stringify(raw)}`);
  return false;
}

function str(v: unknown): string | undefined {
  if (v === undefined || v === null || v === false) return undefined;
  if (v === true) return 'true';
  return nonEmpty(String(v));
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
