import { readFileSync } from 'node:fs';
import { Duplex, PassThrough, Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type * as OpenPGP from 'openpgp';
import { ConfigError, CryptoError } from '../errors';
import type { Codec, DecodeOptions } from './codec';

// openpgp is loaded on first use: wal-push without encryption should not pay its start-up cost.
let openpgpModule: typeof OpenPGP | undefined;
function openpgp(): typeof OpenPGP {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (openpgpModule ??= require('openpgp') as typeof OpenPGP);
}

/**
 * What walts writes is what GnuPG 2.2 reads: a v4 public-key encrypted session key and a
 * SEIPD v1 packet (AES-256, with MDC), no OpenPGP compression (LZ4 ran before), binary format.
 * SEIPD v2 / AEAD (RFC 9580) would lock out gpg 2.2, so `aeadProtect` stays off.
 */
const WRITE_CONFIG: Partial<OpenPGP.Config> = { aeadProtect: false };

/** Key sources, loaded on first use: a command that never meets a `.pgp` object never reads a key. */
export interface PgpKeys {
  /** Recipients: everything written is encrypted to all of them. */
  readonly encryptionKeys?: () => Promise<OpenPGP.PublicKey[]>;
  /** Unlocked private keys, for reading. */
  readonly decryptionKeys?: () => Promise<OpenPGP.PrivateKey[]>;
}

export function pgpCodec(keys: PgpKeys): Codec {
  return {
    name: 'pgp',
    encoder: () => encryptStream(keys),
    decoder: (options?: DecodeOptions) => decryptStream(keys, options?.unauthenticatedStream === true),
  };
}

function encryptStream(keys: PgpKeys): Duplex {
  const input = new PassThrough();
  const output = new PassThrough();
  const pgp = openpgp();
  void (async () => {
    const encryptionKeys = await keys.encryptionKeys?.();
    if (!encryptionKeys?.length) throw new ConfigError('WALTS_PGP_PUBLIC_KEY is required to write encrypted objects');
    const message = await pgp.createMessage({ binary: Readable.toWeb(input) as unknown as ReadableStream<Uint8Array> });
    const encrypted = (await pgp.encrypt({ message, encryptionKeys, format: 'binary', config: WRITE_CONFIG })) as unknown;
    await pipeWeb(encrypted as WebReadableStream<Uint8Array>, output);
  })().catch((err: unknown) => {
    input.resume();
    output.destroy(err instanceof ConfigError ? err : new CryptoError(`OpenPGP encryption failed: ${(err as Error).message}`, { cause: err }));
  });
  return Duplex.from({ writable: input, readable: output });
}

function decryptStream(keys: PgpKeys, unauthenticatedStream: boolean): Duplex {
  const input = new PassThrough();
  const output = new PassThrough();
  const pgp = openpgp();
  void (async () => {
    const decryptionKeys = await keys.decryptionKeys?.();
    if (!decryptionKeys?.length) {
      throw new ConfigError('object is OpenPGP-encrypted: set WALTS_PGP_PRIVATE_KEY (and WALTS_PGP_PASSPHRASE_FILE if the key is protected)');
    }
    const message = await pgp.readMessage({ binaryMessage: Readable.toWeb(input) as unknown as ReadableStream<Uint8Array> });
    const { data } = await pgp.decrypt({
      message,
      decryptionKeys,
      format: 'binary',
      // By default no plaintext is released before the integrity check at the end of the message.
      config: { allowUnauthenticatedStream: unauthenticatedStream },
    });
    await pipeWeb(data as unknown as WebReadableStream<Uint8Array>, output);
  })().catch((err: unknown) => {
    input.resume(); // drain so the upstream pipeline is not left waiting on backpressure
    output.destroy(err instanceof ConfigError || err instanceof CryptoError ? err : new CryptoError(`cannot decrypt: ${(err as Error).message}`, { cause: err }));
  });
  return Duplex.from({ writable: input, readable: output });
}

async function pipeWeb(source: WebReadableStream<Uint8Array>, output: PassThrough): Promise<void> {
  for await (const chunk of source) {
    if (!output.write(chunk)) await new Promise((resolve) => output.once('drain', resolve));
  }
  output.end();
}

/** Reads public keys (armored or binary) from a file: one or more recipients. */
export async function loadPublicKeys(path: string, setting = 'WALTS_PGP_PUBLIC_KEY'): Promise<OpenPGP.PublicKey[]> {
  const bytes = readKeyFile(path, setting);
  const pgp = openpgp();
  try {
    const keys = isArmored(bytes)
      ? await pgp.readKeys({ armoredKeys: bytes.toString('utf8') })
      : await pgp.readKeys({ binaryKeys: bytes });
    const publics = keys.map((k) => k.toPublic());
    for (const key of publics) {
      // Fails early, on the DB host, instead of producing objects nobody can read.
      await key.getEncryptionKey().catch((err: unknown) => {
        throw new ConfigError(`${setting}: key ${key.getKeyID().toHex()} cannot encrypt: ${(err as Error).message}`);
      });
    }
    return publics;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${setting}: ${path} is not an OpenPGP public key (${(err as Error).message})`);
  }
}

/** Reads private keys (armored or binary) and unlocks them with the passphrase when they are protected. */
export async function loadPrivateKeys(path: string, passphrase: string | undefined): Promise<OpenPGP.PrivateKey[]> {
  const bytes = readKeyFile(path, 'WALTS_PGP_PRIVATE_KEY');
  const pgp = openpgp();
  let keys: OpenPGP.PrivateKey[];
  try {
    keys = isArmored(bytes)
      ? await pgp.readPrivateKeys({ armoredKeys: bytes.toString('utf8') })
      : await pgp.readPrivateKeys({ binaryKeys: bytes });
  } catch (err) {
    throw new ConfigError(`WALTS_PGP_PRIVATE_KEY: ${path} is not an OpenPGP private key (${(err as Error).message})`);
  }
  return Promise.all(
    keys.map(async (key) => {
      if (key.isDecrypted()) return key;
      if (passphrase === undefined) {
        throw new ConfigError('WALTS_PGP_PRIVATE_KEY is passphrase-protected: set WALTS_PGP_PASSPHRASE_FILE or WALTS_PGP_PASSPHRASE');
      }
      try {
        return await pgp.decryptKey({ privateKey: key, passphrase });
      } catch {
        // The library's message is fine, but make sure nothing near the passphrase is echoed.
        throw new CryptoError(`WALTS_PGP_PRIVATE_KEY: wrong passphrase for key ${key.getKeyID().toHex()}`);
      }
    }),
  );
}

function readKeyFile(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function isArmored(bytes: Buffer): boolean {
  return bytes.subarray(0, 200).toString('latin1').includes('-----BEGIN PGP');
}
