/**
 * Finding what the store already holds for a WAL file name. A name may be stored under several
 * keys (one per codec chain: compression or encryption settings changed over time); all of them
 * are the same WAL file and take part in duplicate and conflict decisions.
 */
import type { WalFileName } from '../postgres/walName';
import type { ObjectInfo, Storage } from '../storage/storage';
import { parseWalKey, walVariantsPrefix } from './layout';
import { completeFacts, type PlainFacts } from './objectMeta';

export interface WalVariant {
  readonly info: ObjectInfo;
  readonly codecs: readonly string[];
  /** Set when the object is complete and carries walts' digest; undefined for ones walts cannot vouch for. */
  readonly facts?: PlainFacts;
}

/** Every stored variant of `name`, with metadata (one LIST, then one HEAD per variant found). */
export async function findWalVariants(storage: Storage, name: WalFileName, signal?: AbortSignal): Promise<WalVariant[]> {
  const keys: { key: string; codecs: string[] }[] = [];
  for await (const entry of storage.list(walVariantsPrefix(name), { signal })) {
    const parsed = parseWalKey(entry.key);
    if (parsed && parsed.name.name === name.name) keys.push({ key: entry.key, codecs: parsed.codecs });
  }
  const variants: WalVariant[][] = await Promise.all(
    keys.map(async ({ key, codecs }) => {
      const info = await storage.head(key, { signal });
      return info ? [{ info, codecs, facts: completeFacts(info) }] : [];
    }),
  );
  return variants.flat();
}

export function sameFacts(a: PlainFacts, b: PlainFacts): boolean {
  return a.sha256 === b.sha256 && a.size === b.size;
}
