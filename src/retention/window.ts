/**
 * Reading the argument of `delete window <duration>` and `delete retain <count|duration>`. Pure.
 *
 * A duration is one whole number and one unit, no space: `30s`, `90m` or `90min`, `36h`, `7d`, `2w`
 * (a day is 24 h and a week 7 days: the window is elapsed time, not calendar days, so a daylight-saving
 * change does not move it). A bare whole number is a count of backups (`retain 8`), as before.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  s: 1_000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** The forms, for usage errors and help. */
export const DURATION_FORMS = 'a whole number with a unit: s, m or min, h, d, w (e.g. 36h, 7d, 2w)';

export interface Duration {
  readonly ms: number;
  /** As the operator wrote it, for messages ("inside the 7d window"). */
  readonly text: string;
}

/** `7d` → 7 days; undefined for anything else (a bare number, a fraction, an unknown unit, zero). */
export function parseDuration(text: string): Duration | undefined {
  const m = /^(\d+)(s|m|min|h|d|w)$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  const ms = n * UNIT_MS[m[2]!]!;
  // Zero would keep only the newest backup finished by now: that is `retain 1`, so say so instead.
  if (n < 1 || !Number.isSafeInteger(ms)) return undefined;
  return { ms, text };
}

export type RetainArgument = { readonly kind: 'count'; readonly count: number } | { readonly kind: 'window'; readonly duration: Duration };

/** `retain 8` keeps 8 backups; `retain 7d` is `window 7d`. Undefined: neither. */
export function parseRetainArgument(text: string): RetainArgument | undefined {
  if (/^\d+$/.test(text)) {
    const count = Number(text);
    return Number.isSafeInteger(count) && count >= 1 ? { kind: 'count', count } : undefined;
  }
  const duration = parseDuration(text);
  return duration ? { kind: 'window', duration } : undefined;
}

/**
 * The first second of the window: `now - duration`, rounded down to a whole second. Rounding down
 * widens the window by less than a second, so the time printed (whole seconds, the way operators paste
 * it into `--target-time`) is itself restorable from what is kept.
 */
export function windowStartMs(nowMs: number, durationMs: number): number {
  return Math.floor((nowMs - durationMs) / 1000) * 1000;
}

/** `2026-11-25 12:00:00+00`: what the plan prints and what `backup-fetch --target-time` accepts. */
export function formatWindowTime(epochMs: number): string {
  return new Date(epochMs).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '+00');
}
