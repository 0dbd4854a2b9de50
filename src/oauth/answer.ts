/**
 * The token endpoint's answer, untrusted input, in two steps:
 * 1. inspectTokenAnswer runs on the raw JSON of every HTTP 200 answer before openid-client sees
 *    it: it takes out the new refresh token (the IdP rotated; the one presented is consumed, so
 *    this one must reach the refresher even when openid-client then refuses the answer), notes the
 *    token_type, and smooths dialects that would be refused for nothing (an id_token tokend never
 *    uses, null for an absent member, scope as a list).
 * 2. toGrantResult validates what openid-client returned and turns it into a GrantResult.
 */
import type { TokenEndpointResponse } from 'openid-client';
import type { TokenConfig } from '../config/types.js';
import { TokendError } from '../errors.js';
import { MAX_TOKEN_CHARS, normaliseTokenType, type AccessToken, type GrantResult } from '../token.js';
import { attachRotatedRefreshToken } from './source.js';
import { decodeJwsPart } from '../jws.js';

/** Longest lifetime believed from an IdP: 400 days (ms). Longer claims are capped. */
export const MAX_LIFETIME_MS = 400 * 86_400_000;

/** expires_in and the JWT's own lifetime may differ by this much (ms) before it is reported. */
export const LIFETIME_DISAGREEMENT_MS = 5_000;

// Control characters would corrupt the HTTP headers and files the token is written into.
// biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** What inspectTokenAnswer found in an answer. */
export interface TokenAnswerFacts {
  /** The answer's refresh_token, when it is one tokend can keep (a non-empty string, no control characters, not too long). */
  readonly refreshToken?: string | undefined;
  /** token_type as sent (any JSON value), when present. */
  readonly tokenType?: unknown;
}

/**
 * Reads the raw text of an HTTP 200 token answer. Returns the facts, and the body to hand on:
 * without id_token, without members whose value is null (`"refresh_token": null` means "no new
 * refresh token", not a broken answer), and with a scope sent as a list of strings joined by
 * spaces. Text that is not a JSON object is handed on unchanged (openid-client reports it).
 */
export function inspectTokenAnswer(text: string): { facts: TokenAnswerFacts; body: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { facts: {}, body: text };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { facts: {}, body: text };
  const json = parsed as Record<string, unknown>;
  const facts: TokenAnswerFacts = { refreshToken: keepableRefreshToken(json.refresh_token), tokenType: json.token_type };

  let changed = false;
  for (const key of ['id_token', ...Object.keys(json).filter((k) => json[k] === null)]) {
    if (key in json) {
      delete json[key];
      changed = true;
    }
  }
  if (Array.isArray(json.scope) && json.scope.every((s) => typeof s === 'string')) {
    json.scope = json.scope.join(' ');
    changed = true;
  }
  return { facts, body: changed ? JSON.stringify(json) : text };
}

/** value when it is a refresh token tokend can store and present again, else undefined. */
export function keepableRefreshToken(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_TOKEN_CHARS) return undefined;
  return CONTROL_CHARS.test(value) ? undefined : value;
}

/**
 * tokend serves Bearer tokens only: a caller presents them with nothing but the token, which a
 * DPoP-, MAC- or N_A-typed token is not for. Returns the GRANT_PERMANENT (reason
 * 'unsupported_token_type') for any other type, carrying the answer's new refresh token; undefined
 * for Bearer (any casing) or when no token_type was sent (then the answer is refused elsewhere).
 */
export function tokenTypeError(tokenType: unknown, tokenName: string, rotated: string | undefined): TokendError | undefined {
  if (typeof tokenType !== 'string' || tokenType.toLowerCase() === 'bearer') return undefined;
  // The value is shown only when it looks like a token type; anything else might be a secret.
  const shown = /^[A-Za-z0-9_.-]{1,32}$/.test(tokenType) ? tokenType : 'an unrecognised type';
  const err = new TokendError(
    'GRANT_PERMANENT',
    `token "${tokenName}": grant failed: the IdP issued a token of type ${shown}; tokend serves Bearer tokens (ask the IdP for Bearer tokens for this client)`,
    { reason: 'unsupported_token_type' },
  );
  return rotated === undefined ? err : attachRotatedRefreshToken(err, rotated);
}

/**
 * Validates a token endpoint response (untrusted input) and stamps it with the arrival time.
 * The lifetime is the shorter of expires_in and, for a JWT access token with exp, its own
 * lifetime (exp - iat, or exp - now without iat; the payload is decoded without verification:
 * only the lifetime is read); either alone when the other is missing; else defaultLifetimeMs.
 * When expires_in and the JWT differ by more than LIFETIME_DISAGREEMENT_MS the result says so
 * (lifetimeDisagreement). Throws GRANT_TRANSIENT for an answer tokend cannot use, and
 * GRANT_PERMANENT for a token type it cannot serve; both carry the answer's new refresh token.
 */
export function toGrantResult(
  response: Pick<TokenEndpointResponse, 'access_token' | 'token_type' | 'expires_in' | 'scope' | 'refresh_token'>,
  arrivedAt: number,
  cfg: Pick<TokenConfig, 'name' | 'scope' | 'defaultLifetimeMs'>,
): GrantResult {
  // A usable refresh token is checked first and carried on every later refusal: the IdP has
  // already rotated (the old one is consumed), so dropping the answer would lose the chain.
  let rotated: string | undefined;
  const invalid = (why: string): TokendError => {
    const err = new TokendError('GRANT_TRANSIENT', `token "${cfg.name}": grant failed: the IdP's answer is not usable (${why})`);
    return rotated !== undefined ? attachRotatedRefreshToken(err, rotated) : err;
  };

  // null is "no new refresh token" (the old one stays valid), not a defect.
  const refreshToken: unknown = response.refresh_token ?? undefined;
  if (refreshToken !== undefined) {
    if (typeof refreshToken !== 'string' || refreshToken.length === 0) throw invalid('refresh_token is not a string');
    if (refreshToken.length > MAX_TOKEN_CHARS) throw invalid(`refresh_token is longer than ${MAX_TOKEN_CHARS} characters`);
    if (CONTROL_CHARS.test(refreshToken)) throw invalid('refresh_token contains control characters');
    rotated = refreshToken;
  }

  const accessToken: unknown = response.access_token;
  if (typeof accessToken !== 'string' || accessToken.length === 0) throw invalid('access_token is missing');
  if (accessToken.length > MAX_TOKEN_CHARS) throw invalid(`access_token is longer than ${MAX_TOKEN_CHARS} characters`);
  if (CONTROL_CHARS.test(accessToken)) throw invalid('access_token contains control characters');

  const tokenType: unknown = response.token_type;
  if (typeof tokenType !== 'string' || tokenType.length === 0 || tokenType.length > 64 || CONTROL_CHARS.test(tokenType)) {
    throw invalid('token_type is missing or malformed');
  }
  const typeErr = tokenTypeError(tokenType, cfg.name, rotated);
  if (typeErr) throw typeErr;

  const lifetime = lifetimeOf(response.expires_in, accessToken, arrivedAt, cfg.defaultLifetimeMs, invalid);
  const scope = typeof response.scope === 'string' && !CONTROL_CHARS.test(response.scope) ? response.scope : cfg.scope;
  const token: AccessToken = {
    accessToken,
    tokenType: normaliseTokenType(tokenType),
    obtainedAt: arrivedAt,
    expiresAt: arrivedAt + Math.floor(lifetime.ms),
    ...(scope !== undefined ? { scope } : {}),
  };
  return {
    token,
    ...(refreshToken !== undefined ? { refreshToken } : {}),
    ...(lifetime.disagreement ? { lifetimeDisagreement: lifetime.disagreement } : {}),
  };
}

/** The lifetime (ms) to believe, from expires_in and the JWT's own; see toGrantResult. */
function lifetimeOf(
  expiresIn: unknown,
  accessToken: string,
  arrivedAt: number,
  defaultLifetimeMs: number,
  invalid: (why: string) => TokendError,
): { ms: number; disagreement?: { expiresInMs: number; jwtLifetimeMs: number } } {
  let fromExpiresIn: number | undefined;
  if (expiresIn !== undefined && expiresIn !== null) {
    if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw invalid('expires_in is not a positive number');
    }
    fromExpiresIn = expiresIn * 1000;
  }
  const fromJwt = jwtLifetimeMs(accessToken, arrivedAt);
  if (fromJwt !== undefined && fromJwt <= 0) throw invalid('the access token is already past its exp (clock skew?)');

  const ms = Math.min(fromExpiresIn ?? fromJwt ?? defaultLifetimeMs, fromJwt ?? Number.POSITIVE_INFINITY, MAX_LIFETIME_MS);
  if (fromExpiresIn !== undefined && fromJwt !== undefined && Math.abs(fromExpiresIn - fromJwt) > LIFETIME_DISAGREEMENT_MS) {
    return { ms, disagreement: { expiresInMs: Math.round(fromExpiresIn), jwtLifetimeMs: Math.round(fromJwt) } };
  }
  return { ms };
}

/**
 * The remaining lifetime a JWT access token claims, in ms, or undefined when it is not a JWT with a
 * numeric exp. With iat as well, exp - iat is used (immune to clock skew between tokend and the
 * IdP); with exp alone, exp minus now.
 */
export function jwtLifetimeMs(token: string, now: number): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  const payload = decodeJwsPart(parts[1]);
  if (payload === undefined) return undefined;
  const { exp, iat } = payload;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return undefined;
  if (typeof iat === 'number' && Number.isFinite(iat) && iat < exp) return (exp - iat) * 1000;
  return exp * 1000 - now;
}

/**
 * RFC 8693 §2.2.1 `issued_token_type` of a token exchange answer, when it is a plausible token
 * type URI (printable, no spaces, at most 256 characters); otherwise undefined (not recorded).
 */
export function issuedTokenTypeOf(response: unknown): string | undefined {
  const v = response !== null && typeof response === 'object' ? (response as { issued_token_type?: unknown }).issued_token_type : undefined;
  return typeof v === 'string' && /^[\x21-\x7e]{1,256}$/.test(v) && URL.canParse(v) ? v : undefined;
}
