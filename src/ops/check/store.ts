/**
 * The store items: reachable with these credentials; an archive there (`walts init` done); owned by
 * this cluster; and list, put, get and delete allowed, proven with a probe object under
 * `walts_v1/probe/` that is removed again.
 *
 * Delete: retention (`walts delete`) needs it, archiving does not (an archiving host may have
 * put-only rights, as pgBackRest and Barman setups often do). So a refused delete fails the check
 * only with `--for-retention`; otherwise it is a warning that names the probe object left behind.
 */
import { randomBytes } from 'node:crypto';
import { readArchiveRecord, type ArchiveRecord } from '../../archive/archive';
import { readClusterRecord, type ClusterRecord } from '../../archive/cluster';
import { PROBE_PREFIX, ROOT } from '../../archive/layout';
import { completeFacts, objectMetadata } from '../../archive/objectMeta';
import type { Deps } from '../../deps';
import { IntegrityError } from '../../errors';
import { readAll } from '../../util/streams';
import { fail, message, ok, skip, warn, type CheckItem } from './item';
import type { EncodedProbe } from './keys';
import { storeFix } from './storeFix';

export interface ArchiveState {
  readonly items: CheckItem[];
  /** False when the store could not be read at all: the probe items are skipped. */
  readonly reachable: boolean;
  readonly record?: ArchiveRecord;
  readonly cluster?: ClusterRecord;
}

type StoreDeps = Pick<Deps, 'storage' | 'host' | 'now'>;

/** store, archive and cluster items. `systemIdentifier`: the server's, when PostgreSQL was reached. */
export async function checkArchive(deps: StoreDeps, kind: 's3' | 'file', systemIdentifier: string | undefined, signal?: AbortSignal): Promise<ArchiveState> {
  const where = deps.storage.description;
  let record: ArchiveRecord | undefined;
  let recordError: unknown;
  try {
    record = await readArchiveRecord(deps.storage, signal);
  } catch (err) {
    if (!(err instanceof IntegrityError)) {
      return { reachable: false, items: [fail('store', message(err), storeFix(err, kind)), skip('archive', 'store not reachable'), skip('cluster', 'store not reachable')] };
    }
    recordError = err; // reachable, but archive.json is damaged
  }
  const items: CheckItem[] = [ok('store', `${where} reachable, credentials accepted`)];
  let cluster: ClusterRecord | undefined;
  let clusterError: unknown;
  try {
    cluster = await readClusterRecord(deps.storage, signal);
  } catch (err) {
    clusterError = err;
  }
  if (recordError) items.push(fail('archive', message(recordError), 'restore walts_v1/archive.json from a copy, or remove it and run walts init'));
  else if (record) items.push(ok('archive', `walts init done (${record.created_at} by ${record.created_by}), encryption: ${record.encryption.method}`));
  else if (cluster) items.push(warn('archive', 'an archive made before walts init (cluster.json, no archive.json)', 'run walts init once to adopt it'));
  else items.push(fail('archive', `${where} holds no walts archive (no walts_v1/archive.json)`, 'check WALTS_STORE and that the store is mounted; for a new archive run walts init'));

  if (clusterError) items.push(fail('cluster', message(clusterError), 'restore walts_v1/cluster.json from a copy, or remove it (the next wal-push records the cluster again)'));
  else items.push(clusterItem(cluster, systemIdentifier));
  return { items, reachable: true, record, cluster };
}

function clusterItem(cluster: ClusterRecord | undefined, systemIdentifier: string | undefined): CheckItem {
  if (!cluster) return ok('cluster', 'not claimed yet: the first wal-push (or walts init --pgdata) records the cluster');
  const owner = `belongs to database system ${cluster.system_identifier}${cluster.pg_major ? ` (PostgreSQL ${cluster.pg_major})` : ''}`;
  if (systemIdentifier === undefined) return ok('cluster', `${owner}; PostgreSQL not reached, so not compared`);
  if (systemIdentifier === cluster.system_identifier) return ok('cluster', `${owner}: this server`);
  return fail('cluster', `the store ${owner}, this server is system ${systemIdentifier}: wal-push would refuse every segment`, 'use a separate WALTS_STORE prefix per cluster (a new prefix, then walts init)');
}

export interface ProbeOptions {
  readonly forRetention: boolean;
  readonly signal?: AbortSignal;
}

/** store list, put, get and delete with `probe` (already encoded by the one encode path). */
export async function probeStore(deps: StoreDeps, kind: 's3' | 'file', probe: EncodedProbe, options: ProbeOptions): Promise<CheckItem[]> {
  const { storage } = deps;
  const { signal } = options;
  const items: CheckItem[] = [];
  try {
    // One page is enough to prove the right to list; stop at the first key.
    for await (const _entry of storage.list(`${ROOT}/`, { signal })) break;
    items.push(ok('store list', `listing ${ROOT}/ allowed`));
  } catch (err) {
    items.push(fail('store list', message(err), storeFix(err, kind)));
  }

  const key = probeKey(deps, probe.suffix);
  try {
    await storage.put(key, probe.stored, { ifAbsent: true, signal, metadata: objectMetadata(probe.plain, probe.stored.length) });
    items.push(ok('store put', `wrote ${key} (${probe.stored.length} bytes, create-if-absent as wal-push does)`));
  } catch (err) {
    items.push(fail('store put', message(err), storeFix(err, kind)));
    items.push(skip('store get', 'nothing to read back: put failed'));
    items.push(skip('store delete', 'nothing to remove: put failed'));
    return items;
  }

  try {
    const obj = await storage.get(key, { signal });
    const bytes = await readAll(obj.body, probe.stored.length + 1);
    const facts = completeFacts({ ...obj, size: bytes.length });
    if (!bytes.equals(probe.stored)) items.push(fail('store get', `${key} came back as ${bytes.length} different bytes (${probe.stored.length} written)`, 'the store does not return what was written: check the service (a proxy or gateway rewriting bodies?)'));
    else if (!facts || facts.sha256 !== probe.plain.sha256) items.push(fail('store get', `${key} came back without the metadata walts records (walts-sha256, walts-size)`, 'the service must keep S3 user metadata (x-amz-meta-*); check proxies and gateways'));
    else items.push(ok('store get', `read ${key} back: same bytes and metadata`));
  } catch (err) {
    items.push(fail('store get', message(err), storeFix(err, kind)));
  }

  items.push(await removeProbe(deps, key, kind, options));
  return items;
}

async function removeProbe(deps: StoreDeps, key: string, kind: 's3' | 'file', options: ProbeOptions): Promise<CheckItem> {
  try {
    await deps.storage.delete([key], { signal: options.signal });
    if ((await deps.storage.head(key, { signal: options.signal })) !== undefined) throw new Error(`${key} is still there after delete`);
    return ok('store delete', `removed ${key}${options.forRetention ? ' (retention can delete)' : ''}`);
  } catch (err) {
    const why = message(err);
    if (options.forRetention) return fail('store delete', `${why}: walts delete (retention) would fail`, `grant delete rights on the store to this host (${kind === 's3' ? 's3:DeleteObject on the prefix' : 'write access to the store directory'}); the probe ${key} is left behind`);
    return warn('store delete', `${why}; the probe ${key} is left behind`, 'fine on a put-only archiving host; where walts delete runs, grant delete rights and run walts check --for-retention');
  }
}

/** `walts_v1/probe/check_<UTC stamp>_<host>_<random><codecs>`: never collides, says who left it. */
function probeKey(deps: StoreDeps, suffix: string): string {
  const stamp = deps.now().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const host = deps.host.replace(/[^A-Za-z0-9.-]/g, '_').slice(0, 64) || 'host';
  return `${PROBE_PREFIX}check_${stamp}_${host}_${randomBytes(4).toString('hex')}${suffix}`;
}
