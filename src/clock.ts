/**
 * Injected time: every module that reads the time or waits takes a Clock, so tests can use a fake one.
 * Two clocks, because each fails differently: the wall clock can be stepped (NTP, an operator,
 * libfaketime), the monotonic one stands still while a VM is suspended. How long a token stays
 * valid is judged by both (see token.ts remainingMs); timers run on the monotonic one.
 */
export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch: for display and for what other processes read. */
  now(): number;
  /** Milliseconds on a clock that never steps (uv_hrtime, as performance.now()); only differences mean anything. */
  monotonic(): number;
  /** Calls fn after ms milliseconds (any length: longer than setTimeout's 24.8-day limit is handled). */
  setTimer(fn: () => void, ms: number): Timer;
}

export interface Timer {
  cancel(): void;
}

/**
 * Monotonic milliseconds from process.hrtime: the same clock as performance.now() (uv_hrtime), without
 * loading node's perf_hooks for it (~0.4 MiB of RSS on Node 24, docs/performance.md).
 */
const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

// setTimeout overflows (fires at once) above 2^31-1 ms, about 24.8 days.
const MAX_TIMEOUT_MS = 2_147_483_647;

/** The real clock. Long delays are chained so they never overflow setTimeout. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: monotonicMs,
  setTimer(fn, ms) {
    let handle: NodeJS.Timeout | undefined;
    let cancelled = false;
    const target = monotonicMs() + Math.max(0, ms);
    const arm = (): void => {
      const remaining = target - monotonicMs();
      if (remaining > MAX_TIMEOUT_MS) {
        handle = setTimeout(arm, MAX_TIMEOUT_MS);
      } else {
        handle = setTimeout(() => {
          if (!cancelled) fn();
        }, Math.max(0, remaining));
      }
      handle.unref?.();
    };
    arm();
    return {
      cancel() {
        cancelled = true;
        if (handle) clearTimeout(handle);
      },
    };
  },
};

/** Resolves after ms, or rejects with the signal's reason as soon as signal aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
