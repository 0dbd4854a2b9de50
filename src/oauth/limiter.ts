/**
 * The per-IdP grant limiter: at most `concurrency` grants (and revocations) to one IdP at a time,
 * so 10,000 tokens coming due together queue here instead of stampeding the IdP; and while the
 * IdP's Retry-After (429/503) is in force, no new grant to it starts: each fails at once with
 * GRANT_TRANSIENT carrying the time left (retryAfterMs), so every refresher backs off to the
 * moment the IdP named, without a request and without a hidden sleep that would hold up shutdown.
 */
import type { Clock } from '../clock.js';
import { TokendError } from '../errors.js';

/** Default maximum of concurrent grants per IdP. */
export const DEFAULT_IDP_CONCURRENCY = 4;

/** Options of GrantLimiter.run. */
export interface LimiterRunOptions {
  /** Longest wait for a free slot (ms); then GRANT_TRANSIENT reason 'idp_busy'. */
  readonly waitMs: number;
  /** Aborts the wait (not fn once it runs). */
  readonly signal?: AbortSignal | undefined;
  /** Token name and IdP, for messages: e.g. 'token "orders"'. */
  readonly label: string;
}

/** Limits concurrent grants to one IdP and honours its Retry-After pauses. Share one per IdP. */
export class GrantLimiter {
  /** Maximum concurrent operations. */
  readonly concurrency: number;
  private readonly clock: Clock;
  private readonly origin: string;
  private running = 0;
  private readonly waiters: Array<() => void> = [];
  /** Monotonic ms until which no new grant starts. */
  private pausedUntil = Number.NEGATIVE_INFINITY;

  /** origin names the IdP in messages (e.g. https://idp.example.com). */
  constructor(opts: { concurrency?: number | undefined; clock: Clock; origin: string }) {
    this.concurrency = Math.max(1, Math.floor(opts.concurrency ?? DEFAULT_IDP_CONCURRENCY));
    this.clock = opts.clock;
    this.origin = opts.origin;
  }

  /** Operations running now. */
  get inFlight(): number {
    return this.running;
  }

  /** Operations waiting for a slot. */
  get queued(): number {
    return this.waiters.length;
  }

  /** ms left of the current Retry-After pause; 0 when none is in force. */
  pausedForMs(): number {
    return Math.max(0, Math.ceil(this.pausedUntil - this.clock.monotonic()));
  }

  /** Pauses new grants for ms (extends, never shortens, a pause in force). */
  pause(ms: number): void {
    if (!(ms > 0)) return;
    this.pausedUntil = Math.max(this.pausedUntil, this.clock.monotonic() + ms);
  }

  /** Runs fn in a slot; see the module comment for what it refuses. */
  async run<T>(fn: () => Promise<T>, opts: LimiterRunOptions): Promise<T> {
    this.refuseWhilePaused(opts.label);
    if (this.running < this.concurrency) {
      this.running++;
    } else {
      await this.waitForSlot(opts);
      try {
        this.refuseWhilePaused(opts.label);
      } catch (err) {
        this.release();
        throw err;
      }
    }
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private refuseWhilePaused(label: string): void {
    const left = this.pausedForMs();
    if (left > 0) {
      throw new TokendError(
        'GRANT_TRANSIENT',
        `${label}: grant not attempted: ${this.origin} asked tokend to wait (Retry-After); ${Math.ceil(left / 1000)} s left`,
        { reason: 'idp_paused', retryAfterMs: left },
      );
    }
  }

  /** Resolves when a slot is handed over (running is not decremented in between). */
  private waitForSlot(opts: LimiterRunOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const fail = (err: unknown): void => {
        const i = this.waiters.indexOf(wake);
        if (i >= 0) this.waiters.splice(i, 1);
        timer.cancel();
        opts.signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const wake = (): void => {
        timer.cancel();
        opts.signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => fail(opts.signal?.reason);
      const timer = this.clock.setTimer(
        () =>
          fail(
            new TokendError(
              'GRANT_TRANSIENT',
              `${opts.label}: grant not attempted: ${this.concurrency} grants to ${this.origin} were in flight for ${Math.round(opts.waitMs / 1000)} s`,
              { reason: 'idp_busy' },
            ),
          ),
        opts.waitMs,
      );
      if (opts.signal?.aborted) return fail(opts.signal.reason);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(wake);
    });
  }

  /** Hands the slot to the next waiter, or frees it. */
  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.running--;
  }
}
