import type { GrantResult } from '../token.js';

/**
 * Obtains tokens for one configured token from its IdP. Implemented in grants.ts over
 * openid-client; the refresher knows only this interface. All errors are TokendError with code
 * GRANT_PERMANENT, GRANT_TRANSIENT, DISCOVERY_FAILED or CONFIG_INVALID.
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
  /** Runs discovery now (for `tokend check`); throws DISCOVERY_FAILED when the IdP is unreachable. */
  discover(signal?: AbortSignal): Promise<{ tokenEndpoint: string; revocationEndpoint?: string | undefined }>;
  /**
   * Optional: SHA-256 (hex) over the current credential material (client secret, private key
   * file, refresh-token seed), read fresh. After a permanent failure the refresher can poll this
   * and retry once it changes (a rotated Kubernetes Secret). Never throws; missing files hash as such.
   */
  credentialFingerprint?(): Promise<string>;
}

// An answer refused as unusable may still carry a valid new refresh token: the IdP rotated, so the
// old one is consumed and dropping the new one would lose the chain. It rides on the error,
// non-enumerable (never logged), under a symbol.
const ROTATED_REFRESH_TOKEN = Symbol('tokend.rotatedRefreshToken');

/** Marks err as carrying the new refresh token of an answer that was otherwise unusable. */
export function attachRotatedRefreshToken<E extends object>(err: E, refreshToken: string): E {
  Object.defineProperty(err, ROTATED_REFRESH_TOKEN, { value: refreshToken, enumerable: false });
  return err;
}

/** The new refresh token an unusable answer still carried, if any. */
export function rotatedRefreshTokenOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const v = (err as Record<symbol, unknown>)[ROTATED_REFRESH_TOKEN];
  return typeof v === 'string' ? v : undefined;
}
