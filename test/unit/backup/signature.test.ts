/** Signed backups: one Ed25519 signature over the sentinel's bytes. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSigningKey, loadVerifyKey, signSentinel, verifySentinel } from '../../../src/backup/signature';
import { ConfigError, IntegrityError } from '../../../src/errors';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'walts-sig-'));
  for (const name of ['a', 'b']) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    writeFileSync(join(dir, `${name}.key`), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(join(dir, `${name}.pub`), publicKey.export({ type: 'spki', format: 'pem' }));
  }
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'rsa.key'), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sentinel signatures', () => {
  const bytes = Buffer.from('{"name":"base_X","tablespaces":[]}\n');

  it('verifies a signature by the matching key', () => {
    const sig = signSentinel(bytes, loadSigningKey(join(dir, 'a.key')));
    expect(() => verifySentinel('base_X', bytes, JSON.stringify(sig), loadVerifyKey(join(dir, 'a.pub')))).not.toThrow();
  });

  it('refuses an unsigned backup, altered bytes, another key, a malformed file', () => {
    const key = loadVerifyKey(join(dir, 'a.pub'));
    const sig = JSON.stringify(signSentinel(bytes, loadSigningKey(join(dir, 'a.key'))));
    expect(() => verifySentinel('base_X', bytes, undefined, key)).toThrow(/is not signed/);
    expect(() => verifySentinel('base_X', Buffer.from(bytes.toString().replace('[]', '[{"oid":1}]')), sig, key)).toThrow(/signature does not match/);
    expect(() => verifySentinel('base_X', bytes, JSON.stringify(signSentinel(bytes, loadSigningKey(join(dir, 'b.key')))), key)).toThrow(/is signed by key .*not by the verify key/);
    expect(() => verifySentinel('base_X', bytes, 'nope', key)).toThrow(IntegrityError);
  });

  it('names the setting for a missing or wrong kind of key', () => {
    expect(() => loadSigningKey(join(dir, 'missing.key'))).toThrow(ConfigError);
    expect(() => loadSigningKey(join(dir, 'rsa.key'))).toThrow(/WALTS_BACKUP_SIGNING_KEY: .* is a rsa key; an Ed25519 key is needed/);
    writeFileSync(join(dir, 'open.key'), 'x', { mode: 0o644 });
    expect(() => loadSigningKey(join(dir, 'open.key'))).toThrow(/WALTS_BACKUP_SIGNING_KEY: .* is readable by others \(mode 644\); chmod 600 it/);
    expect(() => loadVerifyKey(join(dir, 'missing.pub'))).toThrow(/WALTS_BACKUP_VERIFY_KEY/);
  });
});
