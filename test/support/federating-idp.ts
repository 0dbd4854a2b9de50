/**
 * A federating OAuth2 server for the secretless tests: @node-oauth/oauth2-server 5 (its token
 * handler, grant pipeline, token model and error answers) on node:http, extended the way real IdPs
 * federate with a Kubernetes cluster, and verifying with jose:
 * - federated client authentication (RFC 7523 §2.2; Entra ID federated identity credentials,
 *   Keycloak "Signed JWT - Federated"): a client_assertion signed by a trusted foreign issuer
 *   (the test cluster), found through that issuer's OIDC discovery and JWKS, with the audience this
 *   IdP expects, not expired, whose (iss, sub) is one of the client's federated credentials;
 * - the token exchange grant (RFC 8693): a subject token from the cluster (mapped the same way)
 *   or one of this IdP's own access tokens, for an audience the client may ask for; the answer
 *   carries issued_token_type;
 * - the JWT bearer grant (RFC 7523 §2.1): the cluster's token as the grant itself.
 * Refusals: invalid_client (HTTP 401) for client authentication, invalid_grant for a grant's
 * token, invalid_target for an audience the client may not have. Access tokens are ES256 JWTs.
 * Every token request is recorded with what the federated tokens in it said (jti, iat, sub), so
 * tests can assert which cluster token each grant carried, and that a stale one never arrived.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import OAuth2Server from '@node-oauth/oauth2-server';
// The library's token handler, extended below: v5 has no hook for client authentication methods.
import TokenHandler from '@node-oauth/oauth2-server/lib/handlers/token-handler.js';
import { decodeJwt, exportJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { keySetsByDiscovery } from '../../dev/idp-federation.js';
import { listenOnLoopback, readBody, sendJson } from './http-io.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const TT_JWT = 'urn:ietf:params:oauth:token-type:jwt';
const TT_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';

/** A client of the federating IdP. */
export interface FederatedClient {
  clientId: string;
  /** (issuer, subject) pairs this client is: a client assertion, subject token or assertion with them authenticates as / maps to it. */
  federated?: Array<{ issuer: string; subject: string }>;
  /** A client that may call without authenticating (clientAuth none). */
  public?: boolean;
  /** Grant types it may use. Default: client_credentials, token exchange, JWT bearer. */
  grants?: string[];
  /** Audiences it may ask a token exchange for. Default: any. */
  exchangeAudiences?: string[];
}

/** Options of startFederatingIdp. */
export interface FederatingIdpOptions {
  /** Foreign issuers trusted for federation (the test cluster's URL); their keys come from their discovery. */
  trust: string[];
  clients: FederatedClient[];
  /** The aud every federated token must carry. Default: this IdP's token endpoint (RFC 7523 §3). */
  assertionAudience?: string;
  /** Access token lifetime (expires_in), seconds. Default 60. */
  accessTokenLifetimeSec?: number;
  /** Let a federated grant without any client_id through, mapped by the token's subject (Google STS). Default false. */
  allowAnonymous?: boolean;
}

/** What one token request carried and how it ended. */
export interface SeenRequest {
  readonly grantType: string;
  readonly clientId: string | undefined;
  /** The federated tokens in the request, by parameter, as they said (decoded, not verified). */
  readonly presented: Array<{ param: string; jti?: string; iat?: number; exp?: number; sub?: string; aud?: unknown }>;
  /** 'issued', or the OAuth error. */
  outcome: string;
  /** The access token's claims, when issued. */
  issued?: JWTPayload;
  /** The access token itself, when issued (for secrecy checks). */
  accessToken?: string;
  /** The raw request body (for secrecy checks: what tokend really sent). */
  readonly body: Record<string, string>;
  /** When it arrived, ms since the epoch. */
  readonly at: number;
}

export interface FederatingIdp {
  /** http://127.0.0.1:PORT: also the `iss` of its access tokens. */
  readonly url: string;
  readonly tokenEndpoint: string;
  /** Every token request so far, oldest first. */
  readonly requests: readonly SeenRequest[];
  publicJwks(): { keys: JWK[] };
  close(): Promise<void>;
}

interface Client {
  id: string;
  grants: string[];
  def: FederatedClient;
}
interface User {
  id: string;
  aud: string;
  act?: string;
}
type OAuthRequest = InstanceType<typeof OAuth2Server.Request>;

const DEFAULT_GRANTS = ['client_credentials', TOKEN_EXCHANGE, JWT_BEARER];

/** Starts the IdP on 127.0.0.1 with an OS-chosen port. (The model, grants and handler are closures over one server's state, hence one long factory.) */
export async function startFederatingIdp(opts: FederatingIdpOptions): Promise<FederatingIdp> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: 'fed-1', alg: 'ES256', use: 'sig' };
  const lifetime = opts.accessTokenLifetimeSec ?? 60;
  const requests: SeenRequest[] = [];
  const clients: Client[] = opts.clients.map((c) => ({ id: c.clientId, grants: c.grants ?? DEFAULT_GRANTS, def: c }));
  const keysOf = keySetsByDiscovery();

  const server: Server = createServer();
  const { url, close } = await listenOnLoopback(server);
  const tokenEndpoint = `${url}/token`;
  const audience = opts.assertionAudience ?? tokenEndpoint;

  /** Verifies a token from a trusted foreign issuer; returns its (iss, sub), or throws Error(reason). */
  async function verifyForeign(token: string): Promise<{ iss: string; sub: string }> {
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw new Error('not a JWT');
    }
    if (typeof iss !== 'string' || !opts.trust.includes(iss)) throw new Error('untrusted issuer');
    const { payload } = await jwtVerify(token, await keysOf(iss), { issuer: iss, audience, algorithms: ['RS256', 'ES256'] });
    if (typeof payload.sub !== 'string') throw new Error('no subject');
    return { iss, sub: payload.sub };
  }

  /** The client one of whose federated credentials is (iss, sub). */
  const mapped = (iss: string, sub: string, only?: Client): Client | undefined =>
    (only ? [only] : clients).find((c) => (c.def.federated ?? []).some((f) => f.issuer === iss && f.subject === sub));

  async function signAccessToken(client: Client, user: User, scope: string[] | undefined): Promise<string> {
    return new SignJWT({ client_id: client.id, ...(scope?.length ? { scope: scope.join(' ') } : {}), ...(user.act ? { act: { sub: user.act } } : {}) })
      .setProtectedHeader({ alg: 'ES256', kid: 'fed-1', typ: 'at+jwt' })
      .setIssuer(url)
      .setSubject(user.id)
      .setAudience(user.aud)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + lifetime)
      .setJti(randomUUID())
      .sign(privateKey);
  }

  const model = {
    getClient: async (id: string, secret: string | undefined) => {
      const c = clients.find((x) => x.id === id);
      // Only public clients come here without a credential; federated ones authenticate in getClient below.
      return c && c.def.public && !secret ? c : null;
    },
    getUserFromClient: async (c: Client & { federatedSubject?: string }) => ({ id: c.federatedSubject ?? c.id, aud: 'api' }),
    saveToken: async (token: Record<string, unknown>, client: Client, user: User) => ({ ...token, client, user }),
    generateAccessToken: (client: Client, user: User, scope: string[] | undefined) => signAccessToken(client, user, scope),
    validateScope: async (_u: unknown, _c: unknown, scope: string[] | undefined) => scope ?? [],
  };

  /** A federated grant's token: verified and mapped to a client, else InvalidGrantError naming why. */
  async function grantSubject(token: string | undefined, type: string, client: Client): Promise<{ id: string; client: Client }> {
    if (!token) throw new OAuth2Server.InvalidRequestError('Missing parameter');
    if (type === TT_ACCESS) {
      // One of this IdP's own access tokens (exchanging it for a narrower one).
      try {
        const { payload } = await jwtVerify(token, publicKey, { issuer: url, algorithms: ['ES256'] });
        return { id: String(payload.sub), client };
      } catch {
        throw new OAuth2Server.InvalidGrantError('Invalid grant: the subject token is not a valid access token of this server');
      }
    }
    if (type !== TT_JWT) throw new OAuth2Server.InvalidRequestError('Invalid request: unsupported token type');
    let who: { iss: string; sub: string };
    try {
      who = await verifyForeign(token);
    } catch (err) {
      throw new OAuth2Server.InvalidGrantError(`Invalid grant: ${(err as Error).message}`);
    }
    // The subject must be a workload this IdP knows (a federated credential of one of its clients).
    const owner = mapped(who.iss, who.sub);
    if (!owner) throw new OAuth2Server.InvalidGrantError('Invalid grant: the subject is not mapped to a client');
    return { id: who.sub, client: owner };
  }

  class TokenExchangeGrant extends OAuth2Server.AbstractGrantType {
    async handle(request: OAuthRequest, client: Client): Promise<OAuth2Server.Token> {
      const b = request.body as Record<string, string | undefined>;
      const subject = await grantSubject(b.subject_token, String(b.subject_token_type), client);
      let act: string | undefined;
      if (b.actor_token !== undefined) act = (await grantSubject(b.actor_token, String(b.actor_token_type), client)).id;
      const aud = b.audience ?? b.resource ?? 'api';
      const allowed = client.def.exchangeAudiences;
      if (allowed && !allowed.includes(aud)) throw new OAuth2Server.OAuthError('Invalid target: audience not allowed', { code: 400, name: 'invalid_target' });
      const requested = b.requested_token_type ?? TT_ACCESS;
      if (requested !== TT_ACCESS && requested !== TT_JWT) throw new OAuth2Server.InvalidRequestError('Invalid request: unsupported requested_token_type');
      const scope = await this.validateScope({ id: subject.id }, client, this.getScope(request));
      const user: User = { id: subject.id, aud, ...(act ? { act } : {}) };
      const accessToken = await this.generateAccessToken(subject.client, user, scope as string[]);
      return (await model.saveToken({ accessToken, accessTokenExpiresAt: this.getAccessTokenExpiresAt(), scope, issued_token_type: requested }, subject.client, user)) as unknown as OAuth2Server.Token;
    }
  }

  class JwtBearerGrant extends OAuth2Server.AbstractGrantType {
    async handle(request: OAuthRequest, client: Client): Promise<OAuth2Server.Token> {
      const b = request.body as Record<string, string | undefined>;
      const subject = await grantSubject(b.assertion, TT_JWT, client);
      const scope = await this.validateScope({ id: subject.id }, client, this.getScope(request));
      const user: User = { id: subject.id, aud: b.audience ?? 'api' };
      const accessToken = await this.generateAccessToken(subject.client, user, scope as string[]);
      return (await model.saveToken({ accessToken, accessTokenExpiresAt: this.getAccessTokenExpiresAt(), scope }, subject.client, user)) as unknown as OAuth2Server.Token;
    }
  }

  /** The library's token handler with one more client authentication method: a federated client assertion. */
  class FederatingTokenHandler extends (TokenHandler as unknown as new (o: object) => {
    getClient(request: OAuthRequest, response: unknown): Promise<Client>;
    handle(request: OAuthRequest, response: unknown): Promise<unknown>;
  }) {
    override async getClient(request: OAuthRequest, response: unknown): Promise<Client> {
      const b = request.body as Record<string, string | undefined>;
      if (b.client_assertion === undefined && b.client_assertion_type === undefined) {
        if (b.client_id === undefined && opts.allowAnonymous && (b.grant_type === TOKEN_EXCHANGE || b.grant_type === JWT_BEARER)) {
          return { id: 'anonymous', grants: [TOKEN_EXCHANGE, JWT_BEARER], def: { clientId: 'anonymous' } };
        }
        return super.getClient(request, response);
      }
      const refuse = (why: string): never => {
        throw new OAuth2Server.InvalidClientError(`Invalid client: ${why}`);
      };
      if (b.client_assertion_type !== CLIENT_ASSERTION_TYPE || !b.client_assertion) refuse('unsupported client assertion');
      let who: { iss: string; sub: string } | undefined;
      try {
        who = await verifyForeign(b.client_assertion as string);
      } catch (err) {
        refuse((err as Error).message);
      }
      const named = b.client_id === undefined ? undefined : clients.find((c) => c.id === b.client_id);
      if (b.client_id !== undefined && !named) refuse('unknown client');
      const client = mapped(who!.iss, who!.sub, named);
      return client ? { ...client, federatedSubject: who!.sub } as Client : refuse('the subject is not a federated credential of this client');
    }
  }

  const handler = new FederatingTokenHandler({
    model,
    accessTokenLifetime: lifetime,
    refreshTokenLifetime: 86_400,
    allowExtendedTokenAttributes: true,
    // Public clients (clientAuth none) may use the federated grants; their token is their credential.
    requireClientAuthentication: { [TOKEN_EXCHANGE]: false, [JWT_BEARER]: false, client_credentials: true },
    extendedGrantTypes: { [TOKEN_EXCHANGE]: TokenExchangeGrant, [JWT_BEARER]: JwtBearerGrant },
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const raw = await readBody(req);
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== '/token') return void sendJson(res, 404, { error: 'not_found' });
    const body = Object.fromEntries(new URLSearchParams(raw));
    const seen: SeenRequest = { grantType: String(body.grant_type), clientId: body.client_id, presented: presentedIn(body), outcome: 'pending', body, at: Date.now() };
    requests.push(seen);
    const request = new OAuth2Server.Request({ method: 'POST', headers: req.headers as Record<string, string>, query: {}, body });
    const response = new OAuth2Server.Response({});
    try {
      await handler.handle(request, response);
      seen.outcome = 'issued';
      seen.accessToken = String((response.body as { access_token: string }).access_token);
      seen.issued = decodeJwt(seen.accessToken);
    } catch (err) {
      seen.outcome = (err as { name?: string }).name ?? 'error';
    }
    sendJson(res, response.status ?? 200, response.body, response.headers as Record<string, string>);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
    });
  });

  return {
    url,
    tokenEndpoint,
    requests,
    publicJwks: () => ({ keys: [publicJwk] }),
    close,
  };
}

/** What the federated tokens in a request said about themselves (decoded only: this is a record, not a check). */
function presentedIn(body: Record<string, string>): SeenRequest['presented'] {
  const out: SeenRequest['presented'] = [];
  for (const param of ['client_assertion', 'assertion', 'subject_token', 'actor_token']) {
    const v = body[param];
    if (v === undefined) continue;
    try {
      const p = decodeJwt(v);
      out.push({ param, jti: p.jti, iat: p.iat, exp: p.exp, sub: p.sub, aud: p.aud });
    } catch {
      out.push({ param });
    }
  }
  return out;
}

