/**
 * The dev IdP's federated grants (oidc-provider `registerGrantType`), for the secretless demo:
 * - the JWT bearer grant (RFC 7523 §2.1): an assertion signed by a trusted foreign issuer (the
 *   demo's stand-in cluster, dev/cluster.ts), found through that issuer's discovery and JWKS, with
 *   this IdP's expected audience, not expired, from a subject this IdP knows;
 * - the token exchange (RFC 8693): such an assertion, or one of this IdP's own JWT access tokens,
 *   as subject_token, for the audience (resource) asked for; the answer says issued_token_type.
 * Issued tokens are JWT access tokens (resource indicators) whose `sub` is the client and whose
 * `federated_sub` is the subject the grant presented. Refusals are invalid_grant.
 * (Federated client authentication, a client_assertion signed by a foreign issuer, is not
 * something oidc-provider can do; the test suite has a server for that, test/support/federating-idp.ts.)
 */
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JWK } from 'jose';
import type { Provider } from 'oidc-provider';

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TT_JWT = 'urn:ietf:params:oauth:token-type:jwt';
const TT_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';

/** Which foreign tokens the dev IdP accepts as grants. */
export interface DevFederation {
  /** Issuers trusted (their keys come from their discovery's jwks_uri). */
  readonly trust: readonly string[];
  /** Subjects accepted, e.g. `system:serviceaccount:demo:orders`. */
  readonly subjects: readonly string[];
  /** The aud a foreign token must carry. Default: the IdP's token endpoint (RFC 7523 §3). */
  readonly audience?: string;
}

/** What registerFederatedGrants needs from the IdP being built. */
export interface FederationContext {
  readonly provider: Provider;
  readonly errors: Record<string, new (description?: string) => Error>;
  /** The IdP's own public signing keys (to accept its own access tokens as subject tokens). */
  readonly ownKeys: () => { keys: JWK[] };
  readonly accessTokenTtlSec: number;
  readonly jwtAlg: string;
}

interface GrantCtx {
  oidc: { params: Record<string, string | undefined>; client: unknown };
  body: unknown;
  /** Read by the IdP's extraTokenClaims (federatedSubClaims) into the token's `federated_sub`. */
  tokendFederatedSub?: string;
}

/** oidc-provider's extraTokenClaims: the federated subject of a token issued by these grants. */
export async function federatedSubClaims(ctx: { tokendFederatedSub?: string } | undefined): Promise<Record<string, string> | undefined> {
  return ctx?.tokendFederatedSub === undefined ? undefined : { federated_sub: ctx.tokendFederatedSub };
}

/** Registers the JWT bearer and token exchange grants on the provider. (Closures over one provider's settings, hence longer than 60 lines.) */
export function registerFederatedGrants(fed: DevFederation, c: FederationContext): void {
  const { provider, errors } = c;
  const foreignKeys = keySetsByDiscovery();
  const tokenEndpoint = `${provider.issuer.replace(/\/$/, '')}/token`;
  const audience = fed.audience ?? tokenEndpoint;
  const refuse = (why: string): never => {
    throw new errors.InvalidGrant!(why);
  };

  /** The subject of a token from a trusted foreign issuer, after checking signature, audience, expiry and the subject. */
  async function foreignSubject(token: string | undefined): Promise<string> {
    if (!token) return refuse('the token is missing');
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      return refuse('the token is not a JWT');
    }
    if (typeof iss !== 'string' || !fed.trust.includes(iss)) return refuse('the token is from an issuer this server does not trust');
    let sub: unknown;
    try {
      sub = (await jwtVerify(token, await foreignKeys(iss), { issuer: iss, audience })).payload.sub;
    } catch {
      return refuse('the token did not verify (signature, audience or expiry)');
    }
    if (typeof sub !== 'string' || !fed.subjects.includes(sub)) return refuse('the subject is not one this server knows');
    return sub;
  }

  /** Issues a JWT access token for aud, carrying the federated subject. */
  async function issue(ctx: GrantCtx, subject: string, aud: string, extraBody: Record<string, unknown>): Promise<void> {
    ctx.tokendFederatedSub = subject;
    const token = new provider.ClientCredentials({ client: ctx.oidc.client, scope: ctx.oidc.params.scope || undefined });
    token.resourceServer = new provider.ResourceServer(aud, {
      audience: aud,
      scope: ctx.oidc.params.scope ?? '',
      accessTokenTTL: c.accessTokenTtlSec,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: c.jwtAlg } },
    });
    const value: string = await token.save();
    ctx.body = { access_token: value, token_type: 'Bearer', expires_in: token.expiration, ...(token.scope ? { scope: token.scope } : {}), ...extraBody };
  }

  provider.registerGrantType(
    JWT_BEARER_GRANT,
    async (ctx: GrantCtx) => {
      const subject = await foreignSubject(ctx.oidc.params.assertion);
      await issue(ctx, subject, ctx.oidc.params.audience ?? ctx.oidc.params.resource ?? 'urn:tokend:demo', {});
    },
    ['assertion', 'scope', 'audience', 'resource'],
  );

  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    async (ctx: GrantCtx) => {
      const p = ctx.oidc.params;
      let subject: string;
      if (p.subject_token_type === TT_ACCESS) {
        // One of this IdP's own JWT access tokens, exchanged for another audience.
        try {
          const { payload } = await jwtVerify(p.subject_token ?? '', createLocalJWKSet(c.ownKeys()), { issuer: provider.issuer });
          subject = String(payload.federated_sub ?? payload.sub);
        } catch {
          return refuse('the subject token is not a valid access token of this server');
        }
      } else if (p.subject_token_type === TT_JWT) {
        subject = await foreignSubject(p.subject_token);
      } else {
        return refuse('unsupported subject_token_type');
      }
      const requested = p.requested_token_type ?? TT_ACCESS;
      if (requested !== TT_ACCESS) return refuse('only access tokens are issued');
      await issue(ctx, subject, p.audience ?? p.resource ?? 'urn:tokend:demo', { issued_token_type: TT_ACCESS });
    },
    ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience', 'resource', 'scope'],
  );
}

/**
 * A trusted issuer's keys, found through its discovery document (as Keycloak and Entra ID do),
 * one remote key set per issuer.
 */
export function keySetsByDiscovery(): (issuer: string) => Promise<ReturnType<typeof createRemoteJWKSet>> {
  const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  return async (issuer) => {
    let set = keySets.get(issuer);
    if (set === undefined) {
      const meta = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
      set = createRemoteJWKSet(new URL(meta.jwks_uri));
      keySets.set(issuer, set);
    }
    return set;
  };
}
