/**
 * Where a token's IdP endpoints come from: OIDC discovery on `issuer` (RFC 8414 metadata as a
 * fallback), or a static `tokenEndpoint` for plain OAuth2 servers. Discovery runs once, is shared
 * by concurrent callers, is cached for an hour and is re-done after a failure.
 */
import * as client from 'openid-client';
import type { Clock } from '../clock.js';
import type { TokenConfig } from '../config/types.js';
import { TokendError } from '../errors.js';
import { classifyGrantError } from './classify.js';

/** How long discovered metadata is trusted before it is fetched again (ms). */
export const METADATA_MAX_AGE_MS = 3_600_000;

/** openid-client's fetch hook type. */
export type CustomFetch = client.CustomFetch;

/**
 * A fetch for openid-client that also honours `signal` (the caller's, e.g. shutdown) on top of the
 * library's own timeout signal.
 */
export function fetchWithSignal(fetchImpl: typeof fetch, signal: AbortSignal | undefined): CustomFetch {
  return (url, options) => {
    const signals = [options.signal, signal].filter((s): s is AbortSignal => s !== undefined);
    const combined = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    return fetchImpl(url, { ...(options as RequestInit), ...(combined ? { signal: combined } : {}) });
  };
}

/** Resolves the IdP's server metadata for one token. */
export interface IssuerResolver {
  /** True when endpoints come from discovery (false for a static tokenEndpoint). */
  readonly discovered: boolean;
  /** The cached metadata, discovering first if there is none (or it is older than METADATA_MAX_AGE_MS). */
  metadata(signal?: AbortSignal): Promise<client.ServerMetadata>;
  /** Discovers now, replacing the cache. Throws DISCOVERY_FAILED or CONFIG_INVALID. */
  refresh(signal?: AbortSignal): Promise<client.ServerMetadata>;
}

/** Builds the resolver for cfg (issuer or tokenEndpoint). */
export function createIssuerResolver(cfg: TokenConfig, deps: { clock: Clock; fetch?: typeof fetch | undefined }): IssuerResolver {
  const fetchImpl = deps.fetch ?? globalThis.fetch;
  if (cfg.tokenEndpoint) {
    const tokenEndpoint = cfg.tokenEndpoint;
    const stat: client.ServerMetadata = {
      // Plain OAuth2 has no issuer identifier; the endpoint's origin stands in for it.
      issuer: new URL(tokenEndpoint).origin,
      token_endpoint: tokenEndpoint,
      ...(cfg.revocationEndpoint ? { revocation_endpoint: cfg.revocationEndpoint } : {}),
    };
    return {
      discovered: false,
      metadata: async () => stat,
      refresh: async () => stat,
    };
  }
  if (!cfg.issuer) throw new TypeError(`token "${cfg.name}": neither issuer nor tokenEndpoint is set`);
  const issuer = new URL(cfg.issuer);

  let cached: { at: number; value: client.ServerMetadata } | undefined;
  let pending: Promise<client.ServerMetadata> | undefined;

  const discoverOnce = async (algorithm: 'oidc' | 'oauth2', signal: AbortSignal | undefined): Promise<client.ServerMetadata> => {
    const config = await client.discovery(issuer, cfg.clientId, undefined, undefined, {
      algorithm,
      timeout: cfg.timeoutMs / 1000,
      execute: cfg.allowInsecureHttp ? [client.allowInsecureRequests] : [],
      [client.customFetch]: fetchWithSignal(fetchImpl, signal),
    });
    return config.serverMetadata();
  };

  const discover = (signal: AbortSignal | undefined): Promise<client.ServerMetadata> => {
    const p = (async () => {
      try {
        let value: client.ServerMetadata;
        try {
          value = await discoverOnce('oidc', signal);
        } catch (err) {
          // Plain OAuth2 servers publish RFC 8414 metadata instead of openid-configuration.
          if (!isNotFound(err)) throw err;
          value = await discoverOnce('oauth2', signal);
        }
        if (!value.token_endpoint) {
          throw new TokendError('DISCOVERY_FAILED', `token "${cfg.name}": discovery failed: the metadata names no token_endpoint`);
        }
        cached = { at: deps.clock.now(), value };
        return value;
      } catch (err) {
        throw classifyGrantError(err, cfg.name, 'discovery');
      }
    })();
    pending = p;
    // Single flight: only the current attempt clears itself, so a failure is retried next time.
    void p.then(
      () => {
        if (pending === p) pending = undefined;
      },
      () => {
        if (pending === p) pending = undefined;
      },
    );
    return p;
  };

  return {
    discovered: true,
    metadata(signal) {
      if (cached && deps.clock.now() - cached.at < METADATA_MAX_AGE_MS) return Promise.resolve(cached.value);
      return pending ?? discover(signal);
    },
    refresh(signal) {
      return pending ?? discover(signal);
    },
  };
}

function isNotFound(err: unknown): boolean {
  return (
    err instanceof client.ClientError &&
    err.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' &&
    err.cause instanceof Response &&
    err.cause.status === 404
  );
}
