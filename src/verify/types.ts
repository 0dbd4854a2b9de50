import type { VerifyFailureReason, VerifyOutcome } from '../server/http.js';

/**
 * The verdict on one bearer token, and why a token was refused (the closed set of the contract's
 * `reason`). The HTTP layer owns these types; the verifier never sets `status`: when tokend cannot
 * reach a verdict (the IdP is down) `verify` throws instead, see {@link Verifier.verify}.
 */
export type { VerifyOutcome };
/** Why an incoming token was refused. */
export type VerifyReason = VerifyFailureReason;

/** Verifies incoming bearer tokens against the configured trusted issuers. */
export interface Verifier {
  /**
   * Verifies one bearer token (the credential only, without the `Bearer ` prefix).
   * Resolves to a verdict; rejects with TokendError `GRANT_TRANSIENT` when the issuer's discovery
   * document, JWKS or introspection endpoint cannot be reached (answer 503, never 401: an outage
   * must not look like a bad token), `GRANT_PERMANENT` when the introspection endpoint refuses
   * tokend's own client credentials, or with `signal.reason` when signal aborts first.
   */
  verify(bearer: string, signal?: AbortSignal): Promise<VerifyOutcome>;
  /** Drops caches; later calls still work (they start cold). */
  close(): Promise<void>;
}
