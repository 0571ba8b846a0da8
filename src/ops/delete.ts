/** delete: plans retention from what the store holds, and applies it only with --confirm. */
import { openArchive } from '../archive/archive';
import type { Deps } from '../deps';
import { NotFoundError, UsageError } from '../errors';
import { applyRetention, readRetentionInput } from '../retention/apply';
import { planRetention, type RetentionPlan, type RetentionRule } from '../retention/policy';

export interface DeleteArgs {
  readonly rule: RetentionRule;
  readonly confirm: boolean;
  readonly leftoverAgeMs: number;
  /** Plan as if the clock read this (ms); never later than deps.now(), so it can only keep more. */
  readonly nowMs?: number;
  readonly signal?: AbortSignal;
}

export interface DeleteResult {
  readonly plan: RetentionPlan;
  readonly deletedKeys: number;
}

export async function deleteOp(deps: Deps, args: DeleteArgs): Promise<DeleteResult> {
  const clockMs = deps.now().getTime();
  if (args.nowMs !== undefined && args.nowMs > clockMs) {
    // A later "now" would move a window forward and delete backups the real window still needs.
    throw new UsageError(`--now ${new Date(args.nowMs).toISOString()} is later than this machine's clock (${new Date(clockMs).toISOString()}); only an earlier time is allowed`);
  }
  // A store that is not there would plan "nothing to delete" and succeed.
  await openArchive(deps.storage, args.signal);
  const input = await readRetentionInput(deps.storage, { nowMs: args.nowMs ?? clockMs, leftoverAgeMs: args.leftoverAgeMs, signal: args.signal });
  if (args.rule.kind === 'before-backup' && !input.backups.some((b) => b.name === (args.rule as { name: string }).name)) {
    throw new NotFoundError(`backup ${args.rule.name} does not exist (or never completed) in ${deps.storage.description}`);
  }
  const plan = planRetention(input, args.rule);
  if (!args.confirm) return { plan, deletedKeys: 0 };
  const deletedKeys = await applyRetention(deps.storage, plan, {
    signal: args.signal,
    onProgress: (e) => deps.log.debug(e, 'deleted'),
  });
  return { plan, deletedKeys };
}
