/**
 * The development and test identity provider: oidc-provider 9 configured the way tokend uses an
 * IdP (client_credentials, refresh_token with rotation, revocation, introspection, RFC 8707
 * resource indicators giving JWT access tokens), with short TTLs, on 127.0.0.1 only.
 * Integration tests and the demo start it in-process; it is never part of the shipped daemon.
 */
import { generateKeyPairSync, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Provider } from 'oidc-provider';
import { federatedSubClaims, registerFederatedGrants, type DevFederation } from './idp-federation.js';

export { JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT, type DevFederation } from './idp-federation.js';

/** A public or private JSON Web Key, as oidc-provider and jose take it. */
export type JWK = { kty: string; kid?: string; alg?: string; use?: string; [k: string]: unknown };

/** One client registered with the dev IdP. */
export interface DevClient {
  clientId: string;
  /** Required for client_secret_basic / client_secret_post. */
  clientSecret?: string;
  /** Default: client_secret_basic. 'none': a public client (only for the federated grants). */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';
  /** Default: client_credentials and refresh_token. The federated grants need `federation` below. */
  grantTypes?: string[];
  /** private_key_jwt: the client's PUBLIC keys. */
  jwks?: { keys: JWK[] };
  /** Space-separated scopes the client may ask for. Default: 'openid offline_access api:read api:write'. */
  scope?: string;
}

/** Options of startDevIdp; every field is optional. */
export interface DevIdpOptions {
  /** TCP port; 0 (default) lets the OS pick. */
  port?: number;
  /** Only loopback is supported. */
  host?: '127.0.0.1';
  /**
   * Issuer identifier to announce instead of http://127.0.0.1:PORT, e.g. the URL of a fault proxy
   * placed in front (the proxy must preserve the Host header so endpoint URLs point at it too).
   */
  issuer?: string;
  /** Access token (and client_credentials token) lifetime in seconds. Default 60. */
  accessTokenTtlSec?: number;
  /** Refresh token lifetime in seconds. Default 86 400. */
  refreshTokenTtlSec?: number;
  /** Issue a new refresh token on every refresh_token grant (the old one is consumed). Default true. */
  rotateRefreshTokens?: boolean;
  /** Registered clients. Default: DEFAULT_DEV_CLIENTS. */
  clients?: DevClient[];
  /**
   * A resource indicator (e.g. https://api.local) used as the default resource of client_credentials
   * requests that name none, so their access tokens are JWTs with this `aud`. Any resource a client
   * names explicitly also yields a JWT with that `aud`. Unset: tokens without a resource are opaque.
   */
  jwtAccessTokenAudience?: string;
  /** JWS alg of JWT access tokens: 'RS256' (default) or 'ES256'. */
  jwtAccessTokenAlg?: 'RS256' | 'ES256';
  /** Print oidc-provider's notices and server errors. Default: TOKEND_IDP_DEBUG=1 in the environment. */
  debug?: boolean;
  /** Accept tokens of a trusted foreign issuer (a cluster) in the JWT bearer grant and the token exchange (dev/idp-federation.ts). */
  federation?: DevFederation;
}

/** Counters of what the IdP answered, for tests to assert how many grants really happened. */
export interface DevIdpStats {
  /** Successful token-endpoint grants by grant_type. */
  grants: Record<string, number>;
  /** Token-endpoint errors by OAuth error code (invalid_grant, invalid_client, server_error, ...). */
  errors: Record<string, number>;
  /** Answered revocation requests (RFC 7009 answers 200 even for unknown tokens). */
  revocations: number;
}

/** A running dev IdP. */
export interface DevIdp {
  /** The issuer identifier discovery announces (http://127.0.0.1:PORT unless overridden). */
  readonly issuer: string;
  /** Where this server really listens: http://127.0.0.1:PORT. */
  readonly url: string;
  readonly port: number;
  /** The current oidc-provider instance (replaced by rotateKeys). */
  readonly provider: Provider;
  /** Mints a refresh token for clientId without a browser. Default scope 'openid offline_access'. */
  mintRefreshToken(clientId: string, scope?: string): Promise<string>;
  /** Copies of the counters so far. */
  stats(): DevIdpStats;
  /**
   * Prepends a new RSA and a new P-256 signing key; the old keys stay in the JWKS so tokens
   * already issued still verify. Resolves to the new keys' kids (RSA first).
   */
  rotateKeys(): Promise<string[]>;
  /** The public signing keys currently published at jwks_uri (newest first). */
  publicJwks(): { keys: JWK[] };
  close(): Promise<void>;
}

/** The clients registered when none are given. */
export const DEFAULT_DEV_CLIENTS: readonly DevClient[] = [
  { clientId: 'tokend', clientSecret: 'tokend-dev-secret', tokenEndpointAuthMethod: 'client_secret_basic' },
];

/**
 * The clients `npm run demo` and `npm run dev-idp` register: one for client_credentials
 * (client_secret_basic) and one for a rotating refresh token (client_secret_post).
 */
export const DEMO_CLIENTS: readonly DevClient[] = [
  { clientId: 'orders-client', clientSecret: 'demo-orders-secret', tokenEndpointAuthMethod: 'client_secret_basic', scope: 'orders:read orders:write' },
  { clientId: 'inventory-client', clientSecret: 'demo-inventory-secret', tokenEndpointAuthMethod: 'client_secret_post', scope: 'openid offline_access' },
];

const DEFAULT_SCOPE = 'openid offline_access api:read api:write';
const DEV_ACCOUNT = 'dev-user';

type ProviderModule = typeof import('oidc-provider');
type AdapterModule = typeof import('oidc-provider/lib/adapters/memory_adapter.js');
let modules: Promise<{ oidc: ProviderModule; adapter: AdapterModule }> | undefined;

/**
 * oidc-provider prints "Unsupported runtime" on Node 20 when first imported; the import is made
 * lazily with console.warn muted so test output stays readable.
 */
function loadModules(debug: boolean): Promise<{ oidc: ProviderModule; adapter: AdapterModule }> {
  modules ??= (async () => {
    const warn = console.warn;
    if (!debug) console.warn = () => {};
    try {
      const [oidc, adapter] = await Promise.all([
        import('oidc-provider'),
        import('oidc-provider/lib/adapters/memory_adapter.js'),
      ]);
      return { oidc, adapter };
    } finally {
      console.warn = warn;
    }
  })();
  return modules;
}

function kidOf(jwk: JWK): string {
  const material = jwk.kty === 'RSA' ? `${jwk.e}.${jwk.n}` : `${jwk.crv}.${jwk.x}.${jwk.y}`;
  return createHash('sha256').update(material).digest('base64url').slice(0, 16);
}

function newSigningKeys(): JWK[] {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }) as JWK;
  return [
    { ...rsa, alg: 'RS256', use: 'sig', kid: `rsa-${kidOf(rsa)}` },
    { ...ec, alg: 'ES256', use: 'sig', kid: `ec-${kidOf(ec)}` },
  ];
}

function publicPart(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
  return pub;
}

function isAbsoluteUrl(s: unknown): s is string {
  return typeof s === 'string' && URL.canParse(s) && !s.includes('#');
}

/** Starts the dev IdP on 127.0.0.1. Close it with `close()`. */
export async function startDevIdp(opts: DevIdpOptions = {}): Promise<DevIdp> {
  const debug = opts.debug ?? process.env.TOKEND_IDP_DEBUG === '1';
  const { oidc, adapter } = await loadModules(debug);
  const accessTtl = opts.accessTokenTtlSec ?? 60;
  const refreshTtl = opts.refreshTokenTtlSec ?? 86_400;
  const jwtAlg = opts.jwtAccessTokenAlg ?? 'RS256';
  const clients = (opts.clients ?? DEFAULT_DEV_CLIENTS).map((c) => ({
    client_id: c.clientId,
    ...(c.clientSecret !== undefined ? { client_secret: c.clientSecret } : {}),
    token_endpoint_auth_method: c.tokenEndpointAuthMethod ?? 'client_secret_basic',
    ...(c.jwks ? { jwks: c.jwks } : {}),
    grant_types: c.grantTypes ?? ['client_credentials', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    scope: c.scope ?? DEFAULT_SCOPE,
  }));
  const scopes = [...new Set(clients.flatMap((c) => c.scope.split(' ')).concat(DEFAULT_SCOPE.split(' ')))];

  // One storage for every provider instance this IdP creates, so tokens survive rotateKeys().
  const storage = adapter.createMemoryAdapter();
  let signingKeys = newSigningKeys();
  const stats: DevIdpStats = { grants: {}, errors: {}, revocations: 0 };
  const bump = (rec: Record<string, number>, key: string): void => {
    rec[key] = (rec[key] ?? 0) + 1;
  };

  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const issuer = opts.issuer ?? url;

  const configuration = (): Record<string, unknown> => ({
    adapter: storage,
    clients,
    jwks: { keys: signingKeys },
    scopes,
    // Fixed cookie keys: no interactions are used, but oidc-provider wants keys to sign with.
    cookies: { keys: ['tokend-dev-idp-cookie-key'] },
    findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
    clientBasedCORS: () => false,
    renderError: async (ctx: { type: string; body: unknown }, out: unknown) => {
      ctx.type = 'json';
      ctx.body = out;
    },
    pkce: { required: () => false },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: async () => true },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) =>
          token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx: { oidc: { params?: { grant_type?: string } } }, _client: unknown, oneOf?: string) => {
          if (oneOf) return oneOf;
          if (opts.jwtAccessTokenAudience && ctx.oidc.params?.grant_type === 'client_credentials') {
            return opts.jwtAccessTokenAudience;
          }
          return undefined;
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string, client: { scope?: string }) => {
          if (!isAbsoluteUrl(resource)) throw new oidc.errors.InvalidTarget!('resource must be an absolute URL');
          return {
            scope: client.scope ?? DEFAULT_SCOPE,
            audience: resource,
            accessTokenTTL: accessTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: jwtAlg } },
          };
        },
      },
    },
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }, code: { scopes: Set<string> }) =>
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    rotateRefreshToken: opts.rotateRefreshTokens ?? true,
    extraTokenClaims: federatedSubClaims,
    ttl: {
      AccessToken: () => accessTtl,
      ClientCredentials: () => accessTtl,
      IdToken: () => accessTtl,
      RefreshToken: () => refreshTtl,
      Grant: () => Math.max(refreshTtl, 86_400) * 2,
      Session: () => 3600,
      Interaction: () => 600,
      AuthorizationCode: () => 60,
    },
  });

  const build = (): { provider: Provider; handle: (req: IncomingMessage, res: ServerResponse) => void } => {
    const provider = new oidc.Provider(issuer, configuration());
    if (opts.federation) {
      registerFederatedGrants(opts.federation, {
        provider,
        errors: oidc.errors as Record<string, new (description?: string) => Error>,
        ownKeys: () => ({ keys: signingKeys.map(publicPart) }),
        accessTokenTtlSec: accessTtl,
        jwtAlg,
      });
    }
    provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => {
      bump(stats.grants, String(ctx.oidc.params?.grant_type ?? 'unknown'));
    });
    provider.on('grant.error', (_ctx: unknown, err: { error?: string }) => {
      bump(stats.errors, err.error ?? 'unknown');
    });
    provider.on('server_error', (ctx: { path?: string }, err: unknown) => {
      if (ctx.path === '/token') bump(stats.errors, 'server_error');
      if (debug) console.error('dev idp server_error', err);
    });
    // Koa logs unhandled errors to stderr itself unless someone listens.
    provider.on('error', (err: unknown) => {
      if (debug) console.error('dev idp error', err);
    });
    provider.use(async (ctx: { path: string; method: string; status: number }, next: () => Promise<void>) => {
      await next();
      if (ctx.method === 'POST' && ctx.path === '/token/revocation' && ctx.status === 200) stats.revocations++;
    });
    return { provider, handle: provider.callback() };
  };

  let current = build();
  server.on('request', (req: IncomingMessage, res: ServerResponse) => current.handle(req, res));

  return {
    issuer,
    url,
    port,
    get provider() {
      return current.provider;
    },
    async mintRefreshToken(clientId, scope = 'openid offline_access') {
      const { provider } = current;
      const client = await provider.Client.find(clientId);
      if (!client) throw new Error(`dev idp: unknown client ${clientId}`);
      const grant = new provider.Grant({ accountId: DEV_ACCOUNT, clientId });
      grant.addOIDCScope(scope);
      const grantId: string = await grant.save();
      const refreshToken = new provider.RefreshToken({
        accountId: DEV_ACCOUNT,
        client,
        grantId,
        scope,
        gty: 'authorization_code',
        expiresWithSession: false,
      });
      return refreshToken.save() as Promise<string>;
    },
    stats() {
      return { grants: { ...stats.grants }, errors: { ...stats.errors }, revocations: stats.revocations };
    },
    async rotateKeys() {
      const fresh = newSigningKeys();
      signingKeys = [...fresh, ...signingKeys];
      current = build();
      return fresh.map((k) => k.kid as string);
    },
    publicJwks() {
      return { keys: signingKeys.map(publicPart) };
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
