/**
 * The verifier of incoming bearer tokens: composes the per-issuer state (issuers.ts), key lookup
 * (jwks.ts), JWT checks (jwt.ts) and introspection (introspection.ts) over one explicit state
 * object, and implements the Verifier interface on it.
 */
import type { VerifyConfig } from '../config/types.js';
import { MAX_TOKEN_CHARS } from '../token.js';
import { raceAbort } from '../util/abort.js';
import { reject, verifyContext, type VerifierDeps, type VerifyContext } from './context.js';
import { clearIntrospection, introspectCached, introspectionState, type IntrospectionState } from './introspection.js';
import { forgetIssuer, issuerStates, type IssuerState } from './issuers.js';
import { COMPACT_JWS } from '../jws.js';
import { verifyJwt } from './jwt.js';
import type { Verifier, VerifyOutcome } from './types.js';

export type { VerifierDeps } from './context.js';
export type { Verifier, VerifyOutcome, VerifyReason } from './types.js';

/** RFC 6750 §2.1 b64token: what an opaque bearer token may look like. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Everything one verifier knows: shared dependencies, the trusted issuers, introspection. */
export interface VerifierState {
  readonly ctx: VerifyContext;
  readonly issuers: readonly IssuerState[];
  /** Issuers by their `iss` value (unique: duplicates are refused at start-up). */
  readonly byIssuer: ReadonlyMap<string, IssuerState>;
  /** The issuers that configure introspection, in configuration order. */
  readonly introspectors: readonly IssuerState[];
  readonly introspection: IntrospectionState;
}

/**
 * The state of a new verifier. Nothing is fetched: discovery, the JWKS and the introspection
 * client are set up when the first token of an issuer arrives. Throws ConfigError for a
 * configuration it cannot honour safely (`none`, HS* without a secret, an http issuer without
 * allowInsecureHttp, no audience, a duplicate issuer).
 */
export function verifierState(cfg: VerifyConfig, deps: VerifierDeps): VerifierState {
  const issuers = issuerStates(cfg);
  return {
    ctx: verifyContext(deps),
    issuers,
    byIssuer: new Map(issuers.map((s) => [s.cfg.issuer, s])),
    introspectors: issuers.filter((s) => s.cfg.introspection !== undefined),
    introspection: introspectionState(),
  };
}

/**
 * Verifies one bearer token (see Verifier.verify): a compact JWS is checked locally against its
 * issuer's keys; any other b64token is introspected where an issuer can; the rest is malformed.
 */
export function verifyBearer(v: VerifierState, bearer: string, signal?: AbortSignal): Promise<VerifyOutcome> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (typeof bearer !== 'string' || bearer.length === 0 || bearer.length > MAX_TOKEN_CHARS) {
    return Promise.resolve(reject(v.ctx, 'malformed'));
  }
  // A compact JWS is also a valid b64token, so the stricter test runs first.
  if (COMPACT_JWS.test(bearer)) return verifyJwt(v, bearer, signal);
  if (!B64TOKEN.test(bearer) || v.introspectors.length === 0) return Promise.resolve(reject(v.ctx, 'malformed'));
  return raceAbort(introspectCached(v, bearer, v.introspectors), signal);
}

/** Drops every cache (discovery, keys, secrets, introspection verdicts); later calls start cold. */
export async function closeVerifier(v: VerifierState): Promise<void> {
  for (const s of v.issuers) forgetIssuer(s, { secrets: true });
  await clearIntrospection(v);
}

/**
 * Builds the verifier of incoming bearer tokens (see verifierState for what it refuses). To load
 * the verifier, jose and keyv only when a `verify:` section exists, use loadVerifier (load.ts).
 */
export function createVerifier(cfg: VerifyConfig, deps: VerifierDeps): Verifier {
  const v = verifierState(cfg, deps);
  return {
    verify: (bearer, signal) => verifyBearer(v, bearer, signal),
    close: () => closeVerifier(v),
  };
}
