import { createHash } from 'node:crypto';
import Keyv from 'keyv';
import type { Clock } from '../clock.js';
import type { VerifyIssuerConfig } from '../config/types.js';
import type { VerifyOutcome } from './types.js';

/** Longest time an active introspection result is reused (ms): revocation shows within this. */
export const INTROSPECTION_MAX_CACHE_MS = 60_000;
/** How long a refusal is reused (ms): short, so a token that becomes valid is not refused long. */
export const INTROSPECTION_NEGATIVE_CACHE_MS = 5_000;
/** Default bound on cached introspection results; the oldest entry is dropped beyond it. */
export const INTROSPECTION_CACHE_MAX_ENTRIES = 10_000;

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

/** A Map that forgets its oldest entry once it holds maxEntries, so a flood cannot grow it. */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly maxEntries: number) {
    super();
  }
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.maxEntries) {
      const oldest = this.keys().next();
      if (!oldest.done) this.delete(oldest.value);
    }
    return super.set(key, value);
  }
}

interface CachedVerdict {
  outcome: VerifyOutcome;
  /** Injected-clock time (ms) after which the verdict must not be used. */
  until: number;
}

/**
 * Introspection verdicts, in memory (keyv over a bounded Map), keyed by the token's hash.
 * Expiry is checked against the injected clock; keyv's own TTL (wall clock) only evicts.
 */
export class IntrospectionCache {
  private readonly keyv: Keyv<CachedVerdict>;
  private readonly clock: Clock;

  /** @param opts.maxEntries default 10 000 */
  constructor(opts: { clock: Clock; maxEntries?: number }) {
    this.clock = opts.clock;
    this.keyv = new Keyv<CachedVerdict>({
      store: new BoundedMap<string, unknown>(opts.maxEntries ?? INTROSPECTION_CACHE_MAX_ENTRIES),
      namespace: 'verify',
    });
  }

  /** The cached verdict for key, if one is still fresh. */
  async get(key: string): Promise<VerifyOutcome | undefined> {
    const hit = await this.keyv.get(key);
    if (!hit) return undefined;
    if (this.clock.now() >= hit.until) {
      await this.keyv.delete(key);
      return undefined;
    }
    return hit.outcome;
  }

  /** Keeps outcome for ttlMs (nothing when ttlMs <= 0). */
  async set(key: string, outcome: VerifyOutcome, ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return;
    await this.keyv.set(key, { outcome, until: this.clock.now() + ttlMs }, ttlMs);
  }

  /** Forgets everything. */
  async clear(): Promise<void> {
    await this.keyv.clear();
  }
}
