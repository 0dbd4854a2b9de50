import { describe, expect, it } from 'vitest';
import { isNewerThan, isUsable, MIN_USABLE_MS, remainingMs, withDeadline, type AccessToken } from '../../src/token.js';
import { FakeClock } from '../support/fake-clock.js';

const T0 = Date.UTC(2025, 0, 1);

function token(expiresAt: number, extra: Partial<AccessToken> = {}): AccessToken {
  return { accessToken: 'a.b.c', tokenType: 'Bearer', obtainedAt: T0, expiresAt, ...extra };
}

/** A time source reading a fixed wall time (and a monotonic clock at 0). */
const at = (now: number) => ({ now: () => now, monotonic: () => 0 });

describe('isUsable', () => {
  it("accepts a token while at least a second is left, then never (it would expire in the caller's hands)", () => {
    const t = token(T0 + 10_000);
    expect(isUsable(t, at(t.expiresAt - MIN_USABLE_MS))).toBe(true);
    expect(isUsable(t, at(t.expiresAt - MIN_USABLE_MS + 1))).toBe(false);
    expect(isUsable(t, at(t.expiresAt))).toBe(false);
    expect(isUsable(t, at(t.expiresAt + 1))).toBe(false);
    expect(isUsable(undefined, at(T0))).toBe(false);
  });
});

describe('remainingMs: the smaller of the wall and the monotonic reading', () => {
  it('is not stretched when the wall clock is stepped back an hour', () => {
    const clock = new FakeClock(T0);
    const t = withDeadline(token(T0 + 8_000), clock);
    clock.step(-3_600_000);
    expect(remainingMs(t, clock)).toBe(8_000);
  });

  it('runs out on the wall clock while the monotonic one stood still (a suspended VM)', () => {
    const clock = new FakeClock(T0);
    const t = withDeadline(token(T0 + 8_000), clock);
    clock.step(10_000); // the VM slept 10 s: wall time moved, monotonic time did not
    expect(remainingMs(t, clock)).toBe(-2_000);
    expect(isUsable(t, clock)).toBe(false);
  });

  it('counts down on both clocks as time passes', async () => {
    const clock = new FakeClock(T0);
    const t = withDeadline(token(T0 + 8_000), clock);
    await clock.advance(3_000);
    expect(remainingMs(t, clock)).toBe(5_000);
  });

  it('uses the wall clock alone for a token without a deadline', () => {
    expect(remainingMs(token(T0 + 5_000), at(T0 + 1_000))).toBe(4_000);
  });
});

describe('isNewerThan: the one staleness rule of every store', () => {
  it('replaces nothing stored, a shorter-lived token of the same grant, or any token of another grant', () => {
    expect(isNewerThan(token(T0 + 2), undefined)).toBe(true);
    expect(isNewerThan(token(T0 + 2, { grantKey: 'g' }), token(T0 + 1, { grantKey: 'g' }))).toBe(true);
    expect(isNewerThan(token(T0 + 1, { grantKey: 'new' }), token(T0 + 9, { grantKey: 'old' }))).toBe(true);
  });

  it('drops an equal or earlier expiry under the same grant (no rewrite for an equivalent copy)', () => {
    expect(isNewerThan(token(T0 + 1, { grantKey: 'g' }), token(T0 + 1, { grantKey: 'g' }))).toBe(false);
    expect(isNewerThan(token(T0 + 1, { grantKey: 'g' }), token(T0 + 2, { grantKey: 'g' }))).toBe(false);
  });
});
