/**
 * backup-push with several volumes in flight (WALTS_CONCURRENCY=4) on S3: when the upload of one
 * volume fails while others are being uploaded, the backup fails cleanly: its exit code and message,
 * no sentinel, every multipart upload completed or aborted, the server out of backup mode; and the
 * next backup (same concurrency) is restored and starts.
 *
 * s3rver behind the fault proxy; the archiver talks to s3rver directly.
 */
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy';
import { trackClusters, type Cluster } from '../helpers/pg';
import { runWalts } from '../helpers/run';
import { rawS3Client, startS3rver, type S3rverHandle } from '../helpers/s3server';
import { initArchive, waltsCommand } from '../helpers/stores';

jest.setTimeout(600_000);

describe('backup-push with volumes in flight at once (s3rver behind a fault proxy, lz4)', () => {
  const reg = trackClusters();
  let s3: S3rverHandle;
  let proxy: FaultProxy;
  let a: Cluster;
  let pushEnv: Record<string, string>;
  let common: Record<string, string>;
  const PREFIX = 'parallel';

  beforeAll(async () => {
    s3 = await startS3rver();
    proxy = await startFaultProxy({ host: '127.0.0.1', port: s3.port });
    common = {
      WALTS_STORE: `s3://${s3.bucket}/${PREFIX}`,
      WALTS_S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_EC2_METADATA_DISABLED: 'true',
      WALTS_COMPRESSION: 'lz4',
    };
    await initArchive({ ...common, WALTS_S3_ENDPOINT: s3.endpoint });
    a = await reg.createCluster({ name: 'a', env: { ...common, WALTS_S3_ENDPOINT: s3.endpoint }, conf: { archive_mode: 'on', archive_command: waltsCommand('wal-push %p') } });
    await a.start();
    // About 40 MB that LZ4 cannot shrink (random bytea, stored uncompressed), so volumes of 12 MiB
    // stay above the 8 MiB multipart part size and several volumes are uploaded at once.
    await a.psql(
      "create table r (id int, b bytea); alter table r alter column b set storage external; insert into r select g, decode(string_agg(lpad(to_hex((random() * 2147483647)::int), 8, '0'), ''), 'hex') from generate_series(1, 40) g, generate_series(1, 262144) h group by g",
    );
    pushEnv = { ...common, WALTS_S3_ENDPOINT: proxy.endpoint, WALTS_CONCURRENCY: '4', ...a.pgEnv() };
  });
  afterAll(async () => {
    await reg.cleanupAll();
    await proxy?.stop();
    await s3?.stop();
  });

  const keysUnder = async (prefix: string): Promise<string[]> => {
    const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
    const client = rawS3Client(s3.endpoint);
    try {
      const r = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
      return (r.Contents ?? []).map((o) => o.Key!);
    } finally {
      client.destroy();
    }
  };
  const waltsSessions = async () => Number(await a.psql("select count(*) from pg_stat_activity where application_name like 'walts%'"));

  it('a volume whose upload fails while others are in flight: the backup fails, no sentinel, no multipart upload left open', async () => {
    const seen = proxy.requests.length;
    // Every upload request for volume 3 is refused (403: not retried), whether a part or a single PUT.
    proxy.inject({ kind: 'status', status: 403, method: 'PUT', pathIncludes: 'part_00003', times: 1000 });
    const r = await runWalts(['backup-push', a.dataDir, '--fast', '--volume-size', '12MiB'], pushEnv, { timeoutMs: 300_000 });
    proxy.clear();
    expect(r.stderr).toContain('part_00003');
    expect(r.stderr).toContain('"error_kind":"usage"'); // access refused: a setting to fix (ConfigError)
    expect(r.code).toBe(2);
    const name = /(base_[0-9A-F]{24}_[0-9A-F]{8})/.exec(r.stderr)?.[1];
    expect(name).toBeDefined();

    const requests = proxy.requests.slice(seen);
    // Several volumes were being uploaded: requests for volumes after the failing one were made.
    const volumesTouched = new Set(requests.map((q) => /part_(\d{5})/.exec(q.url)?.[1]).filter((v) => v !== undefined));
    expect(volumesTouched.size).toBeGreaterThanOrEqual(3);
    // Every multipart upload that was started was completed (POST ?uploadId=) or aborted (DELETE ?uploadId=).
    const uploadIds = new Set(requests.map((q) => /[?&]uploadId=([^&]+)/.exec(q.url)?.[1]).filter((id): id is string => id !== undefined));
    expect(uploadIds.size).toBeGreaterThan(0);
    for (const id of uploadIds) {
      expect(requests.some((q) => (q.method === 'DELETE' || q.method === 'POST') && q.url.includes(`uploadId=${id}`))).toBe(true);
    }
    expect(await keysUnder(`${PREFIX}/walts_v1/basebackups/${name}/sentinel.json`)).toEqual([]);
    expect((await keysUnder(`${PREFIX}/walts_v1/basebackups/${name}/`)).filter((k) => k.includes('part_00003'))).toEqual([]);
    expect(await waltsSessions()).toBe(0);
    const list = await runWalts(['backup-list', '--json'], pushEnv, { timeoutMs: 60_000 });
    expect(JSON.parse(list.stdout)).toEqual([]);
  });

  it('the next backup, four volumes at once, restores and starts with every row', async () => {
    const push = await runWalts(['backup-push', a.dataDir, '--fast', '--volume-size', '12MiB'], pushEnv, { timeoutMs: 300_000 });
    expect(push.stderr).toContain('"backup-push done"');
    expect(push.code).toBe(0);
    const volumes = Number(/"volumes":(\d+)/.exec(push.stderr)?.[1]);
    expect(volumes).toBeGreaterThanOrEqual(4);
    const expected = await a.psql("select count(*) || ',' || md5(string_agg(md5(b), '' order by id)) from r");

    const r = await reg.emptyCluster({ name: 'r', env: { ...common, WALTS_S3_ENDPOINT: s3.endpoint } });
    const fetch = await runWalts(['backup-fetch', r.dataDir, 'LATEST', '--target-immediate', '--target-action', 'promote'], { ...common, WALTS_S3_ENDPOINT: s3.endpoint, WALTS_CONCURRENCY: '4' }, { timeoutMs: 300_000 });
    expect(fetch.stderr).toContain('"backup-fetch done"');
    expect(fetch.code).toBe(0);
    await r.prepareRestoredDataDir({ keepSourceSettings: true });
    r.setConf({ archive_mode: 'off' });
    await r.start();
    await r.waitForRecoveryEnd(120_000);
    expect(await r.psql("select count(*) || ',' || md5(string_agg(md5(b), '' order by id)) from r")).toBe(expected);
  });
});
