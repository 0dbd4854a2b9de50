import type { AccessToken } from '../token.js';

/** Readiness of one token, as /readyz and metrics report it. */
export interface TokenStatus {
  readonly name: string;
  readonly ready: boolean;
  /** Why not ready (no secret values): e.g. 'permanent failure: invalid_grant', 'expired', 'not yet acquired'. */
  readonly reason?: string | undefined;
  readonly expiresAt?: number | undefined;
  /** The last failed attempt's message (tokend's own, never a secret), until an attempt succeeds. */
  readonly lastError?: string | undefined;
}

/**
 * What the endpoint sees of one token's refresher. `current()` is the hot path: a field read,
 * no I/O, no allocation.
 */
export interface TokenHandle {
  readonly name: string;
  /** The current token if it is still valid at the clock's now; never an expired one. */
  current(): AccessToken | undefined;
  /**
   * Ensures the token has at least minTtlMs of life: returns at once if so, else joins (or starts)
   * the single in-flight refresh. Rejects with TokendError('TOKEN_UNAVAILABLE') if it cannot.
   */
  ensureFresh(minTtlMs: number, signal?: AbortSignal): Promise<AccessToken>;
  /**
   * An upstream refused `rejected` (HTTP 401, invalid_token): returns a different valid token. If a
   * newer token is already held it is returned at once; otherwise one forced refresh runs, shared by
   * every caller that saw the same rejection (and with any refresh in flight), at most once per
   * minForcedRefreshIntervalMs. Rejects with TOKEN_UNAVAILABLE when no other valid token can be had.
   */
  refreshAfterRejection(rejected: AccessToken, signal?: AbortSignal): Promise<AccessToken>;
  /**
   * A consumer asked for a token while none is held: start one attempt now, coalesced with any in
   * flight, at most once a second, never inside the IdP's Retry-After nor after a permanent
   * failure. Returns at once.
   */
  wake(): void;
  status(): TokenStatus;
  /** Milliseconds a client should wait before asking again, for Retry-After. */
  retryAfterMs(): number;
}

/** How a token came to be held. */
export type TokenOrigin = 'grant' | 'adopted' | 'loaded';

/**
 * Told about every new token a refresher holds (output files, notifications): only on a real
 * change, never on a reconcile tick that changed nothing. Must not throw or block: slow work is the
 * listener's own, queued (a refresh never waits for a listener).
 */
export interface TokenListener {
  tokenChanged(name: string, token: AccessToken, origin: TokenOrigin): void;
}

/** Refresh outcomes as metrics label them. */
export type RefreshResult = 'success' | 'transient_error' | 'permanent_error' | 'adopted';

/** Receives refresh outcomes (for Prometheus). Implemented by server/metrics.ts. */
export interface RefreshObserver {
  /** One grant attempt finished (or a token written by another replica was adopted). */
  refreshFinished(name: string, result: RefreshResult, durationMs: number): void;
}
