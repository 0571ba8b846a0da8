/**
 * Signed backups (docs/security.md, "Signing backup metadata"). The database host holds only the
 * public half of the encryption key, so it gets a signing key of its own: an Ed25519 key pair
 * (`openssl genpkey -algorithm ed25519`). backup-push signs the exact bytes of `sentinel.json`; the
 * sentinel holds the manifest's SHA-256, which holds every file's SHA-256, so one signature covers
 * every byte of the backup. A restore host with the verify key refuses a backup whose signature is
 * missing or wrong (exit 3). WAL is not signed: see the docs for what that leaves open.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ConfigError, IntegrityError } from '../errors';

export const SIGNATURE_FORMAT = 1;

/** `sentinel.json.sig`: written before the sentinel, so a sentinel never exists unsigned when it should not. */
export interface SentinelSignature {
  readonly format: typeof SIGNATURE_FORMAT;
  readonly algorithm: 'ed25519';
  /** SHA-256 of the public key (SPKI DER), hex: which key signed. */
  readonly key_id: string;
  /** Base64 Ed25519 signature of the sentinel's bytes. */
  readonly signature: string;
}

export function loadSigningKey(path: string, setting = 'WALTS_BACKUP_SIGNING_KEY'): KeyObject {
  let key: KeyObject;
  // Whoever reads this key can sign backups: it must be private to its owner, like a passphrase file.
  const mode = (() => {
    try {
      return statSync(path).mode;
    } catch {
      return undefined;
    }
  })();
  if (mode !== undefined && (mode & 0o077) !== 0) throw new ConfigError(`${setting}: ${path} is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
  try {
    key = createPrivateKey(readFileSync(path));
  } catch (err) {
    throw new ConfigError(`${setting}: ${path} is not a readable private key (${(err as NodeJS.ErrnoException).code ?? 'unparsable'})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError(`${setting}: ${path} is a ${key.asymmetricKeyType} key; an Ed25519 key is needed (openssl genpkey -algorithm ed25519)`);
  return key;
}

export function loadVerifyKey(path: string, setting = 'WALTS_BACKUP_VERIFY_KEY'): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(readFileSync(path));
  } catch (err) {
    throw new ConfigError(`${setting}: ${path} is not a readable public key (${(err as NodeJS.ErrnoException).code ?? 'unparsable'})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError(`${setting}: ${path} is a ${key.asymmetricKeyType} key; an Ed25519 public key is needed`);
  return key;
}

export function keyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
}

export function signSentinel(sentinelBytes: Buffer, privateKey: KeyObject): SentinelSignature {
  return { format: SIGNATURE_FORMAT, algorithm: 'ed25519', key_id: keyId(createPublicKey(privateKey)), signature: sign(null, sentinelBytes, privateKey).toString('base64') };
}

/** Throws IntegrityError unless `signatureText` is a valid signature of `sentinelBytes` by `publicKey`. */
export function verifySentinel(name: string, sentinelBytes: Buffer, signatureText: string | undefined, publicKey: KeyObject): void {
  if (signatureText === undefined) throw new IntegrityError(`backup ${name} is not signed, and WALTS_BACKUP_VERIFY_KEY requires signed backups; refusing it`);
  let sig: SentinelSignature;
  try {
    sig = JSON.parse(signatureText) as SentinelSignature;
  } catch {
    throw new IntegrityError(`backup ${name}: its signature file is not JSON; refusing it`);
  }
  const expectedId = keyId(publicKey);
  if (sig?.format !== SIGNATURE_FORMAT || sig.algorithm !== 'ed25519' || typeof sig.signature !== 'string') throw new IntegrityError(`backup ${name}: its signature file is malformed; refusing it`);
  if (sig.key_id !== expectedId) throw new IntegrityError(`backup ${name} is signed by key ${String(sig.key_id).slice(0, 16)}..., not by the verify key ${expectedId.slice(0, 16)}...; refusing it`);
  if (!verify(null, sentinelBytes, publicKey, Buffer.from(sig.signature, 'base64'))) throw new IntegrityError(`backup ${name}: the signature does not match its sentinel (altered after signing, or forged); refusing it`);
}
