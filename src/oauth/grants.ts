/**
 * The TokenSource over openid-client v6: client_credentials and refresh_token grants (with
 * scope, RFC 8707 resource and audience), the federated grants token_exchange (RFC 8693) and
 * jwt_bearer (RFC 7523 §2.1), RFC 7009 revocation, and the refresh-token seed. Credentials
 * (secret file, key file, client assertion, subject token, assertion) are read on every grant so
 * a rotated Kubernetes Secret or projected service-account token is picked up without a restart. Requests go through the per-IdP registry (shared discovery, pooled
 * connections, grant limiter) and a bounded, inspecting fetch (transport.ts); the IdP's answer is
 * untrusted input and is validated before it becomes a GrantResult (answer.ts).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as client from 'openid-client';
import type { Clock } from '../clock.js';
import type { SecretSource, TokenConfig } from '../config/types.js';
import { readSecret } from '../config/secrets.js';
import { TokendError } from '../errors.js';
import type { GrantResult } from '../token.js';
import { issuedTokenTypeOf, toGrantResult } from './answer.js';
import type { CredentialExpiryObserver } from './assertion-metrics.js';
import { classifyGrantError, type GrantPhase } from './classify.js';
import { createClientKeyLoader, type ClientKeyLoader } from './client-auth.js';
import { describeSent, readFederatedToken, readJwtClaims, type FederatedKind, type FederatedToken } from './federated.js';
import { anonymousClient, clientAssertionAuth, federatedGrant, type FederatedRequest, type TokenLookup } from './federated-grant.js';
import { defaultIdpRegistry, type IdpRegistry } from './idp-registry.js';
import { createIssuerResolver, type IssuerResolver } from './issuer.js';
import type { GrantLimiter } from './limiter.js';
import { clientSecretBasic } from './secret-basic.js';
import { attachRotatedRefreshToken, rotatedRefreshTokenOf, type TokenSource } from './source.js';
import { newRecord, operationFetch, type OperationRecord } from './transport.js';


/** Dependencies of createTokenSource. */
export interface TokenSourceDeps {
  /** Stamps obtainedAt/expiresAt at the moment a response arrives. */
  readonly clock: Clock;
  /**
   * Performs the HTTP requests. Default: the registry's pooled fetch. Whatever is given, answers
   * are still read bounded and inspected, and grants still go through the registry's limiter.
   */
  readonly fetch?: typeof fetch | undefined;
  /** Shared per-IdP state (discovery, connections, limiter). Default: the process-wide defaultIdpRegistry(). */
  readonly idp?: IdpRegistry | undefined;
  /**
   * grant token_exchange with `subjectToken: NAME`: finds that other configured token (the daemon
   * passes its handles). Without it, or when it finds nothing, such a grant fails with CONFIG_INVALID.
   */
  readonly tokenLookup?: TokenLookup | undefined;
  /** Told the exp of every federated credential read (the daemon passes AssertionMetrics). Default: nobody. */
  readonly credentialExpiry?: CredentialExpiryObserver | undefined;
}

/** Stands in for an absent clientId where openid-client needs one; never sent (anonymousClient sends nothing). */
const ANONYMOUS_CLIENT_ID = 'tokend-anonymous';

/** A TokenSource that can also fingerprint its credentials (see TokenSource.credentialFingerprint). */
export interface OAuthTokenSource extends TokenSource {
  credentialFingerprint(): Promise<string>;
}

/** What every request of one configured token needs: its settings and its IdP's shared parts. */
interface SourceState {
  readonly cfg: TokenConfig;
  readonly deps: TokenSourceDeps;
  readonly registry: IdpRegistry;
  readonly fetch: typeof fetch;
  readonly resolver: IssuerResolver;
  readonly keyLoader: ClientKeyLoader | undefined;
  /** `token "NAME"`, for messages. */
  readonly label: string;
  /** Tells the expiry observer about a federated credential just read. */
  readonly onRead: (t: FederatedToken) => void;
}

/** Creates the TokenSource for one configured token. Nothing is fetched until the first call. */
export function createTokenSource(cfg: TokenConfig, deps: TokenSourceDeps): OAuthTokenSource {
  const registry = deps.idp ?? defaultIdpRegistry();
  const fetchImpl = deps.fetch ?? registry.fetch;
  const s: SourceState = {
    cfg,
    deps,
    registry,
    fetch: fetchImpl,
    resolver: createIssuerResolver(cfg, { registry, fetch: fetchImpl }),
    keyLoader:
      cfg.clientAuth === 'private_key_jwt' && cfg.privateKeyFile
        ? createClientKeyLoader({ tokenName: cfg.name, path: cfg.privateKeyFile, kid: cfg.privateKeyId, alg: cfg.privateKeyAlg })
        : undefined,
    label: `token "${cfg.name}"`,
    onRead: (t) => deps.credentialExpiry?.observe(cfg.name, t.kind, t.claims?.expMs),
  };
  return {
    obtain: (refreshToken, signal) => obtain(s, refreshToken, signal),
    revoke: (token, hint, signal) => revoke(s, token, hint, signal),
    readSeed: async () => (cfg.refreshToken ? readSecret(cfg.refreshToken, fieldOf(cfg, 'refreshToken', cfg.refreshToken)) : undefined),
    discover: async (signal) => {
      const as = await s.resolver.refresh(signal);
      return { tokenEndpoint: as.token_endpoint as string, revocationEndpoint: as.revocation_endpoint };
    },
    credentialFingerprint: () => credentialFingerprint(s),
  };
}

/** The configured grant, once: federated credentials read first (a stale file fails without a request). */
async function obtain(s: SourceState, refreshToken: string | undefined, signal: AbortSignal | undefined): Promise<GrantResult> {
  const { cfg, deps } = s;
  if (cfg.grant === 'refresh_token' && !refreshToken) {
    throw configError(cfg, 'refreshToken', 'no refresh token is available (set refreshTokenFile or refreshToken)');
  }
  const fed =
    cfg.grant === 'token_exchange' || cfg.grant === 'jwt_bearer'
      ? await federatedGrant(cfg, { now: deps.clock.now(), lookup: deps.tokenLookup, signal, onRead: s.onRead })
      : undefined;
  const { response, arrivedAt } = await attempt(
    s,
    'grant',
    signal,
    async (config) => {
      const response = await grantRequest(cfg, config, refreshToken, fed);
      return { response, arrivedAt: deps.clock.now() };
    },
    fed?.presented,
  );
  const result = toGrantResult(response, arrivedAt, cfg) satisfies GrantResult;
  const issuedTokenType = cfg.grant === 'token_exchange' ? issuedTokenTypeOf(response) : undefined;
  return issuedTokenType === undefined ? result : { ...result, token: { ...result.token, issuedTokenType } };
}

/** RFC 7009 revocation of token at the IdP's revocation endpoint. */
async function revoke(s: SourceState, token: string, hint: 'refresh_token' | 'access_token', signal: AbortSignal | undefined): Promise<void> {
  await attempt(s, 'revocation', signal, async (config) => {
    if (!config.serverMetadata().revocation_endpoint) {
      throw configError(s.cfg, 'revocationEndpoint', 'the IdP announces no revocation endpoint');
    }
    await client.tokenRevocation(config, token, { token_type_hint: hint });
  });
}

/** The one request of the configured grant. */
function grantRequest(
  cfg: TokenConfig,
  config: client.Configuration,
  refreshToken: string | undefined,
  fed: FederatedRequest | undefined,
): Promise<client.TokenEndpointResponse> {
  const params: Record<string, string> = {};
  if (cfg.scope) params.scope = cfg.scope;
  if (cfg.resource) params.resource = cfg.resource;
  if (cfg.audience) params.audience = cfg.audience;
  if (fed !== undefined) return client.genericGrantRequest(config, fed.grantType, { ...params, ...fed.params });
  if (cfg.grant === 'refresh_token') return client.refreshTokenGrant(config, refreshToken as string, params);
  return client.clientCredentialsGrant(config, params);
}

/**
 * Runs op against the IdP in a limiter slot and translates its failure: the IdP's Retry-After
 * pauses every grant to it; a token endpoint that stopped answering (network error, 404) makes
 * discovery run again; a new refresh token the answer carried rides on the error; a refusal of
 * federated credentials names what they said about themselves (never their value).
 */
async function attempt<T>(
  s: SourceState,
  phase: GrantPhase,
  signal: AbortSignal | undefined,
  op: (config: client.Configuration) => Promise<T>,
  federated: readonly FederatedToken[] = [],
): Promise<T> {
  const { cfg } = s;
  const record = newRecord();
  const presented = [...federated];
  let as: client.ServerMetadata | undefined;
  try {
    const config = await configuration(s, signal, phase, record, presented);
    as = config.serverMetadata();
    const limiter = limiterFor(s, as);
    return await limiter.run(() => op(config), { waitMs: queueWaitMs(limiter, cfg.timeoutMs), signal, label: s.label });
  } catch (err) {
    const e = naming(classifyGrantError(err, cfg.name, phase, { now: s.deps.clock.now(), exchanges: record.exchanges }), presented);
    if (e.retryAfterMs !== undefined && e.reason !== 'idp_paused') limiterFor(s, as).pause(e.retryAfterMs);
    // The endpoint did not answer, or answered 404: it may have moved, so discovery runs again next time.
    const last = record.exchanges.at(-1);
    if (as !== undefined && last !== undefined && e.code === 'GRANT_TRANSIENT' && (last.status === undefined || last.status === 404)) {
      s.resolver.invalidate();
    }
    const rotated = record.answer?.refreshToken;
    return Promise.reject(rotated !== undefined && rotatedRefreshTokenOf(e) === undefined ? attachRotatedRefreshToken(e, rotated) : e);
  }
}

/** One Configuration per call: the caller's signal, a freshly read credential and the record belong to this call only. */
async function configuration(
  s: SourceState,
  signal: AbortSignal | undefined,
  phase: GrantPhase,
  record: OperationRecord,
  presented: FederatedToken[],
): Promise<client.Configuration> {
  const { cfg } = s;
  let as: client.ServerMetadata;
  try {
    as = await s.resolver.metadata(signal);
  } catch (err) {
    // A grant that cannot find its endpoints is retryable; `discover()` reports DISCOVERY_FAILED itself.
    if (err instanceof TokendError && err.code === 'DISCOVERY_FAILED') {
      throw new TokendError('GRANT_TRANSIENT', err.message, {
        cause: err,
        status: err.status,
        oauthError: err.oauthError,
        reason: err.reason,
        retryAfterMs: err.retryAfterMs,
      });
    }
    throw err;
  }
  const config = new client.Configuration(as, cfg.clientId ?? ANONYMOUS_CLIENT_ID, undefined, await clientAuth(s, as, presented));
  if (cfg.allowInsecureHttp) client.allowInsecureRequests(config);
  config.timeout = cfg.timeoutMs / 1000;
  config[client.customFetch] = operationFetch({ fetch: s.fetch, signal, phase, tokenName: cfg.name, tokenEndpoint: as.token_endpoint }, record);
  return config;
}

/** The client authentication of one request; a client assertion read for it is added to `presented`. */
async function clientAuth(s: SourceState, as: client.ServerMetadata, presented: FederatedToken[]): Promise<client.ClientAuth> {
  const { cfg } = s;
  switch (cfg.clientAuth) {
    case 'client_secret_basic':
      return clientSecretBasic(await readClientSecret(cfg));
    case 'client_secret_post':
      return client.ClientSecretPost(await readClientSecret(cfg));
    case 'none':
      return cfg.clientId === undefined ? anonymousClient() : client.None();
    case 'client_assertion': {
      if (!cfg.clientAssertionFile) throw configError(cfg, 'clientAssertionFile', 'is required for clientAuth: client_assertion');
      const assertion = await readFederatedToken({
        tokenName: cfg.name,
        kind: 'client_assertion',
        path: cfg.clientAssertionFile,
        now: s.deps.clock.now(),
        requireJwt: true,
        onRead: s.onRead,
      });
      presented.push(assertion);
      return clientAssertionAuth(assertion.value);
    }
    case 'private_key_jwt': {
      if (!s.keyLoader) throw configError(cfg, 'privateKeyFile', 'is required for clientAuth: private_key_jwt');
      const signing = await s.keyLoader();
      // OIDC Core §9, RFC 7523 §3 and most IdPs (Okta, Entra ID) want the token endpoint as aud;
      // some older ones want the issuer. A static tokenEndpoint has no real issuer to offer.
      const aud = cfg.privateKeyAudience === 'issuer' && s.resolver.discovered ? as.issuer : as.token_endpoint;
      return client.PrivateKeyJwt(signing.kid ? { key: signing.key, kid: signing.kid } : signing.key, {
        [client.modifyAssertion]: (header, payload) => {
          if (signing.alg === 'EdDSA' && header.alg === 'Ed25519') header.alg = 'EdDSA';
          if (aud) payload.aud = aud;
        },
      });
    }
  }
}

async function readClientSecret(cfg: TokenConfig): Promise<string> {
  if (!cfg.clientSecret) throw configError(cfg, 'clientSecret', `is required for clientAuth: ${cfg.clientAuth}`);
  return readSecret(cfg.clientSecret, fieldOf(cfg, 'clientSecret', cfg.clientSecret));
}

/**
 * How long a grant may wait for a limiter slot before it gives up (idp_busy): the time its turn
 * takes even if every grant ahead of it (those queued, `concurrency` at a time) runs to its full
 * timeout, plus one timeout. Each grant in flight ends within its own timeout, so only an IdP
 * that stopped making progress runs it out. (Waiting just one timeout failed every token queued
 * behind more than ~timeout x grant rate others: 10,000 tokens against a 50 ms IdP logged 48,000
 * idp_busy failures and spent 54 CPU s instead of ~10 starting up; bench/scale.mjs.)
 */
export function queueWaitMs(limiter: Pick<GrantLimiter, 'queued' | 'concurrency'>, timeoutMs: number): number {
  return timeoutMs * (Math.ceil((limiter.queued + 1) / limiter.concurrency) + 1);
}

/** The limiter of the IdP serving as (or, before discovery, of the issuer's origin). */
function limiterFor(s: SourceState, as: client.ServerMetadata | undefined): GrantLimiter {
  const url = as?.token_endpoint ?? s.cfg.tokenEndpoint ?? s.cfg.issuer ?? '';
  return s.registry.limiter(new URL(url).origin);
}

/**
 * SHA-256 over the credential material, read fresh: after a permanent refusal, a change (a
 * rotated Secret, kubelet's new service-account token, a fixed audience) is worth another try.
 * Reading the federated files also keeps their expiry gauges current between grants.
 */
async function credentialFingerprint(s: SourceState): Promise<string> {
  const { cfg, deps } = s;
  const hash = createHash('sha256');
  // Hashes one credential; returns a file's bytes (undefined if it is missing or not a file).
  const part = async (label: string, src: SecretSource | undefined): Promise<Buffer | undefined> => {
    hash.update(`${label}:`);
    if (!src) return void hash.update('-;');
    if (src.kind === 'literal') return void hash.update(`${src.value};`);
    let bytes: Buffer | undefined;
    try {
      bytes = await readFile(src.path);
      hash.update(bytes);
    } catch (err) {
      hash.update(`missing:${(err as NodeJS.ErrnoException).code ?? ''}`);
    }
    hash.update(';');
    return bytes;
  };
  await part('secret', cfg.clientSecret);
  await part('key', cfg.privateKeyFile ? { kind: 'file', path: cfg.privateKeyFile } : undefined);
  await part('seed', cfg.refreshToken);
  const files: Array<[FederatedKind, string | undefined]> = [
    ['client_assertion', cfg.clientAssertionFile],
    ['assertion', cfg.assertionFile],
    ['subject_token', cfg.subjectTokenFile],
    ['actor_token', cfg.actorTokenFile],
  ];
  for (const [kind, path] of files) {
    if (path === undefined) continue;
    const bytes = await part(kind, { kind: 'file', path });
    if (bytes !== undefined) deps.credentialExpiry?.observe(cfg.name, kind, readJwtClaims(bytes.toString('utf8').trim())?.expMs);
  }
  if (cfg.subjectToken !== undefined) {
    hash.update(`subject:${deps.tokenLookup?.(cfg.subjectToken)?.current()?.accessToken ?? '-'};`);
  }
  return hash.digest('hex');
}

/** err, naming the federated credentials the IdP refused (what they said about themselves, never their value). */
function naming(err: TokendError, presented: readonly FederatedToken[]): TokendError {
  if (err.code !== 'GRANT_PERMANENT' || err.status === undefined || presented.length === 0) return err;
  return new TokendError(err.code, `${err.message}; tokend sent ${presented.map(describeSent).join(' and ')}`, {
    cause: err,
    oauthError: err.oauthError,
    status: err.status,
    reason: err.reason,
    retryAfterMs: err.retryAfterMs,
    rotatedRefreshToken: err.rotatedRefreshToken,
  });
}

/** The config key the user wrote: `clientSecretFile` for a file, `clientSecret` for a literal. */
function fieldOf(cfg: TokenConfig, key: string, src: SecretSource): string {
  return `tokens.${cfg.name}.${key}${src.kind === 'file' ? 'File' : ''}`;
}

function configError(cfg: TokenConfig, field: string, why: string): TokendError {
  return new TokendError('CONFIG_INVALID', `tokens.${cfg.name}.${field}: ${why}`);
}
