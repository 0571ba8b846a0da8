/**
 * `walts check`: every item that wal-push, wal-fetch, backup-push and delete depend on, each with
 * its fix. Items never throw: each failure is recorded and the next item runs, so one run lists
 * every problem. An item that cannot be checked because of an earlier failure is skipped, named.
 *
 * Order: configuration, codecs, PostgreSQL (gives the system identifier), the store and archive,
 * the keys (the probe object is encoded here, with whatever of the chain works), the store probe,
 * then --switch-wal.
 */
import type { Config } from '../../config';
import type { Deps } from '../../deps';
import type { PgSession } from '../../postgres/client';
import { feedingSlots } from '../../archive/receivedPartials';
import { checkCodecs } from './codecs';
import { fail, message, skip, type CheckItem } from './item';
import { checkPublicKey, decodeProbe, encodeProbe, loadPrivateKey } from './keys';
import { checkPostgres, type PgMode } from './postgres';
import { checkArchive, probeStore } from './store';
import { switchWalAndWait } from './switchWal';

export interface CheckArgs {
  /** The configuration item, already decided (cli: loadConfig), and the config when it loaded. */
  readonly configItem: CheckItem;
  readonly config?: Config;
  /** Made from `config`; undefined when it did not load. */
  readonly deps?: Deps;
  readonly pg: PgMode;
  readonly connect: () => Promise<PgSession>;
  readonly readFile: (path: string) => string;
  readonly forRetention: boolean;
  /** --switch-wal: wait this long for the switched WAL file (undefined: do not switch). */
  readonly switchWalTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export async function check(args: CheckArgs): Promise<CheckItem[]> {
  const items: CheckItem[] = [args.configItem];
  const codecs = await checkCodecs(args.config?.compression);
  items.push(...codecs);
  // The probe is encoded with the configured compression when it works here, else without.
  const failing = new Set(codecs.filter((c) => c.status === 'fail').map((c) => c.name));
  const compressionOk = !failing.has(`codec ${args.config?.compression === 'zstd' ? 'zstd' : 'lz4'}`);

  const { config, deps } = args;
  const pg = await checkPostgres(args.pg, args.connect, {
    store: config?.store.url,
    readFile: args.readFile,
    ...(deps ? { feedingSlots: (systemId: string) => feedingSlots(deps.storage, systemId, args.signal) } : {}),
  });
  items.push(...pg.items);
  try {
    if (!config || !deps) {
      items.push(skip('store', 'configuration incomplete'), skip('keys', 'configuration incomplete'));
      return items;
    }
    const kind = config.store.kind;
    const archive = await checkArchive(deps, kind, pg.facts?.systemIdentifier, args.signal);
    items.push(...archive.items);

    const publicKey = await checkPublicKey(config, archive.record);
    items.push(publicKey.item);
    const privateKey = await loadPrivateKey(config);
    let probe;
    try {
      probe = await encodeProbe(config, compressionOk, publicKey.usable, privateKey.usable);
    } catch (err) {
      items.push(fail('probe', `could not encode the probe object: ${message(err)}`, 'see the message'));
      return items;
    }
    const privateItem = await decodeProbe(config, probe, privateKey);
    if (privateItem) items.push(privateItem);

    if (archive.reachable) items.push(...(await probeStore(deps, kind, probe, { forRetention: args.forRetention, signal: args.signal })));
    else items.push(skip('store probe', 'store not reachable: list, put, get and delete not tried'));

    if (args.switchWalTimeoutMs !== undefined) {
      if (!pg.facts) items.push(fail('switch-wal', 'PostgreSQL not reached: cannot switch WAL files', 'set PGHOST, PGPORT, PGUSER (or --host, --port, --username)'));
      else if (!archive.reachable) items.push(skip('switch-wal', 'store not reachable'));
      else items.push(await switchWalAndWait(pg.facts, deps.storage, { timeoutMs: args.switchWalTimeoutMs, clock: deps.retry.clock, signal: args.signal }));
    }
    return items;
  } finally {
    await pg.facts?.session.close();
  }
}
