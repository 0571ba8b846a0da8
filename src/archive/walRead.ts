/** Reading WAL objects into memory or a hash (for history files and deep verification). */
import { CryptoError, IntegrityError, WaltsError } from '../errors';
import type { Deps } from '../deps';
import { DigestStream, pipeStages, readAll } from '../util/streams';
import { completeFacts } from './objectMeta';
import { parseWalKey } from './layout';

/**
 * Decodes the object at `key` and checks it against the digest and size recorded with it.
 * Returns the plain bytes when `keep` (small objects: history files), else only the facts.
 */
export async function readWalObject(deps: Deps, key: string, keep: boolean, signal?: AbortSignal): Promise<{ data?: Buffer; sha256: string; size: number; verified: boolean }> {
  const parsed = parseWalKey(key);
  if (!parsed) throw new IntegrityError(`${key} is not a WAL object key`);
  const obj = await deps.storage.get(key, { signal });
  const plain = new DigestStream();
  let data: Buffer | undefined;
  try {
    await pipeStages([obj.body, ...deps.codecs.decoders(parsed.codecs), plain, async (s: AsyncIterable<Buffer>) => {
      if (keep) data = await readAll(s, 64 << 20);
      else for await (const _ of s) void _;
    }], signal);
  } catch (err) {
    if (err instanceof WaltsError && err.kind !== 'integrity' && !(err instanceof CryptoError)) throw err;
    throw new IntegrityError(`${key}: cannot decode (${(err as Error).message})`, { cause: err });
  }
  const facts = completeFacts(obj);
  const sha256 = plain.digest();
  if (facts && (facts.sha256 !== sha256 || facts.size !== plain.bytes)) {
    throw new IntegrityError(`${key}: decoded content does not match the recorded SHA-256/size (corrupt object)`);
  }
  return { data, sha256, size: plain.bytes, verified: facts !== undefined };
}
