import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FOREIGN_SETTINGS, loadConfig, parseEnvFile, SETTINGS } from '../../src/config';
import { ConfigError } from '../../src/errors';

const noFile = (): { text: string; mode: number } => {
  throw Object.assign(new Error('nope'), { code: 'ENOENT' });
};

function problems(env: Record<string, string>, flags = {}, readFile: (p: string) => { text: string; mode: number } = noFile): string[] {
  try {
    loadConfig({ env, flags, readFile });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  return [];
}

describe('configuration', () => {
  it('reads an S3 store with defaults', () => {
    const c = loadConfig({ env: { WALTS_STORE: 's3://my-bucket/db/main/' }, readFile: noFile });
    expect(c.store).toMatchObject({ kind: 's3', bucket: 'my-bucket', prefix: 'db/main/', retryDeadlineMs: 60000 });
    expect(c.compression).toBe('lz4');
    expect(c.fetchErrorExitCode).toBe(255);
  });

  it('accepts WALTS_COMPRESSION lz4, zstd and none (zstd whatever this Node.js has: the codec refuses to write it) and nothing else', () => {
    for (const v of ['lz4', 'zstd', 'none']) expect(loadConfig({ env: { WALTS_STORE: 'file:///srv/a', WALTS_COMPRESSION: v }, readFile: noFile }).compression).toBe(v);
    expect(() => loadConfig({ env: { WALTS_STORE: 'file:///srv/a', WALTS_COMPRESSION: 'zst' }, readFile: noFile })).toThrow(/WALTS_COMPRESSION must be lz4, zstd or none, got "zst"/);
  });

  it('accepts WALE_S3_PREFIX as an alias and lets flags win over the environment', () => {
    expect(loadConfig({ env: { WALE_S3_PREFIX: 's3://bk1/x' }, readFile: noFile }).store.bucket).toBe('bk1');
    expect(loadConfig({ env: { WALTS_STORE: 's3://bk1/x' }, flags: { store: 'file:///srv/arch' }, readFile: noFile }).store).toMatchObject({ kind: 'file', directory: '/srv/arch' });
  });

  it('reports every problem at once, each naming its setting', () => {
    const p = problems({ WALTS_COMPRESSION: 'zip', WALTS_S3_SSE: 'yes', WALTS_LOG_LEVEL: 'loud', WALTS_IO_TIMEOUT: '-1', WALTS_FETCH_ERROR_EXIT_CODE: '300' });
    expect(p).toHaveLength(6);
    for (const name of ['WALTS_STORE', 'WALTS_COMPRESSION', 'WALTS_S3_SSE', 'WALTS_LOG_LEVEL', 'WALTS_IO_TIMEOUT', 'WALTS_FETCH_ERROR_EXIT_CODE']) {
      expect(p.some((m) => m.startsWith(name))).toBe(true);
    }
  });

  it('reads the look-ahead, prefetch and spool settings, with defaults, and refuses bad values by name', () => {
    const d = loadConfig({ env: { WALTS_STORE: 's3://bk1/x' }, readFile: noFile });
    expect(d).toMatchObject({ pushLookahead: 16, prefetch: 16, concurrency: 4, spoolDir: undefined });
    const c = loadConfig({ env: { WALTS_STORE: 's3://bk1/x', WALTS_PUSH_LOOKAHEAD: '0', WALTS_PREFETCH: '3', WALTS_CONCURRENCY: '8', WALTS_SPOOL_DIR: '/var/spool/walts/' }, readFile: noFile });
    expect(c).toMatchObject({ pushLookahead: 0, prefetch: 3, concurrency: 8, spoolDir: '/var/spool/walts' });
    const p = problems({ WALTS_STORE: 's3://bk1/x', WALTS_PUSH_LOOKAHEAD: '-1', WALTS_PREFETCH: '2.5', WALTS_CONCURRENCY: '0', WALTS_SPOOL_DIR: 'spool' });
    expect(p).toHaveLength(4);
    for (const name of ['WALTS_PUSH_LOOKAHEAD', 'WALTS_PREFETCH', 'WALTS_CONCURRENCY', 'WALTS_SPOOL_DIR']) expect(p.some((m) => m.startsWith(name))).toBe(true);
    expect(problems({ WALTS_STORE: 's3://bk1/x', WALTS_SPOOL_DIR: '/a/../b' })[0]).toMatch(/^WALTS_SPOOL_DIR/);
  });

  test.each(['s3://', 's3://UPPER/x', 'file://relative/dir', '/abs/without/scheme', 's3://bucket/a/../b', 'file:///a/../b'])('refuses store %j', (url) => {
    expect(problems({ WALTS_STORE: url })[0]).toMatch(/^WALTS_STORE/);
  });

  it('reads a config file, keeps env precedence, and refuses a world-readable file holding secrets', () => {
    const text = 'WALTS_STORE=s3://from-file/p\nWALTS_COMPRESSION="none"\n# comment\nexport WALTS_PGP_PASSPHRASE=hunter2\n';
    const c = loadConfig({ env: { WALTS_CONFIG: '/etc/walts.env', WALTS_COMPRESSION: 'lz4' }, readFile: () => ({ text, mode: 0o100600 }) });
    expect(c.store.bucket).toBe('from-file');
    expect(c.compression).toBe('lz4');
    expect(c.pgp.passphrase).toBe('hunter2');
    expect(c.configFile).toBe('/etc/walts.env');
    const p = problems({ WALTS_CONFIG: '/etc/walts.env' }, {}, () => ({ text, mode: 0o100644 }));
    expect(p).toEqual(['WALTS_CONFIG: /etc/walts.env holds secrets but is readable by group or others (chmod 600 it)']);
    expect(p.join()).not.toContain('hunter2');
  });

  it('reads the passphrase from a private file and never echoes it', () => {
    const c = loadConfig({ env: { WALTS_STORE: 'file:///x', WALTS_PGP_PASSPHRASE_FILE: '/k/pass' }, readFile: () => ({ text: 's3cret\n', mode: 0o100600 }) });
    expect(c.pgp.passphrase).toBe('s3cret');
    const p = problems({ WALTS_STORE: 'file:///x', WALTS_PGP_PASSPHRASE_FILE: '/k/pass' }, {}, () => ({ text: 's3cret', mode: 0o100644 }));
    expect(p[0]).toMatch(/^WALTS_PGP_PASSPHRASE_FILE: \/k\/pass is readable/);
    expect(p.join()).not.toContain('s3cret');
  });

  it('parses env files as systemd and envdir users write them', () => {
    expect(parseEnvFile("A=1\n  B = 'two words'\nexport C=\"3\"\n#D=4\nnot a line\n")).toEqual({ A: '1', B: 'two words', C: '3' });
  });

  describe('config file lines', () => {
    const file = (text: string, env: Record<string, string> = {}) => ({ env: { WALTS_CONFIG: '/etc/walts.env', ...env }, readFile: () => ({ text, mode: 0o100600 }) });

    it('ends an unquoted value at " #" (a trailing comment), never inside a word', () => {
      const c = loadConfig(file('WALTS_STORE=s3://bkt/db1   # prod\nWALTS_S3_STORAGE_CLASS=STANDARD_IA\t# cheaper\nWALTS_S3_SSE_KMS_KEY_ID=key#1\nWALTS_S3_SSE=aws:kms\n'));
      expect(c.store).toMatchObject({ bucket: 'bkt', prefix: 'db1/' });
      expect(c.store.s3.storageClass).toBe('STANDARD_IA');
      expect(c.store.s3.sseKmsKeyId).toBe('key#1');
    });

    it('takes quoted values literally and allows a comment after the closing quote', () => {
      expect(parseEnvFile(`A="x # not a comment"  # comment\nB='y'`)).toEqual({ A: 'x # not a comment', B: 'y' });
    });

    it('refuses whitespace inside a store URL', () => {
      expect(problems({ WALTS_STORE: 's3://bkt/db1   prod' })).toEqual(['WALTS_STORE must not contain whitespace, got "s3://bkt/db1   prod"']);
      expect(problems({ WALTS_CONFIG: '/f' }, {}, () => ({ text: 'WALTS_STORE="s3://bkt/db1 # prod"\n', mode: 0o100600 }))[0]).toMatch(/^WALTS_STORE must not contain whitespace/);
    });

    it('reports malformed lines with their number, all at once', () => {
      const p = problems({ WALTS_CONFIG: '/etc/walts.env' }, {}, () => ({ text: 'WALTS_STORE=s3://bkt/p\nnot a line\nWALTS_COMPRESSION="lz4\nB="x" y\n', mode: 0o100600 }));
      expect(p).toEqual([
        'WALTS_CONFIG: /etc/walts.env: line 2 is not KEY=VALUE, KEY="VALUE" or a # comment: "not a line"',
        'WALTS_CONFIG: /etc/walts.env: line 3 is not KEY=VALUE, KEY="VALUE" or a # comment: "WALTS_COMPRESSION=\\"lz4"',
        'WALTS_CONFIG: /etc/walts.env: line 4 is not KEY=VALUE, KEY="VALUE" or a # comment: "B=\\"x\\" y"',
      ]);
    });
  });

  describe('names that walts does not read', () => {
    it('refuses an unknown WALTS_* variable in the environment, naming it and the likely setting', () => {
      expect(problems({ WALTS_STORE: 's3://bkt/p', WALTS_COMPRESION: 'none', WALTS_FROBNICATE: '1' })).toEqual([
        'WALTS_COMPRESION (in the environment) is not a walts setting; did you mean WALTS_COMPRESSION?',
        'WALTS_FROBNICATE (in the environment) is not a walts setting',
      ]);
    });

    it('refuses an unknown WALTS_* key in the config file', () => {
      const p = problems({ WALTS_CONFIG: '/etc/walts.env' }, {}, () => ({ text: 'WALTS_STORE=s3://bkt/p\nWALTS_PGP_PUBLICKEY=/k\n', mode: 0o100600 }));
      expect(p).toEqual(['WALTS_PGP_PUBLICKEY (in /etc/walts.env) is not a walts setting; did you mean WALTS_PGP_PUBLIC_KEY?']);
    });

    it('leaves the reserved WALTS_TEST_ prefix (test-suite knobs) and other programs\' variables alone', () => {
      expect(problems({ WALTS_STORE: 's3://bkt/p', WALTS_TEST_PG_BINDIR: '/x', WALTS_CONFIG: '', PGHOST: 'h', AWS_REGION: 'r' })).toEqual([]);
    });

    it('refuses WALE_GPG_KEY_ID: walts needs a key file, and would otherwise write unencrypted', () => {
      const p = problems({ WALTS_STORE: 's3://bkt/p', WALE_GPG_KEY_ID: 'ABCD1234' });
      expect(p).toHaveLength(1);
      expect(p[0]).toMatch(/^WALE_GPG_KEY_ID \(in the environment\) is not read by walts.*WALTS_PGP_PUBLIC_KEY/);
      const f = problems({ WALTS_CONFIG: '/f' }, {}, () => ({ text: 'WALE_S3_PREFIX=s3://bkt/p\nWALE_GPG_KEY_ID=ABCD1234\n', mode: 0o100600 }));
      expect(f).toHaveLength(1);
      expect(f[0]).toMatch(/^WALE_GPG_KEY_ID \(in \/f\)/);
    });

    it('refuses other WAL-E and WAL-G variables it would otherwise ignore', () => {
      expect(problems({ WALE_S3_PREFIX: 's3://bkt/p', WALE_SYSLOG_FACILITY: 'user' })).toEqual([
        'WALE_SYSLOG_FACILITY (in the environment) is a WAL-E setting walts does not read; unset it (docs/migrate-wal-e.md lists the walts names)',
      ]);
      expect(problems({ WALTS_STORE: 's3://bkt/p', WALG_TAR_SIZE_THRESHOLD: '1' })).toEqual([
        'WALG_TAR_SIZE_THRESHOLD (in the environment) is a WAL-G setting walts does not read; unset it (docs/migrate-wal-e.md lists the walts names)',
      ]);
    });

    it('refuses WALTS_STORE and WALE_S3_PREFIX set to different stores; the same store (up to a trailing /) is fine', () => {
      expect(problems({ WALTS_STORE: 's3://bkt/one', WALE_S3_PREFIX: 's3://bkt/two' })).toEqual([
        'WALTS_STORE and its alias WALE_S3_PREFIX are both set (in the environment) to different stores ("s3://bkt/one", "s3://bkt/two"); unset WALE_S3_PREFIX',
      ]);
      expect(problems({ WALTS_STORE: 's3://bkt/one', WALE_S3_PREFIX: 's3://bkt/one/' })).toEqual([]);
      const f = problems({ WALTS_CONFIG: '/f' }, {}, () => ({ text: 'WALTS_STORE=s3://bkt/one\nWALE_S3_PREFIX=s3://bkt/two\n', mode: 0o100600 }));
      expect(f[0]).toMatch(/^WALTS_STORE and its alias WALE_S3_PREFIX are both set \(in \/f\)/);
    });
  });

  it('refuses a private key file readable by group or others, like the passphrase file; a missing one is left to the command that reads it', () => {
    const env = { WALTS_STORE: 'file:///x', WALTS_PGP_PRIVATE_KEY: '/k/secret.asc' };
    const modes: Record<string, number> = { '/k/secret.asc': 0o100640 };
    const fileMode = (path: string): number => {
      const m = modes[path];
      if (m === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' });
      return m;
    };
    const p = (() => {
      try {
        loadConfig({ env, readFile: noFile, fileMode });
        return [];
      } catch (err) {
        return [...(err as ConfigError).problems];
      }
    })();
    expect(p).toEqual(['WALTS_PGP_PRIVATE_KEY: /k/secret.asc is readable by group or others (chmod 600 it)']);
    modes['/k/secret.asc'] = 0o100600;
    expect(loadConfig({ env, readFile: noFile, fileMode }).pgp.privateKeyPath).toBe('/k/secret.asc');
    expect(loadConfig({ env: { ...env, WALTS_PGP_PRIVATE_KEY: '/k/missing' }, readFile: noFile, fileMode }).pgp.privateKeyPath).toBe('/k/missing');
  });

  describe('WAL-E and WAL-G names (FOREIGN_SETTINGS)', () => {
    const load = (env: Record<string, string>) => loadConfig({ env, readFile: noFile });
    const store = { WALTS_STORE: 's3://bkt/p' };

    it('every WALE_*/WALG_* entry is read or refused, and a refusal names the walts way', () => {
      for (const [name, entry] of Object.entries(FOREIGN_SETTINGS)) {
        if ('refuse' in entry) {
          const p = problems({ ...store, [name]: 'x' });
          expect(p).toHaveLength(1);
          expect(p[0]).toMatch(new RegExp(`^${name} \\(in the environment\\) .*(WALTS_|NODE_EXTRA_CA_CERTS|unset it)`));
        } else {
          expect(entry.means in SETTINGS).toBe(true);
        }
      }
    });

    test.each([
      ['WALE_S3_PREFIX', 's3://bkt/wale', 'WALTS_STORE'],
      ['WALG_S3_PREFIX', 's3://bkt/walg', 'WALTS_STORE'],
    ])('%s is read as %s', (name, value) => {
      expect(load({ [name]: value }).store.url).toBe(value);
    });

    it('WALE_FILE_PREFIX (file://localhost/dir) and WALG_FILE_PREFIX (/dir) are directory stores; a relative one is refused', () => {
      expect(load({ WALE_FILE_PREFIX: 'file://localhost/srv/wale' }).store).toMatchObject({ kind: 'file', directory: '/srv/wale' });
      expect(load({ WALE_FILE_PREFIX: 'file:///srv/wale' }).store).toMatchObject({ kind: 'file', directory: '/srv/wale' });
      expect(load({ WALG_FILE_PREFIX: '/srv/walg' }).store).toMatchObject({ kind: 'file', url: 'file:///srv/walg', directory: '/srv/walg' });
      expect(problems({ WALG_FILE_PREFIX: 'walg' })[0]).toMatch(/^WALG_FILE_PREFIX \(in the environment\) must be an absolute directory/);
    });

    it('WALE_S3_ENDPOINT: https+path://host:port becomes the endpoint with path-style addressing; a plain URL is taken as is', () => {
      expect(load({ ...store, WALE_S3_ENDPOINT: 'https+path://minio:9000' }).store.s3).toMatchObject({ endpoint: 'https://minio:9000', forcePathStyle: true });
      expect(load({ ...store, WALE_S3_ENDPOINT: 'http+virtualhost://s3.local' }).store.s3).toMatchObject({ endpoint: 'http://s3.local', forcePathStyle: false });
      expect(load({ ...store, WALE_S3_ENDPOINT: 'https://s3.example.com' }).store.s3).toMatchObject({ endpoint: 'https://s3.example.com', forcePathStyle: false });
      // An explicit walts setting wins over what the WAL-E form implies.
      expect(load({ ...store, WALE_S3_ENDPOINT: 'https+path://minio:9000', WALTS_S3_FORCE_PATH_STYLE: 'false' }).store.s3.forcePathStyle).toBe(false);
      expect(problems({ ...store, WALE_S3_ENDPOINT: 'minio:9000' })[0]).toMatch(/^WALE_S3_ENDPOINT \(in the environment\) must look like https\+path:\/\/host:port/);
    });

    it("WAL-G's AWS_ENDPOINT and AWS_S3_FORCE_PATH_STYLE, S3 encryption and storage class", () => {
      const c = load({ ...store, AWS_ENDPOINT: 'http://minio:9000', AWS_S3_FORCE_PATH_STYLE: 'true', WALG_S3_SSE: 'aws:kms', WALG_S3_SSE_KMS_ID: 'key-1', WALG_S3_STORAGE_CLASS: 'STANDARD_IA' });
      expect(c.store.s3).toMatchObject({ endpoint: 'http://minio:9000', forcePathStyle: true, sse: 'aws:kms', sseKmsKeyId: 'key-1', storageClass: 'STANDARD_IA' });
    });

    it('WALG_COMPRESSION_METHOD, WALG_UPLOAD_CONCURRENCY and WALG_LOG_LEVEL are read as walts settings; values walts has not are refused by name', () => {
      expect(load({ ...store, WALG_COMPRESSION_METHOD: 'lz4', WALG_UPLOAD_CONCURRENCY: '8', WALG_LOG_LEVEL: 'DEVEL' })).toMatchObject({ compression: 'lz4', concurrency: 8, logLevel: 'debug' });
      expect(problems({ ...store, WALG_COMPRESSION_METHOD: 'brotli' })).toEqual([
        'WALG_COMPRESSION_METHOD (in the environment) walts does not write brotli: set WALTS_COMPRESSION (lz4 is the default) and unset WALG_COMPRESSION_METHOD',
      ]);
      expect(problems({ ...store, WALG_LOG_LEVEL: 'LOUD' })[0]).toMatch(/^WALG_LOG_LEVEL \(in the environment\) must be NORMAL, DEVEL or ERROR/);
      expect(problems({ ...store, WALG_UPLOAD_CONCURRENCY: '100' })[0]).toMatch(/^WALTS_CONCURRENCY must be a whole number from 1 to 64/);
    });

    it('a walts name wins only when it agrees: a WAL-E/WAL-G name for the same setting with another value is refused, as are two foreign names that disagree', () => {
      expect(load({ ...store, WALTS_CONCURRENCY: '8', WALG_UPLOAD_CONCURRENCY: '8' }).concurrency).toBe(8);
      expect(problems({ ...store, WALTS_CONCURRENCY: '8', WALG_UPLOAD_CONCURRENCY: '16' })).toEqual([
        'WALTS_CONCURRENCY and its alias WALG_UPLOAD_CONCURRENCY are both set (in the environment) to different values ("8", "16"); unset WALG_UPLOAD_CONCURRENCY',
      ]);
      const p = problems({ WALE_S3_PREFIX: 's3://bkt/one', WALG_S3_PREFIX: 's3://bkt/two/' });
      expect(p).toEqual(['WALE_S3_PREFIX and WALG_S3_PREFIX are both set (in the environment) to different stores ("s3://bkt/one", "s3://bkt/two/"); unset WALG_S3_PREFIX']);
      expect(problems({ WALTS_S3_ENDPOINT: 'https://minio:9000', WALE_S3_ENDPOINT: 'https+path://minio:9000', ...store })).toEqual([]);
    });

    it('refuses the encryption names with the one-line way to a key file, never leaving the archive unencrypted', () => {
      for (const name of ['WALG_PGP_KEY_PATH', 'WALG_PGP_KEY', 'WALG_GPG_KEY_ID', 'WALG_LIBSODIUM_KEY', 'WALG_CSE_KMS_ID', 'WALE_GPG_KEY_ID']) {
        expect(problems({ ...store, [name]: 'k' })[0]).toMatch(/gpg --export KEYID > key\.(asc|pgp).*WALTS_PGP_PUBLIC_KEY|WALTS_PGP_PUBLIC_KEY.*gpg --export KEYID > key\.asc/);
      }
    });

    it('docs/migrate-wal-e.md names every WAL-E and WAL-G name walts reads or refuses', () => {
      const guide = readFileSync(join(__dirname, '../../docs/migrate-wal-e.md'), 'utf8');
      for (const name of Object.keys(FOREIGN_SETTINGS)) expect([name, guide.includes(`\`${name}`)]).toEqual([name, true]);
    });

    it('reads the names from a config file too (an envdir turned into KEY=VALUE lines)', () => {
      const c = loadConfig({ env: { WALTS_CONFIG: '/etc/wal-e.env' }, readFile: () => ({ text: 'WALE_S3_PREFIX=s3://bkt/f\nWALE_S3_ENDPOINT=http+path://minio:9000\n', mode: 0o100600 }) });
      expect(c.store).toMatchObject({ url: 's3://bkt/f', s3: { endpoint: 'http://minio:9000', forcePathStyle: true } });
    });
  });
});
