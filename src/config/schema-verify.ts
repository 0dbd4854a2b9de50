/** The `verify` section of the configuration: schema, relations between its fields, translation. */
import * as z from 'zod';
import { ASYMMETRIC_JWS_ALGORITHMS, HMAC_JWS_ALGORITHMS, isHmacAlgorithm, isJwsAlgorithm } from '../jws.js';
import {
  bool,
  checkInsecureHttp,
  DEFAULT_CLOCK_TOLERANCE_SEC,
  duration,
  filePath,
  httpUrl,
  nonEmpty,
  oneOf,
  orList,
  present,
  primaryHostIsLoopback,
  relations,
  report,
  secret,
  type Ctx,
  type Obj,
} from './fields.js';
import type { IntrospectionConfig, VerifyIssuerConfig } from './types.js';

function checkIntrospection(ctx: Ctx, i: Obj): void {
  oneOf(ctx, i, 'clientSecret', 'clientSecretFile', 'for introspection');
}

function checkVerifyIssuer(ctx: Ctx, v: Obj): void {
  oneOf(ctx, v, 'hmacSecret', 'hmacSecretFile', undefined);
  const hasHmac = present(v, 'hmacSecret') || present(v, 'hmacSecretFile');
  const algs = v['algorithms'];
  let listsHmac = false;
  if (Array.isArray(algs)) {
    algs.forEach((alg: unknown, i) => {
      if (typeof alg !== 'string') return;
      if (alg.toLowerCase() === 'none') {
        report(ctx, ['algorithms', i], 'none is never allowed');
      } else if (!isJwsAlgorithm(alg)) {
        report(ctx, ['algorithms', i], `expected ${orList([...ASYMMETRIC_JWS_ALGORITHMS, ...HMAC_JWS_ALGORITHMS])}`);
      } else if (isHmacAlgorithm(alg)) {
        listsHmac = true;
        if (!hasHmac) report(ctx, ['algorithms', i], `${alg} needs hmacSecret or hmacSecretFile`);
      }
    });
  }
  if (hasHmac && !listsHmac) {
    const key = present(v, 'hmacSecret') ? 'hmacSecret' : 'hmacSecretFile';
    report(ctx, [key], 'only used when algorithms lists HS256, HS384 or HS512');
  }
  checkInsecureHttp(ctx, v, ['issuer']);
}

const AUDIENCE_EXPECTED = 'expected an audience or a non-empty list of audiences';
const audience = z.unknown().transform((v, ctx) => {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((a) => typeof a === 'string' && a !== '')) {
    ctx.addIssue({ code: 'custom', message: v === undefined ? 'required' : AUDIENCE_EXPECTED, input: undefined });
    return z.NEVER;
  }
  return list as string[];
});

const introspectionSchema = z
  .strictObject({
    clientId: nonEmpty,
    clientSecret: nonEmpty.optional(),
    clientSecretFile: filePath.optional(),
    clientAuth: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
  })
  .superRefine(...relations(checkIntrospection));

const verifyIssuerSchema = z
  .strictObject({
    issuer: httpUrl,
    audience,
    algorithms: z.array(z.string()).min(1, 'expected at least one algorithm').optional(),
    hmacSecret: nonEmpty.optional(),
    hmacSecretFile: filePath.optional(),
    clockTolerance: duration(0, 86_400_000).default(DEFAULT_CLOCK_TOLERANCE_SEC * 1000),
    requiredClaims: z.array(nonEmpty).default(() => []),
    introspection: introspectionSchema.optional(),
    allowInsecureHttp: bool.optional(),
  })
  .superRefine(...relations(checkVerifyIssuer));

export const verifySchema = z.strictObject({
  issuers: z.array(verifyIssuerSchema).min(1, 'expected at least one issuer'),
});


/** One verify issuer as parsed. */
export type VerifyIssuerFile = z.output<typeof verifyIssuerSchema>;

export function toVerifyIssuer(v: VerifyIssuerFile): VerifyIssuerConfig {
  const i = v.introspection;
  const introspection: IntrospectionConfig | undefined =
    i === undefined
      ? undefined
      : { clientId: i.clientId, clientSecret: secret(i.clientSecret, i.clientSecretFile), clientAuth: i.clientAuth };
  return {
    issuer: v.issuer,
    audience: v.audience,
    algorithms: v.algorithms,
    hmacSecret: secret(v.hmacSecret, v.hmacSecretFile),
    clockToleranceSec: v.clockTolerance / 1000,
    requiredClaims: v.requiredClaims,
    introspection,
    allowInsecureHttp: v.allowInsecureHttp ?? primaryHostIsLoopback(v.issuer),
  };
}

