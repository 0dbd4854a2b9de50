/**
 * What every part of the verifier shares: the injected dependencies with their defaults applied,
 * the bounded fetch every IdP answer goes through, and the two ways a verification ends without a
 * verdict on the token's claims (a refusal, or the issuer being unavailable).
 */
import type { Clock } from '../clock.js';
import type { SecretSource } from '../config/types.js';
import { readSecret as readSecretFromConfig } from '../config/secrets.js';
import { TokendError } from '../errors.js';
import { EVENTS, type Logger } from '../log.js';
import { boundedFetch, DEFAULT_MAX_RESPONSE_BYTES } from '../util/bounded-fetch.js';
import type { VerifyOutcome, VerifyReason } from './types.js';

/** What createVerifier needs besides the configuration. */
export interface VerifierDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** fetch for discovery, JWKS and introspection requests. Default: global fetch. */
  readonly fetch?: typeof fetch;
  /**
   * Least time (ms) between two JWKS fetches triggered by an unknown `kid`: a flood of forged
   * tokens costs the IdP at most one request per cooldown. Default 30 000. jose measures it on the
   * wall clock (Date.now), not on the injected clock.
   */
  readonly jwksCooldownMs?: number;
  /** Age (ms) after which the cached JWKS is fetched again even without an unknown kid. Default 600 000. */
  readonly jwksCacheMaxAgeMs?: number;
  /** Timeout (ms) of each discovery, JWKS and introspection request. Default 5 000. */
  readonly timeoutMs?: number;
  /** After a failed discovery, requests fail fast for this long (ms) instead of retrying it. Default 5 000. */
  readonly discoveryRetryMs?: number;
  /** Bound on cached introspection verdicts. Default 10 000. */
  readonly introspectionCacheEntries?: number;
  /** Largest answer (bytes) read from an IdP: discovery, JWKS, introspection. Default 1 MiB. */
  readonly maxResponseBytes?: number;
  /** Reads a configured secret (default: src/config/secrets.ts readSecret). */
  readonly readSecret?: (source: SecretSource, field: string) => Promise<string>;
}

/** VerifierDeps with every default applied; shared by all issuers of one verifier. */
export interface VerifyContext {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly timeoutMs: number;
  readonly jwksCooldownMs: number;
  readonly jwksCacheMaxAgeMs: number;
  readonly discoveryRetryMs: number;
  readonly introspectionCacheEntries: number | undefined;
  readonly readSecret: (source: SecretSource, field: string) => Promise<string>;
  /** A fetch that reads each answer in full, up to the byte limit, and labels an oversized one with `what`. */
  readonly boundedFetch: (what: string) => typeof fetch;
}

/** Applies the defaults documented on VerifierDeps. */
export function verifyContext(deps: VerifierDeps): VerifyContext {
  // The global fetch is looked up per call, not captured here.
  const base: typeof fetch = deps.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const maxBytes = deps.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  return {
    clock: deps.clock,
    logger: deps.logger,
    timeoutMs: deps.timeoutMs ?? 5_000,
    jwksCooldownMs: deps.jwksCooldownMs ?? 30_000,
    jwksCacheMaxAgeMs: deps.jwksCacheMaxAgeMs ?? 600_000,
    discoveryRetryMs: deps.discoveryRetryMs ?? 5_000,
    introspectionCacheEntries: deps.introspectionCacheEntries,
    readSecret: deps.readSecret ?? readSecretFromConfig,
    boundedFetch: (what) => boundedFetch(base, maxBytes, what),
  };
}

/** A refusal, logged at debug (without the token). */
export function reject(ctx: VerifyContext, reason: VerifyReason, issuer?: string): VerifyOutcome {
  ctx.logger.debug({ event: EVENTS.verifyRejected, issuer, reason }, 'incoming token refused');
  return { active: false, reason };
}

/** What `unavailable` reads and writes of an issuer's state. */
export interface WarnState {
  readonly cfg: { readonly issuer: string };
  /** Injected-clock ms of the last `verify.unavailable` warning for this issuer. */
  lastWarnAt: number;
}

/** Least time (ms) between two `verify.unavailable` warnings for one issuer. */
const WARN_INTERVAL_MS = 10_000;

/**
 * The error a verification fails with when the issuer could not be asked (discovery, JWKS or
 * introspection failed): a TokendError found in err's cause chain (e.g. an oversized answer, or a
 * secret file that cannot be read) as it is, else a new one with `code`. Logs a warning, at most
 * one per issuer per 10 s: during an outage every request would log otherwise.
 */
export function unavailable(
  ctx: VerifyContext,
  state: WarnState,
  what: string,
  err: unknown,
  code: 'GRANT_TRANSIENT' | 'GRANT_PERMANENT' = 'GRANT_TRANSIENT',
): TokendError {
  const found = tokendErrorIn(err);
  const out =
    found ??
    new TokendError(code, `verify: ${what} of issuer ${state.cfg.issuer} failed`, {
      cause: err,
      status: statusOf(err),
      oauthError: oauthErrorOf(err),
    });
  const now = ctx.clock.now();
  if (now - state.lastWarnAt >= WARN_INTERVAL_MS) {
    state.lastWarnAt = now;
    // The raw error: the logger's `err` serializer keeps its type, code and message only.
    ctx.logger.warn({ event: EVENTS.verifyUnavailable, issuer: state.cfg.issuer, error: found ?? err }, out.message);
  }
  return out;
}

/** err itself or the first TokendError among its causes (openid-client wraps what its fetch throws). */
function tokendErrorIn(err: unknown): TokendError | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    if (e instanceof TokendError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The HTTP status a library error carries, if any. */
export function statusOf(err: unknown): number | undefined {
  const status = (err as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : undefined;
}

function oauthErrorOf(err: unknown): string | undefined {
  const e = (err as { error?: unknown } | null)?.error;
  return typeof e === 'string' ? e : undefined;
}
