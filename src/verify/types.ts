/** Why an incoming token was refused (the `reason` of a 401 from `POST /v1/verify`). */
export type VerifyReason =
  | 'malformed'
  | 'signature'
  | 'algorithm'
  | 'unknown_key'
  | 'expired'
  | 'not_yet_valid'
  | 'issuer'
  | 'audience'
  | 'missing_claim'
  | 'inactive';

/**
 * The verdict on an incoming token. `status` overrides the HTTP status of a refusal (default 401),
 * e.g. 503 when an introspection endpoint could not be reached.
 */
export type VerifyOutcome =
  | { active: true; issuer: string; claims: Record<string, unknown> }
  | { active: false; reason: VerifyReason; status?: number };

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
