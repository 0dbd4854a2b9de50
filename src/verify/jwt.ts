/**
 * JWT access tokens: route the token to its issuer by its (unverified) `iss`, then let jose check
 * signature, algorithm and claims, and translate jose's refusal into the contract's reason.
 */
import { jwtVerify, type JWSHeaderParameters } from 'jose';
import { raceAbort } from '../util/abort.js';
import { reasonForJoseError } from './classify.js';
import { reject, type VerifyContext } from './context.js';
import { introspectCached } from './introspection.js';
import { discover, type Discovered, type IssuerState } from './issuers.js';
import type { VerifyOutcome } from './types.js';
import type { VerifierState } from './verifier.js';
import { decodeJwsPart } from '../jws.js';


/**
 * Verifies a token that has the shape of a compact JWS. Refuses it (`issuer`) without any I/O
 * when no trusted issuer matches its `iss`; an issuer without keys but with introspection gets
 * the token introspected instead.
 */
export async function verifyJwt(v: VerifierState, token: string, signal: AbortSignal | undefined): Promise<VerifyOutcome> {
  const peeked = peekJwt(token);
  if (!peeked) return reject(v.ctx, 'malformed');
  const { header, payload } = peeked;
  const { alg, kid } = header;
  if (typeof alg !== 'string' || (kid !== undefined && typeof kid !== 'string')) return reject(v.ctx, 'malformed');
  const iss = payload.iss;
  const state = typeof iss === 'string' ? v.byIssuer.get(iss) : undefined;
  if (!state) return reject(v.ctx, 'issuer');
  const discovered = state.ready ?? (await raceAbort(discover(v.ctx, state), signal));
  if (!discovered.keys.hasJwks && !state.acceptsHmac) {
    if (discovered.canIntrospect) return raceAbort(introspectCached(v, token, [state]), signal);
    return reject(v.ctx, 'malformed', state.cfg.issuer);
  }
  return checkJwt(v.ctx, state, discovered, token, { alg, kid }, signal);
}

/** jose's checks with the issuer's precomputed options, on the injected clock. */
async function checkJwt(
  ctx: VerifyContext,
  state: IssuerState,
  discovered: Discovered,
  token: string,
  { alg, kid }: { alg: string; kid: string | undefined },
  signal: AbortSignal | undefined,
): Promise<VerifyOutcome> {
  const options = { ...state.verifyOptions, currentDate: new Date(ctx.clock.now()) };
  // The hot path: a key already resolved means no I/O, so nothing to abort either.
  const key = discovered.keys.knownKey(alg, kid);
  try {
    const { payload } = await (key
      ? jwtVerify(token, key, options)
      : raceAbort(jwtVerify(token, discovered.keys.getKey, options), signal));
    return { active: true, issuer: state.cfg.issuer, claims: payload as Record<string, unknown> };
  } catch (err) {
    if (signal?.aborted && err === signal.reason) throw err;
    // Anything jose cannot map to a reason (an unavailable JWKS, a bug) is not the token's fault.
    const reason = reasonForJoseError(err);
    if (reason === undefined) throw err;
    return reject(ctx, reason, state.cfg.issuer);
  }
}

/**
 * Decodes a compact JWS's protected header and payload WITHOUT verifying anything, to route the
 * token to its issuer and look up its key. Undefined unless both are JSON objects. Callers have
 * checked the base64url alphabet already; Buffer's decoder is several times faster than jose's.
 */
export function peekJwt(token: string): { header: JWSHeaderParameters; payload: Record<string, unknown> } | undefined {
  const dot1 = token.indexOf('.');
  const dot2 = token.indexOf('.', dot1 + 1);
  if (dot1 < 1 || dot2 < 0) return undefined;
  const header = decodeJwsPart(token.slice(0, dot1));
  const payload = header && decodeJwsPart(token.slice(dot1 + 1, dot2));
  return payload ? { header: header as JWSHeaderParameters, payload } : undefined;
}
