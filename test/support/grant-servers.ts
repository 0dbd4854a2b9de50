/**
 * The OAuth2 servers the grant suite runs against, behind one interface, so a test written once
 * (describe.each(GRANT_SERVERS)) meets both dialects: oidc-provider (OIDC discovery, form-decodes
 * Basic credentials) and @node-oauth/oauth2-server (no discovery: static tokenEndpoint; Basic
 * credentials compared undecoded). Either can be placed behind a rewrite proxy.
 */
import type { TokenConfig } from '../../src/config/types.js';
import { startDevIdp } from '../../dev/idp.js';
import { startOAuth2Server } from './oauth2-server.js';
import type { RewriteProxy } from './rewrite-proxy.js';

/** A client registered with a suite server. */
export interface SuiteClient {
  clientId: string;
  clientSecret: string;
  /** Default client_secret_basic (oidc-provider enforces the registered method; node-oauth2-server accepts either). */
  auth?: 'client_secret_basic' | 'client_secret_post';
}

/** A running suite server. */
export interface GrantServer {
  readonly kind: string;
  /** True when the server form-decodes Basic credentials (RFC 6749 §2.3.1), as oidc-provider does. */
  readonly decodesBasic: boolean;
  /** What a TokenConfig needs to reach it: { issuer } (discovery) or { tokenEndpoint }. */
  readonly endpoint: Pick<TokenConfig, 'issuer' | 'tokenEndpoint'>;
  /** A refresh token (scope 'openid offline_access' on oidc-provider) for clientId, minted without a browser. */
  mintRefreshToken(clientId: string): Promise<string>;
  /** Successful grants by grant_type. */
  grants(): Record<string, number>;
  close(): Promise<void>;
}

/** Options of GrantServerKind.start. */
export interface GrantServerOptions {
  clients: SuiteClient[];
  /** Access token lifetime (expires_in), seconds. Default 30. */
  accessTokenTtlSec?: number;
  /** When given, tokend talks to the server through this proxy (its target is set here). */
  proxy?: RewriteProxy;
}

/** One kind of server. */
export interface GrantServerKind {
  readonly name: string;
  start(opts: GrantServerOptions): Promise<GrantServer>;
}

const oidcProvider: GrantServerKind = {
  name: 'oidc-provider',
  async start({ clients, accessTokenTtlSec = 30, proxy }) {
    const idp = await startDevIdp({
      accessTokenTtlSec,
      ...(proxy ? { issuer: proxy.url } : {}),
      clients: clients.map((c) => ({
        clientId: c.clientId,
        clientSecret: c.clientSecret,
        tokenEndpointAuthMethod: c.auth ?? 'client_secret_basic',
      })),
    });
    proxy?.setTarget(idp.url);
    return {
      kind: 'oidc-provider',
      decodesBasic: true,
      endpoint: { issuer: idp.issuer },
      mintRefreshToken: (clientId) => idp.mintRefreshToken(clientId),
      grants: () => idp.stats().grants,
      close: () => idp.close(),
    };
  },
};

const nodeOAuth2Server: GrantServerKind = {
  name: 'node-oauth2-server',
  async start({ clients, accessTokenTtlSec = 30, proxy }) {
    const server = await startOAuth2Server({ clients, accessTokenLifetimeSec: accessTokenTtlSec });
    proxy?.setTarget(server.url);
    return {
      kind: 'node-oauth2-server',
      decodesBasic: false,
      endpoint: { tokenEndpoint: `${proxy ? proxy.url : server.url}/token` },
      mintRefreshToken: async (clientId) => server.mintRefreshToken(clientId, 'offline_access'),
      grants: () => server.stats().grants,
      close: () => server.close(),
    };
  },
};

/** Every server the grant suite runs against. */
export const GRANT_SERVERS: readonly GrantServerKind[] = [oidcProvider, nodeOAuth2Server];
