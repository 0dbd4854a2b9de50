/**
 * Per trusted issuer: its settings checked once at start-up, and its discovery (metadata, JWKS
 * location, introspection client) done lazily, once, by a single flight shared by every request
 * that arrives before it completes.
 */
import * as oidc from 'openid-client';
import type { JWTVerifyOptions } from 'jose';
import type { VerifyConfig, VerifyIssuerConfig } from '../config/types.js';
import { ConfigError, TokendError } from '../errors.js';
import { EVENTS } from '../log.js';
import { ASYMMETRIC_JWS_ALGORITHMS, HMAC_JWS_ALGORITHMS } from '../jws.js';
import { SingleFlight } from '../util/single-flight.js';
import { unavailable, type VerifyContext } from './context.js';
import { issuerKeys, type IssuerKeys, type KeyState } from './jwks.js';

/** What discovery found out about an issuer. */
export interface Discovered {
  readonly config: oidc.Configuration;
  readonly keys: IssuerKeys;
  readonly canIntrospect: boolean;
}

/** One trusted issuer: its settings and what has been learned about it so far. */
export interface IssuerState extends KeyState {
  readonly cfg: VerifyIssuerConfig;
  /** jwtVerify options, computed once. */
  readonly verifyOptions: JWTVerifyOptions;
  readonly acceptsHmac: boolean;
  /** Discovery in flight, keyed by generation: concurrent first requests share one. */
  readonly discovery: SingleFlight<number, Discovered>;
  /** Bumped whenever the discovered configuration is dropped, so an older flight cannot store its result. */
  generation: number;
  /** The discovered configuration, once there is one: the hot path reads it without a promise. */
  ready: Discovered | undefined;
  /** Injected-clock ms before which discovery is not retried after a failure. */
  retryDiscoveryAt: number;
}

/**
 * Validates every issuer's settings and precomputes its jwtVerify options (done once, not per
 * call). Throws ConfigError listing each problem: `none`, HS* without a secret, an http issuer
 * without allowInsecureHttp, no audience, two entries for one issuer.
 */
export function issuerStates(cfg: VerifyConfig): IssuerState[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  cfg.issuers.forEach((ic, index) => {
    problems.push(...issuerProblems(ic, index));
    // One state per issuer: tokens are routed by `iss`, so a second entry could never be reached.
    if (seen.has(ic.issuer)) problems.push(`verify.issuers[${index}].issuer: duplicate issuer`);
    seen.add(ic.issuer);
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return cfg.issuers.map(issuerState);
}

function issuerProblems(ic: VerifyIssuerConfig, index: number): string[] {
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
  const listed = ic.algorithms ?? defaultAlgorithms(ic);
  for (const alg of listed) {
    if (alg.toLowerCase() === 'none') problems.push(`${field}.algorithms: "none" is never accepted`);
    else if (alg.startsWith('HS') && !ic.hmacSecret) problems.push(`${field}.algorithms: ${alg} needs hmacSecret`);
  }
  if (listed.length === 0) problems.push(`${field}.algorithms: empty`);
  if (ic.introspection?.clientAuth === 'private_key_jwt') {
    problems.push(`${field}.introspection.clientAuth: private_key_jwt is not supported for introspection`);
  }
  return problems;
}

function defaultAlgorithms(ic: VerifyIssuerConfig): readonly string[] {
  return [...ASYMMETRIC_JWS_ALGORITHMS, ...(ic.hmacSecret ? HMAC_JWS_ALGORITHMS : [])];
}

function issuerState(ic: VerifyIssuerConfig, index: number): IssuerState {
  const algorithms = [...(ic.algorithms ?? defaultAlgorithms(ic))];
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
    discovery: new SingleFlight(),
    generation: 0,
    ready: undefined,
    retryDiscoveryAt: 0,
    hmacKey: undefined,
    hmacBytes: undefined,
    lastWarnAt: -Infinity,
  };
}

/**
 * The issuer's discovered configuration: at once when known, else from the discovery in flight,
 * else from a new one. After a failure, rejects at once (GRANT_TRANSIENT) for discoveryRetryMs
 * instead of asking the IdP again per request.
 */
export function discover(ctx: VerifyContext, state: IssuerState): Promise<Discovered> {
  if (state.ready) return Promise.resolve(state.ready);
  const generation = state.generation;
  const running = state.discovery.current(generation);
  if (running) return running;
  if (ctx.clock.now() < state.retryDiscoveryAt) {
    return Promise.reject(
      new TokendError('GRANT_TRANSIENT', `verify: discovery of issuer ${state.cfg.issuer} failed recently; not retried yet`),
    );
  }
  return state.discovery.run(generation, async () => {
    try {
      const discovered = await runDiscovery(ctx, state);
      if (state.generation === generation) state.ready = discovered;
      return discovered;
    } catch (err) {
      state.retryDiscoveryAt = ctx.clock.now() + ctx.discoveryRetryMs;
      throw unavailable(ctx, state, 'discovery', err);
    }
  });
}

/** Drops what discovery found (and the HMAC secret), so the next request starts cold and reads secrets again. */
export function forgetIssuer(state: IssuerState, { secrets }: { secrets: boolean }): void {
  state.generation += 1;
  state.ready = undefined;
  if (secrets) {
    state.hmacKey = undefined;
    state.hmacBytes = undefined;
  }
}

async function runDiscovery(ctx: VerifyContext, state: IssuerState): Promise<Discovered> {
  const { cfg: ic } = state;
  const ix = ic.introspection;
  let clientAuth: oidc.ClientAuth = oidc.None();
  if (ix?.clientSecret) {
    const secret = await ctx.readSecret(ix.clientSecret, `verify.issuers[${state.index}].introspection.clientSecret`);
    clientAuth = ix.clientAuth === 'client_secret_post' ? oidc.ClientSecretPost(secret) : oidc.ClientSecretBasic(secret);
  }
  const options: oidc.DiscoveryRequestOptions = {
    timeout: Math.max(1, Math.ceil(ctx.timeoutMs / 1000)),
    [oidc.customFetch]: ctx.boundedFetch(`verify: discovery of issuer ${ic.issuer}`) as oidc.CustomFetch,
  };
  if (ic.allowInsecureHttp) options.execute = [oidc.allowInsecureRequests];
  // Discovery needs a client_id even when tokend only reads the metadata (no introspection).
  const config = await oidc.discovery(new URL(ic.issuer), ix?.clientId ?? 'tokend-verifier', undefined, clientAuth, options);
  // Later requests with this configuration are introspections: label an oversized answer as such.
  config[oidc.customFetch] = ctx.boundedFetch(`verify: introspection at issuer ${ic.issuer}`) as oidc.CustomFetch;
  const meta = config.serverMetadata();
  const keys = issuerKeys(ctx, state, meta.jwks_uri, ic.allowInsecureHttp === true);
  const canIntrospect = ix !== undefined && typeof meta.introspection_endpoint === 'string';
  ctx.logger.info(
    { event: EVENTS.verifyDiscovered, issuer: ic.issuer, jwks: keys.hasJwks, introspection: canIntrospect },
    'trusted issuer discovered',
  );
  return { config, keys, canIntrospect };
}
