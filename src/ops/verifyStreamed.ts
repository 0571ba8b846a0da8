/**
 * verify's view of streamed WAL: how far the WAL a receiver (`walts wal-receive`) holds in part
 * reaches, per slot, and whether that partial would be served by a restore (wal-fetch checks the
 * same: walFetchPartial.ts). Complete segments a receiver archived are in wal/ like pushed ones and
 * are verified with them.
 */
import type { ClusterRecord } from '../archive/cluster';
import { decodeObject } from '../archive/decode';
import { completeFacts } from '../archive/objectMeta';
import { headPartials, listReceivedPartials, newestPerSlot } from '../archive/receivedPartials';
import type { Deps } from '../deps';
import { describeError } from '../errors';
import { LONG_HEADER_SIZE } from '../postgres/walHeader';
import { formatLsn, parseSegmentName, parseWalFileName, segmentStartLsn } from '../postgres/walName';
import { checkPartial } from './walFetchPartial';

export interface StreamedReport {
  readonly slot: string;
  readonly segment: string;
  readonly key: string;
  /** Bytes of the segment received (the recorded size), when the object carries its record. */
  readonly bytes?: number;
  /** LSN just after them: how far the streamed WAL reaches. */
  readonly end_lsn?: string;
  /** Seconds since the store last wrote it. */
  readonly age_s?: number;
  /** The complete segment is archived too (the partial is a leftover the receiver did not remove). */
  readonly complete_archived: boolean;
  /** Why a restore would not use it; undefined when it verifies. */
  readonly problem?: string;
}

export async function verifyStreamed(
  deps: Deps,
  opts: { deep: boolean; segmentSize: number; cluster?: ClusterRecord; nowMs: number; archived: ReadonlySet<string>; signal?: AbortSignal },
): Promise<StreamedReport[]> {
  const newest = await headPartials(deps.storage, newestPerSlot(await listReceivedPartials(deps.storage, opts.signal)), opts.signal);
  const reports: StreamedReport[] = [];
  for (const p of newest) {
    const base = {
      slot: p.slot,
      segment: p.segment,
      key: p.key,
      complete_archived: opts.archived.has(p.segment),
      ...(p.lastModifiedMs !== undefined ? { age_s: Math.max(0, Math.round((opts.nowMs - p.lastModifiedMs) / 1000)) } : {}),
    };
    if (!p.facts) {
      reports.push({ ...base, problem: 'torn or without walts metadata (its size does not match its record): a restore skips it' });
      continue;
    }
    const start = segmentStartLsn(parseSegmentName(p.segment, opts.segmentSize), opts.segmentSize);
    const facts = { ...base, bytes: p.facts.size, end_lsn: formatLsn(start + BigInt(p.facts.size)) };
    let problem: string | undefined;
    if (opts.deep) problem = await deepCheck(deps, p.key, p.segment, p.codecs, opts.cluster, opts.signal);
    reports.push(problem === undefined ? facts : { ...facts, problem });
  }
  return reports;
}

/** Downloads and decodes the partial as wal-fetch would; the reason it would be skipped, if any. */
async function deepCheck(deps: Deps, key: string, segment: string, codecs: readonly string[], cluster: ClusterRecord | undefined, signal?: AbortSignal): Promise<string | undefined> {
  try {
    const obj = await deps.storage.get(key, { signal });
    const facts = completeFacts(obj);
    if (!facts) {
      obj.body.destroy();
      return 'torn or rewritten while read (its size does not match its record)';
    }
    const decoded = await decodeObject(deps, obj, codecs, async (s) => {
      for await (const _ of s) void _;
    }, { signal, headBytes: LONG_HEADER_SIZE, expected: facts });
    checkPartial(parseWalFileName(segment)!, key, decoded.plainBytes, decoded.head, cluster);
    return undefined;
  } catch (err) {
    return describeError(err);
  }
}
