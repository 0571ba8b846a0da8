/**
 * The identity record of the cluster that owns a prefix (`walts_v1/cluster.json`), written with
 * create-if-absent by `walts init --pgdata` or else by the first push of a WAL segment. Archives made
 * before `walts init` existed also keep here whether the storage service honours conditional create
 * (probed at their first push); newer archives keep that in archive.json, probed by `walts init`.
 */
import type { Logger } from 'pino';
import { IntegrityError, ObjectExistsError } from '../errors';
import type { WalSegmentHeader } from '../postgres/walHeader';
import type { Storage } from '../storage/storage';
import { readAll } from '../util/streams';
import { CLUSTER_KEY } from './layout';

export interface ClusterRecord {
  readonly format: 1;
  readonly system_identifier: string;
  readonly pg_major?: number;
  readonly wal_page_magic: number;
  readonly wal_segment_size: number;
  readonly created_at: string;
  readonly created_by: string;
  /** Result of the conditional-create probe of the service named, at creation time. */
  readonly conditional_put?: { readonly service: string; readonly honoured: boolean };
}

export async function readClusterRecord(storage: Storage, signal?: AbortSignal): Promise<ClusterRecord | undefined> {
  let obj;
  try {
    obj = await storage.get(CLUSTER_KEY, { signal });
  } catch (err) {
    if ((err as Error).name === 'NotFoundError') return undefined;
    throw err;
  }
  const text = (await readAll(obj.body, 1 << 20)).toString('utf8');
  try {
    const record = JSON.parse(text) as ClusterRecord;
    if (record.format !== 1 || typeof record.system_identifier !== 'string') throw new Error('unknown format');
    return record;
  } catch (err) {
    throw new IntegrityError(`${CLUSTER_KEY} in ${storage.description} is unreadable (${(err as Error).message}); restore it or remove it by hand`);
  }
}

/** Refuses a segment from another cluster, or of another WAL format, than the one that owns the prefix. */
export function checkSameCluster(record: ClusterRecord, header: Pick<WalSegmentHeader, 'systemIdentifier' | 'segmentSize'>, what: string): void {
  if (record.system_identifier !== header.systemIdentifier) {
    throw new IntegrityError(
      `${what} belongs to database system ${header.systemIdentifier}, but this store belongs to system ${record.system_identifier}; use a separate WALTS_STORE prefix per cluster`,
    );
  }
  if (record.wal_segment_size !== header.segmentSize) {
    throw new IntegrityError(`${what} has ${header.segmentSize}-byte segments, but this store holds ${record.wal_segment_size}-byte segments`);
  }
}

/**
 * Returns the record owning the prefix, creating it from `header` when there is none.
 * Two first pushes racing: create-if-absent lets one win, the other re-reads and compares.
 */
export async function ensureClusterRecord(
  storage: Storage,
  existing: ClusterRecord | undefined,
  header: Pick<WalSegmentHeader, 'systemIdentifier' | 'pgMajor' | 'magic' | 'segmentSize'>,
  deps: { log: Logger; host: string; now: () => Date },
): Promise<ClusterRecord> {
  if (existing) return existing;
  const record: ClusterRecord = {
    format: 1,
    system_identifier: header.systemIdentifier,
    pg_major: header.pgMajor,
    wal_page_magic: header.magic,
    wal_segment_size: header.segmentSize,
    created_at: deps.now().toISOString(),
    created_by: deps.host,
  };
  try {
    await storage.put(CLUSTER_KEY, Buffer.from(JSON.stringify(record, null, 2) + '\n'), { ifAbsent: true });
    deps.log.info({ system_identifier: record.system_identifier, store: storage.description }, 'store now belongs to this cluster');
    return record;
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    const winner = await readClusterRecord(storage);
    if (!winner) throw err;
    return winner;
  }
}

/**
 * Whether create-if-absent can be trusted alone on this store, or each create must be verified:
 * from the probe `walts init` recorded in archive.json, or the one older archives kept in cluster.json.
 */
export function conditionalCreateTrusted(storage: Storage, ...records: ReadonlyArray<{ conditional_put?: ClusterRecord['conditional_put'] } | undefined>): boolean {
  if (storage.conditionalCreate === 'enforced') return true;
  return records.some((r) => r?.conditional_put?.service === storage.description && r.conditional_put.honoured);
}
