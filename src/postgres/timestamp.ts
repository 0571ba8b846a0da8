/**
 * Reads the timestamps operators paste into `--target-time`: what PostgreSQL prints for `now()`
 * (`2026-11-21 22:30:01.123456+00`), ISO 8601 (`2026-11-21T22:30:01Z`), with or without fractions
 * and a `+HH[:MM]` offset. Pure. walts uses the value only to choose a base backup; PostgreSQL gets
 * the text as written for `recovery_target_time` and applies its own reading.
 */
const TS_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?\s*(Z|UTC|[+-]\d{2}(?::?\d{2})?)?$/i;

export interface ParsedTimestamp {
  /** Milliseconds since the epoch. */
  readonly epochMs: number;
  /** False when the text had no offset: it was read in this process's time zone. */
  readonly hasOffset: boolean;
}

export function parsePgTimestamp(text: string): ParsedTimestamp | undefined {
  const m = TS_RE.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone] = m;
  const ms = Number((frac + '000').slice(0, 3));
  const parts = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms] as const;
  if (parts[1] > 11 || parts[2] < 1 || parts[2] > 31 || parts[3] > 23 || parts[4] > 59 || parts[5] > 60) return undefined;
  if (!zone) return { epochMs: new Date(...parts).getTime(), hasOffset: false };
  let offsetMin = 0;
  if (!/^(z|utc)$/i.test(zone)) {
    const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
    if (!z) return undefined;
    offsetMin = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3] ?? '0'));
  }
  return { epochMs: Date.UTC(...parts) - offsetMin * 60_000, hasOffset: true };
}
