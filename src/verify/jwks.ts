/**
 * The keys of one trusted issuer: its remote JWKS (jose's remote key set, fetched through the
 * bounded fetch, with jose's cache, cooldown on unknown kids and single in-flight fetch) and the
 * HMAC secret where one is configured.
 */
import {
  createRemoteJWKSet,
  customFetch as joseCustomFetch,
  errors as joseErrors,
  type CryptoKey,
  type JWK,
  type JWTVerifyGetKey,
  type KeyObject,
} from 'jose';
import type { SecretSource } from '../config/types.js';
import { TokendError } from '../errors.js';
import { reasonForJoseError } from './classify.js';
import { unavailable, type VerifyContext, type WarnState } from './context.js';

/** Anything jose's jwtVerify accepts as a key. */
export type VerificationKey = CryptoKey | KeyObject | JWK | Uint8Array;

/** Key lookup for one issuer. */
export interface IssuerKeys {
  /** Whether the issuer publishes a usable jwks_uri. */
  readonly hasJwks: boolean;
  /** The key for (alg, kid) if it is already known (no I/O, no promise), else undefined. */
  knownKey(alg: string, kid: string | undefined): VerificationKey | undefined;
  /** Resolves the key of a JWS: the HMAC secret for HS*, else from the JWKS (may fetch it). */
  readonly getKey: JWTVerifyGetKey;
}

/** What the key lookup needs of an issuer's state. */
export interface KeyState extends WarnState {
  readonly cfg: WarnState['cfg'] & { readonly hmacSecret?: SecretSource | undefined };
  /** Index in verify.issuers, for field names in messages. */
  readonly index: number;
  /** The HMAC secret as it is being read (once). */
  hmacKey: Promise<Uint8Array> | undefined;
  /** The settled value of hmacKey. */
  hmacBytes: Uint8Array | undefined;
}

/** Bound on remembered (alg, kid) → key resolutions per issuer; only keys the JWKS really holds get in. */
const KNOWN_KEYS_MAX = 64;

type RemoteKeySet = ReturnType<typeof createRemoteJWKSet>;

/**
 * jose's remote key set for jwksUri, or undefined when the issuer publishes none (or an http one
 * without allowInsecureHttp). Every fetch goes through the bounded fetch: an answer over the limit
 * is refused unread and the verification fails as unavailable.
 */
function remoteKeySet(ctx: VerifyContext, issuer: string, jwksUri: unknown, allowHttp: boolean): RemoteKeySet | undefined {
  if (typeof jwksUri !== 'string') return undefined;
  const url = new URL(jwksUri);
  if (url.protocol !== 'https:' && !allowHttp) return undefined;
  return createRemoteJWKSet(url, {
    cooldownDuration: ctx.jwksCooldownMs,
    cacheMaxAge: ctx.jwksCacheMaxAgeMs,
    timeoutDuration: ctx.timeoutMs,
    [joseCustomFetch]: ctx.boundedFetch(`verify: JWKS of issuer ${issuer}`),
  });
}

/**
 * Key lookup for one issuer. jose's remote JWKS set stays the source of truth (caching, cooldown
 * on unknown kids, refetch when stale); in front of it, the keys it resolved are remembered per
 * (alg, kid) so a verification with a known key needs no further promise. The memory is dropped
 * whenever jose may fetch (on every miss, and once its copy is stale), and nothing resolved while
 * a fetch is pending is remembered, so a key the IdP removed is never kept longer than jose keeps it.
 */
export function issuerKeys(
  ctx: VerifyContext,
  state: KeyState,
  jwksUri: unknown,
  allowHttp: boolean,
): IssuerKeys {
  const jwks = remoteKeySet(ctx, state.cfg.issuer, jwksUri, allowHttp);
  const known = new Map<string, VerificationKey>();
  const onKeyError = (err: unknown): never => {
    // Only "no such key" says something about the token; a failed fetch is an outage.
    if (reasonForJoseError(err) !== undefined) throw err;
    throw unavailable(ctx, state, 'JWKS fetch', err);
  };
  return {
    hasJwks: jwks !== undefined,
    knownKey(alg, kid) {
      if (alg.startsWith('HS')) return state.hmacBytes;
      if (!jwks?.fresh) return undefined;
      return known.get(`${alg} ${kid}`);
    },
    getKey(header, token) {
      // jose has already refused any alg outside the allowed list, so HS* here means a secret is configured.
      if (header.alg.startsWith('HS')) return hmacKey(ctx, state);
      // No jwks_uri: no asymmetric key is known for this issuer.
      if (!jwks) throw new joseErrors.JWKSNoMatchingKey();
      known.clear();
      const id = `${header.alg} ${header.kid}`;
      return jwks(header, token).then((key) => {
        if (!jwks.reloading && known.size < KNOWN_KEYS_MAX) known.set(id, key);
        return key;
      }, onKeyError);
    },
  };
}

/** The issuer's HMAC secret as bytes, read once (a failed read is retried on the next call). */
export function hmacKey(ctx: VerifyContext, state: KeyState): Promise<Uint8Array> {
  const source = state.cfg.hmacSecret;
  if (!source) return Promise.reject(new TokendError('CONFIG_INVALID', 'verify: no hmacSecret configured'));
  if (state.hmacKey) return state.hmacKey;
  const pending = ctx.readSecret(source, `verify.issuers[${state.index}].hmacSecret`).then((s: string) => {
    const bytes = new TextEncoder().encode(s);
    if (state.hmacKey === pending) state.hmacBytes = bytes;
    return bytes;
  });
  pending.catch(() => {
    if (state.hmacKey === pending) state.hmacKey = undefined;
  });
  state.hmacKey = pending;
  return pending;
}
