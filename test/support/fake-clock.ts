import type { Clock, Timer } from '../../src/clock.js';

interface PendingTimer {
  /** Monotonic time (ms) at which the timer fires. */
  readonly due: number;
  /** Creation order, so timers due at the same instant fire in the order they were set. */
  readonly seq: number;
  readonly fn: () => void;
}

/** Lets every queued microtask (and promise chain built from them) run to completion. */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A manually driven Clock for unit tests.
 *
 * Like the real one, it keeps two notions of time: the wall clock that `now()` reports and a
 * monotonic clock that timers run on. `advance(ms)` moves both and fires due timers; `set(ms)`
 * jumps only the wall clock (NTP step, VM resume), so pending timers keep their remaining delay,
 * exactly as Node's setTimeout does when the system time changes.
 */
export class FakeClock implements Clock {
  private mono = 0;
  private offset: number;
  private seq = 0;
  private readonly timers = new Set<PendingTimer>();

  /** @param startMs initial wall-clock time (ms since epoch); default 2025-01-01T00:00:00Z. */
  constructor(startMs = Date.UTC(2025, 0, 1)) {
    this.offset = startMs;
  }

  /** Wall-clock milliseconds since the epoch. */
  now(): number {
    return this.mono + this.offset;
  }

  /** Monotonic milliseconds: moved by advance() only, never by set() or step(). */
  monotonic(): number {
    return this.mono;
  }

  /** Steps the wall clock by ms (negative: backwards) without firing anything or moving timers. */
  step(ms: number): void {
    this.offset += ms;
  }

  /** Schedules fn after ms (negative counts as 0) of monotonic time. */
  setTimer(fn: () => void, ms: number): Timer {
    const timer: PendingTimer = { due: this.mono + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return { cancel: () => void this.timers.delete(timer) };
  }

  /**
   * Moves time forward by ms, firing every timer that becomes due, earliest first, with the clock
   * reading that timer's due time; microtasks settle after each one so work a timer starts (and
   * timers it sets, if due within the window) runs before the next fires.
   */
  async advance(ms: number): Promise<void> {
    const target = this.mono + Math.max(0, ms);
    await flushMicrotasks();
    for (let fired = 0; ; fired++) {
      if (fired > 100_000) throw new Error('FakeClock.advance: more than 100000 timers fired (a timer loop?)');
      const next = this.earliest();
      if (!next || next.due > target) break;
      this.timers.delete(next);
      this.mono = Math.max(this.mono, next.due);
      next.fn();
      await flushMicrotasks();
    }
    this.mono = target;
    await flushMicrotasks();
  }

  /** Jumps the wall clock to ms (since epoch) without firing anything or moving timers. */
  set(ms: number): void {
    this.offset = ms - this.mono;
  }

  /** Number of timers set and neither fired nor cancelled. */
  pendingTimers(): number {
    return this.timers.size;
  }

  /** ms until the earliest pending timer fires, or undefined if none is pending. */
  nextTimerIn(): number | undefined {
    const next = this.earliest();
    return next === undefined ? undefined : next.due - this.mono;
  }

  /** Lets pending microtasks run without moving time. */
  flush(): Promise<void> {
    return flushMicrotasks();
  }

  private earliest(): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const t of this.timers) {
      if (!best || t.due < best.due || (t.due === best.due && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
