/**
 * How a directory store's side file (`<key>.meta.json`) is bound to the one object it describes, so
 * that metadata left by another object (a crash, an overwrite in progress, a lost race) is never
 * attributed to the wrong content. See docs/storage-format.md, "Directory stores".
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';

/**
 * Keys the directory store adds to a side file to bind it to one object: a side file describes the
 * object at its key only when these match that object (see `bound`). Never passed to callers.
 */
export const BIND = { size: 'fs-object-size', sha256: 'fs-object-sha256', ino: 'fs-object-ino' } as const;

export type ObjectStat = { size: number; ino: number };

/**
 * Whether side file `side` describes the object with `stat`. Same size and inode (link and rename
 * keep the inode) is enough; a copied store has new inodes, so then the stored bytes are hashed.
 * Side files written before bindings existed carry none and are taken as they are.
 */
export async function bound(side: Record<string, string>, stat: ObjectStat, hash: () => Promise<string>): Promise<boolean> {
  if (side[BIND.size] === undefined && side[BIND.sha256] === undefined) return true;
  if (side[BIND.size] !== String(stat.size)) return false;
  if (side[BIND.ino] === String(stat.ino)) return true;
  return side[BIND.sha256] === (await hash());
}

export function stripBinding(side: Record<string, string>): Record<string, string> {
  const out = { ...side };
  for (const k of Object.values(BIND)) delete out[k];
  return out;
}

/** SHA-256 of the object's bytes, computed at most once, from the open handle when there is one. */
export function memoHash(handle: fsp.FileHandle | undefined, path: string): () => Promise<string> {
  let p: Promise<string> | undefined;
  return () =>
    (p ??= (async () => {
      const own = handle ? undefined : await fsp.open(path, 'r');
      const h = handle ?? own!;
      try {
        const hash = createHash('sha256');
        const buf = Buffer.alloc(1 << 20);
        for (let pos = 0; ; ) {
          const { bytesRead } = await h.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) break;
          hash.update(buf.subarray(0, bytesRead));
          pos += bytesRead;
        }
        return hash.digest('hex');
      } finally {
        await own?.close();
      }
    })());
}
