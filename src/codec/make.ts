import type { Config } from '../config';
import { CodecSet } from './chain';
import type { Codec } from './codec';
import { lz4Codec } from './lz4';
import { zstdCodec } from './zstd';
import { loadPrivateKeys, loadPublicKeys, pgpCodec } from './pgp';

/** What a codec set is made from: plain data, so a worker thread can make the same set. */
export type CodecSpec = Pick<Config, 'compression' | 'pgp'>;

/** The codecs of a configuration: its write chain (lz4 or zstd, then OpenPGP), and every codec for reading. */
export function makeCodecs(config: CodecSpec): CodecSet {
  const { publicKeyPath, privateKeyPath, passphrase } = config.pgp;
  const pgp = pgpCodec({
    encryptionKeys: publicKeyPath ? memo(() => loadPublicKeys(publicKeyPath)) : undefined,
    decryptionKeys: privateKeyPath ? memo(() => loadPrivateKeys(privateKeyPath, passphrase)) : undefined,
  });
  const write: Codec[] = [];
  if (config.compression === 'lz4') write.push(lz4Codec);
  if (config.compression === 'zstd') write.push(zstdCodec);
  if (publicKeyPath) write.push(pgp);
  return new CodecSet(write, [lz4Codec, zstdCodec, pgp], { compression: config.compression, pgp: { ...config.pgp } });
}

function memo<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}
