/** The `tokens.NAME` section of the configuration: schema, relations between its fields, translation. */
import * as z from 'zod';
import { ASYMMETRIC_JWS_ALGORITHMS } from '../jws.js';
import {
  bool,
  checkInsecureHttp,
  DEFAULT_LIFETIME_MS,
  DEFAULT_REFRESH_AT,
  DEFAULT_TIMEOUT_MS,
  duration,
  filePath,
  httpUrl,
  nonEmpty,
  num,
  oneOf,
  present,
  primaryHostIsLoopback,
  relations,
  report,
  resourceUri,
  secret,
  type Ctx,
  type Obj,
} from './fields.js';
import { checkFederation, federationFields, toFederation } from './schema-federation.js';
import { outputFields, toNotify, toOutputs } from './schema-output.js';
import type { ClientAuthMethod, TokenConfig } from './types.js';

const CLIENT_AUTH = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
  'client_assertion',
  'none',
] as const satisfies readonly ClientAuthMethod[];
const SECRET_AUTH: ReadonlySet<unknown> = new Set(['client_secret_basic', 'client_secret_post']);

function checkToken(ctx: Ctx, t: Obj): void {
  if (present(t, 'issuer') && present(t, 'tokenEndpoint')) {
    report(ctx, ['tokenEndpoint'], 'give issuer (OIDC discovery) or tokenEndpoint (plain OAuth2), not both');
  } else if (!present(t, 'issuer') && !present(t, 'tokenEndpoint')) {
    report(ctx, [], 'issuer (OIDC discovery) or tokenEndpoint (plain OAuth2) is required');
  }

  const auth = t['clientAuth'] ?? 'client_secret_basic';
  if (SECRET_AUTH.has(auth)) {
    oneOf(ctx, t, 'clientSecret', 'clientSecretFile', `for clientAuth ${String(auth)}`);
  } else if (auth === 'private_key_jwt' || auth === 'client_assertion' || auth === 'none') {
    for (const k of ['clientSecret', 'clientSecretFile']) {
      if (present(t, k)) report(ctx, [k], `not used with clientAuth ${auth}`);
    }
  }
  if (auth === 'private_key_jwt') {
    if (!present(t, 'privateKeyFile')) report(ctx, ['privateKeyFile'], 'required for clientAuth private_key_jwt');
    // Plain OAuth2 has no issuer identifier to put in aud.
    if (t['privateKeyAudience'] === 'issuer' && !present(t, 'issuer')) {
      report(ctx, ['privateKeyAudience'], 'issuer needs an issuer (OIDC discovery); with tokenEndpoint the audience is the token endpoint');
    }
  } else if ((CLIENT_AUTH as readonly unknown[]).includes(auth)) {
    for (const k of ['privateKeyFile', 'privateKeyId', 'privateKeyAlg', 'privateKeyAudience']) {
      if (present(t, k)) report(ctx, [k], 'only used with clientAuth private_key_jwt');
    }
  }
  // RFC 6749 §4.4: the client credentials grant is for confidential clients only.
  if (auth === 'none' && t['grant'] === 'client_credentials') {
    report(ctx, ['clientAuth'], 'none cannot be used with grant client_credentials');
  }

  if (t['grant'] === 'refresh_token') {
    oneOf(ctx, t, 'refreshToken', 'refreshTokenFile', 'for grant refresh_token');
  } else if (t['grant'] !== undefined) {
    for (const k of ['refreshToken', 'refreshTokenFile']) {
      if (present(t, k)) report(ctx, [k], 'only used with grant refresh_token');
    }
  }

  if (present(t, 'revocationEndpoint') && present(t, 'issuer') && !present(t, 'tokenEndpoint')) {
    report(ctx, ['revocationEndpoint'], 'only used with tokenEndpoint (discovery gives the issuer\'s own)');
  }
  if (t['revokeOnShutdown'] === true && present(t, 'tokenEndpoint') && !present(t, 'revocationEndpoint')) {
    report(ctx, ['revocationEndpoint'], 'required for revokeOnShutdown when tokenEndpoint is used');
  }
  checkInsecureHttp(ctx, t, ['issuer', 'tokenEndpoint', 'revocationEndpoint']);
  checkFederation(ctx, t);
}

export const tokenSchema = z
  .strictObject({
    issuer: httpUrl.optional(),
    tokenEndpoint: httpUrl.optional(),
    revocationEndpoint: httpUrl.optional(),
    // Required unless clientAuth none with a federated grant (checkFederation).
    clientId: nonEmpty.optional(),
    clientSecret: nonEmpty.optional(),
    clientSecretFile: filePath.optional(),
    grant: z.enum(['client_credentials', 'refresh_token', 'token_exchange', 'jwt_bearer']),
    refreshToken: nonEmpty.optional(),
    refreshTokenFile: filePath.optional(),
    scope: nonEmpty.optional(),
    resource: resourceUri.optional(),
    audience: nonEmpty.optional(),
    refreshAt: num(
      z.number().min(0.1, 'expected a number from 0.1 to 0.95').max(0.95, 'expected a number from 0.1 to 0.95'),
    ).default(DEFAULT_REFRESH_AT),
    clientAuth: z.enum(CLIENT_AUTH).default('client_secret_basic'),
    privateKeyFile: filePath.optional(),
    privateKeyId: nonEmpty.optional(),
    privateKeyAlg: z.enum(ASYMMETRIC_JWS_ALGORITHMS).optional(),
    privateKeyAudience: z.enum(['token_endpoint', 'issuer']).optional(),
    revokeOnShutdown: bool.default(false),
    timeout: duration(1).default(DEFAULT_TIMEOUT_MS),
    defaultLifetime: duration(1_000).default(DEFAULT_LIFETIME_MS),
    allowInsecureHttp: bool.optional(),
    ...federationFields,
    ...outputFields,
  })
  .superRefine(...relations(checkToken));


/** One token entry as parsed. */
export type TokenFile = z.output<typeof tokenSchema>;

export function toToken(name: string, t: TokenFile): TokenConfig {
  return {
    name,
    issuer: t.issuer,
    tokenEndpoint: t.tokenEndpoint,
    revocationEndpoint: t.revocationEndpoint,
    clientId: t.clientId,
    clientSecret: secret(t.clientSecret, t.clientSecretFile),
    grant: t.grant,
    refreshToken: secret(t.refreshToken, t.refreshTokenFile),
    scope: t.scope,
    resource: t.resource,
    audience: t.audience,
    refreshAt: t.refreshAt,
    clientAuth: t.clientAuth,
    privateKeyFile: t.privateKeyFile,
    privateKeyId: t.privateKeyId,
    privateKeyAlg: t.privateKeyAlg,
    // Absent: 'token_endpoint' (grants.ts).
    ...(t.privateKeyAudience !== undefined ? { privateKeyAudience: t.privateKeyAudience } : {}),
    revokeOnShutdown: t.revokeOnShutdown,
    defaultLifetimeMs: t.defaultLifetime,
    timeoutMs: t.timeout,
    allowInsecureHttp: t.allowInsecureHttp ?? primaryHostIsLoopback(t.issuer, t.tokenEndpoint),
    // Only when given, so a token without them resolves exactly as before.
    ...(t.outputs !== undefined ? { outputs: toOutputs(t.outputs) } : {}),
    ...(t.notify !== undefined ? { notify: toNotify(t.notify) } : {}),
    ...toFederation(t),
  };
}

