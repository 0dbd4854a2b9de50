import { createHash } from 'node:crypto';
import type { GrantType } from '../config/types.js';
import { hasCode } from '../errors.js';
import { remainingMs, type AccessToken, type TimeSource } from '../token.js';

/**
 * Width of the refresh jitter window, as a fraction of the lifetime. With refreshAt 0.75 a token
 * is refreshed somewhere in [65 %, 75 %] of its life, so replicas and sidecars started together
 * (a Deployment rollout) spread their grants instead of hitting the IdP in lockstep.
 */
export const REFRESH_JITTER_FRACTION = 0.1;

/** Floor of the safety margin (ms) for lifetimes long enough to afford it. */
export const MIN_SAFETY_MARGIN_MS = 30_000;

/** Short lifetimes still keep this much (ms, at most half the lifetime): the unusable last second plus a grant. */
export const SHORT_SAFETY_MARGIN_MS = 2_000;

/**
 * How long before expiry a refresh must have happened at the latest, for a token of the given
 * lifetime (ms): max(10 % of the lifetime, min(30 s, 25 % of the lifetime), min(2 s, 50 % of it)).
 *
 * - Long lifetimes keep a tenth of their life in reserve (a 40-day token: 4 days), time for
 *   several backoff rounds if the IdP is down when the refresh comes due.
 * - Mid lifetimes keep at least 30 s (a 5-minute token: 30 s), enough for a slow IdP and retries.
 * - Short lifetimes give up a quarter (a 10-second token: 2.5 s), but never less than 2 s (at most
 *   half): the last second is not served (MIN_USABLE_MS), and a grant needs time too.
 * Never more than half the lifetime, so `expiresAt - margin` is never before `obtainedAt`.
 */
export function safetyMarginMs(lifetimeMs: number): number {
  const lifetime = Math.max(0, lifetimeMs);
  return Math.max(0.1 * lifetime, Math.min(MIN_SAFETY_MARGIN_MS, 0.25 * lifetime), Math.min(SHORT_SAFETY_MARGIN_MS, 0.5 * lifetime));
}

/** Options for {@link refreshDueAt}. */
export interface RefreshDueOptions {
  /** Fraction of the lifetime after which to refresh (0 < x < 1; config default 0.75). */
  readonly refreshAt: number;
  /** A uniform random number in [0, 1): 0 refreshes at refreshAt, values near 1 up to 10 % earlier. */
  readonly random: number;
}

/**
 * When (ms since epoch) the token should be refreshed: after `refreshAt - random * 0.1` of its
 * lifetime (`expiresAt - obtainedAt`), clamped to never be later than
 * `expiresAt - safetyMarginMs(lifetime)` and never earlier than `obtainedAt`.
 * A token with no lifetime (expiresAt <= obtainedAt) is due at once (obtainedAt).
 */
export function refreshDueAt(token: AccessToken, opts: RefreshDueOptions): number {
  const lifetime = token.expiresAt - token.obtainedAt;
  if (!(lifetime > 0)) return token.obtainedAt;
  const random = clamp(Number.isFinite(opts.random) ? opts.random : 0, 0, 1);
  const refreshAt = clamp(Number.isFinite(opts.refreshAt) ? opts.refreshAt : 0.75, 0, 1);
  const fraction = clamp(refreshAt - REFRESH_JITTER_FRACTION * random, 0, 1);
  const latest = token.expiresAt - safetyMarginMs(lifetime);
  // Rounding can put `obtainedAt + fraction * lifetime` a hair past `latest`; clamp both ends.
  return Math.max(token.obtainedAt, Math.min(token.obtainedAt + fraction * lifetime, latest));
}

/**
 * What to do when a refresh is due but the shared store (Redis) cannot be reached:
 * - 'grant-locally' (client_credentials): every grant yields an independent token and consumes
 *   nothing, so a grant without the fleet lease is safe; the replica keeps serving on its own.
 * - 'keep-serving' (refresh_token): a grant may rotate the refresh token, and the new one could
 *   not be committed for the other replicas; the next replica to use the old one would replay a
 *   consumed refresh token, which IdPs answer by revoking the whole grant (RFC 6819 §5.2.2.3).
 *   So no grant: serve the held token until it expires, and retry with backoff.
 */
export function decideWhenStoreDown(presentsRefreshToken: boolean): 'grant-locally' | 'keep-serving' {
  return presentsRefreshToken ? 'keep-serving' : 'grant-locally';
}

/**
 * ms from now until token's refresh is due (refreshDueAt), judged by the token's remaining
 * validity (remainingMs: the smaller of the wall and the monotonic reading), so a wall clock
 * stepped back cannot postpone a refresh and a suspended VM does not make one late.
 */
export function msUntilRefresh(token: AccessToken, clock: TimeSource, opts: RefreshDueOptions): number {
  const dueBeforeExpiry = token.expiresAt - refreshDueAt(token, opts);
  return remainingMs(token, clock) - dueBeforeExpiry;
}

/** 'permanent failure: <oauth error or reason>' for errors retrying cannot fix, else undefined. */
export function permanentReason(err: unknown): string | undefined {
  if (hasCode(err, 'GRANT_PERMANENT')) return `permanent failure: ${err.oauthError ?? err.reason ?? 'grant refused'}`;
  if (hasCode(err, 'CONFIG_INVALID')) return 'permanent failure: config_invalid';
  return undefined;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

/**
 * A jitter value in [0, 1) derived from the token itself (SHA-256 of the access token). Every
 * replica holding the same token computes the same value, while different tokens (different
 * credentials, pods, fleets) still spread out.
 */
export function tokenJitter(accessToken: string): number {
  return createHash('sha256').update(accessToken).digest().readUInt32BE(0) / 2 ** 32;
}

/**
 * Fingerprint (hex) of the settings that shape what a grant returns: issuer or token endpoint,
 * client, grant type, scope, resource, audience, and for the federated grants the subject or
 * assertion source and the token types. Stamped on every token obtained, so a token stored under
 * other settings (the config changed) is not served after a restart. The federated parts are
 * appended only when set, so the fingerprints of other tokens stay what they were.
 */
export function grantKeyOf(cfg: {
  issuer?: string | undefined;
  tokenEndpoint?: string | undefined;
  clientId?: string | undefined;
  grant: GrantType;
  scope?: string | undefined;
  resource?: string | undefined;
  audience?: string | undefined;
  subjectToken?: string | undefined;
  subjectTokenFile?: string | undefined;
  subjectTokenType?: string | undefined;
  actorTokenFile?: string | undefined;
  requestedTokenType?: string | undefined;
  assertionFile?: string | undefined;
}): string {
  const parts = [cfg.issuer ?? '', cfg.tokenEndpoint ?? '', cfg.clientId ?? '', cfg.grant, cfg.scope ?? '', cfg.resource ?? '', cfg.audience ?? ''];
  const federated = [cfg.subjectToken, cfg.subjectTokenFile, cfg.subjectTokenType, cfg.actorTokenFile, cfg.requestedTokenType, cfg.assertionFile];
  if (federated.some((p) => p !== undefined)) parts.push(...federated.map((p) => p ?? ''));
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
}
