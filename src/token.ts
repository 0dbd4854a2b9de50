/** An access token as tokend holds it. Times are Unix milliseconds, computed with the injected clock. */
export interface AccessToken {
  /** The raw access token. A secret: never logged, never in an error or metric. */
  readonly accessToken: string;
  /** As the IdP sent it, normalised to 'Bearer' / 'DPoP' casing. */
  readonly tokenType: string;
  /** When the token stops being valid (ms since epoch). */
  readonly expiresAt: number;
  /** When tokend received it (ms since epoch). */
  readonly obtainedAt: number;
  /**
   * When the token stops being valid on this process's monotonic clock (Clock.monotonic()), stamped
   * when the answer arrived or the token was loaded. Process-local: never stored. Absent on tokens
   * built without a clock (tests): then only the wall clock counts.
   */
  readonly deadline?: number | undefined;
  /** Granted scope, if the IdP said (else the requested one). */
  readonly scope?: string | undefined;
  /**
   * Fingerprint of the settings the token was obtained with (issuer or endpoint, client, grant,
   * scope, resource, audience). A stored token with another one (the config changed) is not
   * served, and does not make a newer write look stale.
   */
  readonly grantKey?: string | undefined;
  /**
   * RFC 8693 §2.2.1 `issued_token_type` of a token exchange answer (e.g.
   * `urn:ietf:params:oauth:token-type:access_token`), when the IdP said. Absent for other grants.
   */
  readonly issuedTokenType?: string | undefined;
}

/** True when a (stored) token was obtained with the settings whose fingerprint is grantKey. */
export function sameGrant(token: AccessToken, grantKey: string | undefined): boolean {
  return token.grantKey === grantKey;
}

/** What one grant returns. */
export interface GrantResult {
  readonly token: AccessToken;
  /** RFC 6749 §6: the server MAY issue a new refresh token; when present the old one is consumed. */
  readonly refreshToken?: string | undefined;
  /**
   * Present when the answer's expires_in and the JWT access token's own lifetime (exp - iat, or
   * exp - now without iat) differ by more than 5 s. The token's expiresAt already uses the
   * shorter one; this is for a log line (both in ms). Never holds token material.
   */
  readonly lifetimeDisagreement?: { readonly expiresInMs: number; readonly jwtLifetimeMs: number } | undefined;
}

/** Token names as the config allows them; they also become file names and Redis keys. */
export const TOKEN_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

/** Normalises token_type casing ('bearer' from openid-client becomes 'Bearer'). */
export function normaliseTokenType(t: string | undefined): string {
  if (!t) return 'Bearer';
  const lower = t.toLowerCase();
  if (lower === 'bearer') return 'Bearer';
  if (lower === 'dpop') return 'DPoP';
  return t;
}

/** Longest access or refresh token accepted anywhere (from an IdP, a store, a request), in characters. */
export const MAX_TOKEN_CHARS = 16_384;

/**
 * A token with less than this much life left (ms) counts as expired: it would expire in the
 * caller's hands (and read as expires_in 0). Neither served, nor reported ready, nor adopted.
 */
export const MIN_USABLE_MS = 1_000;

/** The two readings a validity judgement needs (a Clock has both). */
export interface TimeSource {
  now(): number;
  monotonic(): number;
}

/**
 * How long (ms) the token remains valid: the smaller of what the wall clock and the monotonic
 * clock say. A wall clock stepped back cannot stretch a token's life (the monotonic deadline
 * holds), a suspended VM cannot either (the wall clock moved on); a wall clock stepped forward
 * only makes tokend refresh early.
 */
export function remainingMs(token: AccessToken, clock: TimeSource): number {
  const byWall = token.expiresAt - clock.now();
  return token.deadline === undefined ? byWall : Math.min(byWall, token.deadline - clock.monotonic());
}

/**
 * The one "may this token be used now" rule, for the refresher, every store, the endpoint and
 * revoke: the token exists and has at least MIN_USABLE_MS of life left by both clocks.
 */
export function isUsable(token: AccessToken | undefined, clock: TimeSource): token is AccessToken {
  return token !== undefined && remainingMs(token, clock) >= MIN_USABLE_MS;
}

/** token with its monotonic deadline stamped from its wall-clock expiry, as read now (a token loaded from a store). */
export function withDeadline(token: AccessToken, clock: TimeSource): AccessToken {
  return { ...token, deadline: clock.monotonic() + (token.expiresAt - clock.now()) };
}

/**
 * The one "is this write stale" rule: true when candidate should replace stored. A token obtained
 * under other settings (another grantKey: the config changed) always replaces; under the same
 * settings only a strictly later expiry does (an equal one is the same token or an equivalent
 * copy: rewriting it would wake file watchers for nothing).
 */
export function isNewerThan(candidate: AccessToken, stored: AccessToken | undefined): boolean {
  if (stored === undefined) return true;
  if (candidate.grantKey !== stored.grantKey) return true;
  return candidate.expiresAt > stored.expiresAt;
}
