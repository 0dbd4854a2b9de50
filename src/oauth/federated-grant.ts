/**
 * The federated parts of a grant request (docs/secretless.md): client authentication with an
 * assertion someone else issued (RFC 7523 §2.2), and the parameters of the token exchange
 * (RFC 8693 §2.1) and JWT bearer (RFC 7523 §2.1) grants, each read fresh for every grant.
 */
import type * as client from 'openid-client';
import type { TokenConfig } from '../config/types.js';
import { TokendError } from '../errors.js';
import { MIN_USABLE_MS, type AccessToken } from '../token.js';
import { assertFresh, FEDERATED_MIN_REMAINING_MS, readFederatedToken, readJwtClaims, type FederatedKind, type FederatedToken } from './federated.js';

/** RFC 7523 §2.2 client_assertion_type. */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** The grant_type URIs of the federated grants. */
export const FEDERATED_GRANT_TYPES = {
  token_exchange: 'urn:ietf:params:oauth:grant-type:token-exchange',
  jwt_bearer: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
} as const;

/**
 * Another configured token as `subjectToken: NAME` sees it. The daemon's TokenHandle fits:
 * current() is the valid token held now, ensureFresh() one with more than minTtlMs left
 * (refreshing first, or joining the attempt in flight; rejects when none is valid).
 */
export interface TokenPeer {
  current(): AccessToken | undefined;
  ensureFresh(minTtlMs: number, signal?: AbortSignal): Promise<AccessToken>;
}

/** Finds another configured token by name (createTokenSource's `tokenLookup`). */
export type TokenLookup = (name: string) => TokenPeer | undefined;

/**
 * RFC 7523 §2.2 client authentication with a JWT someone else issued (the projected
 * service-account token): `client_assertion_type` and `client_assertion` in the form body, with
 * `client_id` (RFC 7521 §4.2 allows it; Entra ID requires it).
 */
export function clientAssertionAuth(assertion: string): client.ClientAuth {
  return (_as, c, body) => {
    body.set('client_id', c.client_id);
    body.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
    body.set('client_assertion', assertion);
  };
}

/**
 * No client authentication and no client_id at all: for a federated grant whose credential names
 * the client (Google STS takes no client_id, and refuses what it does not know).
 */
export function anonymousClient(): client.ClientAuth {
  return () => undefined;
}

/** What federatedGrant needs besides the config. */
export interface FederatedGrantDeps {
  /** Wall-clock now (ms since the epoch). */
  readonly now: number;
  readonly lookup?: TokenLookup | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Told about every credential read, before its expiry is judged (metrics). */
  readonly onRead?: ((t: FederatedToken) => void) | undefined;
}

/** A federated grant request: its grant_type and parameters, and the credentials it presents (for messages and metrics). */
export interface FederatedRequest {
  readonly grantType: string;
  readonly params: Record<string, string>;
  readonly presented: readonly FederatedToken[];
}

/**
 * Builds the token_exchange or jwt_bearer request of cfg, reading every credential fresh. Throws
 * what readFederatedToken throws (CONFIG_INVALID, GRANT_TRANSIENT `<kind>_expired`), and for
 * `subjectToken: NAME` GRANT_TRANSIENT reason `subject_token_unavailable` while NAME has no valid token.
 */
export async function federatedGrant(cfg: TokenConfig, deps: FederatedGrantDeps): Promise<FederatedRequest> {
  const read = (kind: FederatedKind, path: string, requireJwt: boolean): Promise<FederatedToken> =>
    readFederatedToken({ tokenName: cfg.name, kind, path, now: deps.now, requireJwt, onRead: deps.onRead });
  if (cfg.grant === 'jwt_bearer') {
    if (cfg.assertionFile === undefined) throw configError(cfg, 'assertionFile', 'is required for grant jwt_bearer');
    const assertion = await read('assertion', cfg.assertionFile, true);
    return { grantType: FEDERATED_GRANT_TYPES.jwt_bearer, params: { assertion: assertion.value }, presented: [assertion] };
  }
  if (cfg.grant !== 'token_exchange') throw new TypeError(`token "${cfg.name}": grant ${cfg.grant} is not a federated grant`);
  const subjectType = cfg.subjectTokenType as string;
  const subject =
    cfg.subjectToken !== undefined
      ? await peerToken(cfg, cfg.subjectToken, deps)
      : await read('subject_token', cfg.subjectTokenFile as string, subjectType === 'urn:ietf:params:oauth:token-type:jwt');
  const params: Record<string, string> = { subject_token: subject.value, subject_token_type: subjectType };
  const presented = [subject];
  if (cfg.actorTokenFile !== undefined) {
    const actorType = cfg.actorTokenType as string;
    const actor = await read('actor_token', cfg.actorTokenFile, actorType === 'urn:ietf:params:oauth:token-type:jwt');
    params.actor_token = actor.value;
    params.actor_token_type = actorType;
    presented.push(actor);
  }
  if (cfg.requestedTokenType !== undefined) params.requested_token_type = cfg.requestedTokenType;
  return { grantType: FEDERATED_GRANT_TYPES.token_exchange, params, presented };
}

/**
 * The life a subject token from another configured token must have left (ms): the smaller of
 * FEDERATED_MIN_REMAINING_MS and a quarter of its lifetime (tokend refreshes a token once 75% of
 * its life has passed, so a quarter is what it normally has left at worst; a 10 s margin on a
 * token that lives 8 s could never be met), and at least MIN_USABLE_MS.
 */
export function subjectMarginMs(t: AccessToken): number {
  return Math.max(MIN_USABLE_MS, Math.min(FEDERATED_MIN_REMAINING_MS, (t.expiresAt - t.obtainedAt) / 4));
}

/** The current value of another configured token, with at least subjectMarginMs left. */
async function peerToken(cfg: TokenConfig, name: string, deps: FederatedGrantDeps): Promise<FederatedToken> {
  const peer = deps.lookup?.(name);
  if (peer === undefined) throw configError(cfg, 'subjectToken', `names no token this process holds (${name})`);
  const current = peer.current();
  let held: AccessToken;
  try {
    // Refreshes the other token first (or joins its attempt in flight) when it is too close to its end.
    held = await peer.ensureFresh(current === undefined ? 0 : subjectMarginMs(current), deps.signal);
  } catch (err) {
    deps.signal?.throwIfAborted();
    throw new TokendError('GRANT_TRANSIENT', `token "${cfg.name}": the subject token "${name}" has no valid token right now; will retry`, {
      cause: err,
      reason: 'subject_token_unavailable',
    });
  }
  // The token's own expiry (tokend's clock) is more exact than a JWT exp, and opaque tokens have none.
  const token: FederatedToken = {
    kind: 'subject_token',
    source: `token "${name}"`,
    value: held.accessToken,
    claims: { ...readJwtClaims(held.accessToken), expMs: held.expiresAt },
  };
  deps.onRead?.(token);
  assertFresh(token, cfg.name, deps.now, subjectMarginMs(held));
  return token;
}

function configError(cfg: TokenConfig, field: string, why: string): TokendError {
  return new TokendError('CONFIG_INVALID', `tokens.${cfg.name}.${field}: ${why}`);
}
