/**
 * Requests to a lingering prefetcher, in-process (memory store): the request and answer formats,
 * and the exchange itself: "absent" is the store's answer to a request made after the ask was
 * read (the file archived afterwards is then "ready"), a request for another store is answered
 * "other", an ask that is incomplete or already answered is left alone. The sh side and real
 * processes are in test/integration/prefetchAsk.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLock, type SpoolIdentity } from '../../../src/ops/fetchSpool';
import { formatAnswer, parseAsk, pendingAsks } from '../../../src/ops/prefetchAsk';
import { walPrefetch } from '../../../src/ops/walPrefetch';
import { walPush } from '../../../src/ops/walPush';
import { MemoryStorage } from '../../../src/storage/memory';
import { testDeps } from '../../helpers/deps';
import { fakeSegment } from '../../helpers/wal';

const SEG_SIZE = 1024 * 1024;
const ID: SpoolIdentity = { store: 'file:///archive' };
const name = (n: number) => `0000000100000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
const askText = (wal: string, store = ID.store, pid = process.pid) => `walts-ask-1 ${pid}\n${wal}\n${store}\n\nend\n`;

async function archive(store: MemoryStorage, names: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'walts-ask-'));
  mkdirSync(join(dir, 'pg_wal'));
  for (const n of names) {
    writeFileSync(join(dir, 'pg_wal', n), fakeSegment(n, { segSize: SEG_SIZE }));
    await walPush(testDeps(store), { path: `pg_wal/${n}`, cwd: dir });
  }
}

async function until(f: () => boolean): Promise<void> {
  while (!f()) await new Promise((r) => setTimeout(r, 10));
}

describe('request and answer formats', () => {
  it('reads a whole request only, for segment and history names only', () => {
    expect(parseAsk('q.abcDEF1234', askText(name(3)))).toEqual({ nonce: 'q.abcDEF1234', pid: process.pid, name: name(3), store: ID.store, endpoint: '' });
    expect(parseAsk('q.abcDEF1234', askText('00000002.history'))?.name).toBe('00000002.history');
    expect(parseAsk('q.abcDEF1234', askText(name(3)).replace('end\n', ''))).toBeUndefined(); // being written
    expect(parseAsk('q.abcDEF1234', askText(`${name(3)}.partial`))).toBeUndefined();
    expect(parseAsk('q.abcDEF1234', askText('../../etc/passwd'))).toBeUndefined();
    expect(parseAsk('q/../x', askText(name(3)))).toBeUndefined();
    expect(formatAnswer(parseAsk('q.abcDEF1234', askText(name(3)))!, 'absent')).toBe(`walts-answer-1 absent q.abcDEF1234\n${name(3)}\n${ID.store}\n\n`);
  });

  it('leaves alone a request without its directory or already answered, and removes those whose asker is gone', async () => {
    const ask = mkdtempSync(join(tmpdir(), 'walts-ask-dir-'));
    writeFileSync(join(ask, 'q.NODIR00001.ask'), askText(name(1))); // no directory: not a request
    mkdirSync(join(ask, 'q.ANSWERED01'));
    writeFileSync(join(ask, 'q.ANSWERED01.ask'), askText(name(2)));
    writeFileSync(join(ask, 'q.ANSWERED01', 'answer'), 'walts-answer-1 absent q.ANSWERED01\n');
    mkdirSync(join(ask, 'q.DEADASKER1'));
    writeFileSync(join(ask, 'q.DEADASKER1.ask'), askText(name(3), ID.store, 999_999_998));
    mkdirSync(join(ask, 'q.WAITING001'));
    writeFileSync(join(ask, 'q.WAITING001.ask'), askText(name(4)));
    expect((await pendingAsks(ask, new Set())).map((a) => a.nonce)).toEqual(['q.WAITING001']);
    expect(existsSync(join(ask, 'q.DEADASKER1'))).toBe(false);
    expect(await pendingAsks(ask, new Set(['q.WAITING001']))).toEqual([]);
  });
});

describe('a lingering prefetcher answers requests', () => {
  it('"absent" from the store, then "ready" once archived; "other" for another store; the window first', async () => {
    const store = new MemoryStorage();
    await archive(store, [name(2)]);
    const dir = join(mkdtempSync(join(tmpdir(), 'walts-ask-spool-')), 'fetch');
    const stop = new AbortController();
    const running = walPrefetch(testDeps(store), { after: name(1), segmentSize: SEG_SIZE, dir, depth: 2, concurrency: 1, identity: ID, lingerMs: 600_000, signal: stop.signal });
    await until(() => existsSync(join(dir, `${name(2)}.rec`)) && existsSync(join(dir, 'ask')));
    let k = 0;
    const ask = async (wal: string, storeId = ID.store): Promise<string> => {
      const nonce = `q.TEST${String(++k).padStart(6, '0')}`;
      mkdirSync(join(dir, 'ask', nonce));
      writeFileSync(join(dir, 'ask', `${nonce}.ask`), askText(wal, storeId));
      const answer = join(dir, 'ask', nonce, 'answer');
      await until(() => existsSync(answer));
      const [head, ...rest] = readFileSync(answer, 'utf8').split('\n');
      expect(head).toMatch(new RegExp(` ${nonce}$`));
      expect(rest.slice(0, 2)).toEqual([wal, storeId]);
      return head!.split(' ')[1]!;
    };
    expect(await ask(name(4))).toBe('absent');
    expect(await ask('00000002.history')).toBe('absent');
    await archive(store, [name(4)]);
    expect(await ask(name(4))).toBe('ready');
    expect(existsSync(join(dir, `${name(4)}.rec`))).toBe(true);
    expect(await ask(name(4), 'file:///elsewhere')).toBe('other');
    // The window started after the segment asked for (5, 6: not archived) is listed while fetched, then not.
    await until(() => readFileSync(join(dir, 'prefetch.lock'), 'utf8').split('\n').filter(Boolean).length === 1);
    expect((await readLock(dir))?.window).toEqual([]);
    stop.abort();
    const r = await running;
    expect(r.answered).toEqual({ absent: 2, ready: 1, other: 1 });
  });
});

describe('the end of a recovery', () => {
  it('after "absent" for N, the segment before it is fetched again once (PostgreSQL asks for it at promotion)', async () => {
    let gets = 0;
    class Counting extends MemoryStorage {
      override async get(key: string) {
        if (key.includes(name(3))) gets++;
        return super.get(key);
      }
    }
    const store = new Counting();
    await archive(store, [name(2), name(3)]);
    const dir = join(mkdtempSync(join(tmpdir(), 'walts-ask-last-')), 'fetch');
    const stop = new AbortController();
    const running = walPrefetch(testDeps(store), { after: name(1), segmentSize: SEG_SIZE, dir, depth: 2, concurrency: 2, identity: ID, lingerMs: 600_000, signal: stop.signal });
    await until(() => existsSync(join(dir, `${name(3)}.rec`)) && existsSync(join(dir, 'ask')));
    rmSync(join(dir, name(3))); // served: PostgreSQL took it
    rmSync(join(dir, `${name(3)}.rec`));
    let k = 0;
    const ask = async (wal: string): Promise<string> => {
      const nonce = `q.LAST${String(++k).padStart(6, '0')}`;
      mkdirSync(join(dir, 'ask', nonce));
      writeFileSync(join(dir, 'ask', `${nonce}.ask`), askText(wal));
      const answer = join(dir, 'ask', nonce, 'answer');
      await until(() => existsSync(answer));
      return readFileSync(answer, 'utf8').split(' ')[1]!;
    };
    expect(await ask(name(4))).toBe('absent');
    await until(() => existsSync(join(dir, `${name(3)}.rec`)));
    expect(gets).toBe(2);
    rmSync(join(dir, name(3)));
    expect(await ask(name(4))).toBe('absent'); // a standby polling: no download per poll
    stop.abort();
    await running;
    expect(gets).toBe(2);
  });
});

describe('"absent" is never an answer obtained before the request', () => {
  it('a request that joins a window download ending in "not found" asks the store again (the file arrived meanwhile): "ready"', async () => {
    const X = name(3);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let held = false;
    const aside = new Map<string, MemoryStorage['objects'] extends Map<string, infer E> ? E : never>();
    /** X's first GET waits at the gate, then X is missing; the listing that follows puts it back. */
    class Staged extends MemoryStorage {
      override async get(key: string) {
        if (key.includes(X) && !held) {
          held = true;
          await gate;
        }
        return super.get(key);
      }
      override async *list(prefix: string) {
        yield* super.list(prefix);
        if (prefix.includes(X.slice(0, 16))) for (const [k, v] of aside) this.objects.set(k, v);
        aside.clear();
      }
    }
    const store = new Staged();
    await archive(store, [X]);
    for (const [k, v] of store.objects) if (k.includes(X)) (aside.set(k, v), store.objects.delete(k));
    const dir = join(mkdtempSync(join(tmpdir(), 'walts-ask-fresh-')), 'fetch');
    const stop = new AbortController();
    const joined: boolean[] = [];
    const running = walPrefetch(testDeps(store), {
      after: name(2), segmentSize: SEG_SIZE, dir, depth: 1, concurrency: 1, identity: ID, lingerMs: 600_000, signal: stop.signal,
      // The request shares the window's download of X, which was asked for before the request existed.
      onJoined: (_ask, fresh) => {
        joined.push(fresh);
        release();
      },
    });
    await until(() => held && existsSync(join(dir, 'ask')));
    mkdirSync(join(dir, 'ask', 'q.FRESH00001'));
    writeFileSync(join(dir, 'ask', 'q.FRESH00001.ask'), askText(X));
    const answer = join(dir, 'ask', 'q.FRESH00001', 'answer');
    await until(() => existsSync(answer));
    expect(joined).toEqual([false]);
    expect(readFileSync(answer, 'utf8').split('\n')[0]).toBe('walts-answer-1 ready q.FRESH00001');
    expect(existsSync(join(dir, `${X}.rec`))).toBe(true);
    stop.abort();
    expect((await running).end).toBe(X); // the window's own (older) "not found"
  });
});
