import { TokendError } from '../errors.js';
import type { GrantResult } from '../token.js';

/**
 * Obtains tokens for one configured token from its IdP. Implemented in grants.ts over
 * openid-client; the refresher knows only this interface. All errors are TokendError with code
 * GRANT_PERMANENT, GRANT_TRANSIENT, DISCOVERY_FAILED or CONFIG_INVALID, and may carry:
 * - retryAfterMs: the IdP's Retry-After on a 429/503 (capped at 1 h), or the time left of such a
 *   pause another token met (reason 'idp_paused'): retry no earlier;
 * - rotatedRefreshToken: the new refresh token of an answer that was otherwise refused (keep it,
 *   the one presented is consumed);
 * - reason: 'unsupported_token_type', 'issuer_mismatch', 'idp_paused', 'idp_busy', or the errno
 *   of a secret file that could not be read right now (EMFILE...).
 */
export interface TokenSource {
  /**
   * Performs the configured grant. For grant: refresh_token the caller passes the refresh token
   * to use (the stored one, or the seed); the result's refreshToken, when present, replaces it.
   */
  obtain(refreshToken: string | undefined, signal?: AbortSignal): Promise<GrantResult>;
  /** RFC 7009: revokes a token at the IdP (refresh_token or access_token hint). */
  revoke(token: string, hint: 'refresh_token' | 'access_token', signal?: AbortSignal): Promise<void>;
  /** Reads the current refresh-token seed (file or literal), or undefined if none is configured. */
  readSeed(): Promise<string | undefined>;
  /**
   * Runs discovery now (for `tokend check`); throws DISCOVERY_FAILED naming the URLs tried and what
   * happened, or CONFIG_INVALID when the IdP names another issuer.
   */
  discover(signal?: AbortSignal): Promise<{ tokenEndpoint: string; revocationEndpoint?: string | undefined }>;
  /**
   * Optional: SHA-256 (hex) over the current credential material (client secret, private key
   * file, refresh-token seed), read fresh. After a permanent failure the refresher can poll this
   * and retry once it changes (a rotated Kubernetes Secret). Never throws; missing files hash as such.
   */
  credentialFingerprint?(): Promise<string>;
}

/** Marks err as carrying the new refresh token of an answer that was otherwise unusable (see TokendError.rotatedRefreshToken). */
export function attachRotatedRefreshToken<E extends object>(err: E, refreshToken: string): E {
  Object.defineProperty(err, 'rotatedRefreshToken', { value: refreshToken, enumerable: false, writable: true });
  return err;
}

/** The new refresh token an unusable answer still carried, if any. */
export function rotatedRefreshTokenOf(err: unknown): string | undefined {
  return err instanceof TokendError && typeof err.rotatedRefreshToken === 'string' ? err.rotatedRefreshToken : undefined;
}
