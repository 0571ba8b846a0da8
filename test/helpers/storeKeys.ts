/**
 * What a test store holds, read behind walts' back (file: the directory tree without side files and
 * temp files; s3: ListObjectsV2 page by page).
 */
import { promises as fsp } from 'node:fs';
import { join, relative } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { rawS3Client } from './s3server';
import type { TestStore } from './stores';

/** Every key in the store under the walts prefix, sorted (read behind walts' back). */
export async function storeKeysUnder(store: TestStore, prefix: string): Promise<string[]> {
  if (store.kind === 'file') {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (!e.name.endsWith('.meta.json') && !e.name.startsWith('.tmp.')) out.push(relative(store.dir, p));
      }
    };
    await walk(store.dir);
    return out.sort();
  }
  const client = rawS3Client(store.s3!.endpoint);
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: store.s3!.bucket, Prefix: `${prefix}/`, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.push(o.Key!.slice(prefix.length + 1));
    token = page.NextContinuationToken;
  } while (token);
  client.destroy();
  return out.sort();
}
