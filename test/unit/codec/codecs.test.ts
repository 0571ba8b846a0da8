import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import * as openpgp from 'openpgp';
import { CodecSet, lz4Codec } from '../../../src/codec/chain';
import { loadPrivateKeys, loadPublicKeys, pgpCodec } from '../../../src/codec/pgp';
import { CryptoError, UsageError } from '../../../src/errors';
import { pipeStages, readAll } from '../../../src/util/streams';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

async function through(stages: unknown[], input: Buffer): Promise<Buffer> {
  let out: Buffer = Buffer.alloc(0);
  await pipeStages([Readable.from([input]), ...stages, async (s: AsyncIterable<Buffer>) => void (out = await readAll(s))]);
  return out;
}

const sample = Buffer.concat([Buffer.from('walts '.repeat(200_000)), randomBytes(100_000)]);

describe('codecs', () => {
  let dir: string;
  let pub: string;
  let priv: string;
  let otherPriv: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'walts-codec-'));
    const k = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 't' }], passphrase: 'secret words', format: 'armored' });
    const other = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'o' }], format: 'armored' });
    writeFileSync((pub = join(dir, 'pub.asc')), k.publicKey);
    writeFileSync((priv = join(dir, 'priv.asc')), k.privateKey);
    writeFileSync((otherPriv = join(dir, 'other.asc')), other.privateKey);
  });

  it('lz4 round-trips and compresses', async () => {
    const enc = await through([lz4Codec.encoder()], sample);
    expect(enc.length).toBeLessThan(sample.length / 2);
    expect(enc.readUInt32LE(0)).toBe(0x184d2204); // LZ4 frame magic
    expect((await through([lz4Codec.decoder()], enc)).equals(sample)).toBe(true);
  });

  // Byte-for-byte identity with the lz4 package's encoder: test/unit/codec/lz4FrameEncoder.test.ts.

  it('lz4 refuses a corrupted frame', async () => {
    const enc = await through([lz4Codec.encoder()], sample);
    enc.writeUInt8(enc.readUInt8(enc.length - 2) ^ 0xff, enc.length - 2); // inside the content checksum
    await expect(through([lz4Codec.decoder()], enc)).rejects.toThrow(/checksum/i);
  });

  it('pgp round-trips through lz4 + encryption with a passphrase-protected key', async () => {
    const codec = pgpCodec({ encryptionKeys: () => loadPublicKeys(pub), decryptionKeys: () => loadPrivateKeys(priv, 'secret words') });
    const set = new CodecSet([lz4Codec, codec], [lz4Codec, codec]);
    expect(set.writeSuffix).toBe('.lz4.pgp');
    const enc = await through(set.encoders(), sample);
    expect(enc.includes(Buffer.from('walts walts'))).toBe(false);
    const dec = await through(set.decoders(['lz4', 'pgp']), enc);
    expect(createHash('sha256').update(dec).digest('hex')).toBe(createHash('sha256').update(sample).digest('hex'));
  });

  it('pgp with the wrong private key fails with a CryptoError', async () => {
    const enc = await through([pgpCodec({ encryptionKeys: () => loadPublicKeys(pub) }).encoder()], sample);
    const wrong = pgpCodec({ decryptionKeys: () => loadPrivateKeys(otherPriv, undefined) });
    await expect(through([wrong.decoder()], enc)).rejects.toBeInstanceOf(CryptoError);
  });

  it('pgp refuses tampered ciphertext (integrity check)', async () => {
    const enc = await through([pgpCodec({ encryptionKeys: () => loadPublicKeys(pub) }).encoder()], sample);
    enc.writeUInt8(enc.readUInt8(enc.length - 30) ^ 0x01, enc.length - 30);
    const codec = pgpCodec({ decryptionKeys: () => loadPrivateKeys(priv, 'secret words') });
    await expect(through([codec.decoder()], enc)).rejects.toBeInstanceOf(CryptoError);
  });

  it('names the missing setting when a key is needed but not configured', async () => {
    const enc = await through([pgpCodec({ encryptionKeys: () => loadPublicKeys(pub) }).encoder()], sample);
    await expect(through([pgpCodec({}).decoder()], enc)).rejects.toThrow(/WALTS_PGP_PRIVATE_KEY/);
    await expect(loadPrivateKeys(priv, undefined)).rejects.toThrow(/WALTS_PGP_PASSPHRASE/);
    await expect(loadPrivateKeys(priv, 'wrong')).rejects.toThrow(/wrong passphrase/);
    await expect(loadPublicKeys(join(dir, 'missing.asc'))).rejects.toBeInstanceOf(UsageError);
    await expect(loadPublicKeys(priv.replace('priv', 'nope'))).rejects.toThrow(/WALTS_PGP_PUBLIC_KEY/);
  });

  it('refuses an unknown codec suffix', () => {
    expect(() => new CodecSet([], [lz4Codec]).decoders(['zst'])).toThrow(/unknown codec/);
  });
});
