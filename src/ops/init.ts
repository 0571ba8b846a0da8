/**
 * init: creates the archive deliberately, as pgBackRest's stanza-create does. No other command
 * creates one (wal-push included), so a missing, unmounted or mistyped store is an error everywhere
 * instead of an empty archive (see archive/archive.ts).
 *
 * - new location: probes conditional create (stores that may ignore it), then writes archive.json
 *   with create-if-absent; the store's root (directory, bucket) must already exist;
 * - archive made before `walts init` (cluster.json, no archive.json): adopted, archive.json written;
 * - existing archive: nothing changes (safe to run from provisioning), except that a configuration
 *   with a public key records that the archive is now encrypted (one way: never back to "none");
 * - with a cluster identity (--pgdata): the archive is claimed for that cluster now, instead of by
 *   the first wal-push; an archive owned by another cluster is refused.
 */
import { createArchiveRecord, readArchiveRecord, replaceArchiveRecord, type ArchiveEncryption, type ArchiveRecord } from '../archive/archive';
import { checkSameCluster, ensureClusterRecord, readClusterRecord } from '../archive/cluster';
import { PROBE_PREFIX } from '../archive/layout';
import type { Deps } from '../deps';
import type { ClusterIdentity } from '../postgres/controlFile';

export interface InitArgs {
  /** From the configuration: the public keys' fingerprints when WALTS_PGP_PUBLIC_KEY is set. */
  readonly encryption: ArchiveEncryption;
  /** The cluster to record as owner now (from --pgdata); otherwise the first wal-push does. */
  readonly cluster?: ClusterIdentity;
  readonly signal?: AbortSignal;
}

export interface InitResult {
  /** `created` a new archive; `adopted` one made before walts init; `exists`: it was there. */
  readonly outcome: 'created' | 'adopted' | 'exists';
  readonly record: ArchiveRecord;
  /** What changed on an archive that existed (encryption recorded, cluster claimed). */
  readonly changes: readonly string[];
  readonly systemIdentifier?: string;
}

export async function init(deps: Deps, args: InitArgs): Promise<InitResult> {
  const { storage, log } = deps;
  const [existing, cluster] = await Promise.all([readArchiveRecord(storage, args.signal), readClusterRecord(storage, args.signal)]);
  const changes: string[] = [];
  let outcome: InitResult['outcome'] = 'exists';
  let record = existing;

  if (!record) {
    const fresh: ArchiveRecord = {
      format: 1,
      created_at: deps.now().toISOString(),
      created_by: deps.host,
      walts_version: deps.version,
      encryption: args.encryption,
      conditional_put: await probe(deps, cluster?.conditional_put),
    };
    if (await createArchiveRecord(storage, fresh)) {
      record = fresh;
      outcome = cluster ? 'adopted' : 'created';
      log.info({ store: storage.description, encryption: fresh.encryption.method }, cluster ? 'adopted an archive made before walts init' : 'archive created');
    } else {
      record = await readArchiveRecord(storage, args.signal); // another init won the race
      if (!record) throw new Error('archive record vanished while being created');
    }
  }

  if (outcome === 'exists' && args.encryption.method === 'openpgp') {
    const known = record.encryption.method === 'openpgp' ? record.encryption.fingerprints : [];
    const added = args.encryption.fingerprints.filter((f) => !known.includes(f));
    if (record.encryption.method === 'none' || added.length > 0) {
      record = {
        ...record,
        encryption: { method: 'openpgp', fingerprints: [...known, ...added] },
        encrypted_since: record.encryption.method === 'none' ? deps.now().toISOString() : record.encrypted_since,
      };
      await replaceArchiveRecord(storage, record);
      changes.push(known.length === 0 ? 'recorded that the archive is encrypted: from now on every writer needs WALTS_PGP_PUBLIC_KEY' : `recorded ${added.length} more public key(s)`);
    }
  } else if (outcome === 'exists' && record.encryption.method === 'openpgp') {
    log.warn({ store: storage.description }, 'the archive is encrypted but WALTS_PGP_PUBLIC_KEY is not set here: wal-push and backup-push will refuse to run with this configuration');
  }

  let systemIdentifier = cluster?.system_identifier;
  if (args.cluster) {
    const what = `the cluster at --pgdata (system ${args.cluster.systemIdentifier})`;
    const owner = await ensureClusterRecord(storage, cluster, args.cluster, deps);
    checkSameCluster(owner, { systemIdentifier: args.cluster.systemIdentifier, segmentSize: args.cluster.segmentSize }, what);
    if (!cluster) changes.push(`claimed for database system ${owner.system_identifier}`);
    systemIdentifier = owner.system_identifier;
  }
  return { outcome, record, changes, systemIdentifier };
}

/** Once per archive, here instead of at the first wal-push: does the service honour If-None-Match? */
async function probe(deps: Deps, recorded: ArchiveRecord['conditional_put']): Promise<ArchiveRecord['conditional_put']> {
  const { storage, log } = deps;
  if (storage.conditionalCreate !== 'unverified' || !storage.probeConditionalCreate) return undefined;
  if (recorded?.service === storage.description) return recorded; // an adopted archive already knows
  const honoured = await storage.probeConditionalCreate(PROBE_PREFIX);
  if (!honoured) {
    log.warn({ store: storage.description }, 'store ignores conditional create (If-None-Match); walts verifies each new WAL object after upload instead. Run one archiver per prefix.');
  }
  return { service: storage.description, honoured };
}
