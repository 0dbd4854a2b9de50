import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideWhenStoreDown, refreshDueAt, safetyMarginMs } from '../../src/refresh/policy.js';
import { MIN_USABLE_MS } from '../../src/token.js';
import type { AccessToken } from '../../src/token.js';

const T0 = Date.UTC(2025, 0, 1);
const SECOND = 1_000;
const DAY = 86_400_000;

function token(lifetimeMs: number, obtainedAt = T0): AccessToken {
  return { accessToken: 'x', tokenType: 'Bearer', obtainedAt, expiresAt: obtainedAt + lifetimeMs };
}

describe('safetyMarginMs', () => {
  it.each([
    [1 * SECOND, 500], // half of a very short lifetime
    [3 * SECOND, 1_500],
    [6 * SECOND, 2_000], // the 2 s floor for short lifetimes: the unusable last second plus a grant
    [10 * SECOND, 2_500],
    [5 * 60 * SECOND, 30_000], // the 30 s floor for mid lifetimes
    [3_600 * SECOND, 360_000], // 10 % of an hour
    [40 * DAY, 4 * DAY],
  ])('keeps %i ms of lifetime back by %i ms', (lifetime, margin) => {
    expect(safetyMarginMs(lifetime)).toBe(margin);
  });

  it('is never more than half the lifetime, and never more than a quarter from 8 s up', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 * DAY }), (lifetime) =>
        safetyMarginMs(lifetime) <= (lifetime >= 8 * SECOND ? 0.25 : 0.5) * lifetime,
      ),
    );
  });

  it('always leaves more than the unusable last second, for lifetimes from 3 s up', () => {
    fc.assert(fc.property(fc.integer({ min: 3 * SECOND, max: 400 * DAY }), (lifetime) => safetyMarginMs(lifetime) > MIN_USABLE_MS));
  });
});

describe('refreshDueAt', () => {
  it('refreshes at exactly refreshAt of the lifetime when random is 0', () => {
    expect(refreshDueAt(token(1_000_000), { refreshAt: 0.75, random: 0 })).toBe(T0 + 750_000);
  });

  it('jitters up to 10 % of the lifetime earlier', () => {
    expect(refreshDueAt(token(1_000_000), { refreshAt: 0.75, random: 0.5 })).toBe(T0 + 700_000);
    expect(refreshDueAt(token(1_000_000), { refreshAt: 0.75, random: 0.999999 })).toBeCloseTo(T0 + 650_000, -1);
  });

  it('spreads a fleet: different random values give different due times', () => {
    const dues = new Set([0, 0.25, 0.5, 0.75].map((random) => refreshDueAt(token(3_600_000), { refreshAt: 0.75, random })));
    expect(dues.size).toBe(4);
  });

  it('never waits past expiry minus the margin, even when refreshAt asks for it', () => {
    const t = token(5 * 60 * SECOND);
    expect(refreshDueAt(t, { refreshAt: 0.99, random: 0 })).toBe(t.expiresAt - 30_000);
  });

  it('schedules a 40-day token after 30 days (with refreshAt 0.75), not overflowing timers', () => {
    const due = refreshDueAt(token(40 * DAY), { refreshAt: 0.75, random: 0 });
    expect(due - T0).toBe(30 * DAY);
  });

  it('makes a token without lifetime due at once', () => {
    expect(refreshDueAt(token(0), { refreshAt: 0.75, random: 0.3 })).toBe(T0);
    expect(refreshDueAt(token(-5_000), { refreshAt: 0.75, random: 0.3 })).toBe(T0);
  });

  it('clamps nonsense inputs instead of producing NaN or times before obtainedAt', () => {
    const t = token(10_000);
    for (const opts of [
      { refreshAt: 0.05, random: 0.99 },
      { refreshAt: Number.NaN, random: 0 },
      { refreshAt: 0.75, random: Number.NaN },
      { refreshAt: 2, random: -1 },
    ]) {
      const due = refreshDueAt(t, opts);
      expect(Number.isFinite(due)).toBe(true);
      expect(due).toBeGreaterThanOrEqual(t.obtainedAt);
      expect(due).toBeLessThanOrEqual(t.expiresAt - safetyMarginMs(10_000));
    }
  });

  it('property: obtainedAt <= due <= expiresAt - margin for lifetimes from 1 s to 400 days', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: SECOND, max: 400 * DAY }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.double({ min: 0.01, max: 0.99, noNaN: true }),
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        (lifetime, random, refreshAt, obtainedAt) => {
          const t = token(lifetime, obtainedAt);
          const due = refreshDueAt(t, { refreshAt, random });
          expect(due).toBeGreaterThanOrEqual(t.obtainedAt);
          expect(due).toBeLessThanOrEqual(t.expiresAt - safetyMarginMs(lifetime));
          expect(due).toBeLessThan(t.expiresAt);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('property: with the default refreshAt the due time lies in the jitter window [65 %, 75 %] unless the margin pulls it earlier', () => {
    fc.assert(
      fc.property(
        // From 8 s up the margin (at most a quarter) never reaches into the window.
        fc.integer({ min: 8 * SECOND, max: 400 * DAY }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (lifetime, random) => {
          const t = token(lifetime);
          // Compared in ms with 1 ms slack: doubles near 1.7e12 carry only ~0.2 µs of precision.
          const offset = refreshDueAt(t, { refreshAt: 0.75, random }) - T0;
          expect(offset).toBeGreaterThanOrEqual(0.65 * lifetime - 1);
          expect(offset).toBeLessThanOrEqual(0.75 * lifetime + 1);
        },
      ),
    );
  });
});

describe('decideWhenStoreDown', () => {
  it('lets client_credentials grant locally without the lease (nothing is consumed)', () => {
    expect(decideWhenStoreDown(false)).toBe('grant-locally');
  });

  it('forbids refresh_token grants without the shared store (a rotated token could be replayed)', () => {
    expect(decideWhenStoreDown(true)).toBe('keep-serving');
  });
});

describe('tokenJitter', () => {
  it('gives every replica holding the same token the same value in [0, 1), and different tokens different values', async () => {
    const { tokenJitter } = await import('../../src/refresh/policy.js');
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (t) => {
        const j = tokenJitter(t);
        expect(j).toBeGreaterThanOrEqual(0);
        expect(j).toBeLessThan(1);
        expect(tokenJitter(t)).toBe(j);
      }),
    );
    const values = new Set(Array.from({ length: 200 }, (_, i) => tokenJitter(`token-${i}`)));
    expect(values.size).toBe(200);
    // Spread: a tenth of 200 uniform values in each decile, give or take.
    const low = [...values].filter((v) => v < 0.5).length;
    expect(low).toBeGreaterThan(60);
    expect(low).toBeLessThan(140);
  });
});
