/**
 * The pure retention plan (src/retention/policy.ts; reliability.md rules 28-30): which backups a rule
 * keeps, what happens to folders without a sentinel, and where the WAL cutoff falls.
 */
import { backupKeys, backupName, receivedPartialKey, walKey } from '../../../src/archive/layout';
import type { BackupSentinel } from '../../../src/backup/sentinel';
import { fakeSentinel } from '../../helpers/sentinel';
import { parseWalFileName, segmentName } from '../../../src/postgres/walName';
import { chooseForTargetTime } from '../../../src/backup/recovery';
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

describe('planRetention: window (recovery window, measured from nowMs)', () => {
  const DAY = 24 * HOUR;
  const win = (ms: number, text: string) => ({ kind: 'window' as const, durationMs: ms, text });
  const reason = (p: RetentionPlan, name: string) => p.backups.find((b) => b.name === name)?.reason;

  it('keeps every backup finished inside the window and the newest finished before its start; WAL from that one on', () => {
    // Start: 2026-11-18 12:00:00; B[1] finished 11-18 01:00 (before), B[2] and B[3] inside.
    const p = planRetention(input([...B], WAL), win(3 * DAY, '3d'));
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'keep', [B[2].name]: 'keep', [B[3].name]: 'keep' });
    expect(p.window).toEqual({ start: '2026-11-18 12:00:00+00', startMs: Date.parse('2026-11-18T12:00:00Z'), anchor: B[1].name });
    expect(reason(p, B[1].name)).toBe('newest before the window start: needed to restore to 2026-11-18 12:00:00+00');
    expect(reason(p, B[2].name)).toBe('inside the 3d window (finished after 2026-11-18 12:00:00+00)');
    expect(reason(p, B[0].name)).toBe(`finished before the window start (2026-11-18 12:00:00+00); ${B[1].name} is newer and restores to it`);
    expect(p.walCutoff).toBe(seg(1, 4));
    expect(deletedWal(p)).toEqual(walRange(1, 1, 3));
  });

  it('what `delete before <window start>` would do is one backup short: the window start could not be restored', () => {
    const before = planRetention(input([...B], WAL), { kind: 'before-time', epochMs: Date.parse('2026-11-18T12:00:00Z'), text: 'start' });
    expect(actions(before)[B[1].name]).toBe('delete');
    expect(actions(planRetention(input([...B], WAL), win(3 * DAY, '3d')))[B[1].name]).toBe('keep');
  });

  it('a backup finishing exactly at the window start is the one a restore to it starts from; the older ones go', () => {
    // 59 h before NOW is 2026-11-19 01:00:00, B[2]'s finish.
    const p = planRetention(input([...B], WAL), win(59 * HOUR, '59h'));
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'delete', [B[2].name]: 'keep', [B[3].name]: 'keep' });
    expect(reason(p, B[2].name)).toBe('finished at the window start: needed to restore to 2026-11-19 01:00:00+00');
    expect(p.walCutoff).toBe(seg(1, 6));
  });

  it('a backup finishing 1 ms after the window start is inside it, and cannot restore to the start: the one before stays', () => {
    const late = backup(1, 6, '2026-11-19T01:00:00.001Z');
    const p = planRetention(input([B[0], B[1], late, B[3]], WAL), win(59 * HOUR, '59h'));
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'keep', [late.name]: 'keep', [B[3].name]: 'keep' });
    expect(p.window?.anchor).toBe(B[1].name);
    expect(reason(p, late.name)).toMatch(/^inside the 59h window/);
  });

  it('the start is rounded down to a whole second: the time printed is restorable from what is kept', () => {
    // now = 12:00:00.700, 3d: now - 3d = 11-18 12:00:00.700, printed and used as 12:00:00.
    const atStart = backup(1, 6, '2026-11-18T12:00:00.500Z');
    const p = planRetention(input([B[0], B[1], atStart, B[3]], WAL, { nowMs: NOW + 700 }), win(3 * DAY, '3d'));
    expect(p.window?.start).toBe('2026-11-18 12:00:00+00');
    // It finished after the printed start, so a restore to that second starts from B[1].
    expect(p.window?.anchor).toBe(B[1].name);
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'keep', [atStart.name]: 'keep', [B[3].name]: 'keep' });
  });

  it('no backup finished before the window start: all are kept (the window reaches back to the oldest finish only)', () => {
    const p = planRetention(input([...B], WAL), win(5 * DAY, '5d'));
    expect(p.backups.every((b) => b.action === 'keep')).toBe(true);
    expect(p.window?.anchor).toBeUndefined();
    // As with every rule, WAL older than the oldest backup serves no restore.
    expect(p.walCutoff).toBe(seg(1, 2));
    expect(deletedWal(p)).toEqual([seg(1, 1)]);
  });

  it('all backups finished before the window start: the newest stays, with the WAL from its start', () => {
    const p = planRetention(input([...B], WAL), win(1 * HOUR, '1h'));
    expect(actions(p)).toEqual({ [B[0].name]: 'delete', [B[1].name]: 'delete', [B[2].name]: 'delete', [B[3].name]: 'keep' });
    expect(reason(p, B[3].name)).toBe('newest before the window start: needed to restore to 2026-11-21 11:00:00+00');
    expect(p.walCutoff).toBe(seg(1, 8));
  });

  it('an empty store: nothing to do', () => {
    const p = planRetention(input([], WAL), win(1 * DAY, '1d'));
    expect(p).toMatchObject({ backups: [], walKeys: [], walCutoff: undefined, window: { start: '2026-11-20 12:00:00+00', anchor: undefined } });
  });

  it('the anchor is the backup backup-fetch LATEST --target-time <window start> picks (newest by start LSN among those finished)', () => {
    // The one at segment 4 started later but finished earlier than the one at segment 2: both before the start.
    const early = backup(1, 2, '2026-11-18T05:00:00Z');
    const later = backup(1, 4, '2026-11-18T03:00:00Z');
    const backups = [early, later, B[2], B[3]];
    const p = planRetention(input(backups, WAL), win(3 * DAY, '3d'));
    expect(p.window?.anchor).toBe(later.name);
    expect(actions(p)).toEqual({ [early.name]: 'delete', [later.name]: 'keep', [B[2].name]: 'keep', [B[3].name]: 'keep' });
    for (const days of [1, 2, 3]) {
      const q = planRetention(input(backups, WAL), win(days * DAY, `${days}d`));
      expect(q.window?.anchor).toBe(chooseForTargetTime(backups, q.window!.start).name);
    }
    // 4d starts before every finish: no anchor, and backup-fetch could not reach that start either.
    const none = planRetention(input(backups, WAL), win(4 * DAY, '4d'));
    expect(none.window?.anchor).toBeUndefined();
    expect(() => chooseForTargetTime(backups, none.window!.start)).toThrow(/before the end of the oldest backup/);
  });

  it('a backup in progress is untouched and protects its WAL, whatever the window', () => {
    const running = unfinished(1, 3, { ageHours: 2 });
    const p = planRetention(input([...B], WAL, { unfinished: [running] }), win(1 * HOUR, '1h'));
    expect(p.backups.find((b) => b.name === running.name)).toMatchObject({ action: 'keep', complete: false, reason: expect.stringMatching(/in progress/) });
    expect(actions(p)[B[3].name]).toBe('keep');
    expect(p.walCutoff).toBe(seg(1, 3));
  });

  it('a finish time that does not parse is kept', () => {
    const odd = { ...backup(1, 6, 'x'), finish_time: 'yesterday' };
    const p = planRetention(input([B[0], B[1], odd, B[3]], WAL), win(1 * HOUR, '1h'));
    expect(actions(p)[odd.name]).toBe('keep');
    expect(reason(p, odd.name)).toMatch(/unreadable/);
  });

  it('timelines: the anchor on timeline 1, newer backups on timeline 2; WAL of both from the anchor on, history kept', () => {
    const TL = [backup(1, 2, '2026-11-17T01:00:00Z'), backup(1, 4, '2026-11-18T01:00:00Z'), backup(1, 6, '2026-11-19T01:00:00Z'), backup(2, 8, '2026-11-20T01:00:00Z')];
    const TLWAL = wal(...walRange(1, 1, 9), `${seg(1, 7)}.partial`, ...walRange(2, 7, 10), '00000002.history');
    // Start 2026-11-19 12:00:00: between the last timeline-1 backup and the timeline-2 one.
    const p = planRetention(input(TL, TLWAL), win(2 * DAY, '2d'));
    expect(actions(p)).toEqual({ [TL[0]!.name]: 'delete', [TL[1]!.name]: 'delete', [TL[2]!.name]: 'keep', [TL[3]!.name]: 'keep' });
    expect(p.window?.anchor).toBe(TL[2]!.name);
    expect(p.walCutoff).toBe(seg(1, 6));
    expect(deletedWal(p)).toEqual(walRange(1, 1, 5));
    expect(p.wal.find((r) => r.first === '00000002.history')).toMatchObject({ action: 'keep' });
    // A window starting after the switch: the timeline-2 backup is the anchor, timeline 1 before it goes.
    const q = planRetention(input(TL, TLWAL), win(HOUR, '1h'));
    expect(actions(q)).toEqual({ [TL[0]!.name]: 'delete', [TL[1]!.name]: 'delete', [TL[2]!.name]: 'delete', [TL[3]!.name]: 'keep' });
    expect(q.walCutoff).toBe(seg(2, 8));
    expect(q.walKeys.some((k) => k.includes('history'))).toBe(false);
  });
});

describe('planRetention: a receiver\'s partial segments (receive/)', () => {
  const received = (slot: string, s: string) => ({ key: receivedPartialKey(slot, s, '.lz4'), slot, segment: s });
  const R = [received('a', seg(1, 3)), received('a', seg(1, 6)), received('b', seg(1, 11)), received('b', seg(2, 5))];

  it('deletes those before the cutoff, never one at or after it (the newest WAL there may be)', () => {
    const p = planRetention(input([...B], WAL, { received: R }), { kind: 'retain', count: 2 });
    expect(p.walCutoff).toBe(seg(1, 6));
    expect(p.receivedKeys).toEqual([R[0]!.key, R[3]!.key]); // 00000002…05 is before 00000001…06 as a position
    expect(p.walKeys.some((k) => k.includes('/receive/'))).toBe(false);
  });

  it('none without a backup to anchor a cutoff; all with everything', () => {
    expect(planRetention(input([], WAL, { received: R }), { kind: 'retain', count: 2 }).receivedKeys).toEqual([]);
    expect(planRetention(input([...B], WAL, { received: R }), { kind: 'everything' }).receivedKeys).toEqual(R.map((r) => r.key));
  });
});
