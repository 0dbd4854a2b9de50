import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sleep, systemClock } from '../../src/clock.js';

const DAY = 86_400_000;

describe('systemClock', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'hrtime'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires a 30-day timer after 30 days, not at once as a bare setTimeout beyond 24.8 days would', () => {
    const fired: number[] = [];
    const start = Date.now();
    systemClock.setTimer(() => fired.push(Date.now() - start), 30 * DAY);
    vi.advanceTimersByTime(25 * DAY);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(5 * DAY - 1);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([30 * DAY]);
  });

  it('never fires a cancelled timer, long or short', () => {
    const fired: string[] = [];
    systemClock.setTimer(() => fired.push('long'), 40 * DAY).cancel();
    systemClock.setTimer(() => fired.push('short'), 10).cancel();
    vi.advanceTimersByTime(41 * DAY);
    expect(fired).toEqual([]);
  });

  it('sleep rejects with the abort reason as soon as the signal aborts', async () => {
    const ac = new AbortController();
    const p = sleep(systemClock, DAY, ac.signal);
    ac.abort(new Error('stopping'));
    await expect(p).rejects.toThrow('stopping');
  });
});
