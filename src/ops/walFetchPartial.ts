/**
 * wal-fetch's last resort for a segment the archive does not hold complete: the segment a receiver
 * (`walts wal-receive`) is still streaming, kept as `receive/<slot>/<segment>.partial<codecs>`
 * (receivedPartials.ts). Only the synchronous wal-fetch comes here, after the store's real "not
 * found" for the complete segment; the prefetcher never does (a partial grows: a spooled copy would
 * go stale), see docs/streaming.md "Restoring with streamed WAL".
 *
 * Rules:
 * - only a segment name (never .history, .backup or .partial names);
 * - the longest candidate over all slots that verifies is served: its recorded SHA-256 and size
 *   (of the object as fetched, not as listed: it may have been rewritten in between), its long page
 *   header (page address of this segment, timeline not above the name's, the cluster's system id
 *   and segment size); a torn, mismatching or foreign one is skipped with a log line, never served;
 * - what is served is padded with zeros to the segment size, as pg_receivewal pads its .partial
 *   files: PostgreSQL's restore refuses a file of another size. It replays up to the first zero
 *   bytes and then, in archive recovery, ends recovery there;
 * - temp file beside `%p`, fsync, rename: nothing unverified ever reaches `%p`.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { readClusterRecord, type ClusterRecord, checkSameCluster } from '../archive/cluster';
import { decodeObject } from '../archive/decode';
import { completeFacts } from '../archive/objectMeta';
import { headPartials, listReceivedPartials, rankCandidates, type HeadedPartial } from '../archive/receivedPartials';
import type { Deps } from '../deps';
import { ConfigError, describeError, NotFoundError, UnavailableError } from '../errors';
import { LONG_HEADER_SIZE, parseWalSegmentHeader } from '../postgres/walHeader';
import { formatLsn, isValidSegmentSize, parseSegmentName, segmentStartLsn, type WalFileName } from '../postgres/walName';
import { tempName } from './walFetchTemp';

export interface ServedPartial {
  readonly key: string;
  readonly slot: string;
  /** Bytes received (the verified content), before padding. */
  readonly receivedBytes: number;
  /** The segment size the file was padded to. */
  readonly segmentSize: number;
  /** LSN just after the received bytes. */
  readonly endLsn: string;
  readonly storedBytes: number;
  /** SHA-256 of the received bytes (the recorded one). */
  readonly sha256: string;
}

/**
 * Serves the best received partial of `name` at `dest`. Undefined when none verifies (or there is
 * none); 'vanished' when a candidate disappeared between the listing and the download (the
 * receiver archived the complete segment meanwhile: the caller asks for that again).
 */
export async function serveReceivedPartial(deps: Deps, name: WalFileName, dest: string, signal?: AbortSignal): Promise<ServedPartial | 'vanished' | undefined> {
  if (name.kind !== 'segment') return undefined;
  const mine = (await listReceivedPartials(deps.storage, signal)).filter((p) => p.segment === name.name);
  if (mine.length === 0) return undefined;
  const { usable, unusable } = rankCandidates(await headPartials(deps.storage, mine, signal), name.name);
  for (const u of unusable) deps.log.warn({ wal: name.name, key: u.key }, 'skipped a received partial that walts cannot vouch for (torn or rewritten while read, or without its record)');
  const cluster = await readClusterRecord(deps.storage, signal);
  let vanished = false;
  for (const c of usable) {
    try {
      return await serveOne(deps, name, c, dest, cluster, signal);
    } catch (err) {
      if (err instanceof NotFoundError) {
        vanished = true;
        continue;
      }
      // Store trouble, a full disk, no private key: not the candidate's fault, so not skipped.
      if (err instanceof ConfigError || err instanceof UnavailableError || (err as Error).name === 'AbortError') throw err;
      deps.log.warn({ wal: name.name, key: c.key, err: describeError(err) }, 'skipped a received partial that does not verify; trying the next one');
    }
  }
  return vanished ? 'vanished' : undefined;
}

async function serveOne(deps: Deps, name: WalFileName, c: HeadedPartial, dest: string, cluster: ClusterRecord | undefined, signal?: AbortSignal): Promise<ServedPartial> {
  const obj = await deps.storage.get(c.key, { signal });
  obj.body.on('error', () => {});
  // The object as fetched must be whole and carry its record: it may differ from the one listed.
  const facts = completeFacts(obj);
  if (!facts) {
    obj.body.destroy();
    throw new PartialProblem(`${c.key} is torn or was rewritten while read (its size does not match its record)`);
  }
  const tmp = join(dirname(dest), tempName(basename(dest), randomBytes(4).toString('hex')));
  const handle = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600).catch((err: NodeJS.ErrnoException) => {
    obj.body.destroy();
    throw new UnavailableError(`cannot create ${tmp}: ${err.code ?? err.message}`, { transient: false, cause: err });
  });
  let renamed = false;
  try {
    const decoded = await decodeObject(deps, obj, c.codecs, handle.createWriteStream(), { signal, headBytes: LONG_HEADER_SIZE, expected: facts });
    const segmentSize = checkPartial(name, c.key, decoded.plainBytes, decoded.head, cluster);
    const fh = await fsp.open(tmp, 'r+');
    try {
      await fh.truncate(segmentSize); // the zeros PostgreSQL reads as the end of the WAL
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, dest);
    renamed = true;
    const endLsn = segmentStartLsn(parseSegmentName(name.name, segmentSize), segmentSize) + BigInt(decoded.plainBytes);
    return { key: c.key, slot: c.slot, receivedBytes: decoded.plainBytes, segmentSize, endLsn: formatLsn(endLsn), storedBytes: decoded.storedBytes, sha256: decoded.sha256 };
  } finally {
    if (!renamed) await fsp.rm(tmp, { force: true });
  }
}

/** A candidate that must not be served (it is skipped, not an error of the command). */
class PartialProblem extends Error {}

/**
 * What the received bytes must be to be served as `name`: the start of that very segment (page
 * address), of this cluster (system id, segment size), of the name's timeline or an earlier one
 * (see walFetch.ts segmentProblem), and no longer than a segment. Returns the segment size.
 */
export function checkPartial(name: WalFileName, key: string, size: number, head: Buffer, cluster: ClusterRecord | undefined): number {
  const header = parseWalSegmentHeader(head);
  if (typeof header === 'string') throw new PartialProblem(`${key}: ${header}`);
  if (!isValidSegmentSize(header.segmentSize)) throw new PartialProblem(`${key}: the header names ${header.segmentSize}-byte segments, not a WAL segment size`);
  if (cluster) {
    try {
      checkSameCluster(cluster, header, key);
    } catch (err) {
      throw new PartialProblem((err as Error).message);
    }
  }
  if (size < LONG_HEADER_SIZE || size > header.segmentSize) throw new PartialProblem(`${key}: ${size} bytes received, not between a page header and a segment (${header.segmentSize})`);
  if (header.pageAddress !== segmentStartLsn(parseSegmentName(name.name, header.segmentSize), header.segmentSize)) throw new PartialProblem(`${key}: the received bytes are not the start of ${name.name} (page address)`);
  if (header.timeline > name.timeline) throw new PartialProblem(`${key}: the segment header is of timeline ${header.timeline}, later than its name's (${name.timeline})`);
  return header.segmentSize;
}
