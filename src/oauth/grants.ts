/**
 * The TokenSource over openid-client v6: client_credentials and refresh_token grants (with
 * scope, RFC 8707 resource and audience), RFC 7009 revocation, and the refresh-token seed.
 * Credentials (secret file, key file) are read on every grant so a rotated Kubernetes Secret is
 * picked up without a restart. Requests go through the per-IdP registry (shared discovery, pooled
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
import { toGrantResult } from './answer.js';
import { classifyGrantError, type GrantPhase } from './classify.js';
import { createClientKeyLoader, type ClientKeyLoader } from './client-auth.js';
import { defaultIdpRegistry, type IdpRegistry } from './idp-registry.js';
import { createIssuerResolver, type IssuerResolver } from './issuer.js';
import type { GrantLimiter } from './limiter.js';
import { clientSecretBasic } from './secret-basic.js';
import { attachRotatedRefreshToken, rotatedRefreshTokenOf, type TokenSource } from './source.js';
import { newRecord, operationFetch, type OperationRecord } from './transport.js';

export { jwtLifetimeMs, MAX_LIFETIME_MS, toGrantResult } from './answer.js';

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
}

/** A TokenSource that can also fingerprint its credentials (see TokenSource.credentialFingerprint). */
export interface OAuthTokenSource extends TokenSource {
  credentialFingerprint(): Promise<string>;
}

/**
 * Creates the TokenSource for one configured token. Nothing is fetched until the first call.
 * (A factory of small closures over one token's settings, hence longer than 60 lines.)
 */
export function createTokenSource(cfg: TokenConfig, deps: TokenSourceDeps): OAuthTokenSource {
  const registry = deps.idp ?? defaultIdpRegistry();
  const fetchImpl = deps.fetch ?? registry.fetch;
  const resolver: IssuerResolver = createIssuerResolver(cfg, { registry, fetch: fetchImpl });
  const keyLoader: ClientKeyLoader | undefined =
    cfg.clientAuth === 'private_key_jwt' && cfg.privateKeyFile
      ? createClientKeyLoader({ tokenName: cfg.name, path: cfg.privateKeyFile, kid: cfg.privateKeyId, alg: cfg.privateKeyAlg })
      : undefined;
  const label = `token "${cfg.name}"`;

  async function clientAuth(as: client.ServerMetadata): Promise<client.ClientAuth> {
    switch (cfg.clientAuth) {
      case 'client_secret_basic':
        return clientSecretBasic(await secret());
      case 'client_secret_post':
        return client.ClientSecretPost(await secret());
      case 'none':
        return client.None();
      case 'private_key_jwt': {
        if (!keyLoader) throw configError('privateKeyFile', 'is required for clientAuth: private_key_jwt');
        const signing = await keyLoader();
        // OIDC Core §9, RFC 7523 §3 and most IdPs (Okta, Entra ID) want the token endpoint as aud;
        // some older ones want the issuer. A static tokenEndpoint has no real issuer to offer.
        const aud = cfg.privateKeyAudience === 'issuer' && resolver.discovered ? as.issuer : as.token_endpoint;
        return client.PrivateKeyJwt(signing.kid ? { key: signing.key, kid: signing.kid } : signing.key, {
          [client.modifyAssertion]: (header, payload) => {
            if (signing.alg === 'EdDSA' && header.alg === 'Ed25519') header.alg = 'EdDSA';
            if (aud) payload.aud = aud;
          },
        });
      }
    }
  }

  async function secret(): Promise<string> {
    if (!cfg.clientSecret) throw configError('clientSecret', `is required for clientAuth: ${cfg.clientAuth}`);
    return readSecret(cfg.clientSecret, fieldOf('clientSecret', cfg.clientSecret));
  }

  /** The limiter of the IdP serving as (or, before discovery, of the issuer's origin). */
  function limiterFor(as: client.ServerMetadata | undefined): GrantLimiter {
    const url = as?.token_endpoint ?? cfg.tokenEndpoint ?? cfg.issuer ?? '';
    return registry.limiter(new URL(url).origin);
  }

  /** One Configuration per call: the caller's signal, a freshly read credential and the record belong to this call only. */
  async function configuration(signal: AbortSignal | undefined, phase: GrantPhase, record: OperationRecord): Promise<client.Configuration> {
    let as: client.ServerMetadata;
    try {
      as = await resolver.metadata(signal);
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
    const config = new client.Configuration(as, cfg.clientId, undefined, await clientAuth(as));
    if (cfg.allowInsecureHttp) client.allowInsecureRequests(config);
    config.timeout = cfg.timeoutMs / 1000;
    config[client.customFetch] = operationFetch(
      { fetch: fetchImpl, signal, phase, tokenName: cfg.name, tokenEndpoint: as.token_endpoint },
      record,
    );
    return config;
  }

  /**
   * Runs op against the IdP in a limiter slot and translates its failure: the IdP's Retry-After
   * pauses every grant to it; a token endpoint that stopped answering (network error, 404) makes
   * discovery run again; a new refresh token the answer carried rides on the error.
   */
  async function attempt<T>(phase: GrantPhase, signal: AbortSignal | undefined, op: (config: client.Configuration) => Promise<T>): Promise<T> {
    const record = newRecord();
    let as: client.ServerMetadata | undefined;
    try {
      const config = await configuration(signal, phase, record);
      as = config.serverMetadata();
      const limiter = limiterFor(as);
      return await limiter.run(() => op(config), { waitMs: queueWaitMs(limiter, cfg.timeoutMs), signal, label });
    } catch (err) {
      const e = classifyGrantError(err, cfg.name, phase, { now: deps.clock.now(), exchanges: record.exchanges });
      if (e.retryAfterMs !== undefined && e.reason !== 'idp_paused') limiterFor(as).pause(e.retryAfterMs);
      // The endpoint did not answer, or answered 404: it may have moved, so discovery runs again next time.
      const last = record.exchanges.at(-1);
      if (as !== undefined && last !== undefined && e.code === 'GRANT_TRANSIENT' && (last.status === undefined || last.status === 404)) {
        resolver.invalidate();
      }
      const rotated = record.answer?.refreshToken;
      return Promise.reject(rotated !== undefined && rotatedRefreshTokenOf(e) === undefined ? attachRotatedRefreshToken(e, rotated) : e);
    }
  }

  function grantParameters(): Record<string, string> {
    const params: Record<string, string> = {};
    if (cfg.scope) params.scope = cfg.scope;
    if (cfg.resource) params.resource = cfg.resource;
    if (cfg.audience) params.audience = cfg.audience;
    return params;
  }

  return {
    async obtain(refreshToken, signal) {
      if (cfg.grant === 'refresh_token' && !refreshToken) {
        throw configError('refreshToken', 'no refresh token is available (set refreshTokenFile or refreshToken)');
      }
      const { response, arrivedAt } = await attempt('grant', signal, async (config) => {
        const response =
          cfg.grant === 'refresh_token'
            ? await client.refreshTokenGrant(config, refreshToken as string, grantParameters())
            : await client.clientCredentialsGrant(config, grantParameters());
        return { response, arrivedAt: deps.clock.now() };
      });
      return toGrantResult(response, arrivedAt, cfg) satisfies GrantResult;
    },

    async revoke(token, hint, signal) {
      await attempt('revocation', signal, async (config) => {
        if (!config.serverMetadata().revocation_endpoint) {
          throw configError('revocationEndpoint', 'the IdP announces no revocation endpoint');
        }
        await client.tokenRevocation(config, token, { token_type_hint: hint });
      });
    },

    async readSeed() {
      if (!cfg.refreshToken) return undefined;
      return readSecret(cfg.refreshToken, fieldOf('refreshToken', cfg.refreshToken));
    },

    async discover(signal) {
      const as = await resolver.refresh(signal);
      return { tokenEndpoint: as.token_endpoint as string, revocationEndpoint: as.revocation_endpoint };
    },

    async credentialFingerprint() {
      const hash = createHash('sha256');
      const part = async (label: string, src: SecretSource | undefined): Promise<void> => {
        hash.update(`${label}:`);
        if (!src) return void hash.update('-;');
        if (src.kind === 'literal') return void hash.update(`${src.value};`);
        try {
          hash.update(await readFile(src.path));
        } catch (err) {
          hash.update(`missing:${(err as NodeJS.ErrnoException).code ?? ''}`);
        }
        hash.update(';');
      };
      await part('secret', cfg.clientSecret);
      await part('key', cfg.privateKeyFile ? { kind: 'file', path: cfg.privateKeyFile } : undefined);
      await part('seed', cfg.refreshToken);
      return hash.digest('hex');
    },
  };

  /** The config key the user wrote: `clientSecretFile` for a file, `clientSecret` for a literal. */
  function fieldOf(key: string, src: SecretSource): string {
    return `tokens.${cfg.name}.${key}${src.kind === 'file' ? 'File' : ''}`;
  }

  function configError(field: string, why: string): TokendError {
    return new TokendError('CONFIG_INVALID', `tokens.${cfg.name}.${field}: ${why}`);
  }
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
