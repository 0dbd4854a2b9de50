import type { Clock } from '../clock.js';
import { linkSignals, raceAbort } from '../util/abort.js';

/** While no valid token exists, callers may start an attempt at most this often (ms). */
export const MIN_ON_DEMAND_INTERVAL_MS = 1_000;

/**
 * When callers (min_ttl, an upstream's 401, a consumer without a token) may start an attempt of
 * their own, and how long they wait for one: forced refreshes at most once per
 * minForcedIntervalMs while a valid token is held, once a second while none is, never inside the
 * IdP's Retry-After; a caller waits at most maxWaitMs (an attempt may wait on another replica's
 * lease or a slow IdP far longer than a caller should hang; the attempt goes on).
 */
export class CallerGate {
  private lastForcedAt = Number.NEGATIVE_INFINITY;
  /** No caller-started attempt before this monotonic time (the IdP's Retry-After). */
  private notBefore = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly clock: Clock,
    private readonly minForcedIntervalMs: number,
    private readonly maxWaitMs: number,
  ) {}

  /** True (and recorded) when a caller may start an attempt now; holding: a valid token is held. */
  allow(holding: boolean): boolean {
    const now = this.clock.monotonic();
    if (now < this.notBefore) return false;
    const interval = holding ? this.minForcedIntervalMs : MIN_ON_DEMAND_INTERVAL_MS;
    if (now - this.lastForcedAt < interval) return false;
    this.lastForcedAt = now;
    return true;
  }

  /** The IdP asked for ms of quiet (Retry-After). */
  pauseFor(ms: number): void {
    this.notBefore = this.clock.monotonic() + ms;
  }

  /** An attempt succeeded or the credentials changed: no pause any more. */
  clearPause(): void {
    this.notBefore = Number.NEGATIVE_INFINITY;
  }

  /** Waits for pending on a caller's behalf, at most maxWaitMs; rejects with signal's reason. */
  async wait(pending: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    const bound = new AbortController();
    const timer = this.clock.setTimer(() => bound.abort(), this.maxWaitMs);
    const linked = linkSignals(signal, bound.signal);
    try {
      await raceAbort(pending, linked.signal);
    } catch (err) {
      if (!bound.signal.aborted || signal?.aborted) throw err;
    } finally {
      timer.cancel();
      linked.dispose();
    }
  }
}
