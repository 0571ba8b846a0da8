/** Reading WAL objects into memory or a hash (for history files and deep verification). */
import { IntegrityError } from '../errors';
import type { Deps } from '../deps';
import { readAll } from '../util/streams';
import { checkRecordedFacts, decodeObject } from './decode';
import { parseWalKey } from './layout';
import { completeFacts } from './objectMeta';

/**
 * Decodes the object at `key` and checks it against the digest and size recorded with it.
 * Returns the plain bytes when `keep` (small objects: history files), else only the facts.
 */
export async function readWalObject(deps: Deps, key: string, keep: boolean, signal?: AbortSignal): Promise<{ data?: Buffer; sha256: string; size: number; verified: boolean }> {
  const parsed = parseWalKey(key);
  if (!parsed) throw new IntegrityError(`${key} is not a WAL object key`);
  const obj = await deps.storage.get(key, { signal });
  let data: Buffer | undefined;
  const decoded = await decodeObject(deps, obj, parsed.codecs, async (s) => {
    if (keep) data = await readAll(s, 64 << 20);
    else for await (const _ of s) void _;
  }, { signal, expected: completeFacts(obj) });
  const verified = checkRecordedFacts(obj, decoded);
  return { data, sha256: decoded.sha256, size: decoded.plainBytes, verified };
}
