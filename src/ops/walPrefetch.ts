/**
 * The prefetcher (hidden command `walts wal-prefetch`): after wal-fetch served segment X, a detached
 * background process downloads X+1..X+N of X's timeline into `<spool>/fetch/` so that the next
 * restore_command calls find them there (bin/walts serves them without starting Node). The ideas
 * are WAL-G's and pgBackRest's (async archive-get); the code and rules are walts' own.
 *
 * Every file goes through wal-fetch's one fetch path (`fetchWalFile`: decode, recorded digest and
 * size, segment header, temp file, fsync, rename), then gets its record (fetchSpool.ts). One
 * prefetcher per spool (prefetch.lock). A window stops quietly at the first "not found" (the end of
 * the archived WAL, remembered in `end` so that Node calls past the end do not start another), and
 * at any error (logged to prefetch.log, which is where its stderr goes): the foreground wal-fetch
 * asks the store itself for anything the spool does not have, so a prefetcher can only ever save
 * time. It never touches `%p`, and keeps only its window in the spool (older segments are removed).
 *
 * Started by a wal-fetch that is still downloading its own segment, it holds its downloads until
 * that process has exited (`holdFor`): on two cores they would compete with the call PostgreSQL
 * waits for. After its window it lingers (`lingerMs`, LINGER_MS by default) answering requests from
 * bin/walts (prefetchAsk.ts) with fresh store answers, and refilling the window as PostgreSQL
 * consumes it; it exits after that long without a request or a consumed segment.
 */
import { watch, promises as fsp, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { listReceivedPartials } from '../archive/receivedPartials';
import type { Deps } from '../deps';
import { describeError, NotFoundError } from '../errors';
import { nextSegment, parseSegmentName, parseWalFileName, segmentName } from '../postgres/walName';
import { END_FILE, handOverLock, makeSpoolDir, writeEndFile, processAlive, recordMatches, releaseLock, removeSpoolFile, takeLock, writeRecord, type SpoolIdentity } from './fetchSpool';
import { DecodeTurns, type Ticket } from './decodeTurns';
import { ASK_DIR, pendingAsks, sameStoreAsked, writeAnswer, type Ask, type AnswerStatus } from './prefetchAsk';
import { isSegmentName } from './pushRecord';
import { fetchWalFile } from './walFetch';
import { removeStaleTempFiles } from './walFetchTemp';

/** How long a prefetcher stays after its last work or request (the end of a recovery asks soon). */
export const LINGER_MS = 10_000;
/** However busy, a prefetcher exits this long after it started (the next Node call starts another). */
export const MAX_LIFE_MS = 30 * 60_000;
/** How often the lingering prefetcher looks at its spool without an inotify event. */
const TICK_MS = 250;
/**
 * At most this long a download waits for its turn to decode (decodeTurns.ts), and never more than
 * a quarter of the store's I/O timeout: its connection idles meanwhile.
 */
export const TURN_WAIT_MS = 2_000;

export interface PrefetchArgs {
  /** The segment just served (X). */
  readonly after: string;
  readonly segmentSize: number;
  /** `<spool>/fetch`. */
  readonly dir: string;
  readonly depth: number;
  readonly concurrency: number;
  readonly identity: SpoolIdentity;
  readonly pid?: number;
  readonly signal?: AbortSignal;
  /** Downloads start only once this process (the wal-fetch that started us) is gone. */
  readonly holdFor?: number;
  /** Stay this long without work, answering requests (default 0: exit after the window; the CLI's default is LINGER_MS). */
  readonly lingerMs?: number;
  /** Longest wait for a turn to decode (TURN_WAIT_MS by default; the CLI: a quarter of the I/O timeout at most). */
  readonly turnWaitMs?: number;
  /**
   * WALTS_FETCH_PARTIAL is on: a segment the store does not hold complete but a receiver holds in
   * part is answered `other`, never `absent`, so that bin/walts runs Node's wal-fetch, which serves
   * the partial. The prefetcher itself never downloads a partial (it grows: a spooled copy goes stale).
   */
  readonly receivedPartials?: boolean;
  /** Test seams: the clock; a request joined a download (`fresh`: started for it); before an answer is written. */
  readonly now?: () => number;
  readonly onJoined?: (ask: Ask, fresh: boolean) => void;
  readonly beforeAnswer?: (ask: Ask, status: AnswerStatus) => Promise<void>;
}

export interface PrefetchResult {
  /** Set when nothing was done (another prefetcher holds the spool). */
  readonly skipped?: string;
  readonly fetched: string[];
  readonly alreadyThere: number;
  /** The first name the store said it does not have. */
  readonly end?: string;
  readonly error?: string;
  /** Requests answered while lingering, by status. */
  readonly answered?: Record<string, number>;
}

/** X+1..X+depth on X's timeline. */
export function prefetchWindow(after: string, segmentSize: number, depth: number): string[] {
  const names: string[] = [];
  let id = parseSegmentName(after, segmentSize);
  for (let i = 0; i < depth; i++) {
    id = nextSegment(id);
    names.push(segmentName(id, segmentSize));
  }
  return names;
}

interface WindowResult {
  fetched: string[];
  alreadyThere: number;
  end?: string;
  error?: string;
}

export async function walPrefetch(deps: Deps, args: PrefetchArgs): Promise<PrefetchResult> {
  const pid = args.pid ?? process.pid;
  const now = args.now ?? Date.now;
  const started = now();
  const window = prefetchWindow(args.after, args.segmentSize, args.depth);
  await makeSpoolDir(args.dir);
  if (!(await takeLock(args.dir, pid, window))) return { skipped: 'another prefetcher is running for this spool', fetched: [], alreadyThere: 0 };
  // A lock taken for us by bin/walts names no window yet: the next call waits only for listed names.
  await handOverLock(args.dir, pid, window);
  const spool = new Spool(deps, args);
  try {
    const linger = args.lingerMs ?? 0;
    // Requests are taken only by a lingering prefetcher (the one the CLI starts).
    if (linger > 0) await fsp.mkdir(join(args.dir, ASK_DIR), { recursive: true, mode: 0o700 }).catch(() => undefined);
    if (args.holdFor !== undefined) await waitGone(args.holdFor, args.signal);
    if (linger <= 0) {
      const first = await spool.runWindow(window);
      return { fetched: first.fetched, alreadyThere: first.alreadyThere, end: first.end, error: first.error };
    }
    const { first, answered } = await spool.run(window, linger, started);
    return { fetched: first.fetched, alreadyThere: first.alreadyThere, end: first.end, error: first.error, answered };
  } finally {
    spool.close();
    await releaseLock(args.dir, pid);
  }
}

/** Waits (polling: it is our parent, about to exit) until `pid` is gone. */
async function waitGone(pid: number, signal?: AbortSignal): Promise<void> {
  while (processAlive(pid) && !signal?.aborted) await new Promise((r) => setTimeout(r, 5));
}

class Spool {
  /** Downloads under way, by name, shared by the window and the requests. */
  readonly #inflight = new Map<string, Promise<void>>();
  readonly #turns: DecodeTurns;
  readonly #tickets = new Map<string, Ticket>();
  readonly #seen = new Set<string>();
  /** Names fetched for a request: never swept while they wait for their asker. */
  readonly #keep = new Set<string>();
  /** Last segments fetched again after a "not found" (fetchLastAgain), once each. */
  readonly #refetched = new Set<string>();
  readonly #answered: Record<string, number> = {};
  readonly #askDir: string;
  #watcher: FSWatcher | undefined;
  #wake: (() => void) | undefined;
  #lastActivity = 0;
  /** A segment PostgreSQL asked for that was not in the window: the next window starts after it. */
  #retarget: string | undefined;

  constructor(
    readonly deps: Deps,
    readonly args: PrefetchArgs,
  ) {
    this.#askDir = join(args.dir, ASK_DIR);
    this.#turns = new DecodeTurns(args.turnWaitMs ?? TURN_WAIT_MS);
  }

  /**
   * Downloads `name` into the spool with its record (one download per name at a time). Decoding
   * takes turns (decodeTurns.ts): window names in order, a name PostgreSQL asked for (`asked`)
   * before all of them.
   */
  download(name: string, asked = false): { done: Promise<void>; fresh: boolean } {
    const running = this.#inflight.get(name);
    if (running) {
      if (asked) this.#tickets.get(name)?.promote();
      return { done: running, fresh: false };
    }
    const turn = this.#turns.ticket(asked ? '' : name);
    this.#tickets.set(name, turn);
    const done = fetchWalFile(this.deps, parseWalFileName(name)!, join(this.args.dir, name), { signal: this.args.signal, durable: true, turn })
      .then((r) => writeRecord(this.args.dir, name, r.sha256, this.args.identity))
      .finally(() => {
        turn.done();
        this.#tickets.delete(name);
        this.#inflight.delete(name);
      });
    this.#inflight.set(name, done);
    return { done, fresh: true };
  }

  async runWindow(window: readonly string[]): Promise<WindowResult> {
    const { dir, identity, concurrency, signal } = this.args;
    const missing = await sweep(this.deps, dir, window, identity, this.#keep);
    const fetched: string[] = [];
    const stop: { end?: string; error?: string } = {};
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < missing.length && stop.end === undefined && stop.error === undefined && !signal?.aborted) {
        const name = missing[next++]!;
        try {
          await this.download(name).done;
          fetched.push(name);
        } catch (err) {
          if (err instanceof NotFoundError) {
            const prev = stop.end as string | undefined; // set by another worker meanwhile
            if (prev === undefined || name < prev) stop.end = name;
          } else {
            stop.error ??= describeError(err);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, missing.length)) }, worker));
    // `end` is rewritten only with what this run learnt: a new end, or none within the whole window.
    if (stop.end !== undefined) await writeEndFile(dir, stop.end);
    else if (stop.error === undefined && !signal?.aborted && fetched.length === missing.length) await fsp.rm(join(dir, END_FILE), { force: true });
    return { fetched, alreadyThere: window.length - missing.length, ...stop };
  }

  /**
   * The first window, then more: answers requests all along, refills the window when PostgreSQL
   * has taken half of it (or starts one after a segment it asked for), and goes on until `lingerMs`
   * pass without a request, a download or a consumed segment.
   */
  async run(window: readonly string[], lingerMs: number, started: number): Promise<{ first: WindowResult; answered: Record<string, number> }> {
    const { dir, depth, segmentSize, signal } = this.args;
    const now = this.args.now ?? Date.now;
    try {
      this.#watcher = watch(this.#askDir, () => this.#wake?.());
      this.#watcher.on('error', () => undefined);
    } catch {
      // No inotify here: the poll alone.
    }
    let current = [...window];
    let first: WindowResult | undefined;
    let more = false;
    const pid = this.args.pid ?? process.pid;
    const fill = async (names: readonly string[]): Promise<void> => {
      // The lock lists the names being fetched (bin/walts waits for those instead of asking).
      if (first !== undefined) await handOverLock(dir, pid, names).catch(() => undefined);
      // An empty window (depth 0) sweeps nothing and has nothing to refill.
      const r: WindowResult = names.length > 0 ? await this.runWindow(names) : { fetched: [], alreadyThere: 0 };
      first ??= r;
      // No names listed any more: bin/walts waits for a listed name only while it is fetched.
      await handOverLock(dir, pid, []).catch(() => undefined);
      more = names.length > 0 && r.end === undefined && r.error === undefined;
      this.#lastActivity = now();
      filling = undefined;
    };
    let filling: Promise<void> | undefined = fill(current);
    let leftBefore = -1;
    this.#lastActivity = now();
    while (!signal?.aborted && (filling !== undefined || now() - this.#lastActivity < lingerMs) && now() - started < MAX_LIFE_MS) {
      // The spool must still be ours (deleted, or another prefetcher's lock): leave.
      if (!(await this.stillOurs())) break;
      await this.answerPending();
      if (filling === undefined) {
        let after = this.#retarget;
        this.#retarget = undefined;
        let left = 0;
        for (const n of current) if (await this.present(n)) left++;
        // PostgreSQL taking files from the spool is activity too (a replay in progress).
        if (left !== leftBefore) this.#lastActivity = now();
        leftBefore = left;
        if (after === undefined && more && left * 2 <= depth) after = await this.lastTaken(current);
        for (const n of this.#keep) if (!(await this.present(n))) this.#keep.delete(n);
        if (after !== undefined) {
          current = prefetchWindow(after, segmentSize, depth);
          this.#lastActivity = now();
          filling = fill(current);
        }
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, TICK_MS);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.#wake = undefined;
    }
    await filling;
    await Promise.allSettled([...this.#inflight.values()]);
    return { first: first ?? { fetched: [], alreadyThere: 0 }, answered: this.#answered };
  }

  close(): void {
    this.#watcher?.close();
  }

  async stillOurs(): Promise<boolean> {
    const text = await fsp.readFile(join(this.args.dir, 'prefetch.lock'), 'utf8').catch(() => undefined);
    return text !== undefined && Number(text.split('\n')[0]) === (this.args.pid ?? process.pid);
  }

  present(name: string): Promise<boolean> {
    return fsp.access(join(this.args.dir, name)).then(() => true, () => false);
  }

  /** The highest name of the window no longer in the spool (taken by PostgreSQL). */
  async lastTaken(window: readonly string[]): Promise<string | undefined> {
    let last: string | undefined;
    for (const n of window) if (!this.#inflight.has(n) && !(await this.present(n))) last = n;
    if (last !== undefined) this.#lastActivity = (this.args.now ?? Date.now)();
    return last;
  }

  /**
   * At the end of archive recovery PostgreSQL asks for the last segment it replayed once more
   * (after "not found" for the next one, before it picks a new timeline), and the spool no longer
   * has it (served by a rename): measured, that second download cost about 0.4 s of a replay's
   * end. So after the store said "not found" for `absent`, the segment before it is fetched again
   * into the spool, once per prefetcher (a standby polling at the end of the archive costs one
   * download, not one per poll). A cached copy like any other; unused, the next sweep removes it.
   */
  fetchLastAgain(absent: string): void {
    let last: string;
    try {
      const id = parseSegmentName(absent, this.args.segmentSize);
      if (id.segNo === 0) return;
      last = segmentName({ timeline: id.timeline, segNo: id.segNo - 1 }, this.args.segmentSize);
    } catch {
      return; // a name out of range for this segment size: nothing before it to fetch
    }
    if (this.#refetched.has(last) || this.#inflight.has(last)) return;
    this.#refetched.add(last);
    void this.present(last).then((there) => {
      if (there) return;
      this.download(last).done.then(() => this.#keep.add(last), () => undefined);
    });
  }

  /** `other` when a receiver holds part of `name` (or the store cannot tell): the Node path serves it. */
  async absentOrPartial(name: string): Promise<AnswerStatus> {
    try {
      const partials = await listReceivedPartials(this.deps.storage, this.args.signal);
      return partials.some((p) => p.segment === name) ? 'other' : 'absent';
    } catch {
      return 'other';
    }
  }

  async answerPending(): Promise<void> {
    for (const ask of await pendingAsks(this.#askDir, this.#seen)) {
      this.#seen.add(ask.nonce);
      this.#lastActivity = (this.args.now ?? Date.now)();
      void this.answer(ask);
    }
  }

  /**
   * One request: `ready` once the file is in the spool with its record, `absent` only on a store
   * "not found" for a request issued after this request was read (never from `end`, never from a
   * download that was already under way when it came).
   */
  async answer(ask: Ask): Promise<void> {
    let status: AnswerStatus;
    if (!sameStoreAsked(ask, this.args.identity)) status = 'other';
    else {
      try {
        const d = this.download(ask.name, true);
        this.args.onJoined?.(ask, d.fresh);
        try {
          await d.done;
        } catch (err) {
          if (d.fresh || !(err instanceof NotFoundError)) throw err;
          await this.download(ask.name, true).done; // that "not found" predates the request: ask again
        }
        status = 'ready';
        this.#keep.add(ask.name);
        if (isSegmentName(ask.name)) this.#retarget = ask.name;
      } catch (err) {
        status = err instanceof NotFoundError ? 'absent' : 'error';
        if (status === 'absent' && this.args.receivedPartials && isSegmentName(ask.name)) status = await this.absentOrPartial(ask.name);
        if (status === 'error') this.deps.log.info({ wal: ask.name, err: describeError(err) }, 'could not answer a request; the caller asks the store itself');
        if (status === 'absent' && isSegmentName(ask.name)) {
          await writeEndFile(this.args.dir, ask.name);
          this.fetchLastAgain(ask.name);
        }
      }
    }
    this.#answered[status] = (this.#answered[status] ?? 0) + 1;
    await this.args.beforeAnswer?.(ask, status);
    await writeAnswer(this.#askDir, ask, status).catch(() => undefined);
    this.#lastActivity = (this.args.now ?? Date.now)();
  }
}

/**
 * Keeps only the window in the spool: segments outside it (older ones, other timelines), records
 * without their file and temp files of dead processes go. Returns the window's names still to fetch
 * (a present file whose record no longer matches is removed and fetched again).
 */
async function sweep(deps: Deps, dir: string, window: readonly string[], identity: SpoolIdentity, keep: ReadonlySet<string> = new Set()): Promise<string[]> {
  await removeStaleTempFiles(dir, deps.log, { exists: processAlive });
  const wanted = new Set(window);
  const entries = await fsp.readdir(dir);
  const present = new Set(entries);
  for (const e of entries) {
    const base = e.endsWith('.rec') ? e.slice(0, -4) : e;
    if (!isSegmentName(base) || keep.has(base)) continue;
    if (!wanted.has(base) || (e !== base && !present.has(base))) await removeSpoolFile(dir, base);
  }
  const missing: string[] = [];
  for (const name of window) {
    if (present.has(name) && (await recordMatches(dir, name, identity))) continue;
    if (present.has(name)) await removeSpoolFile(dir, name);
    missing.push(name);
  }
  return missing;
}
