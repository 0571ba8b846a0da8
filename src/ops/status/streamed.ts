/**
 * Status of streamed WAL: per receiver slot, the newest segment in progress in the store
 * (`receive/<slot>/`), from the listing status already made plus one HEAD per slot for the recorded
 * size. Not verified here (verify downloads it); a torn object shows as such.
 */
import { completeFacts } from '../../archive/objectMeta';
import { newestPerSlot } from '../../archive/receivedPartials';
import { formatLsn, parseSegmentName, segmentStartLsn } from '../../postgres/walName';
import type { ReceivedObject } from '../../retention/policy';
import type { Storage } from '../../storage/storage';
import type { StreamedWal } from './report';
import { ageSeconds } from './window';

export async function streamedStatus(storage: Storage, received: readonly ReceivedObject[], segmentSize: number, nowMs: number, signal?: AbortSignal): Promise<{ streamed?: StreamedWal[] }> {
  if (received.length === 0) return {};
  const newest = newestPerSlot(received.map((r) => ({ ...r, codecs: r.codecs ?? [], storedSize: r.storedSize ?? 0 })));
  const streamed = await Promise.all(
    newest.map(async (p): Promise<StreamedWal> => {
      const info = await storage.head(p.key, { signal });
      const facts = info ? completeFacts(info) : undefined;
      const start = segmentStartLsn(parseSegmentName(p.segment, segmentSize), segmentSize);
      const at = info?.lastModified?.getTime() ?? p.lastModifiedMs;
      return {
        slot: p.slot,
        segment: p.segment,
        bytes: facts ? facts.size : null,
        end_lsn: facts ? formatLsn(start + BigInt(facts.size)) : null,
        stored_at: at === undefined ? null : new Date(at).toISOString(),
        age_seconds: at === undefined ? null : ageSeconds(nowMs, at),
      };
    }),
  );
  return { streamed };
}
