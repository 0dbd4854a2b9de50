/**
 * The federation settings of `tokens.NAME` (docs/secretless.md): a client assertion someone else
 * issued (`clientAuth: client_assertion`, RFC 7523 §2.2), the RFC 8693 token exchange
 * (`grant: token_exchange`) and the RFC 7523 §2.1 JWT bearer grant (`grant: jwt_bearer`). Schema
 * fields, relations between them (per token, and across tokens for `subjectToken: NAME`), and
 * their translation. Pure; no message contains a configured value other than a token name.
 */
import * as z from 'zod';
import { filePath, nonEmpty, oneOf, present, report, type Ctx, type Obj } from './fields.js';

/** RFC 8693 §3 token type identifiers tokend uses as defaults. */
export const TOKEN_TYPES = {
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
} as const;

/** Grants that present a federated credential as the grant itself, where a client may go unnamed. */
const FEDERATED_GRANTS: ReadonlySet<unknown> = new Set(['token_exchange', 'jwt_bearer']);

const EXCHANGE_ONLY = ['subjectTokenFile', 'subjectToken', 'subjectTokenType', 'actorTokenFile', 'actorTokenType', 'requestedTokenType'] as const;

/** An RFC 8693 token type: an absolute URI (`urn:ietf:params:oauth:token-type:jwt`). */
const tokenTypeUri = z.string().superRefine((s, ctx) => {
  if (s.length > 256 || /\s/.test(s) || !URL.canParse(s)) {
    report(ctx, [], 'expected a token type URI, e.g. urn:ietf:params:oauth:token-type:jwt');
  }
});

/** The schema fields (spread into the token schema). */
export const federationFields = {
  /** clientAuth client_assertion: a JWT issued by someone else (the projected service-account token), read per grant. */
  clientAssertionFile: filePath.optional(),
  /** grant jwt_bearer: the assertion presented as the grant, read per grant. */
  assertionFile: filePath.optional(),
  /** grant token_exchange: the subject token, read per grant... */
  subjectTokenFile: filePath.optional(),
  /** ...or the current value of another configured token. */
  subjectToken: nonEmpty.optional(),
  subjectTokenType: tokenTypeUri.optional(),
  actorTokenFile: filePath.optional(),
  actorTokenType: tokenTypeUri.optional(),
  requestedTokenType: tokenTypeUri.optional(),
};

/** Relations between the federation fields of one token (the token schema calls it). */
export function checkFederation(ctx: Ctx, t: Obj): void {
  const auth = t['clientAuth'] ?? 'client_secret_basic';
  const grant = t['grant'];
  if (auth === 'client_assertion') {
    if (!present(t, 'clientAssertionFile')) report(ctx, ['clientAssertionFile'], 'required for clientAuth client_assertion');
  } else if (present(t, 'clientAssertionFile')) {
    report(ctx, ['clientAssertionFile'], 'only used with clientAuth client_assertion');
  }
  if (grant === 'jwt_bearer') {
    if (!present(t, 'assertionFile')) report(ctx, ['assertionFile'], 'required for grant jwt_bearer');
  } else if (present(t, 'assertionFile')) {
    report(ctx, ['assertionFile'], 'only used with grant jwt_bearer');
  }
  if (grant === 'token_exchange') {
    oneOf(ctx, t, 'subjectTokenFile', 'subjectToken', 'for grant token_exchange');
    // RFC 8693 §2.1: actor_token_type is REQUIRED when actor_token is present, and only then.
    if (present(t, 'actorTokenType') && !present(t, 'actorTokenFile')) report(ctx, ['actorTokenType'], 'only used with actorTokenFile');
  } else {
    for (const k of EXCHANGE_ONLY) if (present(t, k)) report(ctx, [k], 'only used with grant token_exchange');
  }
  // A client_id is how the IdP knows the client, except where the federated credential says who
  // it is and the client stays anonymous (Google STS takes no client_id at all).
  if (!present(t, 'clientId') && !(auth === 'none' && FEDERATED_GRANTS.has(grant))) {
    report(ctx, ['clientId'], FEDERATED_GRANTS.has(grant) ? 'required (it may be left out only with clientAuth none)' : 'required');
  }
}

/**
 * `subjectToken: NAME` across tokens (the top-level schema calls it): NAME must be another
 * configured token, and following subjectToken from any token must never come back to it (each
 * would wait for the other's first token forever).
 */
export function checkSubjectReferences(ctx: Ctx, tokens: unknown): void {
  if (typeof tokens !== 'object' || tokens === null || Array.isArray(tokens)) return;
  const entries = tokens as Record<string, unknown>;
  const subjectOf = (name: string): string | undefined => {
    const t = entries[name];
    const s = typeof t === 'object' && t !== null ? (t as Obj)['subjectToken'] : undefined;
    return typeof s === 'string' ? s : undefined;
  };
  for (const name of Object.keys(entries)) {
    const first = subjectOf(name);
    if (first === undefined) continue;
    const path = ['tokens', name, 'subjectToken'];
    if (first === name) {
      report(ctx, path, 'names this token itself; give another configured token');
      continue;
    }
    if (!(first in entries)) {
      report(ctx, path, `names no configured token (${JSON.stringify(first).slice(0, 80)})`);
      continue;
    }
    const chain = [name];
    const seen = new Set<string>(chain);
    for (let next: string | undefined = first; next !== undefined && next in entries; next = subjectOf(next)) {
      chain.push(next);
      if (next === name) {
        report(ctx, path, `forms a cycle (${chain.join(' → ')}): no token in it could ever be exchanged`);
        break;
      }
      // A cycle this token only leads into is reported at the tokens in it.
      if (seen.has(next)) break;
      seen.add(next);
    }
  }
}

/** The federation settings as resolved (see docs/secretless.md). Paths are as configured. */
export interface FederationConfig {
  /** clientAuth client_assertion: the file holding the assertion (read for every grant). */
  readonly clientAssertionFile?: string | undefined;
  /** grant jwt_bearer: the file holding the assertion presented as the grant. */
  readonly assertionFile?: string | undefined;
  /** grant token_exchange: the file holding the subject token (exactly one of subjectTokenFile / subjectToken). */
  readonly subjectTokenFile?: string | undefined;
  /** grant token_exchange: the name of another configured token whose current value is the subject token. */
  readonly subjectToken?: string | undefined;
  /** RFC 8693 subject_token_type. Resolved default: jwt for a file, access_token for another token. */
  readonly subjectTokenType?: string | undefined;
  readonly actorTokenFile?: string | undefined;
  /** RFC 8693 actor_token_type; resolved default jwt when actorTokenFile is set. */
  readonly actorTokenType?: string | undefined;
  /** RFC 8693 requested_token_type; not sent when absent. */
  readonly requestedTokenType?: string | undefined;
}

/** Translates the parsed fields, applying the token type defaults. */
export function toFederation(t: { grant: string } & { [K in keyof typeof federationFields]?: string | undefined }): FederationConfig {
  const out: Record<string, string> = {};
  for (const k of ['clientAssertionFile', 'assertionFile', 'subjectTokenFile', 'subjectToken', 'actorTokenFile', 'requestedTokenType'] as const) {
    const v = t[k];
    if (v !== undefined) out[k] = v;
  }
  if (t.grant === 'token_exchange') {
    out.subjectTokenType = t.subjectTokenType ?? (t.subjectToken !== undefined ? TOKEN_TYPES.accessToken : TOKEN_TYPES.jwt);
    if (t.actorTokenFile !== undefined) out.actorTokenType = t.actorTokenType ?? TOKEN_TYPES.jwt;
  }
  return out as FederationConfig;
}
