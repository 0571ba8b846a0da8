/**
 * A prefetcher creates its spool directory and the spool root, never anything above: started late,
 * after its data directory was removed, it must not bring the path back (seen: a restore drill's
 * copy reappearing after the drill removed it).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeSpoolDir } from '../../../src/ops/fetchSpool';

describe('makeSpoolDir', () => {
  let root: string;
  beforeEach(() => (root = mkdtempSync(join(tmpdir(), 'walts-spooldir-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('creates pg_wal/walts_spool/fetch below an existing pg_wal, and accepts it existing', async () => {
    const dir = join(root, 'data', 'pg_wal', 'walts_spool', 'fetch');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(root, 'data', 'pg_wal'), { recursive: true });
    await makeSpoolDir(dir);
    expect(existsSync(dir)).toBe(true);
    await makeSpoolDir(dir);
  });

  it('a data directory that is gone stays gone (ENOENT, nothing created)', async () => {
    const dir = join(root, 'data', 'pg_wal', 'walts_spool', 'fetch');
    await expect(makeSpoolDir(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(existsSync(join(root, 'data'))).toBe(false);
  });
});
