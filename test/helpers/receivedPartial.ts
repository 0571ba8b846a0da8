/**
 * Writes what `walts wal-receive` keeps of a segment in progress (docs/storage-format.md, "Streamed
 * WAL in progress"), through the one encode path and the one metadata record: the bytes received
 * from the segment start, not padded, at `receive/<slot>/<segment>.partial<codecs>`. Tests of the
 * readers use it so that they do not depend on the receiver itself.
 */
import { Readable } from 'node:stream';
import { encodeTo } from '../../src/archive/encode';
import { receivedPartialKey } from '../../src/archive/layout';
import { objectMetadata } from '../../src/archive/objectMeta';
import type { CodecSet } from '../../src/codec/chain';
import type { Storage } from '../../src/storage/storage';

export interface WritePartialOptions {
  /** Store only the first this many bytes of the encoded object (a torn rewrite); the record stays. */
  readonly tornAt?: number;
  /** Record this SHA-256 instead of the real one (a mismatching object of the right size). */
  readonly recordSha256?: string;
}

export async function writeReceivedPartial(deps: { storage: Storage; codecs: CodecSet }, slot: string, segment: string, bytes: Buffer, options: WritePartialOptions = {}): Promise<string> {
  const key = receivedPartialKey(slot, segment, deps.codecs.writeSuffix);
  const chunks: Buffer[] = [];
  const { plain, storedBytes } = await encodeTo(deps.codecs, Readable.from([bytes]), async (encoded) => {
    for await (const c of encoded) chunks.push(Buffer.from(c));
  });
  let stored = Buffer.concat(chunks);
  if (options.tornAt !== undefined) stored = stored.subarray(0, options.tornAt);
  const sysid = bytes.length >= 32 ? bytes.readBigUInt64LE(24).toString() : undefined;
  await deps.storage.put(key, stored, { metadata: objectMetadata({ sha256: options.recordSha256 ?? plain.sha256, size: plain.size }, storedBytes, sysid) });
  return key;
}
