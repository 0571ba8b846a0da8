/**
 * Configuration mistakes through the real binary: exit 2, one line per problem naming its setting,
 * no stack trace, nothing written to the store.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runWalts } from '../helpers/run';

describe('configuration errors (walts binary)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'walts-config-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reports a typo, a WAL-E key id, conflicting store aliases and an exposed private key at once, exit 2', async () => {
    const store = join(dir, 'store');
    const key = join(dir, 'secret.asc');
    writeFileSync(key, '-----BEGIN PGP PRIVATE KEY BLOCK-----\n');
    chmodSync(key, 0o644);
    const config = join(dir, 'walts.env');
    // The trailing comment is not part of the store URL; the typo in the next line is reported.
    writeFileSync(config, `WALTS_STORE=file://${store}   # prod\nWALTS_COMPRESION=none\nWALTS_PGP_PRIVATE_KEY=${key}\n`, { mode: 0o600 });
    const r = await runWalts(['wal-push', 'pg_wal/000000010000000000000001'], {
      WALTS_CONFIG: config,
      WALE_GPG_KEY_ID: 'ABCD1234',
      WALTS_TEST_PG_BINDIR: '/reserved/for/tests', // reserved prefix: not an error
    }, { cwd: dir });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n').join('\n');
    expect(lines).toContain('WALTS_COMPRESION');
    expect(lines).toContain('did you mean WALTS_COMPRESSION?');
    expect(lines).toContain('WALE_GPG_KEY_ID');
    expect(lines).toContain(`WALTS_PGP_PRIVATE_KEY: ${key} is readable by group or others`);
    expect(lines).not.toContain('WALTS_STORE');
    expect(lines).not.toContain('WALTS_TEST_PG_BINDIR');
    expect(lines).not.toMatch(/\n\s+at /); // no stack trace
    expect(readdirSync(dir).sort()).toEqual(['secret.asc', 'walts.env']);

    const both = await runWalts(['backup-list'], { WALTS_STORE: `file://${store}`, WALE_S3_PREFIX: 's3://other-bucket/db1' });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('WALTS_STORE and its alias WALE_S3_PREFIX are both set');
  }, 60_000);
});
