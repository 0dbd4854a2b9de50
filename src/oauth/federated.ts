/**
 * Federated credentials: JWTs someone else issued (typically the Kubernetes projected
 * service-account token) that tokend presents as a client assertion (RFC 7523 §2.2), as the grant
 * itself (RFC 7523 §2.1) or as the subject or actor of a token exchange (RFC 8693).
 *
 * The file is read through its path on every grant: kubelet rotates a projected token by writing
 * a new timestamped directory and swapping the `..data` symlink, so an open descriptor or a cached
 * value would keep the old token. A token whose `exp` (read without verifying: tokend is not its
 * audience) is past, or less than FEDERATED_MIN_REMAINING_MS away, is never sent: the IdP would
 * refuse it with invalid_client / invalid_grant, which tokend must treat as permanent, while a
 * stale file is a passing state that kubelet fixes by itself. The failure is GRANT_TRANSIENT with
 * a named reason, so the grant is retried with backoff and the next file is used.
 */
import { readSecret } from '../config/secrets.js';
import { TokendError } from '../errors.js';
import { COMPACT_JWS, decodeJwsPart } from '../jws.js';

/**
 * A federated token with less than this much life left (ms) is not sent: 10 s, enough for the
 * request to reach the IdP and be checked there with some clock skew.
 */
export const FEDERATED_MIN_REMAINING_MS = 10_000;

/** Which credential a file holds; names the config field and the failure reason. */
export type FederatedKind = 'client_assertion' | 'assertion' | 'subject_token' | 'actor_token';

/** The config key of each kind's file. */
export const FEDERATED_FIELD: Readonly<Record<FederatedKind, string>> = {
  client_assertion: 'clientAssertionFile',
  assertion: 'assertionFile',
  subject_token: 'subjectTokenFile',
  actor_token: 'actorTokenFile',
};

const WHAT: Readonly<Record<FederatedKind, string>> = {
  client_assertion: 'client assertion',
  assertion: 'assertion',
  subject_token: 'subject token',
  actor_token: 'actor token',
};

/**
 * The registered claims of a JWT, read without verification, keeping only values that are safe to
 * show in a message (printable ASCII, at most 256 characters each). None of them is a secret: the
 * signature is what makes the JWT a credential, and it is never kept.
 */
export interface JwtClaims {
  readonly iss?: string | undefined;
  readonly sub?: string | undefined;
  readonly aud?: readonly string[] | undefined;
  /** exp in ms since the epoch. */
  readonly expMs?: number | undefined;
  /** iat in ms since the epoch. */
  readonly iatMs?: number | undefined;
  readonly jti?: string | undefined;
}

/** A federated token as read for one grant. `value` is a secret: never logged, never in a message. */
export interface FederatedToken {
  readonly kind: FederatedKind;
  /** Where it came from: a file path, or `token "NAME"` for another configured token. */
  readonly source: string;
  readonly value: string;
  /** Undefined when the value is not a JWT. */
  readonly claims: JwtClaims | undefined;
}

const SHOWABLE = /^[\x20-\x7e]{1,256}$/;
const showable = (v: unknown): string | undefined => (typeof v === 'string' && SHOWABLE.test(v) ? v : undefined);
const seconds = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v * 1000 : undefined);

/** The claims of a JWS compact JWT, or undefined when value is not one (opaque token, JWE, garbage). */
export function readJwtClaims(value: string): JwtClaims | undefined {
  if (!COMPACT_JWS.test(value)) return undefined;
  const p = decodeJwsPart(value.split('.')[1] as string);
  if (p === undefined) return undefined;
  const audList = Array.isArray(p.aud) ? p.aud : p.aud === undefined ? [] : [p.aud];
  const aud = audList.map(showable).filter((a): a is string => a !== undefined).slice(0, 8);
  return {
    iss: showable(p.iss),
    sub: showable(p.sub),
    aud: aud.length > 0 ? aud : undefined,
    expMs: seconds(p.exp),
    iatMs: seconds(p.iat),
    jti: showable(p.jti),
  };
}

/** "iss X, sub Y, aud Z": what a refused credential said about itself, for messages. */
export function describeClaims(claims: JwtClaims | undefined): string {
  if (claims === undefined) return 'not a JWT';
  const parts = [
    `iss ${claims.iss ?? '(none)'}`,
    `sub ${claims.sub ?? '(none)'}`,
    `aud ${claims.aud?.join(' ') ?? '(none)'}`,
  ];
  return parts.join(', ');
}

/** The "what tokend sent" clause for a refusal: `the client assertion from PATH (iss …, sub …, aud …)`. */
export function describeSent(t: FederatedToken): string {
  return `the ${WHAT[t.kind]} from ${t.source} (${describeClaims(t.claims)})`;
}

/** Options of readFederatedToken. */
export interface ReadFederatedOptions {
  readonly tokenName: string;
  readonly kind: FederatedKind;
  readonly path: string;
  /** Wall-clock now, ms since the epoch (the injected clock). */
  readonly now: number;
  /** Refuse a value that is not a JWT (assertions must be; a subject token may be opaque). */
  readonly requireJwt: boolean;
  /** Told about every token read, before its expiry is judged (metrics). */
  readonly onRead?: ((t: FederatedToken) => void) | undefined;
}

/**
 * Reads a federated token from its file, fresh (through the path: a swapped `..data` symlink is
 * followed). Throws CONFIG_INVALID naming the field and path when the file is missing, empty, not
 * a single token or (requireJwt) not a JWT; GRANT_TRANSIENT with reason `<kind>_expired` when its
 * exp is past or under FEDERATED_MIN_REMAINING_MS away. Never includes the content in a message.
 */
export async function readFederatedToken(opts: ReadFederatedOptions): Promise<FederatedToken> {
  const field = `tokens.${opts.tokenName}.${FEDERATED_FIELD[opts.kind]}`;
  const value = await readSecret({ kind: 'file', path: opts.path }, field);
  const invalid = (why: string): TokendError => new TokendError('CONFIG_INVALID', `${field}: file ${opts.path} ${why}`);
  if (!/^[\x21-\x7e]+$/.test(value)) throw invalid('does not hold a single token (it contains whitespace or control characters)');
  const claims = readJwtClaims(value);
  if (opts.requireJwt && claims === undefined) throw invalid(`does not hold a JWT (the ${WHAT[opts.kind]} must be one)`);
  const token: FederatedToken = { kind: opts.kind, source: opts.path, value, claims };
  opts.onRead?.(token);
  assertFresh(token, opts.tokenName, opts.now);
  return token;
}

/**
 * Throws GRANT_TRANSIENT (reason `<kind>_expired`, e.g. `client_assertion_expired`) when the
 * token's exp is past or less than marginMs (default FEDERATED_MIN_REMAINING_MS) away. A token
 * without exp passes (the IdP decides).
 */
export function assertFresh(t: FederatedToken, tokenName: string, now: number, marginMs = FEDERATED_MIN_REMAINING_MS): void {
  const expMs = t.claims?.expMs;
  if (expMs === undefined) return;
  const left = expMs - now;
  if (left >= marginMs) return;
  const when =
    left <= 0
      ? `expired ${Math.ceil(-left / 1000)} s ago`
      : `expires in ${Math.floor(left / 1000)} s, under the ${(marginMs / 1000).toFixed(marginMs % 1000 === 0 ? 0 : 1)} s margin`;
  const wait = t.source.startsWith('token "')
    ? 'waiting for that token to be refreshed'
    : 'waiting for a fresh one (kubelet rewrites a projected token once 80% of its life has passed)';
  throw new TokendError('GRANT_TRANSIENT', `token "${tokenName}": the ${WHAT[t.kind]} from ${t.source} ${when}; not sent, ${wait}`, {
    reason: `${t.kind}_expired`,
  });
}
