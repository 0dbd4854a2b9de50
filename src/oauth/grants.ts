/**
 * The TokenSource over openid-client v6: client_credentials and refresh_token grants (with
 * scope, RFC 8707 resource and audience), RFC 7009 revocation, and the refresh-token seed.
 * Credentials (secret file, key file) are read on every grant so a rotated Kubernetes Secret is
 * picked up without a restart. The IdP's answer is treated as untrusted input and validated
 * before it becomes a GrantResult.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as client from 'openid-client';
import type { Clock } from '../clock.js';
import type { SecretSource, TokenConfig } from '../config/types.js';
import { readSecret } from '../config/secrets.js';
import { TokendError } from '../errors.js';
import { MAX_TOKEN_CHARS, normaliseTokenType, type AccessToken, type GrantResult } from '../token.js';
import { classifyGrantError } from './classify.js';
import { createClientKeyLoader, type ClientKeyLoader } from './client-auth.js';
import { clientSecretBasic } from './secret-basic.js';
import { createIssuerResolver, fetchWithSignal, type IssuerResolver } from './issuer.js';
import { attachRotatedRefreshToken, type TokenSource } from './source.js';

/** Longest lifetime believed from an IdP: 400 days (ms). Longer claims are capped. */
export const MAX_LIFETIME_MS = 400 * 86_400_000;
/** Dependencies of createTokenSource. */
export interface TokenSourceDeps {
  /** Stamps obtainedAt/expiresAt at the moment a response arrives. */
  readonly clock: Clock;
  /** Default: the global fetch. */
  readonly fetch?: typeof fetch | undefined;
}

/** A TokenSource that can also fingerprint its credentials (see TokenSource.credentialFingerprint). */
export interface OAuthTokenSource extends TokenSource {
  credentialFingerprint(): Promise<string>;
}

/** Creates the TokenSource for one configured token. Nothing is fetched until the first call. */
export function createTokenSource(cfg: TokenConfig, deps: TokenSourceDeps): OAuthTokenSource {
  const fetchImpl = deps.fetch ?? globalThis.fetch;
  const resolver: IssuerResolver = createIssuerResolver(cfg, { clock: deps.clock, fetch: fetchImpl });
  const keyLoader: ClientKeyLoader | undefined =
    cfg.clientAuth === 'private_key_jwt' && cfg.privateKeyFile
      ? createClientKeyLoader({ tokenName: cfg.name, path: cfg.privateKeyFile, kid: cfg.privateKeyId, alg: cfg.privateKeyAlg })
      : undefined;

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
        // A static tokenEndpoint has no real issuer identifier: RFC 7523 §3 lets aud be the token endpoint.
        const aud = resolver.discovered ? undefined : as.token_endpoint;
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

  /** One Configuration per call: the caller's signal and a freshly read credential belong to this call only. */
  async function configuration(signal: AbortSignal | undefined): Promise<client.Configuration> {
    let as: client.ServerMetadata;
    try {
      as = await resolver.metadata(signal);
    } catch (err) {
      // A grant that cannot find its endpoints is retryable; `discover()` reports DISCOVERY_FAILED itself.
      if (err instanceof TokendError && err.code === 'DISCOVERY_FAILED') {
        throw new TokendError('GRANT_TRANSIENT', err.message, {
          cause: err,
          ...(err.status !== undefined ? { status: err.status } : {}),
          ...(err.oauthError !== undefined ? { oauthError: err.oauthError } : {}),
        });
      }
      throw err;
    }
    const config = new client.Configuration(as, cfg.clientId, undefined, await clientAuth(as));
    if (cfg.allowInsecureHttp) client.allowInsecureRequests(config);
    config.timeout = cfg.timeoutMs / 1000;
    const fetchSignalled = fetchWithSignal(fetchImpl, signal);
    config[client.customFetch] = async (url, options) => {
      const res = await fetchSignalled(url, options);
      return url === as.token_endpoint ? withoutIdToken(res) : res;
    };
    return config;
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
      let response: client.TokenEndpointResponse;
      let arrivedAt: number;
      try {
        const config = await configuration(signal);
        response =
          cfg.grant === 'refresh_token'
            ? await client.refreshTokenGrant(config, refreshToken as string, grantParameters())
            : await client.clientCredentialsGrant(config, grantParameters());
        arrivedAt = deps.clock.now();
      } catch (err) {
        throw classifyGrantError(err, cfg.name, 'grant');
      }
      return toGrantResult(response, arrivedAt, cfg);
    },

    async revoke(token, hint, signal) {
      try {
        const config = await configuration(signal);
        if (!config.serverMetadata().revocation_endpoint) {
          throw configError('revocationEndpoint', 'the IdP announces no revocation endpoint');
        }
        await client.tokenRevocation(config, token, { token_type_hint: hint });
      } catch (err) {
        throw classifyGrantError(err, cfg.name, 'revocation');
      }
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
 * Removes `id_token` from a successful token response before openid-client sees it. tokend never
 * uses ID tokens, and a failed ID token check (clock skew, or the `iss` of an IdP configured by
 * tokenEndpoint only) would throw away an answer whose refresh token the IdP has already rotated.
 */
async function withoutIdToken(res: Response): Promise<Response> {
  if (!res.ok || !(res.headers.get('content-type') ?? '').includes('json')) return res;
  const text = await res.text();
  const init = { status: res.status, statusText: res.statusText, headers: res.headers };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    // openid-client reports the unparseable body itself.
    return new Response(text, init);
  }
  if (body === null || typeof body !== 'object' || !('id_token' in body)) return new Response(text, init);
  const { id_token: _ignored, ...rest } = body as Record<string, unknown>;
  return new Response(JSON.stringify(rest), init);
}

// Control characters would corrupt the HTTP headers and files the token is written into.
// biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * Validates a token endpoint response (untrusted input) and stamps it with the arrival time:
 * expiresAt comes from expires_in, else from the access token's JWT exp (payload decoded without
 * verification: only the lifetime is read), else from defaultLifetimeMs. Throws GRANT_TRANSIENT
 * for an answer tokend cannot use.
 */
export function toGrantResult(
  response: Pick<client.TokenEndpointResponse, 'access_token' | 'token_type' | 'expires_in' | 'scope' | 'refresh_token'>,
  arrivedAt: number,
  cfg: Pick<TokenConfig, 'name' | 'scope' | 'defaultLifetimeMs'>,
): GrantResult {
  // A usable refresh token is checked first and carried on every later refusal: the IdP has
  // already rotated (the old one is consumed), so dropping the answer would lose the chain.
  let rotated: string | undefined;
  const invalid = (why: string): TokendError => {
    const err = new TokendError('GRANT_TRANSIENT', `token "${cfg.name}": grant failed: the IdP's answer is not usable (${why})`);
    return rotated !== undefined ? attachRotatedRefreshToken(err, rotated) : err;
  };

  const refreshToken: unknown = response.refresh_token;
  if (refreshToken !== undefined) {
    if (typeof refreshToken !== 'string' || refreshToken.length === 0) throw invalid('refresh_token is not a string');
    if (refreshToken.length > MAX_TOKEN_CHARS) throw invalid(`refresh_token is longer than ${MAX_TOKEN_CHARS} characters`);
    if (CONTROL_CHARS.test(refreshToken)) throw invalid('refresh_token contains control characters');
    rotated = refreshToken;
  }

  const accessToken: unknown = response.access_token;
  if (typeof accessToken !== 'string' || accessToken.length === 0) throw invalid('access_token is missing');
  if (accessToken.length > MAX_TOKEN_CHARS) throw invalid(`access_token is longer than ${MAX_TOKEN_CHARS} characters`);
  if (CONTROL_CHARS.test(accessToken)) throw invalid('access_token contains control characters');

  const tokenType: unknown = response.token_type;
  if (typeof tokenType !== 'string' || tokenType.length === 0 || tokenType.length > 64 || CONTROL_CHARS.test(tokenType)) {
    throw invalid('token_type is missing or malformed');
  }

  let lifetimeMs: number;
  const expiresIn: unknown = response.expires_in;
  if (expiresIn !== undefined) {
    if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw invalid('expires_in is not a positive number');
    }
    lifetimeMs = Math.min(expiresIn * 1000, MAX_LIFETIME_MS);
  } else {
    const fromJwt = jwtLifetimeMs(accessToken, arrivedAt);
    lifetimeMs = fromJwt ?? cfg.defaultLifetimeMs;
    if (fromJwt !== undefined && fromJwt <= 0) throw invalid('the access token is already past its exp (clock skew?)');
    lifetimeMs = Math.min(lifetimeMs, MAX_LIFETIME_MS);
  }

  const scope = typeof response.scope === 'string' && !CONTROL_CHARS.test(response.scope) ? response.scope : cfg.scope;
  const token: AccessToken = {
    accessToken,
    tokenType: normaliseTokenType(tokenType),
    obtainedAt: arrivedAt,
    expiresAt: arrivedAt + Math.floor(lifetimeMs),
    ...(scope !== undefined ? { scope } : {}),
  };
  return refreshToken !== undefined ? { token, refreshToken } : { token };
}

/**
 * The remaining lifetime a JWT access token claims, in ms, or undefined when it is not a JWT with a
 * numeric exp. With iat as well, exp - iat is used (immune to clock skew between tokend and the
 * IdP); with exp alone, exp minus now.
 */
export function jwtLifetimeMs(token: string, now: number): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (payload === null || typeof payload !== 'object') return undefined;
  const { exp, iat } = payload as { exp?: unknown; iat?: unknown };
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return undefined;
  if (typeof iat === 'number' && Number.isFinite(iat) && iat < exp) return (exp - iat) * 1000;
  return exp * 1000 - now;
}
