/**
 * verify: proves that what the store keeps can be restored, without restoring it.
 *
 * - every complete backup has all its parts (volumes, manifest) with the sizes its sentinel records;
 * - the WAL from each backup's start segment to the newest archived segment is continuous, following
 *   timeline switches through the `.history` files (the same walk recovery does);
 * - no timeline went on after a child timeline branched off it: two servers archiving into one prefix
 *   (a restored copy that kept archiving, or a former primary after failover) is a problem, since
 *   recovery to the latest timeline then follows whichever history has the highest number;
 * - with `deep`, every backup part and every WAL object is downloaded, decoded and checked against its
 *   recorded SHA-256 (this needs the private key when the store is encrypted).
 * Problems make the command fail; orphans (leftover folders of failed backups, WAL older than every
 * backup) are reported but do not, since they do not stand in the way of a restore.
 */
import { mapLimit } from '../archive/catalog';
import { readPart } from '../archive/parts';
import { readWalObject } from '../archive/walRead';
import type { Deps } from '../deps';
import { openArchive, isEncrypted } from '../archive/archive';
import { ConfigError, describeError } from '../errors';
import { compareSegmentNames, DEFAULT_SEGMENT_SIZE, formatLsn, parseSegmentName } from '../postgres/walName';
import { readRetentionInput } from '../retention/apply';
import type { RetentionInput } from '../retention/policy';
import { findBranches, type Branch } from '../retention/forks';
import { checkChain, parseHistory, type HistoryEntry } from '../retention/walChain';
import { verifyStreamed, type StreamedReport } from './verifyStreamed';

export interface VerifyArgs {
  readonly deep: boolean;
  /** Whether a private key is configured: --deep on an encrypted archive cannot work without one. */
  readonly canDecrypt: boolean;
  readonly leftoverAgeMs: number;
  readonly parallel: number;
  readonly signal?: AbortSignal;
}

export interface BackupReport {
  readonly name: string;
  readonly timeline: number;
  readonly wal_from: string;
  readonly wal_to?: string;
  readonly wal_segments: number;
  readonly problems: string[];
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly backups: BackupReport[];
  /** Problems not tied to one backup (unreadable history files, corrupt WAL objects under --deep). */
  readonly problems: string[];
  readonly orphans: string[];
  /** Timelines that went on after a child branched off them (each is also one line in `problems`). */
  readonly forks: ForkReport[];
  readonly wal_objects: number;
  readonly deep: boolean;
  /** The newest received partial per receiver slot: how far streamed WAL reaches. */
  readonly streamed: StreamedReport[];
}

export interface ForkReport {
  readonly timeline: number;
  readonly branched_timeline: number;
  readonly branch_lsn: string;
  /** Segments of `timeline` after the one holding the branch point, stored after the branch. */
  readonly segments_after_branch: number;
  readonly continued_to: string;
  /** The timeline recovery_target_timeline = latest reaches. */
  readonly latest_timeline: number;
}

export async function verify(deps: Deps, args: VerifyArgs): Promise<VerifyReport> {
  const { storage } = deps;
  const archive = await openArchive(storage, args.signal);
  const input = await readRetentionInput(storage, { nowMs: deps.now().getTime(), leftoverAgeMs: args.leftoverAgeMs, signal: args.signal });
  if (args.deep && !args.canDecrypt && (isEncrypted(archive) || holdsEncryptedObjects(input))) {
    // One configuration error up front, not one "problem" per object that could not be decrypted.
    throw new ConfigError('verify --deep reads every object, and this archive is encrypted: set WALTS_PGP_PRIVATE_KEY (and its passphrase) on this host, or run verify without --deep');
  }
  const problems: string[] = [];
  const segmentSize = input.backups[0]?.wal_segment_size ?? DEFAULT_SEGMENT_SIZE;

  // WAL present, per timeline; history files decoded.
  const segments = new Map<number, Set<number>>();
  const histories = new Map<number, HistoryEntry[]>();
  // Store times, for telling a second writer from a dead end left by a point-in-time restore.
  const segmentTimes = new Map<number, Map<number, number>>();
  const historyTimes = new Map<number, number>();
  for (const w of input.wal) {
    if (w.name.kind === 'segment') {
      let set = segments.get(w.name.timeline);
      if (!set) segments.set(w.name.timeline, (set = new Set()));
      const segNo = parseSegmentName(w.name.name, segmentSize).segNo;
      set.add(segNo);
      let times = segmentTimes.get(w.name.timeline);
      if (!times) segmentTimes.set(w.name.timeline, (times = new Map()));
      latestTime(times, segNo, w.lastModifiedMs);
    } else if (w.name.kind === 'history') latestTime(historyTimes, w.name.timeline, w.lastModifiedMs);
  }
  for (const h of input.wal.filter((w) => w.name.kind === 'history')) {
    try {
      const { data } = await readWalObject(deps, h.key, true, args.signal);
      histories.set(h.name.timeline, parseHistory((data ?? Buffer.alloc(0)).toString('utf8')));
    } catch (err) {
      problems.push(`${h.name.name}: unreadable (${describeError(err)})`);
    }
  }

  const backups: BackupReport[] = [];
  for (const b of input.backups) {
    const bp: string[] = [];
    for (const part of [...b.volumes, b.manifest]) {
      const size = input.sizes.get(part.key);
      if (size === undefined) bp.push(`${part.key} is missing`);
      else if (size !== part.stored_size) bp.push(`${part.key} is ${size} bytes, the sentinel records ${part.stored_size}`);
    }
    if (args.deep && bp.length === 0) {
      await mapLimit([...b.volumes, b.manifest], args.parallel, async (part) => {
        try {
          await readPart(deps, part, args.signal, async (s) => {
            for await (const _ of s) void _;
          });
        } catch (err) {
          bp.push(describeError(err));
        }
      });
    }
    const chain = checkChain({ segments, histories, segmentSize: b.wal_segment_size }, b.start_wal_file);
    if (chain.missing.length > 0) bp.push(`WAL gap: ${summarize(chain.missing)} missing (needed from ${b.start_wal_file} to the newest archived segment)`);
    for (const t of chain.missingHistory) bp.push(`timeline ${t} has WAL but its history file ${t.toString(16).toUpperCase().padStart(8, '0')}.history is missing`);
    if (chain.newest === undefined || compareSegmentNames(chain.newest, b.stop_wal_file) < 0) {
      bp.push(`the WAL needed to make the backup consistent (up to ${b.stop_wal_file}) is not all archived`);
    }
    backups.push({ name: b.name, timeline: b.timeline, wal_from: b.start_wal_file, wal_to: chain.newest, wal_segments: chain.expected, problems: bp });
  }

  if (args.deep) {
    await mapLimit(input.wal, args.parallel, async (w) => {
      try {
        await readWalObject(deps, w.key, false, args.signal);
      } catch (err) {
        problems.push(describeError(err));
      }
    });
  }

  const archived = new Set(input.wal.filter((w) => w.name.kind === 'segment').map((w) => w.name.name));
  const streamed = await verifyStreamed(deps, { deep: args.deep, segmentSize: archive.cluster?.wal_segment_size ?? segmentSize, cluster: archive.cluster, nowMs: input.nowMs, archived, signal: args.signal });
  for (const s of streamed) if (s.problem !== undefined) problems.push(`received partial ${s.key} does not verify: ${s.problem}`);

  const branches = findBranches({ segments, histories, segmentSize, segmentTimes, historyTimes });
  const forks = branches.filter((b) => b.continued.length > 0).map(forkReport);
  for (const f of forks) problems.push(forkProblem(f));

  const orphans: string[] = [];
  for (const b of branches.filter((x) => x.deadEnd.length > 0)) {
    orphans.push(`timeline ${b.parent} has ${b.deadEnd.length} segment(s) after timeline ${b.child} branched off it at ${formatLsn(b.switchLsn)} (${summarize(b.deadEnd)}), all archived before the branch: the dead end of a point-in-time restore; recovery to the latest timeline does not read them`);
  }
  const oldestStart = input.backups.map((b) => b.start_wal_file).sort(compareSegmentNames)[0];
  for (const u of input.unfinished) {
    const age = input.nowMs - u.lastModifiedMs;
    if (u.deleting || age >= input.leftoverAgeMs) orphans.push(`${u.name}: ${u.deleting ? 'an interrupted delete' : 'leftover of a failed backup'} (${u.keys.length} objects); \`walts delete\` removes it`);
  }
  if (oldestStart) {
    const old = input.wal.filter((w) => w.name.kind !== 'history' && compareSegmentNames(w.name.segment ?? w.name.name, oldestStart) < 0);
    if (old.length > 0) orphans.push(`${old.length} WAL file(s) older than the oldest backup (${summarize(old.map((w) => w.name.name).sort(compareSegmentNames))}); \`walts delete\` removes them`);
  }

  // An archive with nothing to restore from is not "ok": a new, empty or emptied archive fails.
  const ok = backups.length > 0 && problems.length === 0 && backups.every((b) => b.problems.length === 0);
  return { ok, backups, problems, orphans, forks, wal_objects: input.wal.length, deep: args.deep, streamed };
}

/** Records the newest store time per key (a segment stored under two codecs counts by its later copy). */
function latestTime(map: Map<number, number>, key: number, ms: number | undefined): void {
  if (ms !== undefined) map.set(key, Math.max(ms, map.get(key) ?? ms));
}

function forkReport(b: Branch): ForkReport {
  return {
    timeline: b.parent,
    branched_timeline: b.child,
    branch_lsn: formatLsn(b.switchLsn),
    segments_after_branch: b.continued.length,
    continued_to: b.continued[b.continued.length - 1] ?? b.switchSegment,
    latest_timeline: b.latest,
  };
}

/** One line: both timelines, the branch point, how far the parent went on, and what it means. */
function forkProblem(f: ForkReport): string {
  const { timeline: n, branched_timeline: c, branch_lsn: at } = f;
  return (
    `forked history: timeline ${n} went on to ${f.continued_to} (${f.segments_after_branch} segment(s) archived after the branch) after timeline ${c} branched off it at ${at}: ` +
    `two servers archived into this prefix after timeline ${c} branched off at ${at}: a restored copy or a former primary kept archiving; ` +
    `restores with --target-timeline latest (the default) follow timeline ${f.latest_timeline}, and those of backups taken on timeline ${n} after ${at} fail; ` +
    `give each server its own WALTS_STORE prefix`
  );
}

function holdsEncryptedObjects(input: RetentionInput): boolean {
  return input.wal.some((w) => w.key.endsWith('.pgp')) || input.backups.some((b) => [...b.volumes, b.manifest].some((p) => p.key.endsWith('.pgp')));
}

/** `A, B, C` or `A .. Z (N files)` for long lists. */
function summarize(names: readonly string[]): string {
  if (names.length <= 4) return names.join(', ');
  return `${names[0]} .. ${names[names.length - 1]} (${names.length} files, e.g. ${names.slice(0, 3).join(', ')})`;
}
