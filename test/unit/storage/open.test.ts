import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoreConfig } from '../../../src/config';
import { UnavailableError } from '../../../src/errors';

const base = { prefix: '', connectTimeoutMs: 1000, ioTimeoutMs: 1000, retryDeadlineMs: 1000, s3: { forcePathStyle: false, conditionalPut: 'auto' as const, client: 'auto' as const } };

describe('openStorage', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'walts-open-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('opens a directory store without loading the S3 module', async () => {
    await jest.isolateModulesAsync(async () => {
      jest.doMock('../../../src/storage/s3', () => {
        throw new Error('the S3 module was loaded for a file store');
      });
      const { openStorage } = await import('../../../src/storage/open');
      const config: StoreConfig = { ...base, url: `file://${dir}`, kind: 'file', directory: dir };
      const s = openStorage(config);
      expect(s.description).toBe(`file://${dir}`);
      await s.put('a', Buffer.from('x'));
      expect(await s.head('a')).toMatchObject({ size: 1 });
      await s.close();
      // And only an S3 store loads it.
      expect(() => openStorage({ ...base, url: 's3://bucket/p', kind: 's3', bucket: 'bucket', prefix: 'p/' })).toThrow('the S3 module was loaded');
    });
  });

  it('wraps the store in deadline-bounded retries that log each retry', async () => {
    const warnings: Array<{ obj: object; msg: string }> = [];
    const { openStorage } = await import('../../../src/storage/open');
    const { FsStorage } = await import('../../../src/storage/fs');
    const s = openStorage({ ...base, url: `file://${dir}`, kind: 'file', directory: dir }, { warn: (obj, msg) => warnings.push({ obj, msg }) });
    jest.spyOn(FsStorage.prototype, 'head').mockRejectedValueOnce(new UnavailableError(`file://${dir}: cannot stat x: EIO`, { transient: true }));
    expect(await s.head('missing')).toBeUndefined();
    expect(warnings).toEqual([
      {
        msg: expect.stringMatching(/^store request failed, retrying in \d+ ms \(\d+\.\d s left of the retry deadline\)$/),
        obj: expect.objectContaining({ store: `file://${dir}`, op: 'head', key: 'missing', attempt: 1, remaining_ms: expect.any(Number) }),
      },
    ]);
    jest.restoreAllMocks();
  });
});
