import type { VerifyReason } from './types.js';

/**
 * Translates an error thrown by jose's `jwtVerify` (or its key resolver) into the reason the
 * contract reports. Returns undefined for errors that say nothing about the token (a bug, or an
 * outage that escaped the key resolver): the caller must not answer 401 for those.
 * Matches on jose's stable `code` (and `claim`/`reason`), never on message text.
 */
export function reasonForJoseError(err: unknown): VerifyReason | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, claim, reason } = err as { code?: unknown; claim?: unknown; reason?: unknown };
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      // jose also raises JWTExpired for an `iat` older than maxTokenAge: both mean "too old".
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return reasonForClaimFailure(claim, reason);
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'signature';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'algorithm';
    case 'ERR_JWKS_NO_MATCHING_KEY':
    // Two published keys match the kid/alg: tokend cannot tell which one signed, so no key is known.
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return 'unknown_key';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    // An unrecognised `crit` header or an alg the runtime cannot verify.
    case 'ERR_JOSE_NOT_SUPPORTED':
      return 'malformed';
    default:
      return undefined;
  }
}

function reasonForClaimFailure(claim: unknown, reason: unknown): VerifyReason {
  // A claim of the wrong type ("nbf" as a string) is a malformed token, not a timing problem.
  if (reason === 'invalid') return 'malformed';
  if (reason === 'missing') {
    // jose treats aud/iss as required once an expected value is configured; a token that names no
    // audience is refused for its audience, which tells the caller more than "missing claim".
    if (claim === 'aud') return 'audience';
    if (claim === 'iss') return 'issuer';
    return 'missing_claim';
  }
  switch (claim) {
    case 'nbf':
      return 'not_yet_valid';
    case 'aud':
      return 'audience';
    case 'iss':
      return 'issuer';
    case 'iat':
      // An `iat` in the future (beyond the tolerance): the token is not valid yet.
      return 'not_yet_valid';
    default:
      // `typ` mismatch or any other failed check.
      return 'malformed';
  }
}
