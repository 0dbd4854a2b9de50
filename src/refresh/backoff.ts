/** Bounds of the retry delay, in ms. */
export interface BackoffBounds {
  /** Shortest delay between attempts (default 1 000). */
  readonly minMs: number;
  /** Longest delay between attempts (default 60 000). */
  readonly maxMs: number;
}

/** Default bounds: 1 s to 60 s. */
export const DEFAULT_BACKOFF: BackoffBounds = { minMs: 1_000, maxMs: 60_000 };

/** Bounds of a refresher's retries, in ms. */
export interface RetryBounds extends BackoffBounds {
  /**
   * Longest delay while no valid token is held (consumers are getting 503): recovery must follow
   * the IdP's return within seconds. Default 5 000.
   */
  readonly maxWithoutTokenMs: number;
  /** Longest wait an IdP's Retry-After can impose. Default 300 000. */
  readonly retryAfterMaxMs: number;
}

/** Default retry bounds. */
export const DEFAULT_RETRY: RetryBounds = { ...DEFAULT_BACKOFF, maxWithoutTokenMs: 5_000, retryAfterMaxMs: 300_000 };

/**
 * The delay (ms) before retry number `attempt` (1 for the first retry after a failure).
 *
 * Exponential with full jitter: uniform in [minMs, min(maxMs, minMs * 2^attempt)], so the ceiling
 * doubles each attempt (2 s, 4 s, 8 s ... 60 s with the defaults) and replicas that failed together
 * do not retry together.
 *
 * `msUntilExpiry`, when given and positive (the held token is still valid), caps the ceiling at
 * half the remaining validity, so there is always another attempt before the token expires:
 * a 60 s backoff step must not sleep through the last 20 s of a token's life. The cap never
 * goes below minMs / 4 (250 ms by default), so the final second before expiry is a few retries,
 * not a busy loop against a failing IdP. Once the token has expired the plain schedule applies.
 */
export function retryDelay(
  attempt: number,
  bounds: BackoffBounds,
  random: number,
  msUntilExpiry?: number,
): number {
  const minMs = Math.max(0, bounds.minMs);
  const maxMs = Math.max(minMs, bounds.maxMs);
  const n = Math.max(1, Math.floor(attempt));
  // 2^n overflows to Infinity for huge n, and Math.min handles that.
  let ceiling = Math.min(maxMs, minMs * 2 ** n);
  if (msUntilExpiry !== undefined && msUntilExpiry > 0) {
    ceiling = Math.min(ceiling, Math.max(msUntilExpiry / 2, minMs / 4));
  }
  const floor = Math.min(minMs, ceiling);
  const r = Math.min(1, Math.max(0, Number.isFinite(random) ? random : 0));
  return Math.round(floor + r * (ceiling - floor));
}

/** Construction options for {@link Backoff}. */
export interface BackoffOptions {
  /** Default 1 000 ms. */
  readonly minMs?: number | undefined;
  /** Default 60 000 ms. */
  readonly maxMs?: number | undefined;
  /** Default 5 000 ms (see RetryBounds). */
  readonly maxWithoutTokenMs?: number | undefined;
  /** Default 300 000 ms (see RetryBounds). */
  readonly retryAfterMaxMs?: number | undefined;
  /** Uniform random in [0, 1); injected so tests are deterministic. */
  readonly random: () => number;
}

/** Stateful exponential backoff with full jitter (see {@link retryDelay}); one per token. */
export class Backoff {
  /** Consecutive failures so far (0 after reset). */
  attempt = 0;
  readonly bounds: RetryBounds;
  private readonly random: () => number;

  constructor(opts: BackoffOptions) {
    this.bounds = {
      minMs: opts.minMs ?? DEFAULT_RETRY.minMs,
      maxMs: opts.maxMs ?? DEFAULT_RETRY.maxMs,
      maxWithoutTokenMs: opts.maxWithoutTokenMs ?? DEFAULT_RETRY.maxWithoutTokenMs,
      retryAfterMaxMs: opts.retryAfterMaxMs ?? DEFAULT_RETRY.retryAfterMaxMs,
    };
    this.random = opts.random;
  }

  /** Records a failure and returns the delay (ms) before the next attempt. */
  next(msUntilExpiry?: number): number {
    this.attempt += 1;
    return retryDelay(this.attempt, this.bounds, this.random(), msUntilExpiry);
  }

  /**
   * Records a failure and returns the delay (ms) before the next attempt: the backoff step (capped
   * by maxWithoutTokenMs when msUntilExpiry says no valid token is held), but never sooner than the
   * IdP's Retry-After (itself capped by retryAfterMaxMs).
   */
  nextAfter(msUntilExpiry: number | undefined, retryAfterMs: number | undefined): number {
    this.attempt += 1;
    const holding = msUntilExpiry !== undefined && msUntilExpiry > 0;
    const bounds = holding ? this.bounds : { minMs: this.bounds.minMs, maxMs: Math.min(this.bounds.maxMs, Math.max(this.bounds.minMs, this.bounds.maxWithoutTokenMs)) };
    const step = retryDelay(this.attempt, bounds, this.random(), holding ? msUntilExpiry : undefined);
    if (retryAfterMs === undefined || !(retryAfterMs > 0)) return step;
    return Math.max(step, Math.min(retryAfterMs, this.bounds.retryAfterMaxMs));
  }

  /** Called after a success: the next failure starts again from the shortest delay. */
  reset(): void {
    this.attempt = 0;
  }
}
