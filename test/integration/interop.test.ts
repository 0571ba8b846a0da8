/**
 * Acceptance: objects walts writes decode with the stock tools (`gpg --decrypt | lz4 -d`), and
 * objects made by hand with `lz4 | gpg --encrypt` are fetched by walts. The real gpg (2.2) and lz4
 * command-line tools are the independent decoder and encoder; a real segment from initdb is the data.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { rawS3Client } from '../helpers/s3server';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeGpgKeys, type GpgKeys } from '../helpers/gpg';
import { trackClusters, type Cluster } from '../helpers/pg';
import { runOk, runWalts } from '../helpers/run';
import { startStore, type TestStore } from '../helpers/stores';

const SEG = '000000010000000000000001';
const KEY = `walts_v1/wal/0000000100000000/${SEG}.lz4.pgp`;

describe('interop with stock gpg and lz4', () => {
  const reg = trackClusters();
  let keys: GpgKeys;
  let cluster: Cluster;
  let work: string;
  let segment: Buffer;

  beforeAll(async () => {
    keys = await makeGpgKeys({ passphrase: 'interop pass', algo: 'rsa3072' });
    cluster = await reg.createCluster({ name: 'interop' });
    work = await reg.tempDir('work');
    segment = readFileSync(join(cluster.dataDir, 'pg_wal', SEG)); // a real, initdb-written segment
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await keys?.cleanup();
  });

  async function gpgLz4Decode(objectBytes: Buffer): Promise<Buffer> {
    const enc = join(work, 'obj.lz4.pgp');
    writeFileSync(enc, objectBytes);
    await keys.decrypt(enc, join(work, 'obj.lz4'));
    await runOk('lz4', ['-d', '-f', '-q', join(work, 'obj.lz4'), join(work, 'obj')]);
    return readFileSync(join(work, 'obj'));
  }

  describe.each(['file', 's3'] as const)('%s store', (kind) => {
    let store: TestStore;
    beforeAll(async () => {
      store = await startStore(kind, reg, `interop-${kind}`);
    });
    afterAll(async () => store?.stop());

    async function readObject(key: string): Promise<Buffer> {
      if (kind === 'file') return readFileSync(join(store.dir, key));
      const client = rawS3Client(store.env['WALTS_S3_ENDPOINT'] ?? '');
      const out = await client.send(new GetObjectCommand({ Bucket: store.s3?.bucket, Key: `interop-${kind}/${key}` }));
      const bytes = Buffer.from(await out.Body!.transformToByteArray());
      client.destroy();
      return bytes;
    }

    it('an archived segment decodes with gpg --decrypt | lz4 -d to the original bytes', async () => {
      const pgdata = join(work, `pgdata-${kind}`);
      mkdirSync(join(pgdata, 'pg_wal'), { recursive: true });
      copyFileSync(join(cluster.dataDir, 'pg_wal', SEG), join(pgdata, 'pg_wal', SEG));
      const r = await runWalts(['wal-push', `pg_wal/${SEG}`], { ...store.env, WALTS_PGP_PUBLIC_KEY: keys.publicKeyPath }, { cwd: pgdata });
      expect(r.stderr).toContain('"outcome":"uploaded"');
      expect(r.code).toBe(0);
      const stored = await readObject(KEY);
      expect(stored.includes(segment.subarray(0, 64))).toBe(false); // encrypted, not plaintext
      expect((await gpgLz4Decode(stored)).equals(segment)).toBe(true);
    });

    it('an object made by hand with lz4 | gpg --encrypt is fetched by walts', async () => {
      const name = '000000010000000000000002';
      // Same bytes as a segment at position 2: patch the page address so the header matches the name.
      const seg2 = Buffer.from(segment);
      seg2.writeBigUInt64LE(2n * BigInt(segment.length), 8);
      writeFileSync(join(work, 'seg2'), seg2);
      await runOk('lz4', ['-f', '-q', join(work, 'seg2'), join(work, 'seg2.lz4')]);
      await keys.encrypt(join(work, 'seg2.lz4'), join(work, 'seg2.lz4.pgp'));
      const objKey = `walts_v1/wal/0000000100000000/${name}.lz4.pgp`;
      if (kind === 'file') {
        mkdirSync(join(store.dir, 'walts_v1/wal/0000000100000000'), { recursive: true });
        copyFileSync(join(work, 'seg2.lz4.pgp'), join(store.dir, objKey));
      } else {
        const { PutObjectCommand } = await import('@aws-sdk/client-s3');
        const client = rawS3Client(store.env['WALTS_S3_ENDPOINT'] ?? '');
        await client.send(new PutObjectCommand({ Bucket: store.s3?.bucket, Key: `interop-${kind}/${objKey}`, Body: readFileSync(join(work, 'seg2.lz4.pgp')) }));
        client.destroy();
      }
      const dest = join(work, `fetched-${kind}`);
      const r = await runWalts(['wal-fetch', name, dest], { ...store.env, WALTS_PGP_PRIVATE_KEY: keys.privateKeyPath, WALTS_PGP_PASSPHRASE_FILE: keys.passphraseFile ?? '' });
      expect(r.stderr).toContain('"digest_verified":false');
      expect(r.code).toBe(0);
      expect(readFileSync(dest).equals(seg2)).toBe(true);
    });
  });
});
