import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { makeStagingDir, StagedSegment } from '../../../../src/ops/receive/staging';

let spool: string;
beforeEach(() => (spool = mkdtempSync(join(tmpdir(), 'walts-staging-unit-'))));
afterEach(() => rmSync(spool, { recursive: true, force: true }));

describe('wal-receive staging', () => {
  test('a private directory per process under <spool>/receive; directories of dead receivers of the slot are removed, live ones and other slots kept', async () => {
    const root = join(spool, 'receive');
    mkdirSync(root);
    const dead = join(root, 'walts-receive-s1-2147483646-AbC123'); // no such process
    const live = join(root, `walts-receive-s1-${process.ppid}-XyZ789`);
    const other = join(root, 'walts-receive-s2-2147483646-AbC123');
    for (const d of [dead, live, other]) mkdirSync(d);
    writeFileSync(join(dead, '000000010000000000000002.receiving'), 'x');
    const dir = await makeStagingDir(spool, 's1');
    expect(dirname(dir)).toBe(root);
    expect(basename(dir)).toMatch(new RegExp(`^walts-receive-s1-${process.pid}-[A-Za-z0-9]{6}$`));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect([existsSync(dead), existsSync(live), existsSync(other)]).toEqual([false, true, true]);
  });

  test('a segment is appended, read back, and renamed to its WAL name once whole', async () => {
    const seg = await StagedSegment.create(spool, '000000010000000000000002');
    await seg.append(Buffer.from('abc'));
    await seg.append(Buffer.from('def'));
    expect(seg.size).toBe(6);
    const h = await seg.openForRead();
    expect((await h.readFile()).toString()).toBe('abcdef');
    await h.close();
    const done = await seg.complete(spool);
    expect(done).toBe(join(spool, '000000010000000000000002'));
    expect(existsSync(join(spool, '000000010000000000000002.receiving'))).toBe(false);
  });
});
