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
  // Strict calendar: 2027-02-30 is not a day (Date would quietly read it as March 2nd).
  if (parts[1] > 11 || parts[2] < 1 || parts[2] > daysInMonth(parts[0], parts[1]) || parts[3] > 23 || parts[4] > 59 || parts[5] > 59) return undefined;
  if (!zone) return { epochMs: new Date(...parts).getTime(), hasOffset: false };
  let offsetMin = 0;
  if (!/^(z|utc)$/i.test(zone)) {
    const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
    if (!z || Number(z[2]) > 15 || Number(z[3] ?? '0') > 59) return undefined;
    offsetMin = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3] ?? '0'));
  }
  return { epochMs: Date.UTC(...parts) - offsetMin * 60_000, hasOffset: true };
}

/** Days in month `month0` (0-11) of `year`, Gregorian. */
function daysInMonth(year: number, month0: number): number {
  return new Date(Date.UTC(year, month0 + 1, 0)).getUTCDate();
}
