/**
 * Opaque tokens, RFC 7662: the pure judgement of an introspection answer and its cache lifetime,
 * and the flow that asks the issuers (one request per token at a time, verdicts cached).
 */
import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';
import type { VerifyIssuerConfig } from '../config/types.js';
import { SingleFlight } from '../util/single-flight.js';
import { reject, statusOf, unavailable } from './context.js';
import type { IntrospectionCache } from './introspection-cache.js';
import { discover, forgetIssuer, type IssuerState } from './issuers.js';
import type { VerifyOutcome } from './types.js';
import type { VerifierState } from './verifier.js';

/** Longest time an active introspection result is reused (ms): revocation shows within this. */
export const INTROSPECTION_MAX_CACHE_MS = 60_000;
/** How long a refusal is reused (ms): short, so a token that becomes valid is not refused long. */
export const INTROSPECTION_NEGATIVE_CACHE_MS = 5_000;

/**
 * Judges an RFC 7662 introspection response against the issuer's configuration, at time nowMs
 * (ms since epoch). `active: false` is 'inactive'; an active token must still come from this
 * issuer, name one of the configured audiences, be inside its exp/nbf window (with the clock
 * tolerance) and carry the required claims. A response without `aud` is refused for its
 * audience: the contract says a token must name one, and a token valid "anywhere" could be
 * replayed at this service after being sent to another one.
 */
export function judgeIntrospection(
  response: Record<string, unknown>,
  cfg: VerifyIssuerConfig,
  nowMs: number,
): VerifyOutcome {
  if (response.active !== true) return { active: false, reason: 'inactive' };
  if (response.iss !== undefined && response.iss !== cfg.issuer) return { active: false, reason: 'issuer' };
  const aud = response.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.some((a) => typeof a === 'string' && cfg.audience.includes(a))) {
    return { active: false, reason: 'audience' };
  }
  const toleranceMs = cfg.clockToleranceSec * 1000;
  const { exp, nbf } = response;
  if (exp !== undefined && typeof exp !== 'number') return { active: false, reason: 'malformed' };
  if (nbf !== undefined && typeof nbf !== 'number') return { active: false, reason: 'malformed' };
  if (typeof exp === 'number' && exp * 1000 <= nowMs - toleranceMs) return { active: false, reason: 'expired' };
  if (typeof nbf === 'number' && nbf * 1000 > nowMs + toleranceMs) return { active: false, reason: 'not_yet_valid' };
  for (const claim of cfg.requiredClaims) {
    if (response[claim] === undefined || response[claim] === null) return { active: false, reason: 'missing_claim' };
  }
  const { active: _active, ...claims } = response;
  return { active: true, issuer: cfg.issuer, claims };
}

/**
 * How long (ms) an introspection verdict may be reused at nowMs: an active one for
 * min(remaining lifetime, maxMs), never past its `exp`; a refusal for negativeMs. 0 = do not cache.
 */
export function introspectionCacheTtl(
  outcome: VerifyOutcome,
  expSec: unknown,
  nowMs: number,
  maxMs = INTROSPECTION_MAX_CACHE_MS,
  negativeMs = INTROSPECTION_NEGATIVE_CACHE_MS,
): number {
  if (!outcome.active) return negativeMs;
  const remaining = typeof expSec === 'number' ? expSec * 1000 - nowMs : Infinity;
  return Math.max(0, Math.min(remaining, maxMs));
}

/** The cache key of a token: its SHA-256, so the cache never holds a usable credential. */
export function tokenCacheKey(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

// ---------------------------------------------------------------------------------------------
// The flow.

/** A verifier's introspection state: the verdict cache (created on first use) and the requests in flight. */
export interface IntrospectionState {
  /** keyv is imported only when the first token is introspected. */
  cache: Promise<IntrospectionCache> | undefined;
  /** One request per token (keyed by its hash) at a time. */
  inflight: SingleFlight<string, VerifyOutcome>;
}

/** A new, empty introspection state. */
export function introspectionState(): IntrospectionState {
  return { cache: undefined, inflight: new SingleFlight() };
}

function verdictCache(v: VerifierState): Promise<IntrospectionCache> {
  v.introspection.cache ??= import('./introspection-cache.js').then(
    ({ IntrospectionCache: Cache }) => new Cache({ clock: v.ctx.clock, maxEntries: v.ctx.introspectionCacheEntries }),
  );
  return v.introspection.cache;
}

/** Forgets cached verdicts and requests in flight (their results are no longer shared or cached). */
export async function clearIntrospection(v: VerifierState): Promise<void> {
  const cache = v.introspection.cache;
  v.introspection.inflight = new SingleFlight();
  if (cache) await (await cache).clear();
}

/** Introspects at the given issuers (in order) with a cache and one request per token at a time. */
export function introspectCached(v: VerifierState, token: string, candidates: readonly IssuerState[]): Promise<VerifyOutcome> {
  const key = tokenCacheKey(token);
  return v.introspection.inflight.run(key, async () => {
    const cache = await verdictCache(v);
    const cached = await cache.get(key);
    if (cached) return cached;
    const { outcome, exp, issuer } = await introspectAt(v, token, candidates);
    await cache.set(key, outcome, introspectionCacheTtl(outcome, exp, v.ctx.clock.now()));
    return outcome.active ? outcome : reject(v.ctx, outcome.reason, issuer);
  });
}

async function introspectAt(
  v: VerifierState,
  token: string,
  candidates: readonly IssuerState[],
): Promise<{ outcome: VerifyOutcome; exp?: unknown; issuer?: string }> {
  let asked = false;
  for (const state of candidates) {
    const discovered = await discover(v.ctx, state);
    if (!discovered.canIntrospect) continue;
    asked = true;
    let response: Record<string, unknown>;
    try {
      response = (await oidc.tokenIntrospection(discovered.config, token)) as Record<string, unknown>;
    } catch (err) {
      const status = statusOf(err);
      if (status !== undefined && status >= 400 && status < 500 && status !== 429) {
        // Our own client was refused (e.g. a rotated secret): forget the configuration so the
        // secret is read again on the next request.
        forgetIssuer(state, { secrets: false });
        throw unavailable(v.ctx, state, 'introspection', err, 'GRANT_PERMANENT');
      }
      throw unavailable(v.ctx, state, 'introspection', err);
    }
    const outcome = judgeIntrospection(response, state.cfg, v.ctx.clock.now());
    // An inactive answer may only mean "not mine": ask the next issuer that can introspect.
    if (outcome.active || outcome.reason !== 'inactive') return { outcome, exp: response.exp, issuer: state.cfg.issuer };
  }
  return { outcome: { active: false, reason: asked ? 'inactive' : 'malformed' } };
}
