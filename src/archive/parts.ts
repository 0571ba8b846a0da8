/** Reading the parts of a base backup (volumes, manifest) back, verified against the sentinel. */
import { splitCodecSuffix } from '../codec/chain';
import type { StoredPart } from '../backup/sentinel';
import type { Deps } from '../deps';
import { IntegrityError, NotFoundError } from '../errors';
import { decodeObject } from './decode';

/**
 * Downloads and decodes one stored part, handing the plain stream to `consume`, then checks the
 * stored size and the plain SHA-256 recorded in the sentinel: a truncated or altered object fails.
 * Failures are classified by `decodeObject` (a full disk under `consume` is not "damaged").
 */
export async function readPart(deps: Deps, part: StoredPart, signal: AbortSignal | undefined, consume: (plain: AsyncIterable<Buffer>) => Promise<void>, options: { offload?: boolean } = {}): Promise<void> {
  const obj = await deps.storage.get(part.key, { signal }).catch((err: unknown) => {
    // The sentinel says this part exists: its absence is damage to the backup, not "no such backup".
    if (err instanceof NotFoundError) throw new IntegrityError(`${part.key} is missing from the store: the backup is damaged`, { cause: err });
    throw err;
  });
  const codecs = splitCodecSuffix(part.key.slice(part.key.lastIndexOf('/') + 1)).codecs;
  // Volumes stream through decryption: every file is checked against the manifest, the whole volume
  // against the sentinel, and pg_control only goes in place after all of that passed. The sentinel's
  // record is the volume's `expected` plain facts, so the LZ4 decoder skips its xxHash32 content
  // checksum, which covers the same plain bytes as the volume's SHA-256 (decode.ts `expected`
  // says why that loses nothing; it was a third of the codec worker's time in a restore). Not with
  // OpenPGP: there the frame's checksum at the end of the LZ4 stream is what tells damaged bytes as
  // damage (integrity, exit 3) before OpenPGP's own end-of-message check reports a modification.
  const expected = codecs.includes('pgp') ? undefined : { sha256: part.sha256, size: part.size };
  const decoded = await decodeObject(deps, obj, codecs, consume, { signal, unauthenticatedStream: true, offload: options.offload, ...(expected ? { expected } : {}) });
  if (decoded.storedBytes !== part.stored_size || decoded.plainBytes !== part.size || decoded.sha256 !== part.sha256) {
    throw new IntegrityError(`${part.key}: stored object does not match the backup's record (size or SHA-256 differs): the backup is damaged`);
  }
}
