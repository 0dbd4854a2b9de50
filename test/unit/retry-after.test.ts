import { describe, expect, it } from 'vitest';
import { MAX_RETRY_AFTER_MS, parseRetryAfter, retryAfterOf } from '../../src/oauth/retry-after.js';

const NOW = Date.UTC(2030, 0, 1, 12, 0, 0);

describe('parseRetryAfter (RFC 9110 §10.2.3)', () => {
  it.each<[string | null | undefined, number | undefined]>([
    ['0', 0],
    ['1', 1_000],
    ['120', 120_000],
    ['  30 ', 30_000],
    ['3600', 3_600_000],
    ['3601', MAX_RETRY_AFTER_MS],
    ['9999999999', MAX_RETRY_AFTER_MS],
    // IMF-fixdate, RFC 850 and asctime, 90 s after NOW
    ['Tue, 01 Jan 2030 12:01:30 GMT', 90_000],
    ['Tuesday, 01-Jan-30 12:01:30 GMT', 90_000],
    ['Tue Jan  1 12:01:30 2030', 90_000],
    // a date in the past: retry now; a date days away: capped
    ['Tue, 01 Jan 2030 11:00:00 GMT', 0],
    ['Fri, 04 Jan 2030 12:00:00 GMT', MAX_RETRY_AFTER_MS],
    // garbage is ignored
    [undefined, undefined],
    [null, undefined],
    ['', undefined],
    ['-5', undefined],
    ['1.5', undefined],
    ['12345678901', undefined],
    ['soon', undefined],
    ['Tue, 01 Jan 2030 12:01:30', undefined],
    ['2030-01-01T12:01:30Z', undefined],
    ['Tue, 32 Jan 2030 12:01:30 GMT', undefined],
  ])('%j → %j', (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });

  it('is read on 429 and 503 answers only', () => {
    const headers = new Headers({ 'retry-after': '7' });
    expect(retryAfterOf({ status: 429, headers }, NOW)).toBe(7_000);
    expect(retryAfterOf({ status: 503, headers }, NOW)).toBe(7_000);
    expect(retryAfterOf({ status: 500, headers }, NOW)).toBeUndefined();
    expect(retryAfterOf({ status: 301, headers }, NOW)).toBeUndefined();
    expect(retryAfterOf(undefined, NOW)).toBeUndefined();
  });
});
