import { sleep, type Clock } from '../clock.js';

/** Waits for the next store notification (another process's commit, a reconnect), or a timeout. */
export class ChangeWaiter {
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly clock: Clock,
    private readonly stopSignal: AbortSignal,
  ) {}

  /** Wakes every waiter (call on every store notification, and when stopping). */
  wakeAll(): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  /** Resolves on the next wakeAll() or after ms; rejects when stopped. */
  wait(ms: number): Promise<void> {
    const signal = this.stopSignal;
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const timer = new AbortController();
      const done = (): void => {
        this.waiters.delete(wake);
        signal.removeEventListener('abort', onAbort);
        timer.abort();
      };
      const wake = (): void => {
        done();
        resolve();
      };
      const onAbort = (): void => {
        done();
        reject(signal.reason);
      };
      this.waiters.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
      sleep(this.clock, Math.max(0, ms), timer.signal).then(wake, () => undefined);
    });
  }
}
