/**
 * Durations in the configuration file: a number of seconds (`30`, `0.5`) or an integer with one
 * unit (`500ms`, `10s`, `5m`, `1h`, `2d`). Anything else is an error, never a silent default.
 */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;

const DURATION_RE = /^(\d+)(ms|s|m|h|d)$/;

/** The wording every duration error uses (no input value is echoed). */
export const DURATION_EXPECTED = 'expected a duration: seconds as a number, or a string like 500ms, 10s, 5m, 1h, 2d';

/**
 * Parses a configuration duration into whole milliseconds.
 * A number is seconds (fractions allowed down to 1 ms); a string needs exactly one unit.
 * Throws RangeError (message: DURATION_EXPECTED or a range reason) for anything else,
 * including negative, non-finite and sub-millisecond values.
 */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new RangeError(DURATION_EXPECTED);
    if (value < 0) throw new RangeError('expected a duration that is not negative');
    const ms = Math.round(value * 1000);
    // Reject 0.0005 (half a millisecond) rather than silently rounding it to 0 or 1 ms.
    if (Math.abs(ms - value * 1000) > 1e-6) throw new RangeError('expected a duration in whole milliseconds');
    if (!Number.isSafeInteger(ms)) throw new RangeError(DURATION_EXPECTED);
    return ms;
  }
  if (typeof value !== 'string') throw new RangeError(DURATION_EXPECTED);
  const m = DURATION_RE.exec(value.trim());
  if (m === null) throw new RangeError(DURATION_EXPECTED);
  const ms = Number(m[1]) * UNIT_MS[m[2] as Unit];
  if (!Number.isSafeInteger(ms)) throw new RangeError(DURATION_EXPECTED);
  return ms;
}

/**
 * Formats whole milliseconds with the largest unit that divides them exactly
 * (`90000` -> `90s`, `7200000` -> `2h`, `1500` -> `1500ms`). The inverse of parseDuration.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError('expected whole, non-negative milliseconds');
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
