/**
 * wal-push with look-ahead (WAL-G style, no daemon). PostgreSQL archives one file per call, and
 * starting a process costs more than uploading a segment; so when the call's own segment X sits in
 * a pg_wal with `archive_status/`, the same call also pushes other segments already marked `.ready`
 * (in WAL order, up to WALTS_PUSH_LOOKAHEAD of them, WALTS_CONCURRENCY transfers at once, X first),
 * each through the one single-file push (ops/walPush.ts `pushFile`), and leaves for each one the
 * store acknowledged a push record (ops/pushRecord.ts). PostgreSQL's own call for such a file is
 * then answered from the record, by bin/walts without starting Node, or here before the store
 * client is loaded.
 *
 * The exit status depends only on X. A look-ahead file that fails in any way (conflict, store
 * error, removed by PostgreSQL meanwhile, changed while read) is logged and leaves no record; its
 * own call then does the full push and reports properly. The call waits for its look-ahead uploads
 * (all share the command's one retry budget), gives them up when X fails, and aborts them on
 * SIGTERM/SIGINT (the signal passed in), cleaning up as any push does.
 */
import { promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Config } from '../config';
import type { Deps } from '../deps';
import { describeError } from '../errors';
import {
  checkRecordSync,
  identityOf,
  isSegmentName,
  pushRecordDir,
  sameIdentity,
  settledBeforeStat,
  sweepRecords,
  writeRecord,
  type StoreIdentity,
} from './pushRecord';
import { PushSession, pushFile, type WalPushArgs, type WalPushResult } from './walPush';

export interface LookaheadOptions {
  /** How many other `.ready` segments to push (0: look-ahead off, records neither written nor honoured). */
  readonly lookahead: number;
  /** Transfers in flight at once, the call's own file included. */
  readonly concurrency: number;
  readonly spoolDir?: string;
  readonly store: StoreIdentity;
}

export interface LookaheadSummary {
  /** Segments pushed ahead whose record was written. */
  readonly recorded: readonly string[];
  /** Pushed, but no record (too fresh to prove, or changed meanwhile): their own call pushes again. */
  readonly unrecorded: number;
  readonly failed: number;
}

export function lookaheadOptions(config: Config): LookaheadOptions {
  return { lookahead: config.pushLookahead, concurrency: config.concurrency, spoolDir: config.spoolDir, store: storeIdentity(config) };
}

/** What a record says about the store: the store string as configured, and the S3 endpoint. */
export function storeIdentity(config: Pick<Config, 'store'>): StoreIdentity {
  return { store: config.store.url, endpoint: config.store.s3.endpoint ?? '' };
}

/**
 * PostgreSQL's call for a file a look-ahead already pushed: true when a valid record proves it
 * (same checks as bin/walts; a record that proves nothing is deleted). Synchronous and cheap, so
 * that it runs before the store client and the codecs are loaded.
 */
export function archivedAhead(path: string, cwd: string, options: LookaheadOptions): boolean {
  const walPath = resolve(cwd, path);
  const name = basename(walPath);
  if (options.lookahead <= 0 || !isSegmentName(name)) return false;
  return checkRecordSync(pushRecordDir(options.spoolDir, walPath), name, walPath, options.store) === 'valid';
}

export async function walPushWithLookahead(deps: Deps, args: WalPushArgs, options: LookaheadOptions): Promise<WalPushResult & { lookahead?: LookaheadSummary }> {
  const walPath = resolve(args.cwd, args.path);
  const walDir = dirname(walPath);
  const recordDir = pushRecordDir(options.spoolDir, walPath);
  const ready = options.lookahead > 0 && isSegmentName(basename(walPath)) ? await readySegments(walDir) : undefined;

  const controller = new AbortController();
  const stop = () => controller.abort(args.signal?.reason);
  if (args.signal?.aborted) stop();
  args.signal?.addEventListener('abort', stop, { once: true });
  const session = new PushSession(deps, controller.signal);
  try {
    const primary = pushFile(deps, session, { path: args.path, cwd: args.cwd, primary: true }, controller.signal).finally(() => session.primaryFinished());
    // X failed: nothing the look-ahead does could change this call's answer, so it stops too.
    primary.catch(() => controller.abort(new Error('the call’s own file failed')));
    if (ready === undefined) return await primary;

    const queue: string[] = [];
    for (const n of ready) {
      if (queue.length >= options.lookahead) break;
      if (n !== basename(walPath) && checkRecordSync(recordDir, n, join(walDir, n), options.store) !== 'valid') queue.push(n);
    }
    const recorded: string[] = [];
    let unrecorded = 0;
    let failed = 0;
    const pushAhead = async (name: string): Promise<void> => {
      const path = join(walDir, name);
      try {
        const r = await pushFile(deps, session, { path, cwd: walDir, primary: false }, controller.signal);
        if (controller.signal.aborted) return;
        // Recorded strictly after the acknowledgement, only for a file that was settled before it
        // was first stat'ed and that the path still names, unchanged (ops/pushRecord.ts).
        const after = await fsp.stat(path, { bigint: true }).then(identityOf, () => undefined);
        if (!after || !sameIdentity(r.source.identity, after) || !settledBeforeStat(r.source.identity, r.source.firstStatMs)) {
          unrecorded++;
          deps.log.debug({ wal: name }, 'look-ahead push done, but the file was too fresh or changed: no record');
          return;
        }
        await writeRecord(recordDir, name, { identity: r.source.identity, sha256: r.sha256, store: options.store });
        recorded.push(name);
      } catch (err) {
        failed++;
        if (controller.signal.aborted) return;
        const gone = await fsp.access(path).then(() => false, () => true);
        if (gone) deps.log.debug({ wal: name }, 'look-ahead: file removed by PostgreSQL meanwhile');
        else deps.log.warn({ wal: name, err: describeError(err) }, 'look-ahead push failed; PostgreSQL’s own call for this file will push it');
      }
    };
    // X takes the first transfer slot; the others serve the queue in WAL order.
    const worker = async (): Promise<void> => {
      for (let name = queue.shift(); name !== undefined && !controller.signal.aborted; name = queue.shift()) await pushAhead(name);
    };
    const workers = [primary.then(worker, () => undefined), ...Array.from({ length: Math.max(0, options.concurrency - 1) }, worker)];
    await Promise.all(workers);
    const result = await primary;
    if (!controller.signal.aborted) await sweepRecords(recordDir, walDir, deps.now().getTime());
    return { ...result, lookahead: { recorded: recorded.sort(), unrecorded, failed } };
  } finally {
    args.signal?.removeEventListener('abort', stop);
  }
}

/**
 * Plain segment names (24 hex digits: not .history, .partial or .backup) marked ready for archiving,
 * in WAL order; undefined when the WAL file's directory has no archive_status (not a pg_wal).
 */
async function readySegments(walDir: string): Promise<string[] | undefined> {
  let entries: string[];
  try {
    entries = await fsp.readdir(join(walDir, 'archive_status'));
  } catch {
    return undefined;
  }
  return entries
    .filter((e) => e.endsWith('.ready'))
    .map((e) => e.slice(0, -'.ready'.length))
    .filter(isSegmentName)
    .sort();
}
