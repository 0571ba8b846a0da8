/**
 * Requests to a live prefetcher (docs/performance.md, "Asking the prefetcher"): the files
 * PostgreSQL asks for that the spool cannot answer (the `.history` probes, the segment after the last
 * one, a segment asked for again) would each cost a full Node.js call; while a prefetcher runs for
 * the spool, bin/walts asks it instead, and it asks the store (it already holds a client and a
 * connection).
 *
 * The exchange, in `<spool>/fetch/ask/`:
 * - bin/walts makes a fresh directory `q.<random>` (`mktemp -d`: created by mkdir, so it did not
 *   exist before and holds nothing older than itself; the random part is the nonce), then writes the
 *   request beside it as `q.<random>.ask` (beside, not inside, so that the prefetcher's inotify watch
 *   of `ask/` sees it at once):
 *     line 1: walts-ask-1 PID            (the asking shell, for the clean-up of abandoned requests)
 *     line 2: the WAL file name          (a segment or a timeline history file)
 *     line 3: the store, line 4: the S3 endpoint or empty (as in spool records)
 *     line 5: end                        (a request is read only once this line is there)
 * - the prefetcher reads it (only while the directory exists), asks the store with a request issued
 *   only now, and writes `q.<random>/answer` (temp file + rename, so it is whole or absent):
 *     line 1: walts-answer-1 STATUS NONCE (NONCE: the directory's name; STATUS below)
 *     line 2: the name, line 3: the store, line 4: the endpoint (copied from the request)
 *   STATUS is `ready` (the file is in the spool under its name with its record: bin/walts serves it
 *   through its usual checks), `absent` (the store said it has no such file, in answer to a request
 *   made after the request was read), or `other` / `error` (bin/walts then runs the Node path).
 * - bin/walts waits a bounded time, and only while the prefetcher is alive; anything else, or any
 *   doubt, and it runs Node as before. Requests whose asker is gone are removed by the prefetcher.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { parseWalFileName } from '../postgres/walName';
import type { SpoolIdentity } from './fetchSpool';
import { processAlive } from './fetchSpool';
import { tempName } from './walFetchTemp';

export const ASK_DIR = 'ask';
export const ANSWER_FILE = 'answer';
export const ASK_VERSION = 'walts-ask-1';
export const ANSWER_VERSION = 'walts-answer-1';
/** A request directory without a readable request is removed once this old (its writer died early). */
export const ABANDONED_MS = 60_000;

export type AnswerStatus = 'ready' | 'absent' | 'other' | 'error';

export interface Ask {
  /** The directory's name: the nonce the answer is bound to. */
  readonly nonce: string;
  readonly pid: number;
  readonly name: string;
  readonly store: string;
  readonly endpoint: string;
}

/** `q.` and mktemp's random letters and digits. */
const NONCE = /^q\.[A-Za-z0-9]{6,}$/;

export function isNonce(s: string): boolean {
  return NONCE.test(s);
}

/**
 * Parses a request; undefined while it is incomplete (no `end` line yet) or malformed. Only segment
 * and timeline history names are asked for (bin/walts sends nothing else).
 */
export function parseAsk(nonce: string, text: string): Ask | undefined {
  const lines = text.split('\n');
  if (lines.length < 6 || lines[4] !== 'end' || lines[5] !== '') return undefined;
  const [head, name, store, endpoint] = lines as [string, string, string, string];
  const m = /^walts-ask-1 ([1-9][0-9]*)$/.exec(head);
  const kind = parseWalFileName(name)?.kind;
  if (!m || !isNonce(nonce) || (kind !== 'segment' && kind !== 'history')) return undefined;
  return { nonce, pid: Number(m[1]), name, store, endpoint };
}

export function formatAnswer(ask: Ask, status: AnswerStatus): string {
  return `${ANSWER_VERSION} ${status} ${ask.nonce}\n${ask.name}\n${ask.store}\n${ask.endpoint}\n`;
}

/** Whether the request names the store this prefetcher serves (else it is answered `other`). */
export function sameStoreAsked(ask: Ask, id: SpoolIdentity): boolean {
  return ask.store === id.store && ask.endpoint === (id.endpoint ?? '');
}

/** Writes the answer whole (temp + rename) into the request's own directory. */
export async function writeAnswer(askDir: string, ask: Ask, status: AnswerStatus): Promise<void> {
  const dir = join(askDir, ask.nonce);
  const tmp = join(dir, tempName(ANSWER_FILE, randomBytes(4).toString('hex')));
  await fsp.writeFile(tmp, formatAnswer(ask, status), { mode: 0o600 });
  await fsp.rename(tmp, join(dir, ANSWER_FILE));
}

const ASK_SUFFIX = '.ask';

/** The requests waiting in `askDir` (those not in `seen`), and the clean-up of finished ones. */
export async function pendingAsks(askDir: string, seen: ReadonlySet<string>, now: () => number = Date.now): Promise<Ask[]> {
  const names = await fsp.readdir(askDir).catch(() => [] as string[]);
  const present = new Set(names);
  const asks: Ask[] = [];
  const remove = (nonce: string) =>
    Promise.all([fsp.rm(join(askDir, nonce), { recursive: true, force: true }), fsp.rm(join(askDir, nonce + ASK_SUFFIX), { force: true })]).catch(() => undefined);
  for (const entry of names) {
    const nonce = entry.endsWith(ASK_SUFFIX) ? entry.slice(0, -ASK_SUFFIX.length) : entry;
    if (!isNonce(nonce)) continue;
    const hasAsk = present.has(nonce + ASK_SUFFIX);
    if (entry !== nonce && present.has(nonce)) continue; // handled with its directory
    if (!present.has(nonce) || !hasAsk) {
      // Half a request (its asker died between the two steps, or it is being written): removed when old.
      if (await older(join(askDir, entry), now)) await remove(nonce);
      continue;
    }
    const text = await fsp.readFile(join(askDir, nonce + ASK_SUFFIX), 'utf8').catch(() => undefined);
    const ask = text === undefined ? undefined : parseAsk(nonce, text);
    if (!ask) {
      if (await older(join(askDir, nonce), now)) await remove(nonce);
      continue;
    }
    // Its asker gone (it read its answer, or gave up and ran Node): nobody will read it.
    if (!processAlive(ask.pid)) await remove(nonce);
    else if (!seen.has(nonce) && !(await fsp.access(join(askDir, nonce, ANSWER_FILE)).then(() => true, () => false))) asks.push(ask);
  }
  return asks;
}

async function older(path: string, now: () => number): Promise<boolean> {
  const st = await fsp.stat(path).catch(() => undefined);
  return st !== undefined && now() - st.mtimeMs > ABANDONED_MS;
}
