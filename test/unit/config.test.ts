import { loadConfig, parseEnvFile } from '../../src/config';
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
});
