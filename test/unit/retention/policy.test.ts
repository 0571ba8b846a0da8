/**
 * The pure retention plan (src/retention/policy.ts; reliability.md rules 28-30): which backups a rule
 * keeps, what happens to folders without a sentinel, and where the WAL cutoff falls.
 */
import { backupKeys, backupName, walKey } from '../../../src/archive/layout';
import type { BackupSentinel } from '../../../src/backup/sentinel';
import { fakeSentinel } from '../../helpers/sentinel';
import { parseWalFileName, segmentName } from '../../../src/postgres/walName';
import { planRetention, type RetentionInput, type RetentionPlan, type UnfinishedBackup, type WalObject } from '../../../src/retention/policy';

const SEG = 16 * 1024 * 1024;
const HOUR = 3_600_000;
const NOW = Date.parse('2026-11-21T12:00:00Z');
const seg = (tl: number, n: number) => segmentName({ timeline: tl, segNo: n }, SEG);

/** A complete backup on timeline `tl` starting at 0x28 into segment `n`, finished at `finish`. */
function backup(tl: number, n: number, finish: string): BackupSentinel {
  const start = seg(tl, n);
  const name = backupName(start, 0x28);
  const volume = { key: backupKeys.volume(name, 1, '.lz4'), stored_size: 10, size: 20, sha256: 'a'.repeat(64) };
  const manifest = { key: backupKeys.manifest(name, '.lz4'), stored_size: 5, size: 9, sha256: 'b'.repeat(64) };
  return fakeSentinel(tl, n, { finish, volumes: [volume], manifest });
}

function keysOf(b: BackupSentinel): string[] {
  return [backupKeys.started(b.name), b.volumes[0]!.key, b.manifest.key, backupKeys.sentinel(b.name)];
}

function wal(...names: string[]): WalObject[] {
  return names.map((n) => {
    const name = parseWalFileName(n)!;
    return { key: walKey(name, '.lz4'), name, size: 100 };
  });
}

function walRange(tl: number, from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => seg(tl, from + i));
}

function unfinished(tl: number, n: number, opts: { ageHours: number; deleting?: boolean; noMarker?: boolean }): UnfinishedBackup {
  const start = seg(tl, n);
  const name = backupName(start, 0x28);
  const keys = [backupKeys.started(name), backupKeys.volume(name, 1, '.lz4')];
  if (opts.deleting) keys.push(backupKeys.deleting(name));
  return { name, startWalFile: opts.noMarker ? undefined : start, lastModifiedMs: NOW - opts.ageHours * HOUR, deleting: opts.deleting ?? false, keys };
}

function input(backups: BackupSentinel[], walObjects: WalObject[], more: Partial<RetentionInput> = {}): RetentionInput {
  return {
    backups,
    backupKeys: new Map(backups.map((b) => [b.name, keysOf(b)])),
    unfinished: [],
    wal: walObjects,
    otherKeys: ['walts_v1/cluster.json'],
    sizes: new Map(),
    nowMs: NOW,
    leftoverAgeMs: 24 * HOUR,
    ...more,
  };
}

const actions = (p: RetentionPlan) => Object.fromEntries(p.backups.map((b) => [b.name, b.action]));
const deletedWal = (p: RetentionPlan) => p.walKeys.map((k) => k.slice(k.lastIndexOf('/') + 1).replace(/\.lz4$/, '')).sort();

// Four backups on timeline 1, at segments 2, 4, 6, 8, finished one day apart; WAL 1..10.
const B = [backup(1, 2, '2026-11-17T01:00:00Z'), backup(1, 4, '2026-11-18T01:00:00Z'), backup(1, 6, '2026-11-19T01:00:00Z'), backup(1, 8, '2026-11-20T01:00:00Z')] as const;
const WAL = wal(...walRange(1, 1, 10), `${seg(1, 4)}.00000028.backup`);

describe('planRetention: retain N', () => {
  it('keeps the N newest by start LSN and deletes the WAL before the oldest kept start segment', () => {
    const p = planRetention(input([...B], WAL), { kind: 'retain', count: 2 });
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'delete', [B[2].name]: 'keep', [B[3].name]: 'keep' });
    expect(p.walCutoff).toBe(seg(1, 6));
    expect(deletedWal(p)).toEqual([...walRange(1, 1, 3), `${seg(1, 4)}.00000028.backup`, ...walRange(1, 4, 5)].sort());
    expect(p.otherKeys).toEqual([]);
    // The keys of a deleted backup are all in the plan.
    expect(p.backups.find((b) => b.name === B[0].name)?.keys).toEqual(keysOf(B[0]));
  });

  it('counts by start LSN, not by finish time: a backup that finished later but started earlier is older', () => {
    // readRetentionInput hands the backups over ordered by start LSN; the one at segment 6 finished last.
    const late = backup(1, 6, '2026-11-21T01:00:00Z');
    const p = planRetention(input([B[0], B[1], late, B[3]], WAL), { kind: 'retain', count: 1 });
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'delete', [late.name]: 'delete', [B[3].name]: 'keep' });
    expect(p.walCutoff).toBe(seg(1, 8));
  });

  it('retain more than there are keeps all, and still deletes the WAL older than the oldest backup', () => {
    const p = planRetention(input([...B], WAL), { kind: 'retain', count: 10 });
    expect(p.backups.every((b) => b.action === 'keep')).toBe(true);
    expect(deletedWal(p)).toEqual([seg(1, 1)]);
  });

  it('an empty store: nothing to do', () => {
    const p = planRetention(input([], []), { kind: 'retain', count: 1 });
    expect(p).toMatchObject({ backups: [], wal: [], walKeys: [], otherKeys: [], walCutoff: undefined });
  });

  it('WAL without any backup is never deleted', () => {
    const p = planRetention(input([], WAL), { kind: 'retain', count: 2 });
    expect(p.walKeys).toEqual([]);
    expect(p.wal.every((r) => r.action === 'keep')).toBe(true);
  });

  it('explains the WAL decision as ranges', () => {
    const p = planRetention(input([...B], wal(...walRange(1, 1, 10))), { kind: 'retain', count: 2 });
    expect(p.wal).toEqual([
      expect.objectContaining({ timeline: 1, first: seg(1, 1), last: seg(1, 5), count: 5, bytes: 500, action: 'delete' }),
      expect.objectContaining({ timeline: 1, first: seg(1, 6), last: seg(1, 10), count: 5, action: 'keep' }),
    ]);
  });
});

describe('planRetention: before', () => {
  it('before <name> deletes exactly the backups older than it (by start LSN)', () => {
    const p = planRetention(input([...B], WAL), { kind: 'before-backup', name: B[2].name });
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'delete', [B[2].name]: 'keep', [B[3].name]: 'keep' });
    expect(p.backups.find((b) => b.name === B[2].name)?.reason).toBe('the backup named');
    expect(p.walCutoff).toBe(seg(1, 6));
  });

  it('before the oldest backup deletes no backup', () => {
    const p = planRetention(input([...B], WAL), { kind: 'before-backup', name: B[0].name });
    expect(p.backups.every((b) => b.action === 'keep')).toBe(true);
    expect(deletedWal(p)).toEqual([seg(1, 1)]);
  });

  it('before <time> deletes the backups that finished before it; a backup finishing exactly then stays', () => {
    const p = planRetention(input([...B], WAL), { kind: 'before-time', epochMs: Date.parse(B[2].finish_time), text: B[2].finish_time });
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'delete', [B[2].name]: 'keep', [B[3].name]: 'keep' });
    expect(p.walCutoff).toBe(seg(1, 6));
  });

  it('before a time after every backup deletes them all, and then no WAL: nothing anchors a cutoff', () => {
    const p = planRetention(input([...B], WAL), { kind: 'before-time', epochMs: NOW, text: 'now' });
    expect(p.backups.every((b) => b.action === 'delete')).toBe(true);
    expect(p.walKeys).toEqual([]);
    expect(p.walCutoff).toBeUndefined();
    expect(p.wal.every((r) => r.action === 'keep')).toBe(true);
    expect(p.wal[0]?.reason).toMatch(/no complete backup is kept/);
  });
});

describe('planRetention: everything', () => {
  it('deletes every backup, unfinished folder, WAL file, history file and the other keys', () => {
    const hist = wal('00000002.history');
    const running = unfinished(1, 9, { ageHours: 0 });
    const p = planRetention(input([...B], [...WAL, ...hist], { unfinished: [running] }), { kind: 'everything' });
    expect(p.backups.every((b) => b.action === 'delete')).toBe(true);
    expect(p.backups.find((b) => b.name === running.name)).toMatchObject({ action: 'delete', complete: false });
    expect(p.walKeys).toHaveLength(WAL.length + 1);
    expect(p.walKeys).toContain(hist[0]!.key);
    expect(p.otherKeys).toEqual(['walts_v1/cluster.json']);
    expect(p.walCutoff).toBeUndefined();
  });
});

describe('planRetention: folders without a sentinel', () => {
  it('a backup in progress (young marker) is never touched and protects the WAL from its start', () => {
    // Started at segment 3, before the newest complete backups, and not finished yet (rule 30).
    const running = unfinished(1, 3, { ageHours: 2 });
    const p = planRetention(input([...B], WAL, { unfinished: [running] }), { kind: 'retain', count: 1 });
    expect(p.backups.find((b) => b.name === running.name)).toMatchObject({ action: 'keep', complete: false, reason: expect.stringMatching(/in progress/) });
    expect(actions(p)[B[2].name]).toBe('delete');
    expect(p.walCutoff).toBe(seg(1, 3));
    expect(deletedWal(p)).toEqual(walRange(1, 1, 2));
  });

  it('a backup in progress without a readable marker protects all WAL', () => {
    const running = unfinished(1, 3, { ageHours: 1, noMarker: true });
    const p = planRetention(input([...B], WAL, { unfinished: [running] }), { kind: 'retain', count: 1 });
    expect(p.walKeys).toEqual([]);
    expect(actions(p)[B[0].name]).toBe('delete');
  });

  it('an old folder without a sentinel is the leftover of a failed backup: deleted, and it protects nothing', () => {
    const leftover = unfinished(1, 3, { ageHours: 30 });
    const p = planRetention(input([...B], WAL, { unfinished: [leftover] }), { kind: 'retain', count: 2 });
    expect(p.backups.find((b) => b.name === leftover.name)).toMatchObject({ action: 'delete', complete: false, keys: leftover.keys, reason: expect.stringMatching(/leftover.*30 h/) });
    expect(p.walCutoff).toBe(seg(1, 6));
  });

  it('the age threshold is --leftover-age: just under is in progress, at it is a leftover', () => {
    const young = unfinished(1, 9, { ageHours: 23.99 });
    const old = unfinished(1, 3, { ageHours: 24 });
    const p = planRetention(input([...B], WAL, { unfinished: [young, old] }), { kind: 'retain', count: 4 });
    expect(actions(p)[young.name]).toBe('keep');
    expect(actions(p)[old.name]).toBe('delete');
    const shorter = planRetention(input([...B], WAL, { unfinished: [young], leftoverAgeMs: HOUR }), { kind: 'retain', count: 4 });
    expect(actions(shorter)[young.name]).toBe('delete');
  });

  it('a tombstoned folder (interrupted delete) is finished whatever its age, and protects nothing', () => {
    const half = unfinished(1, 3, { ageHours: 0, deleting: true });
    const p = planRetention(input([...B], WAL, { unfinished: [half] }), { kind: 'retain', count: 4 });
    expect(p.backups.find((b) => b.name === half.name)).toMatchObject({ action: 'delete', reason: expect.stringMatching(/interrupted delete/) });
    expect(p.walCutoff).toBe(seg(1, 2));
  });

  it('only complete backups count towards N: a backup in progress does not push a complete one out', () => {
    const running = unfinished(1, 9, { ageHours: 0 });
    const p = planRetention(input([...B], WAL, { unfinished: [running] }), { kind: 'retain', count: 2 });
    expect(actions(p)).toMatchObject({ [B[2].name]: 'keep', [B[3].name]: 'keep', [running.name]: 'keep' });
  });

  it('with only a backup in progress kept, no WAL is deleted', () => {
    const running = unfinished(1, 9, { ageHours: 0 });
    const p = planRetention(input([...B], WAL, { unfinished: [running] }), { kind: 'before-time', epochMs: NOW, text: 'now' });
    expect(p.backups.filter((b) => b.complete).every((b) => b.action === 'delete')).toBe(true);
    expect(p.walKeys).toEqual([]);
  });
});

describe('planRetention: timelines', () => {
  // Timeline 2 forked off timeline 1 inside segment 7; backups at 1/2, 1/4, 1/6 and 2/8.
  const TL = [backup(1, 2, '2026-11-17T01:00:00Z'), backup(1, 4, '2026-11-18T01:00:00Z'), backup(1, 6, '2026-11-19T01:00:00Z'), backup(2, 8, '2026-11-20T01:00:00Z')];
  const TLWAL = wal(...walRange(1, 1, 9), `${seg(1, 7)}.partial`, ...walRange(2, 7, 10), '00000002.history');

  it('the cutoff applies to every timeline; history files are always kept', () => {
    const p = planRetention(input(TL, TLWAL), { kind: 'retain', count: 2 });
    expect(p.walCutoff).toBe(seg(1, 6));
    expect(deletedWal(p)).toEqual(walRange(1, 1, 5));
    const history = p.wal.find((r) => r.first === '00000002.history');
    expect(history).toMatchObject({ action: 'keep', reason: expect.stringMatching(/always kept/) });
  });

  it('keeping only the timeline-2 backup deletes the WAL of both timelines before its start, but not the history', () => {
    const p = planRetention(input(TL, TLWAL), { kind: 'retain', count: 1 });
    expect(p.walCutoff).toBe(seg(2, 8));
    // Timeline 1 up to segment 9 lies at positions before or at 8 on an older timeline: all before the cutoff, except 9.
    expect(deletedWal(p)).toEqual([...walRange(1, 1, 7), `${seg(1, 7)}.partial`, seg(1, 8), seg(2, 7)].sort());
    expect(p.walKeys.some((k) => k.includes('history'))).toBe(false);
    expect(p.wal.filter((r) => r.action === 'keep').map((r) => [r.timeline, r.first, r.last])).toEqual([
      [1, seg(1, 9), seg(1, 9)],
      [2, seg(2, 8), seg(2, 10)],
      [2, '00000002.history', '00000002.history'],
    ]);
  });

  it('a backup on an older timeline but a later position is the newer backup', () => {
    // Timeline 1 went on after the fork (a dead-end branch) and was backed up at segment 9.
    const dead = backup(1, 9, '2026-11-21T01:00:00Z');
    const p = planRetention(input([...TL, dead], TLWAL), { kind: 'retain', count: 2 });
    expect(actions(p)).toMatchObject({ [TL[2]!.name]: 'delete', [TL[3]!.name]: 'keep', [dead.name]: 'keep' });
    expect(p.walCutoff).toBe(seg(2, 8));
  });
});
