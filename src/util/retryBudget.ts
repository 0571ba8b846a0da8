/**
 * The one retry policy of walts: full-jitter exponential backoff (AWS architecture blog) bounded by
 * one deadline per command run (WALTS_RETRY_DEADLINE). Every layer that retries (store requests,
 * wal-fetch re-reading an object whose download broke, the multipart upload's parts) asks the same
 * budget, so layers never stack: a store that stays down is given up on once, at the deadline.
 *
 * Two windows:
 * - 'command' (wal-push, wal-fetch): the deadline counts from the start of the command, so the
 *   whole command ends within the deadline plus at most one attempt's shortened timeout;
 * - 'outage' (long commands such as backup-push): the deadline counts from the first failure after
 *   the last success, so an hour-long backup still rides out a store that is down for less than
 *   the deadline, and gives up on one that stays down.
 *
 * No new attempt starts after the deadline; the wait before the last one is cut to end at it, and
 * that attempt is given only what is left (at least `minAttemptMs`), see `attemptTimeoutMs`.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { isTransient } from '../errors';

export interface RetryClock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** In [0, 1): the jitter. */
  random(): number;
}

export const realClock: RetryClock = {
  now: () => Date.now(),
  sleep: (ms, signal) => delay(ms, undefined, signal ? { signal } : undefined),
  random: () => Math.random(),
};

export interface RetryBudgetOptions {
  readonly deadlineMs: number;
  /** 'outage' unless said otherwise (see above). */
  readonly window?: 'command' | 'outage';
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** The shortest timeout a last attempt is given (it would rarely succeed with less). */
  readonly minAttemptMs?: number;
  readonly clock?: Partial<RetryClock>;
}

/** What a retry log line says. */
export interface RetryInfo {
  readonly op: string;
  readonly key?: string;
  /** The attempt that just failed, from 1. */
  readonly attempt: number;
  readonly delayMs: number;
  /** Time left before the deadline after this wait. */
  readonly remainingMs: number;
  readonly error: unknown;
}

export class RetryBudget {
  readonly deadlineMs: number;
  readonly window: 'command' | 'outage';
  readonly clock: RetryClock;
  readonly #base: number;
  readonly #cap: number;
  readonly #minAttempt: number;
  readonly #created: number;
  /** 'outage' window: when the current run of failures began (undefined: no failure since the last success). */
  #failingSince: number | undefined;

  constructor(options: RetryBudgetOptions) {
    this.deadlineMs = options.deadlineMs;
    this.window = options.window ?? 'outage';
    this.clock = { ...realClock, ...options.clock };
    this.#base = options.baseDelayMs ?? 200;
    this.#cap = options.maxDelayMs ?? 5000;
    this.#minAttempt = options.minAttemptMs ?? Math.min(1000, Math.ceil(options.deadlineMs / 20));
    this.#created = this.clock.now();
  }

  /** Milliseconds since the command's budget was created (for the final log line). */
  elapsedMs(): number {
    return this.clock.now() - this.#created;
  }

  /** Milliseconds before the deadline (negative once past it). */
  remainingMs(): number {
    const start = this.window === 'command' ? this.#created : (this.#failingSince ?? this.clock.now());
    return start + this.deadlineMs - this.clock.now();
  }

  /** A request succeeded: in the 'outage' window the next failure starts a new deadline. */
  succeeded(): void {
    this.#failingSince = undefined;
  }

  /**
   * The wait before the attempt after failed attempt `attempt` (from 1), or undefined when the
   * deadline has passed. Full jitter in [0, min(cap, base·2^(attempt-1))), cut to end at the deadline.
   */
  nextDelay(attempt: number, firstFailure?: number): number | undefined {
    this.#failingSince ??= this.clock.now();
    // One operation never retries past the deadline from its own first failure either: in the
    // 'outage' window, other requests succeeding meanwhile must not keep a failing one going forever.
    const own = firstFailure === undefined ? Infinity : firstFailure + this.deadlineMs - this.clock.now();
    const left = Math.min(this.remainingMs(), own);
    if (left <= 0) return undefined;
    const ms = Math.floor(this.clock.random() * Math.min(this.#cap, this.#base * 2 ** (attempt - 1)));
    return Math.min(ms, left);
  }

  /**
   * How long the attempt starting now may take before it is cut: what is left of the budget, at
   * least `minAttemptMs`. An attempt is still bounded by the store's own I/O timeouts when shorter.
   */
  attemptTimeoutMs(): number {
    return Math.max(this.remainingMs(), this.#minAttempt);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.clock.sleep(ms, signal);
  }
}

export interface RetryingOptions {
  readonly op: string;
  readonly key?: string;
  readonly signal?: AbortSignal;
  /** Which failures may pass on another attempt; transient UnavailableErrors by default. */
  readonly retryable?: (err: unknown, attempt: number) => boolean;
  readonly onRetry?: (info: RetryInfo) => void;
}

/** Runs `fn` until it succeeds, fails with something not retryable, or the budget is spent. */
export async function retrying<T>(budget: RetryBudget, options: RetryingOptions, fn: (attempt: number) => Promise<T>): Promise<T> {
  const retryable = options.retryable ?? ((err: unknown) => isTransient(err));
  let firstFailure: number | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await fn(attempt);
      budget.succeeded();
      return result;
    } catch (err) {
      if (options.signal?.aborted || !retryable(err, attempt)) throw err;
      firstFailure ??= budget.clock.now();
      const ms = budget.nextDelay(attempt, firstFailure);
      if (ms === undefined) throw err;
      options.onRetry?.({ op: options.op, key: options.key, attempt, delayMs: ms, remainingMs: Math.max(0, budget.remainingMs() - ms), error: err });
      await budget.sleep(ms, options.signal);
    }
  }
}
