import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backoff, DEFAULT_BACKOFF, retryDelay } from '../../src/refresh/backoff.js';

describe('retryDelay', () => {
  it('stays within [min, min(max, min * 2^attempt)] at every step (like Vault TestAgentBackoff)', () => {
    const steps: Array<[number, number]> = [
      [1, 2_000],
      [2, 4_000],
      [3, 8_000],
      [4, 16_000],
      [5, 32_000],
      [6, 60_000],
      [7, 60_000],
      [50, 60_000],
    ];
    for (const [attempt, ceiling] of steps) {
      expect(retryDelay(attempt, DEFAULT_BACKOFF, 0, undefined)).toBe(1_000);
      expect(retryDelay(attempt, DEFAULT_BACKOFF, 0.999999, undefined)).toBeCloseTo(ceiling, -1);
      expect(retryDelay(attempt, DEFAULT_BACKOFF, 0.5, undefined)).toBe(Math.round(1_000 + 0.5 * (ceiling - 1_000)));
    }
  });

  it('never overflows for huge attempt counts', () => {
    expect(retryDelay(10_000, DEFAULT_BACKOFF, 0.5)).toBe(30_500);
  });

  it('retries again before a still-valid token expires: at most half the remaining validity', () => {
    // 60 s backoff ceiling, but the held token has only 20 s left.
    expect(retryDelay(10, DEFAULT_BACKOFF, 0.999999, 20_000)).toBeLessThanOrEqual(10_000);
    expect(retryDelay(10, DEFAULT_BACKOFF, 0, 20_000)).toBe(1_000);
  });

  it('near expiry goes below min, but never below min/4, so the last second is not a busy loop', () => {
    expect(retryDelay(3, DEFAULT_BACKOFF, 0.999999, 1_000)).toBe(500);
    expect(retryDelay(3, DEFAULT_BACKOFF, 0, 100)).toBe(250);
    expect(retryDelay(3, DEFAULT_BACKOFF, 0.999999, 100)).toBe(250);
  });

  it('ignores the expiry cap once the token has expired', () => {
    expect(retryDelay(6, DEFAULT_BACKOFF, 0.999999, 0)).toBeCloseTo(60_000, -1);
    expect(retryDelay(6, DEFAULT_BACKOFF, 0.999999, -5_000)).toBeCloseTo(60_000, -1);
  });

  it('property: always within [min(minMs, cap), maxMs] and below half the remaining validity (or min/4)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.option(fc.integer({ min: -100_000, max: 10_000_000 }), { nil: undefined }),
        (attempt, random, msUntilExpiry) => {
          const d = retryDelay(attempt, DEFAULT_BACKOFF, random, msUntilExpiry);
          expect(d).toBeLessThanOrEqual(60_000);
          expect(d).toBeGreaterThanOrEqual(250);
          if (msUntilExpiry !== undefined && msUntilExpiry > 0) {
            expect(d).toBeLessThanOrEqual(Math.max(msUntilExpiry / 2, 250) + 0.5);
          } else {
            expect(d).toBeGreaterThanOrEqual(1_000);
          }
        },
      ),
    );
  });
});

describe('Backoff', () => {
  it('grows the ceiling with each failure and starts over after reset', () => {
    const b = new Backoff({ random: () => 0.999999 });
    const delays = [b.next(), b.next(), b.next()];
    expect(b.attempt).toBe(3);
    expect(delays.map((d) => Math.round(d / 1_000))).toEqual([2, 4, 8]);
    b.reset();
    expect(b.attempt).toBe(0);
    expect(Math.round(b.next() / 1_000)).toBe(2);
  });

  it('uses the configured bounds', () => {
    const b = new Backoff({ minMs: 100, maxMs: 300, random: () => 0.999999 });
    expect([b.next(), b.next(), b.next()].map(Math.round)).toEqual([200, 300, 300]);
    const low = new Backoff({ minMs: 100, maxMs: 300, random: () => 0 });
    expect([low.next(), low.next()]).toEqual([100, 100]);
  });

  it('passes the remaining validity through', () => {
    const b = new Backoff({ random: () => 0.999999 });
    for (let i = 0; i < 10; i++) b.next();
    expect(b.next(4_000)).toBeLessThanOrEqual(2_000);
  });
});
