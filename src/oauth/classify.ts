/**
 * The one place that translates openid-client, oauth4webapi and fetch errors into TokendError.
 * The rule (as openid-client's own errorHandler and Vault's auth handler draw it): the IdP's OAuth
 * refusals are permanent, everything that might go away by itself (network, timeouts, 5xx, 429,
 * garbled answers) is transient. Messages name the token and the IdP's `error` code only: never
 * a response body, a secret or a token. The library error rides along as non-enumerable `cause`.
 */
import { ClientError, ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client';
import { TokendError, type ErrorCode } from '../errors.js';
import { retryAfterOf } from './retry-after.js';
import { isResponse } from '../util/fetch-classes.js';

/** What was being attempted; decides the wording and, for discovery, the code. */
export type GrantPhase = 'grant' | 'discovery' | 'revocation';

/** One request made to the IdP: method, URL without query or credentials, and the status if it answered. */
export interface Exchange {
  readonly method: string;
  readonly url: string;
  status?: number | undefined;
}

/** What classifyGrantError may know besides the error itself. */
export interface ClassifyContext {
  /** Wall-clock now (ms since the epoch), to read a Retry-After date. Default Date.now(). */
  readonly now?: number | undefined;
  /** The requests the operation made, oldest first; the last one is the one that failed. */
  readonly exchanges?: readonly Exchange[] | undefined;
  /** The configured issuer (discovery), for an issuer mismatch. */
  readonly issuer?: string | undefined;
}

/**
 * OAuth error codes the IdP uses for its own trouble (RFC 6749 §4.1.2.1). Every other OAuth error
 * in a 4xx answer (invalid_grant, invalid_client, unauthorized_client, unsupported_grant_type,
 * invalid_scope, invalid_target, access_denied, invalid_request, ...) is permanent.
 */
export const TRANSIENT_OAUTH_ERRORS: ReadonlySet<string> = new Set(['server_error', 'temporarily_unavailable', 'slow_down']);

/** Error codes of node's network stack and undici meaning "could not talk to the IdP". */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EPIPE',
  'EPROTO',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** openid-client codes for answers that were not a usable OAuth response. */
const INVALID_ANSWER_CODES = new Set([
  'OAUTH_RESPONSE_IS_NOT_CONFORM',
  'OAUTH_RESPONSE_IS_NOT_JSON',
  'OAUTH_PARSE_ERROR',
  'OAUTH_INVALID_RESPONSE',
  'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED',
  'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
  'OAUTH_INVALID_SERVER_METADATA',
  'OAUTH_MISSING_SERVER_METADATA',
]);

/** openid-client codes that only a configuration change can fix. */
const CONFIG_CODES: Record<string, string> = {
  OAUTH_HTTP_REQUEST_FORBIDDEN: 'http:// IdP URLs need allowInsecureHttp (development only)',
  OAUTH_REQUEST_PROTOCOL_FORBIDDEN: 'the IdP URL must be http(s)',
  OAUTH_UNSUPPORTED_OPERATION: 'the client key or algorithm is not supported',
};

// An OAuth `error` value is an ASCII token (RFC 6749 §5.2); anything else is not echoed.
const safeCode = (s: unknown): string | undefined =>
  typeof s === 'string' && /^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(s) ? s : undefined;

const what = (phase: GrantPhase): string =>
  phase === 'discovery' ? 'discovery' : phase === 'revocation' ? 'revocation' : 'grant';

function transientCode(phase: GrantPhase): ErrorCode {
  return phase === 'discovery' ? 'DISCOVERY_FAILED' : 'GRANT_TRANSIENT';
}

function permanentCode(phase: GrantPhase): ErrorCode {
  return phase === 'discovery' ? 'DISCOVERY_FAILED' : 'GRANT_PERMANENT';
}

/** Finds a node/undici network error code anywhere in the cause chain. */
function networkCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('UND_ERR'))) return code;
    // AggregateError (happy-eyeballs connect attempts) carries the real errors in `errors`.
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      const inner = networkCode(errors[0]);
      if (inner) return inner;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function isAbort(err: unknown): 'timeout' | 'abort' | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const name = (err as { name?: unknown }).name;
  const code = (err as { code?: unknown }).code;
  if (name === 'TimeoutError' || code === 'OAUTH_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout';
  if (name === 'AbortError' || code === 'OAUTH_ABORT' || code === 'ABORT_ERR') return 'abort';
  return undefined;
}

/**
 * Translates any error thrown while talking to the IdP into a TokendError:
 * - the IdP's OAuth refusals (invalid_grant, invalid_client, unauthorized_client, invalid_scope,
 *   invalid_target, access_denied, ...) and other 4xx OAuth errors: GRANT_PERMANENT
 * - 5xx, 429, server_error / temporarily_unavailable, timeouts, aborts, network failures, and
 *   answers that are not a valid OAuth response: GRANT_TRANSIENT
 * - an http:// IdP without allowInsecureHttp, an unusable key: CONFIG_INVALID
 * - in the discovery phase every failure but CONFIG_INVALID is DISCOVERY_FAILED.
 * A TokendError passes through unchanged. One function on purpose (over 60 lines): every library
 * error is translated in one place, top to bottom, so the order of the checks is the rule.
 */
export function classifyGrantError(err: unknown, tokenName: string, phase: GrantPhase = 'grant', ctx: ClassifyContext = {}): TokendError {
  if (err instanceof TokendError) return err;
  // Our own error thrown inside the fetch openid-client calls comes back wrapped ("something went wrong").
  if (err instanceof ClientError && err.cause instanceof TokendError) return err.cause;
  const prefix = `token "${tokenName}": ${what(phase)}`;
  const retryAfterMs = retryAfterOf(responseOf(err), ctx.now ?? Date.now());
  const make = (code: ErrorCode, message: string, extra: { oauthError?: string; status?: number } = {}): TokendError =>
    new TokendError(code, `${prefix} ${message}`, { cause: err, ...extra, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
  const last = ctx.exchanges?.[ctx.exchanges.length - 1];

  // The IdP answered with an OAuth error body.
  if (err instanceof ResponseBodyError) {
    const oauthError = safeCode(err.error);
    const status = err.status;
    const label = oauthError ?? 'unrecognised error';
    if (status >= 500 || status === 429 || (oauthError && TRANSIENT_OAUTH_ERRORS.has(oauthError))) {
      return make(transientCode(phase), `failed: the IdP is unavailable (${label}, HTTP ${status})`, withOauth(oauthError, status));
    }
    return make(permanentCode(phase), `refused by the IdP: ${label} (HTTP ${status})`, withOauth(oauthError, status));
  }

  // 401 with WWW-Authenticate (e.g. client_secret_basic refused): the error code is in the challenge.
  if (err instanceof WWWAuthenticateChallengeError) {
    const oauthError = safeCode(err.cause?.[0]?.parameters?.error) ?? (err.status === 401 ? 'invalid_client' : undefined);
    const status = err.status;
    if (status >= 500 || status === 429) {
      return make(transientCode(phase), `failed: the IdP is unavailable (HTTP ${status})`, withOauth(oauthError, status));
    }
    return make(permanentCode(phase), `refused by the IdP: ${oauthError ?? 'unrecognised error'} (HTTP ${status})`, withOauth(oauthError, status));
  }

  const abort = isAbort(err);
  if (abort) {
    const at = last ? ` (${last.method} ${last.url})` : '';
    return make(transientCode(phase), abort === 'timeout' ? `timed out waiting for the IdP${at}` : `was aborted${at}`);
  }

  if (err instanceof ClientError) {
    const code = err.code ?? '';
    const configReason = CONFIG_CODES[code];
    if (configReason !== undefined) return make('CONFIG_INVALID', `cannot be attempted: ${configReason} (${code})`);
    if (code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED' && phase === 'discovery') {
      const mismatch = issuerMismatch(err, tokenName, ctx, last);
      if (mismatch) return mismatch;
    }
    if (INVALID_ANSWER_CODES.has(code)) {
      // For status and content-type problems openid-client puts the Response itself in `cause`.
      const status = isResponse(err.cause) ? err.cause.status : undefined;
      if (phase === 'discovery' && status !== undefined && status !== 200) {
        return make('DISCOVERY_FAILED', `failed: ${tried(ctx.exchanges)}`, withOauth(undefined, status));
      }
      const member = memberOf(err);
      const detail = [status !== undefined ? `HTTP ${status}` : undefined, member ? `its ${member} is missing or invalid` : undefined, code]
        .filter(Boolean)
        .join(', ');
      return make(transientCode(phase), `failed: the IdP's answer is not a valid OAuth response (${detail})`, withOauth(undefined, status));
    }
    // openid-client wraps what it does not recognise ("something went wrong") with the original as cause.
    if (err.cause !== undefined && !code) {
      const inner = classifyGrantError(err.cause, tokenName, phase);
      return new TokendError(inner.code, inner.message, { cause: err, oauthError: inner.oauthError, status: inner.status });
    }
    return make(transientCode(phase), `failed (${code || 'client error'})`);
  }

  const net = networkCode(err);
  if (net) return make(transientCode(phase), `failed: ${unreachable(net, last)}`);
  if (err instanceof TypeError && err.message === 'fetch failed') {
    return make(transientCode(phase), `failed: ${unreachable('fetch failed', last)}`);
  }

  // Unknown: retrying is the safe side (a permanent verdict stops the token for good).
  const name = err instanceof Error ? err.name : typeof err;
  return make(transientCode(phase), `failed unexpectedly (${name})`);
}

function withOauth(oauthError: string | undefined, status: number | undefined): { oauthError?: string; status?: number } {
  const out: { oauthError?: string; status?: number } = {};
  if (oauthError !== undefined) out.oauthError = oauthError;
  if (status !== undefined) out.status = status;
  return out;
}

/** The Response an openid-client error carries (status, headers), if any. */
function responseOf(err: unknown): Response | undefined {
  if (err instanceof ResponseBodyError || err instanceof WWWAuthenticateChallengeError) return err.response;
  if (err instanceof ClientError && isResponse(err.cause)) return err.cause;
  return undefined;
}

/**
 * The member of the answer openid-client found wrong ('"response" body "token_type" property must
 * be a string' in the wrapped error's message), if any: a name from the library, never a value.
 */
function memberOf(err: ClientError): string | undefined {
  for (const e of [err, err.cause]) {
    const message = e instanceof Error ? e.message : '';
    const m = /"response" body "([a-z_]{1,32})" property/.exec(message);
    if (m?.[1]) return m[1];
  }
  return undefined;
}

/** "GET https://idp/.well-known/openid-configuration → 404; GET …/oauth-authorization-server → 404". */
function tried(exchanges: readonly Exchange[] | undefined): string {
  const answered = (exchanges ?? []).filter((e) => e.status !== undefined);
  if (answered.length === 0) return 'the IdP answered with an unexpected HTTP status';
  return answered.map((e) => `${e.method} ${e.url} → ${e.status}`).join('; ');
}

/** What a network failure means, naming the host (DNS) or host:port (connect) it concerned. */
function unreachable(code: string, last: Exchange | undefined): string {
  let target: URL | undefined;
  try {
    target = last ? new URL(last.url) : undefined;
  } catch {
    target = undefined;
  }
  if (!target || !last) return `cannot reach the IdP (${code})`;
  const hostPort = `${target.hostname}:${target.port || (target.protocol === 'https:' ? '443' : '80')}`;
  const request = `${last.method} ${last.url}`;
  switch (code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${request}: cannot resolve ${target.hostname}: ${code}`;
    case 'ECONNREFUSED':
      return `${request}: connection refused by ${hostPort} (ECONNREFUSED)`;
    default:
      return `${request}: cannot reach ${hostPort} (${code})`;
  }
}

// An issuer is shown only when it looks like one: it comes from the network.
const printableUrl = (s: unknown): string | undefined =>
  typeof s === 'string' && s.length <= 512 && /^https?:\/\/[\x21-\x7e]+$/.test(s) && URL.canParse(s) ? s : undefined;

/**
 * Discovery that names another issuer than the configured one (a server that calls itself
 * http://localhost:8080 while tokend is configured with http://127.0.0.1:8080, or a realm URL
 * behind a proxy). Retrying cannot fix it and the IdP is not down: a setting must change, so it is
 * CONFIG_INVALID (permanent; `tokend check` exits 2), naming both issuers and what to set.
 */
function issuerMismatch(err: ClientError, tokenName: string, ctx: ClassifyContext, last: Exchange | undefined): TokendError | undefined {
  const cause = err.cause as { attribute?: unknown; expected?: unknown; body?: { issuer?: unknown } } | undefined;
  if (cause?.attribute !== 'issuer') return undefined;
  const configured = ctx.issuer ?? printableUrl(cause.expected) ?? 'the configured issuer';
  const announced = printableUrl(cause.body?.issuer);
  const where = last ? `${last.method} ${last.url}` : 'discovery';
  const message = announced
    ? `tokens.${tokenName}.issuer: ${where} names the issuer ${announced}, not the configured ${configured}. ` +
      `Set issuer: ${announced} (the IdP's name for itself, which it also puts in every token's iss), ` +
      'or make the IdP announce the configured URL (its public or frontend URL setting)'
    : `tokens.${tokenName}.issuer: ${where} names an issuer that is not an http(s) URL, not the configured ${configured}`;
  return new TokendError('CONFIG_INVALID', message, { cause: err, reason: 'issuer_mismatch' });
}
