/**
 * The key items, and the probe object they produce: the probe's plain bytes go through the one
 * encode path (archive/encode.ts, lz4 then OpenPGP as wal-push writes) and back through the one
 * decode path (archive/decode.ts, as wal-fetch reads), so what is proven here is what those
 * commands will do. The public key must encrypt (an encryption subkey, not expired, not revoked);
 * a private key, where given, must decrypt what the public key encrypted.
 */
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import type { ArchiveRecord } from '../../archive/archive';
import { decodeObject } from '../../archive/decode';
import { encodeTo } from '../../archive/encode';
import type { PlainFacts } from '../../archive/objectMeta';
import type { CodecSet } from '../../codec/chain';
import { makeCodecs } from '../../codec/make';
import { loadPrivateKeys, loadPublicKeys } from '../../codec/pgp';
import type { Config } from '../../config';
import { fail, message, ok, warn, type CheckItem } from './item';

export interface EncodedProbe {
  readonly plain: PlainFacts;
  readonly payload: Buffer;
  /** What the store is given (lz4 and OpenPGP applied as configured and usable). */
  readonly stored: Buffer;
  /** The key suffix of the chain applied (`.lz4.pgp`). */
  readonly suffix: string;
  readonly codecs: CodecSet;
}

export async function checkPublicKey(config: Config, record: ArchiveRecord | undefined): Promise<{ item: CheckItem; usable: boolean }> {
  const path = config.pgp.publicKeyPath;
  if (!path) {
    if (record?.encryption.method === 'openpgp') {
      return {
        usable: false,
        item: fail('public key', 'the archive is encrypted (walts_v1/archive.json) but WALTS_PGP_PUBLIC_KEY is not set: wal-push and backup-push refuse to write', "set WALTS_PGP_PUBLIC_KEY to the archive's public key file"),
      };
    }
    return { usable: false, item: ok('public key', 'WALTS_PGP_PUBLIC_KEY not set: objects are stored unencrypted') };
  }
  let fingerprints: string[];
  try {
    fingerprints = (await loadPublicKeys(path)).map((k) => k.getFingerprint().toLowerCase());
  } catch (err) {
    return {
      usable: false,
      item: fail('public key', message(err), 'use a key with a valid encryption subkey (gpg --list-keys shows [E], not expired or revoked): gpg --export KEYID > FILE, and point WALTS_PGP_PUBLIC_KEY at it'),
    };
  }
  const named = fingerprints.map((f) => f.slice(-16)).join(', ');
  const recorded = record?.encryption;
  if (recorded?.method === 'openpgp') {
    const unknown = fingerprints.filter((f) => !recorded.fingerprints.includes(f));
    if (unknown.length > 0) return { usable: true, item: warn('public key', `encrypts to ${named}, but ${unknown.map((f) => f.slice(-16)).join(', ')} is not recorded in archive.json`, 'run walts init with this key to record it (restores need every recorded private key)') };
  } else if (record) {
    return { usable: true, item: warn('public key', `encrypts to ${named}, but archive.json records the archive as unencrypted`, 'run walts init with WALTS_PGP_PUBLIC_KEY set: it records the archive as encrypted, so writers without the key are refused') };
  }
  return { usable: true, item: ok('public key', `encrypts to ${named}`) };
}

/** Encodes a small random probe with the chain that works here: the configured compression when it works, OpenPGP when the public key is usable. */
export async function encodeProbe(config: Config, compress: boolean, encrypt: boolean, privateKeyUsable: boolean): Promise<EncodedProbe> {
  const codecs = makeCodecs({
    compression: compress ? config.compression : 'none',
    pgp: { ...(encrypt ? { publicKeyPath: config.pgp.publicKeyPath } : {}), ...(privateKeyUsable ? { privateKeyPath: config.pgp.privateKeyPath, passphrase: config.pgp.passphrase } : {}) },
  });
  const payload = Buffer.concat([Buffer.from('walts check probe: safe to delete\n'), randomBytes(256)]);
  const chunks: Buffer[] = [];
  const { plain } = await encodeTo(codecs, Readable.from([payload]), async (encoded) => {
    for await (const c of encoded) chunks.push(c);
  });
  return { plain, payload, stored: Buffer.concat(chunks), suffix: codecs.writeSuffix, codecs };
}

export async function loadPrivateKey(config: Config): Promise<{ item?: CheckItem; usable: boolean }> {
  const path = config.pgp.privateKeyPath;
  if (!path) return { usable: false };
  try {
    await loadPrivateKeys(path, config.pgp.passphrase);
    return { usable: true };
  } catch (err) {
    return { usable: false, item: fail('private key', message(err), 'set WALTS_PGP_PRIVATE_KEY to the secret key file and WALTS_PGP_PASSPHRASE_FILE to its passphrase') };
  }
}

/**
 * Decodes the probe through the decode path. Returns the private key item (when a private key is
 * configured or needed) and, for an lz4-only chain, nothing: the codec item already covers it.
 */
export async function decodeProbe(config: Config, probe: EncodedProbe, privateKey: { item?: CheckItem; usable: boolean }): Promise<CheckItem | undefined> {
  if (privateKey.item) return privateKey.item;
  const encrypted = probe.suffix.endsWith('.pgp');
  if (!config.pgp.privateKeyPath) return ok('private key', 'WALTS_PGP_PRIVATE_KEY not set (needed only where restores happen: wal-fetch, backup-fetch)');
  if (!encrypted) return ok('private key', 'loads; not exercised: nothing is encrypted here (WALTS_PGP_PUBLIC_KEY unset or unusable)');
  const codecNames = probe.suffix.split('.').filter(Boolean);
  const out: Buffer[] = [];
  try {
    const decoded = await decodeObject(
      { codecs: probe.codecs },
      { key: `probe${probe.suffix}`, size: probe.stored.length, metadata: {}, body: Readable.from([probe.stored]) },
      codecNames,
      new Writable({ write: (c: Buffer, _e, done) => (out.push(c), done()) }),
    );
    if (decoded.sha256 !== probe.plain.sha256 || !Buffer.concat(out).equals(probe.payload)) throw new Error('decrypted bytes differ from the probe');
    return ok('private key', `decrypts what WALTS_PGP_PUBLIC_KEY encrypts (probe round trip through ${codecNames.join(', ')})`);
  } catch (err) {
    return fail('private key', `cannot decrypt what WALTS_PGP_PUBLIC_KEY encrypts: ${message(err)}`, 'WALTS_PGP_PRIVATE_KEY must be the secret key of WALTS_PGP_PUBLIC_KEY (compare gpg --list-keys fingerprints)');
  }
}
