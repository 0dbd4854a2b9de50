/**
 * The closed set of error codes tokend raises. Callers branch on `code`, never on message text.
 * - CONFIG_INVALID: configuration or a secret file is wrong (CLI exit 2)
 * - GRANT_PERMANENT: the IdP refused the credential (invalid_grant, invalid_client, ...); retrying will not help
 * - GRANT_TRANSIENT: network error, timeout, 5xx or 429; retry with backoff
 * - DISCOVERY_FAILED: OIDC discovery could not be completed (CLI `check` exit 1)
 * - STORE_UNAVAILABLE: the store could not be read or written
 * - STORE_AUTH_FAILED: the store refused tokend's credentials (Redis WRONGPASS, NOAUTH, NOPERM); retrying will not help
 * - TOKEN_UNAVAILABLE: no valid token exists right now
 * - LEASE_LOST: another replica holds (or took over) the refresh lease
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'GRANT_PERMANENT'
  | 'GRANT_TRANSIENT'
  | 'DISCOVERY_FAILED'
  | 'STORE_UNAVAILABLE'
  | 'STORE_AUTH_FAILED'
  | 'TOKEN_UNAVAILABLE'
  | 'LEASE_LOST';

/** Facts a TokendError carries besides its code and message. */
export interface TokendErrorOptions {
  readonly cause?: unknown;
  readonly oauthError?: string | undefined;
  readonly status?: number | undefined;
  readonly reason?: string | undefined;
  readonly retryAfterMs?: number | undefined;
  readonly rotatedRefreshToken?: string | undefined;
}

/** Every error tokend raises on purpose. Messages name the token and field, never a secret value. */
export class TokendError extends Error {
  readonly code: ErrorCode;
  /** The server's OAuth `error` value (e.g. 'invalid_grant'), when the IdP sent one. */
  readonly oauthError: string | undefined;
  /** HTTP status of the IdP's answer, when there was one. */
  readonly status: number | undefined;
  /**
   * A short reason for a refusal tokend decided itself, without asking the IdP ('no refresh
   * token', 'revoked', 'refresh token in doubt'); reported where the IdP's `error` would be.
   */
  readonly reason: string | undefined;
  /** How long the IdP asked us to wait (Retry-After on a 429 or 503), in ms. */
  readonly retryAfterMs: number | undefined;
  /**
   * The new refresh token of an answer that was otherwise unusable: the IdP rotated, so the one
   * presented is consumed and this one must be kept. Non-enumerable: never serialized or logged.
   */
  declare readonly rotatedRefreshToken: string | undefined;

  constructor(code: ErrorCode, message: string, opts: TokendErrorOptions = {}) {
    super(message);
    this.name = 'TokendError';
    this.code = code;
    this.oauthError = opts.oauthError;
    this.status = opts.status;
    this.reason = opts.reason;
    this.retryAfterMs = opts.retryAfterMs;
    Object.defineProperty(this, 'rotatedRefreshToken', { value: opts.rotatedRefreshToken, enumerable: false, writable: true });
    // Non-enumerable so a logged error never dumps a library error (which may hold a response body).
    if (opts.cause !== undefined) {
      Object.defineProperty(this, 'cause', { value: opts.cause, enumerable: false, writable: true });
    }
  }
}

/** Configuration problems collected together, one line per problem, each naming its field. */
export class ConfigError extends TokendError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('CONFIG_INVALID', problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** The errno code of a failed system call (ENOENT, EACCES…), or 'error' when err carries none: what messages may name. */
export function errnoCode(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : 'error';
}

/** True when err is a TokendError carrying one of the given codes. */
export function hasCode(err: unknown, ...codes: ErrorCode[]): err is TokendError {
  return err instanceof TokendError && codes.includes(err.code);
}
