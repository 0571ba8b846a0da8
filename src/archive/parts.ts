/** Reading the parts of a base backup (volumes, manifest) back, verified against the sentinel. */
import { splitCodecSuffix } from '../codec/chain';
import type { StoredPart } from '../backup/sentinel';
import type { Deps } from '../deps';
import { IntegrityError, NotFoundError, WaltsError } from '../errors';
import { DigestStream, pipeStages } from '../util/streams';

/**
 * Downloads and decodes one stored part, handing the plain stream to `consume`, then checks the
 * stored size and the plain SHA-256 recorded in the sentinel: a truncated or altered object fails.
 */
export async function readPart(deps: Deps, part: StoredPart, signal: AbortSignal | undefined, consume: (plain: AsyncIterable<Buffer>) => Promise<void>): Promise<void> {
  const obj = await deps.storage.get(part.key, { signal }).catch((err: unknown) => {
    // The sentinel says this part exists: its absence is damage to the backup, not "no such backup".
    if (err instanceof NotFoundError) throw new IntegrityError(`${part.key} is missing from the store: the backup is damaged`, { cause: err });
    throw err;
  });
  const codecs = splitCodecSuffix(part.key.slice(part.key.lastIndexOf('/') + 1)).codecs;
  const stored = new DigestStream();
  const plain = new DigestStream();
  // Volumes stream through decryption: every file is checked against the manifest, the whole volume
  // against the sentinel, and pg_control only goes in place after all of that passed.
  const decoders = deps.codecs.decoders(codecs, { unauthenticatedStream: true });
  // The consumer's own failure (a file that does not match, a full disk) is the cause; the pipeline
  // then reports the premature close of the streams it tore down, which must not hide it.
  let consumerError: unknown;
  const consumer = async (s: AsyncIterable<Buffer>) => {
    try {
      await consume(s);
    } catch (err) {
      consumerError ??= err;
      throw err;
    }
  };
  try {
    await pipeStages([obj.body, stored, ...decoders, plain, consumer], signal);
  } catch (caught) {
    const err = consumerError instanceof WaltsError ? consumerError : caught;
    if (err instanceof WaltsError && err.kind !== 'integrity' && err.kind !== 'crypto') throw err;
    if ((err as Error).name === 'AbortError') throw err;
    throw new IntegrityError(`${part.key}: ${(err as Error).message}`, { cause: err });
  }
  if (stored.bytes !== part.stored_size || plain.bytes !== part.size || plain.digest() !== part.sha256) {
    throw new IntegrityError(`${part.key}: stored object does not match the backup's record (size or SHA-256 differs): the backup is damaged`);
  }
}

