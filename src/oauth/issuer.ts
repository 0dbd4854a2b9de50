/**
 * Where a token's IdP endpoints come from: OIDC discovery on `issuer` (RFC 8414 metadata as a
 * fallback), or a static `tokenEndpoint` for plain OAuth2 servers. Discovery is shared by every
 * token with the same issuer and settings (IdpRegistry.discovery: single flight, cached for an
 * hour, re-done after a failure); each token classifies a failure under its own name.
 */
import * as client from 'openid-client';
import type { TokenConfig } from '../config/types.js';
import { TokendError } from '../errors.js';
import { classifyGrantError, type Exchange } from './classify.js';
import type { IdpRegistry } from './idp-registry.js';
import { newRecord, operationFetch } from './transport.js';
import { isResponse } from '../util/fetch-classes.js';

/** Resolves the IdP's server metadata for one token. */
export interface IssuerResolver {
  /** True when endpoints come from discovery (false for a static tokenEndpoint). */
  readonly discovered: boolean;
  /** The cached metadata, discovering first if there is none (or it is older than the registry's max age). */
  metadata(signal?: AbortSignal): Promise<client.ServerMetadata>;
  /** Discovers now, replacing the cache. Throws DISCOVERY_FAILED or CONFIG_INVALID. */
  refresh(signal?: AbortSignal): Promise<client.ServerMetadata>;
  /** Forgets the cached metadata, e.g. after the token endpoint stopped answering. */
  invalidate(): void;
}

/** What a resolver needs: the shared registry, and the fetch that performs requests. */
export interface IssuerResolverDeps {
  readonly registry: IdpRegistry;
  readonly fetch: typeof fetch;
}

/** A shared discovery that failed: the library error and the requests made, classified per token. */
class DiscoveryFailure extends Error {
  constructor(
    readonly original: unknown,
    readonly exchanges: readonly Exchange[],
  ) {
    super('discovery failed');
  }
}

/** Builds the resolver for cfg (issuer or tokenEndpoint). */
export function createIssuerResolver(cfg: TokenConfig, deps: IssuerResolverDeps): IssuerResolver {
  if (cfg.tokenEndpoint) {
    const stat: client.ServerMetadata = {
      // Plain OAuth2 has no issuer identifier; the endpoint's origin stands in for it.
      issuer: new URL(cfg.tokenEndpoint).origin,
      token_endpoint: cfg.tokenEndpoint,
      ...(cfg.revocationEndpoint ? { revocation_endpoint: cfg.revocationEndpoint } : {}),
    };
    return { discovered: false, metadata: async () => stat, refresh: async () => stat, invalidate: () => undefined };
  }
  if (!cfg.issuer) throw new TypeError(`token "${cfg.name}": neither issuer nor tokenEndpoint is set`);
  const issuer = new URL(cfg.issuer);
  // Tokens share discovery when they name the same issuer with the same transport settings.
  const key = `${issuer.href} insecure=${cfg.allowInsecureHttp}`;

  const discoverOnce = async (algorithm: 'oidc' | 'oauth2', record: ReturnType<typeof newRecord>): Promise<client.ServerMetadata> => {
    // Discovery sends no client_id; openid-client only wants a non-empty one.
    const config = await client.discovery(issuer, cfg.clientId ?? 'tokend', undefined, undefined, {
      algorithm,
      timeout: cfg.timeoutMs / 1000,
      execute: cfg.allowInsecureHttp ? [client.allowInsecureRequests] : [],
      [client.customFetch]: operationFetch({ fetch: deps.fetch, phase: 'discovery' }, record),
    });
    return config.serverMetadata();
  };

  const load = async (): Promise<client.ServerMetadata> => {
    const record = newRecord();
    try {
      let value: client.ServerMetadata;
      try {
        value = await discoverOnce('oidc', record);
      } catch (err) {
        // Plain OAuth2 servers publish RFC 8414 metadata instead of openid-configuration.
        if (!isNotFound(err)) throw err;
        value = await discoverOnce('oauth2', record);
      }
      if (!value.token_endpoint) {
        throw new TokendError('DISCOVERY_FAILED', `discovery failed: the metadata of ${issuer.href} names no token_endpoint`);
      }
      return value;
    } catch (err) {
      throw new DiscoveryFailure(err, record.exchanges);
    }
  };

  const classify = (err: unknown): TokendError => {
    const inner =
      err instanceof DiscoveryFailure
        ? classifyGrantError(err.original, cfg.name, 'discovery', { exchanges: err.exchanges, issuer: cfg.issuer })
        : classifyGrantError(err, cfg.name, 'discovery');
    // Errors raised without a token name (shared by every token of the issuer) get this token's.
    if (inner.message.startsWith(`token "${cfg.name}"`) || inner.message.startsWith(`tokens.${cfg.name}.`)) return inner;
    return new TokendError(inner.code, `token "${cfg.name}": ${inner.message}`, {
      cause: inner,
      oauthError: inner.oauthError,
      status: inner.status,
      reason: inner.reason,
      retryAfterMs: inner.retryAfterMs,
    });
  };

  return {
    discovered: true,
    metadata: (signal) => deps.registry.discovery.get(key, load, signal).catch((err: unknown) => Promise.reject(classify(err))),
    refresh: (signal) => deps.registry.discovery.refresh(key, load, signal).catch((err: unknown) => Promise.reject(classify(err))),
    invalidate: () => deps.registry.discovery.invalidate(key),
  };
}

function isNotFound(err: unknown): boolean {
  return (
    err instanceof client.ClientError &&
    err.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' &&
    isResponse(err.cause) &&
    err.cause.status === 404
  );
}
