/**
 * Retry-After (RFC 9110 §10.2.3) on the IdP's 429 and 503 answers: how long it asked tokend to
 * wait. Pure; the refresher and the per-IdP grant limiter honour the result.
 */

/** The longest wait believed from a Retry-After: 1 hour (ms). Longer ones are capped. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/** HTTP statuses whose Retry-After tokend honours. */
export const RETRY_AFTER_STATUSES: ReadonlySet<number> = new Set([429, 503]);

// delta-seconds: 1*DIGIT. Bounded length so a huge number cannot lose precision before the cap.
const DELTA_SECONDS = /^\d{1,10}$/;
// IMF-fixdate (Sun, 06 Nov 1994 08:49:37 GMT) and the two obsolete forms recipients must accept:
// RFC 850 (Sunday, 06-Nov-94 08:49:37 GMT) and asctime (Sun Nov  6 08:49:37 1994).
const HTTP_DATE =
  /^(?:[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT|[A-Z][a-z]{5,8}, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/;

/**
 * The wait a Retry-After value asks for, in ms from nowMs (wall clock, ms since the epoch):
 * delta-seconds or an HTTP-date; a date in the past means 0; capped at MAX_RETRY_AFTER_MS.
 * undefined for an absent or unparseable value (garbage is ignored, never guessed at).
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim();
  if (DELTA_SECONDS.test(v)) return Math.min(Number(v) * 1000, MAX_RETRY_AFTER_MS);
  if (!HTTP_DATE.test(v)) return undefined;
  // asctime has no zone: it is GMT by definition.
  const at = Date.parse(v.endsWith('GMT') ? v : `${v} GMT`);
  if (!Number.isFinite(at)) return undefined;
  return Math.min(Math.max(0, at - nowMs), MAX_RETRY_AFTER_MS);
}

/** The Retry-After wait of an answer with status and headers, when the status is 429 or 503. */
export function retryAfterOf(res: { status: number; headers: Headers } | undefined, nowMs: number): number | undefined {
  if (res === undefined || !RETRY_AFTER_STATUSES.has(res.status)) return undefined;
  return parseRetryAfter(res.headers.get('retry-after'), nowMs);
}
