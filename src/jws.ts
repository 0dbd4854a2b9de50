/**
 * The one list of JWS algorithms tokend signs and verifies with (RFC 7518, RFC 8037, and RFC 9864's
 * fully-specified `Ed25519`). `none` is never among them. Used by the config schema, private_key_jwt
 * client assertions and the verifier.
 */
export const ASYMMETRIC_JWS_ALGORITHMS = [
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA', 'Ed25519',
] as const;

/** Shared-secret algorithms: accepted by the verifier only where an issuer configures a secret. */
export const HMAC_JWS_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;

export type AsymmetricJwsAlgorithm = (typeof ASYMMETRIC_JWS_ALGORITHMS)[number];
export type HmacJwsAlgorithm = (typeof HMAC_JWS_ALGORITHMS)[number];
export type JwsAlgorithm = AsymmetricJwsAlgorithm | HmacJwsAlgorithm;

/** True for an algorithm in either list. */
export function isJwsAlgorithm(alg: unknown): alg is JwsAlgorithm {
  return (ASYMMETRIC_JWS_ALGORITHMS as readonly unknown[]).includes(alg) || (HMAC_JWS_ALGORITHMS as readonly unknown[]).includes(alg);
}

/** True for HS256/384/512. */
export function isHmacAlgorithm(alg: unknown): alg is HmacJwsAlgorithm {
  return (HMAC_JWS_ALGORITHMS as readonly unknown[]).includes(alg);
}
