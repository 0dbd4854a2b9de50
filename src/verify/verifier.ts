import * as oidc from 'openid-client';
import {
  createRemoteJWKSet,
  customFetch as joseCustomFetch,
  errors as joseErrors,
  jwtVerify,
  type CryptoKey,
  type JWK,
  type JWSHeaderParameters,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  type KeyObject,
} from 'jose';
import type { Clock } from '../clock.js';
import type { SecretSource, VerifyConfig, VerifyIssuerConfig } from '../config/types.js';
import { readSecret as readSecretFromConfig } from '../config/secrets.js';
import { ConfigError, TokendError } from '../errors.js';
import { EVENTS, serializeError, type Logger } from '../log.js';
import { ASYMMETRIC_JWS_ALGORITHMS, HMAC_JWS_ALGORITHMS } from '../jws.js';
import { MAX_TOKEN_CHARS } from '../token.js';
import { raceAbort } from '../util/abort.js';
import { reasonForJoseError } from './classify.js';
import { IntrospectionCache, introspectionCacheTtl, judgeIntrospection, tokenCacheKey } from './introspection.js';
import { type Verifier, type VerifyOutcome, type VerifyReason } from './types.js';

export type { Verifier, VerifyOutcome, VerifyReason } from './types.js';



// RFC 6750 §2.1 b64token.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
// A compact JWS: three base64url parts (the signature may be empty, as with alg "none").
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

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
  /** Reads a configured secret (default: src/config/secrets.ts readSecret). */
  readonly readSecret?: (source: SecretSource, field: string) => Promise<string>;
}

interface Discovered {
  readonly config: oidc.Configuration;
  /** Whether the issuer publishes a usable jwks_uri. */
  readonly hasJwks: boolean;
  /** The key for (alg, kid) if it is already known (no I/O, no promise), else undefined. */
  readonly knownKey: (alg: string, kid: string | undefined) => VerificationKey | undefined;
  /** Resolves the key of a JWS: the HMAC secret for HS*, else from the JWKS (may fetch it). Built once. */
  readonly getKey: JWTVerifyGetKey;
  readonly canIntrospect: boolean;
}

type VerificationKey = CryptoKey | KeyObject | JWK | Uint8Array;

interface IssuerState {
  readonly cfg: VerifyIssuerConfig;
  /** Index in verify.issuers, for field names in messages. */
  readonly index: number;
  readonly verifyOptions: JWTVerifyOptions;
  readonly acceptsHmac: boolean;
  discovered: Promise<Discovered> | undefined;
  /** The settled value of `discovered`, so the hot path need not await a promise. */
  ready: Discovered | undefined;
  /** Injected-clock ms before which discovery is not retried after a failure. */
  retryDiscoveryAt: number;
  hmacKey: Promise<Uint8Array> | undefined;
  /** The settled value of hmacKey. */
  hmacBytes: Uint8Array | undefined;
  lastWarnAt: number;
}

const WARN_INTERVAL_MS = 10_000;

/** Bound on remembered (alg, kid) → key resolutions per issuer; only keys the JWKS really holds get in. */
const KNOWN_KEYS_MAX = 64;

/**
 * Builds the verifier of incoming bearer tokens. Nothing is fetched until the first token of an
 * issuer arrives: discovery, the JWKS and the introspection client are set up lazily and cached.
 * Throws ConfigError for a configuration it cannot honour safely (`none`, HS* without a secret,
 * an http issuer without allowInsecureHttp, no audience).
 */
export function createVerifier(cfg: VerifyConfig, deps: VerifierDeps): Verifier {
  const { clock, logger } = deps;
  const timeoutMs = deps.timeoutMs ?? 5_000;
  const cooldownMs = deps.jwksCooldownMs ?? 30_000;
  const cacheMaxAgeMs = deps.jwksCacheMaxAgeMs ?? 600_000;
  const discoveryRetryMs = deps.discoveryRetryMs ?? 5_000;
  const readSecret = deps.readSecret ?? readSecretFromConfig;
  const cache = new IntrospectionCache({ clock, maxEntries: deps.introspectionCacheEntries });
  const inflight = new Map<string, Promise<VerifyOutcome>>();

  const states = cfg.issuers.map((ic, index) => issuerState(ic, index));
  const byIssuer = new Map(states.map((s) => [s.cfg.issuer, s]));
  const introspectors = states.filter((s) => s.cfg.introspection !== undefined);

  function reject(reason: VerifyReason, issuer?: string): VerifyOutcome {
    logger.debug({ event: EVENTS.verifyRejected, issuer, reason }, 'incoming token refused');
    return { active: false, reason };
  }

  function unavailable(state: IssuerState, what: string, err: unknown, code: 'GRANT_TRANSIENT' | 'GRANT_PERMANENT' = 'GRANT_TRANSIENT'): TokendError {
    if (err instanceof TokendError) return err;
    const out = new TokendError(code, `verify: ${what} of issuer ${state.cfg.issuer} failed`, {
      cause: err,
      status: statusOf(err),
      oauthError: oauthErrorOf(err),
    });
    const now = clock.now();
    // One warning per issuer per interval: during an outage every request would log otherwise.
    if (now - state.lastWarnAt >= WARN_INTERVAL_MS) {
      state.lastWarnAt = now;
      logger.warn({ event: EVENTS.verifyUnavailable, issuer: state.cfg.issuer, err: serializeError(err) }, out.message);
    }
    return out;
  }

  function discover(state: IssuerState): Promise<Discovered> {
    if (state.discovered) return state.discovered;
    if (clock.now() < state.retryDiscoveryAt) {
      return Promise.reject(
        new TokendError('GRANT_TRANSIENT', `verify: discovery of issuer ${state.cfg.issuer} failed recently; not retried yet`),
      );
    }
    const pending = runDiscovery(state).then(
      (d) => {
        if (state.discovered === pending) state.ready = d;
        return d;
      },
      (err: unknown) => {
        if (state.discovered === pending) state.discovered = undefined;
        state.retryDiscoveryAt = clock.now() + discoveryRetryMs;
        throw unavailable(state, 'discovery', err);
      },
    );
    state.discovered = pending;
    return pending;
  }

  async function runDiscovery(state: IssuerState): Promise<Discovered> {
    const { cfg: ic } = state;
    const ix = ic.introspection;
    let clientAuth: oidc.ClientAuth = oidc.None();
    if (ix?.clientSecret) {
      const secret = await readSecret(ix.clientSecret, `verify.issuers[${state.index}].introspection.clientSecret`);
      clientAuth = ix.clientAuth === 'client_secret_post' ? oidc.ClientSecretPost(secret) : oidc.ClientSecretBasic(secret);
    }
    const options: oidc.DiscoveryRequestOptions = { timeout: Math.max(1, Math.ceil(timeoutMs / 1000)) };
    if (ic.allowInsecureHttp) options.execute = [oidc.allowInsecureRequests];
    if (deps.fetch) options[oidc.customFetch] = deps.fetch as oidc.CustomFetch;
    // Discovery needs a client_id even when tokend only reads the metadata (no introspection).
    const config = await oidc.discovery(new URL(ic.issuer), ix?.clientId ?? 'tokend-verifier', undefined, clientAuth, options);
    const meta = config.serverMetadata();
    let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
    if (typeof meta.jwks_uri === 'string') {
      const jwksUrl = new URL(meta.jwks_uri);
      if (jwksUrl.protocol === 'https:' || ic.allowInsecureHttp) {
        jwks = createRemoteJWKSet(jwksUrl, {
          cooldownDuration: cooldownMs,
          cacheMaxAge: cacheMaxAgeMs,
          timeoutDuration: timeoutMs,
          ...(deps.fetch ? { [joseCustomFetch]: deps.fetch } : {}),
        });
      }
    }
    const canIntrospect = ix !== undefined && typeof meta.introspection_endpoint === 'string';
    logger.info(
      { event: EVENTS.verifyDiscovered, issuer: ic.issuer, jwks: jwks !== undefined, introspection: canIntrospect },
      'trusted issuer discovered',
    );
    return { config, hasJwks: jwks !== undefined, canIntrospect, ...keyLookup(state, jwks) };
  }

  /**
   * Key lookup for one issuer. jose's remote JWKS set stays the source of truth (caching, cooldown
   * on unknown kids, refetch when stale); in front of it, the keys it resolved are remembered per
   * (alg, kid) so a verification with a known key needs no further promise. The memory is dropped
   * whenever jose may fetch (on every miss, and once its copy is stale), and nothing resolved while
   * a fetch is pending is remembered, so a key the IdP removed is never kept longer than jose keeps it.
   */
  function keyLookup(
    state: IssuerState,
    jwks: ReturnType<typeof createRemoteJWKSet> | undefined,
  ): Pick<Discovered, 'knownKey' | 'getKey'> {
    const known = new Map<string, VerificationKey>();
    const onKeyError = (err: unknown): never => {
      // Only "no such key" says something about the token; a failed fetch is an outage.
      if (reasonForJoseError(err) !== undefined) throw err;
      throw unavailable(state, 'JWKS fetch', err);
    };
    return {
      knownKey(alg, kid) {
        if (alg.startsWith('HS')) return state.hmacBytes;
        if (!jwks?.fresh) return undefined;
        return known.get(`${alg} ${kid}`);
      },
      getKey(header, token) {
        // jose has already refused any alg outside the allowed list, so HS* here means a secret is configured.
        if (header.alg.startsWith('HS')) return hmacKey(state);
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

  function hmacKey(state: IssuerState): Promise<Uint8Array> {
    const source = state.cfg.hmacSecret;
    if (!source) return Promise.reject(new TokendError('CONFIG_INVALID', 'verify: no hmacSecret configured'));
    if (state.hmacKey) return state.hmacKey;
    const pending = readSecret(source, `verify.issuers[${state.index}].hmacSecret`).then((s: string) => {
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

  async function verifyJwt(token: string, signal: AbortSignal | undefined): Promise<VerifyOutcome> {
    const peeked = peekJwt(token);
    if (!peeked) return reject('malformed');
    const { header, payload: unverified } = peeked;
    const { alg, kid } = header;
    if (typeof alg !== 'string' || (kid !== undefined && typeof kid !== 'string')) return reject('malformed');
    const iss = unverified.iss;
    const state = typeof iss === 'string' ? byIssuer.get(iss) : undefined;
    if (!state) return reject('issuer');
    const discovered = state.ready ?? (await raceAbort(discover(state), signal));
    if (!discovered.hasJwks && !state.acceptsHmac) {
      if (discovered.canIntrospect) return raceAbort(introspectCached(token, [state]), signal);
      return reject('malformed', state.cfg.issuer);
    }
    const options = { ...state.verifyOptions, currentDate: new Date(clock.now()) };
    // The hot path: a key already resolved means no I/O, so nothing to abort either.
    const key = discovered.knownKey(alg, kid);
    try {
      const { payload } = await (key
        ? jwtVerify(token, key, options)
        : raceAbort(jwtVerify(token, discovered.getKey, options), signal));
      return { active: true, issuer: state.cfg.issuer, claims: payload as Record<string, unknown> };
    } catch (err) {
      if (signal?.aborted && err === signal.reason) throw err;
      const reason = reasonForJoseError(err);
      if (reason === undefined) throw err;
      return reject(reason, state.cfg.issuer);
    }
  }

  /** Introspects at the given issuers (in order) with a cache and one request per token at a time. */
  function introspectCached(token: string, candidates: readonly IssuerState[]): Promise<VerifyOutcome> {
    const key = tokenCacheKey(token);
    const running = inflight.get(key);
    if (running) return running;
    const pending = (async () => {
      const cached = await cache.get(key);
      if (cached) return cached;
      const { outcome, exp, issuer } = await introspectAt(token, candidates);
      await cache.set(key, outcome, introspectionCacheTtl(outcome, exp, clock.now()));
      return outcome.active ? outcome : reject(outcome.reason, issuer);
    })().finally(() => {
      if (inflight.get(key) === pending) inflight.delete(key);
    });
    inflight.set(key, pending);
    return pending;
  }

  async function introspectAt(
    token: string,
    candidates: readonly IssuerState[],
  ): Promise<{ outcome: VerifyOutcome; exp?: unknown; issuer?: string }> {
    let asked = false;
    for (const state of candidates) {
      const discovered = await discover(state);
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
          state.discovered = undefined;
          state.ready = undefined;
          throw unavailable(state, 'introspection', err, 'GRANT_PERMANENT');
        }
        throw unavailable(state, 'introspection', err);
      }
      const outcome = judgeIntrospection(response, state.cfg, clock.now());
      // An inactive answer may only mean "not mine": ask the next issuer that can introspect.
      if (outcome.active || outcome.reason !== 'inactive') return { outcome, exp: response.exp, issuer: state.cfg.issuer };
    }
    return { outcome: { active: false, reason: asked ? 'inactive' : 'malformed' } };
  }

  function verifyToken(bearer: string, signal: AbortSignal | undefined): Promise<VerifyOutcome> {
    if (typeof bearer !== 'string' || bearer.length === 0 || bearer.length > MAX_TOKEN_CHARS) {
      return Promise.resolve(reject('malformed'));
    }
    // A compact JWS is also a valid b64token, so the stricter test runs first.
    if (COMPACT_JWS.test(bearer)) return verifyJwt(bearer, signal);
    if (!B64TOKEN.test(bearer) || introspectors.length === 0) return Promise.resolve(reject('malformed'));
    return raceAbort(introspectCached(bearer, introspectors), signal);
  }

  return {
    verify(bearer, signal) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      return verifyToken(bearer, signal);
    },
    async close() {
      inflight.clear();
      await cache.clear();
      for (const s of states) {
        s.discovered = undefined;
        s.ready = undefined;
        s.hmacKey = undefined;
        s.hmacBytes = undefined;
      }
    },
  };
}

/**
 * Decodes a compact JWS's protected header and payload WITHOUT verifying anything, to route the
 * token to its issuer and look up its key. Undefined unless both are JSON objects. Callers have
 * checked the base64url alphabet already; Buffer's decoder is several times faster than jose's.
 */
export function peekJwt(token: string): { header: JWSHeaderParameters; payload: Record<string, unknown> } | undefined {
  const dot1 = token.indexOf('.');
  const dot2 = token.indexOf('.', dot1 + 1);
  if (dot1 < 1 || dot2 < 0) return undefined;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, dot1), 'base64url').toString('utf8'));
    const payload: unknown = JSON.parse(Buffer.from(token.slice(dot1 + 1, dot2), 'base64url').toString('utf8'));
    if (!isPlainObject(header) || !isPlainObject(payload)) return undefined;
    return { header: header as JWSHeaderParameters, payload };
  } catch {
    return undefined;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates one issuer's settings and precomputes its jwtVerify options (done once, not per call). */
function issuerState(ic: VerifyIssuerConfig, index: number): IssuerState {
  const field = `verify.issuers[${index}]`;
  const problems: string[] = [];
  let url: URL | undefined;
  try {
    url = new URL(ic.issuer);
  } catch {
    problems.push(`${field}.issuer: not a URL`);
  }
  if (url && url.protocol !== 'https:' && !(url.protocol === 'http:' && ic.allowInsecureHttp)) {
    problems.push(`${field}.issuer: must be https (http only with allowInsecureHttp)`);
  }
  if (ic.audience.length === 0) problems.push(`${field}.audience: at least one audience is required`);
  const listed = ic.algorithms ?? [...ASYMMETRIC_JWS_ALGORITHMS, ...(ic.hmacSecret ? HMAC_JWS_ALGORITHMS : [])];
  for (const alg of listed) {
    if (alg.toLowerCase() === 'none') problems.push(`${field}.algorithms: "none" is never accepted`);
    else if (alg.startsWith('HS') && !ic.hmacSecret) problems.push(`${field}.algorithms: ${alg} needs hmacSecret`);
  }
  if (listed.length === 0) problems.push(`${field}.algorithms: empty`);
  if (ic.introspection?.clientAuth === 'private_key_jwt') {
    problems.push(`${field}.introspection.clientAuth: private_key_jwt is not supported for introspection`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const algorithms = [...listed];
  return {
    cfg: ic,
    index,
    verifyOptions: {
      issuer: ic.issuer,
      audience: [...ic.audience],
      algorithms,
      clockTolerance: ic.clockToleranceSec,
      requiredClaims: [...ic.requiredClaims],
    },
    acceptsHmac: algorithms.some((a) => a.startsWith('HS')),
    discovered: undefined,
    ready: undefined,
    retryDiscoveryAt: 0,
    hmacKey: undefined,
    hmacBytes: undefined,
    lastWarnAt: -Infinity,
  };
}

function statusOf(err: unknown): number | undefined {
  const status = (err as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : undefined;
}

function oauthErrorOf(err: unknown): string | undefined {
  const e = (err as { error?: unknown } | null)?.error;
  return typeof e === 'string' ? e : undefined;
}

