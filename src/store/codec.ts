import { TokendError } from '../errors.js';
import { MAX_TOKEN_CHARS, type AccessToken } from '../token.js';

/**
 * Shared wire format of stored tokens (file store and Redis). Stored text is untrusted: a decode
 * checks size, JSON syntax and every field's type, and throws TokendError('STORE_UNAVAILABLE')
 * whose message is a short reason naming the field, never any of the content (Node's JSON
 * SyntaxError quotes the input, so it is never passed on).
 */

/** Largest stored entry (metadata or state document) tokend reads or writes: 64 KiB, in bytes. */
export const MAX_ENTRY_BYTES = 64 * 1024;

// RFC 6749 Appendix A: access_token and refresh_token are 1*VSCHAR (%x20-7E), which also keeps
// newlines out of the raw token file and out of any header a service builds from it.
const VSCHAR = /^[\x20-\x7e]+$/;
const VSCHAR_OR_EMPTY = /^[\x20-\x7e]*$/;
// RFC 9110 token: what an Authorization scheme (token_type) may contain.
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
const MAX_SCOPE_CHARS = 8 * 1024;
const MAX_SEED_HASH_CHARS = 256;
// Year 9999: a larger timestamp is not one tokend wrote.
const MAX_UNIX_SECONDS = 253_402_300_799;

function invalid(reason: string): never {
  throw new TokendError('STORE_UNAVAILABLE', reason);
}

function checkSecret(value: unknown, field: string): string {
  if (typeof value !== 'string') invalid(`${field} is not a string`);
  if (value.length === 0) invalid(`${field} is empty`);
  if (value.length > MAX_TOKEN_CHARS) invalid(`${field} is longer than ${MAX_TOKEN_CHARS} characters`);
  if (!VSCHAR.test(value)) invalid(`${field} contains characters other than printable ASCII`);
  return value;
}

function checkUnixSeconds(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) invalid(`${field} is not a finite number`);
  if (value < 0 || value > MAX_UNIX_SECONDS) invalid(`${field} is out of range`);
  return value;
}

function checkMs(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) invalid(`${field} is not a finite number`);
  checkUnixSeconds(Math.floor(value / 1000), field);
  return value;
}

function checkTokenType(value: unknown): string {
  if (typeof value !== 'string' || !HTTP_TOKEN.test(value)) invalid('token_type is not a valid HTTP auth scheme');
  return value;
}

function checkScope(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') invalid('scope is not a string');
  if (value.length > MAX_SCOPE_CHARS) invalid(`scope is longer than ${MAX_SCOPE_CHARS} characters`);
  if (!VSCHAR_OR_EMPTY.test(value)) invalid('scope contains characters other than printable ASCII');
  return value;
}

function checkSeedHash(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') invalid('seed_hash is not a string');
  if (value.length === 0 || value.length > MAX_SEED_HASH_CHARS || !VSCHAR.test(value)) {
    invalid('seed_hash is not a short printable string');
  }
  return value;
}

function checkSize(text: string): void {
  if (text.length === 0) invalid('entry is empty');
  // A UTF-16 length is at most the UTF-8 byte length, so this check is conservative.
  if (text.length > MAX_ENTRY_BYTES || Buffer.byteLength(text, 'utf8') > MAX_ENTRY_BYTES) {
    invalid(`entry is larger than ${MAX_ENTRY_BYTES} bytes`);
  }
}

function parseObject(text: string): Record<string, unknown> {
  checkSize(text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The SyntaxError quotes the input, which may hold a token: keep only a fixed reason.
    invalid('entry is not valid JSON (truncated or corrupt)');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) invalid('entry is not a JSON object');
  return parsed as Record<string, unknown>;
}

function toSeconds(ms: number): number {
  // Whole seconds, rounded down: a reader never believes a token lives longer than it does.
  return Math.floor(ms / 1000);
}

/**
 * Encodes an access token as the metadata document services read:
 * `{"access_token","token_type","expires_at","obtained_at","scope"?,"grant_key"?,"issued_token_type"?}`
 * (`issued_token_type`: RFC 8693, token exchange only), times in whole Unix
 * seconds (rounded down, so decodeMeta(encodeMeta(t)).expiresAt is up to 999 ms earlier than
 * t.expiresAt, never later). Throws TokendError('STORE_UNAVAILABLE') (message names the field)
 * for a token decodeMeta would refuse, so nothing is ever written that cannot be read back.
 */
export function encodeMeta(token: AccessToken): string {
  return sized(JSON.stringify(metaDoc(token)));
}

/** The metadata document of a token, every field checked (see encodeMeta). */
function metaDoc(token: AccessToken): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    access_token: checkSecret(token.accessToken, 'access_token'),
    token_type: checkTokenType(token.tokenType),
    expires_at: toSeconds(checkMs(token.expiresAt, 'expires_at')),
    obtained_at: toSeconds(checkMs(token.obtainedAt, 'obtained_at')),
  };
  const scope = checkScope(token.scope);
  if (scope !== undefined) doc.scope = scope;
  if (token.grantKey !== undefined) doc.grant_key = checkGrantKey(token.grantKey);
  if (token.issuedTokenType !== undefined) doc.issued_token_type = checkIssuedTokenType(token.issuedTokenType);
  return doc;
}

function sized(text: string): string {
  checkSize(text);
  return text;
}

/**
 * Decodes and validates a metadata document written by encodeMeta (times become ms since epoch).
 * Throws TokendError('STORE_UNAVAILABLE') with a content-free reason when the text is empty,
 * oversized, not JSON, or any field has the wrong type or range. Unknown fields are ignored.
 */
export function decodeMeta(text: string): AccessToken {
  return tokenOf(parseObject(text));
}

function tokenOf(doc: Record<string, unknown>): AccessToken {
  const accessToken = checkSecret(doc.access_token, 'access_token');
  const tokenType = checkTokenType(doc.token_type);
  const expiresAt = Math.round(checkUnixSeconds(doc.expires_at, 'expires_at') * 1000);
  const obtainedAt = Math.round(checkUnixSeconds(doc.obtained_at, 'obtained_at') * 1000);
  const scope = checkScope(doc.scope);
  const grantKey = doc.grant_key === undefined ? undefined : checkGrantKey(doc.grant_key);
  const issuedTokenType = doc.issued_token_type === undefined ? undefined : checkIssuedTokenType(doc.issued_token_type);
  return {
    accessToken,
    tokenType,
    expiresAt,
    obtainedAt,
    ...(scope !== undefined ? { scope } : {}),
    ...(grantKey !== undefined ? { grantKey } : {}),
    ...(issuedTokenType !== undefined ? { issuedTokenType } : {}),
  };
}

// RFC 8693 §3: a token type identifier is a URI.
function checkIssuedTokenType(v: unknown): string {
  if (typeof v !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(v)) invalid('issued_token_type is not a short printable URI');
  return v;
}

function checkGrantKey(v: unknown): string {
  if (typeof v !== 'string' || !/^[0-9a-f]{16,64}$/.test(v)) invalid('grant_key is not a hex fingerprint');
  return v;
}

/**
 * The codec's metadata plus `expires_at_ms` and `obtained_at_ms` (file `NAME.json` and Redis
 * `:meta`). Whole seconds are enough for a service reading the token, but the store compares
 * expiries to drop stale writes, and replicas schedule their refresh from an adopted token's times:
 * rounded down, an equal expiry would look older and a replica would refresh up to a second early.
 */
export function encodeMetaMs(token: AccessToken): string {
  return sized(JSON.stringify({ ...metaDoc(token), expires_at_ms: Math.floor(token.expiresAt), obtained_at_ms: Math.floor(token.obtainedAt) }));
}

/** decodeMeta, refined by the millisecond fields when they agree with the whole seconds (else ignored). */
export function decodeMetaMs(text: string): AccessToken {
  const doc = parseObject(text);
  const token = tokenOf(doc);
  const refine = (ms: unknown, secondsMs: number): number =>
    typeof ms === 'number' && Number.isSafeInteger(ms) && ms >= secondsMs && ms < secondsMs + 1000 ? ms : secondsMs;
  return { ...token, expiresAt: refine(doc.expires_at_ms, token.expiresAt), obtainedAt: refine(doc.obtained_at_ms, token.obtainedAt) };
}

/** A grant intent as stored (see store.ts GrantIntent). */
export interface IntentDoc {
  readonly holder: string;
  readonly presented: string;
  readonly at: number;
}

/**
 * The refresh-token state document of one token (file `STATEDIR/NAME.state.json`, Redis
 * `PREFIX+NAME:state`): the chain's refresh token (absent in a tombstone, or while only an intent
 * is recorded for a seed), its seed, a revocation tombstone, the uncommitted grant intent.
 */
export interface StateDoc {
  /** As stored: the Redis store passes it encrypted (`enc:v1:...`) when a key is configured. */
  readonly refreshToken?: string | undefined;
  readonly seedHash?: string | undefined;
  readonly revoked?: boolean | undefined;
  readonly intent?: IntentDoc | undefined;
  /** When it was written (ms since epoch; stored at second precision). */
  readonly updatedAt: number;
}

/** Version of the state document; one version for the refresh-token state, tombstones and intents. */
export const STATE_VERSION = 1;

const HOLDER_RE = /^[\x21-\x7e]{1,128}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function checkIntent(value: unknown): IntentDoc | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) invalid('intent is not an object');
  const v = value as Record<string, unknown>;
  if (typeof v.holder !== 'string' || !HOLDER_RE.test(v.holder)) invalid('intent.holder is not a short printable string');
  if (typeof v.presented !== 'string' || !SHA256_HEX.test(v.presented)) invalid('intent.presented is not a SHA-256 hex digest');
  return { holder: v.holder, presented: v.presented, at: checkMs(v.at, 'intent.at') };
}

/**
 * Encodes a state document: `{"version":1,"refresh_token"?,"seed_hash","updated_at","revoked"?,
 * "intent"?}` (`seed_hash` null when there is none, `updated_at` in whole Unix seconds, `intent`
 * as `{"holder","presented","at"}` with `at` in ms). A tombstone never carries a refresh token.
 * Throws TokendError('STORE_UNAVAILABLE') for a value decodeStateDoc would refuse, so nothing is
 * written that cannot be read back.
 */
export function encodeStateDoc(doc: StateDoc): string {
  const out: Record<string, unknown> = { version: STATE_VERSION };
  if (doc.refreshToken !== undefined && !doc.revoked) out.refresh_token = checkSecret(doc.refreshToken, 'refresh_token');
  out.seed_hash = checkSeedHash(doc.seedHash) ?? null;
  out.updated_at = toSeconds(checkMs(doc.updatedAt, 'updated_at'));
  if (doc.revoked) out.revoked = true;
  const intent = checkIntent(doc.intent);
  if (intent !== undefined) out.intent = { holder: intent.holder, presented: intent.presented, at: Math.floor(intent.at) };
  const text = JSON.stringify(out);
  checkSize(text);
  return text;
}

/**
 * Decodes and validates a state document (also those written before intents existed, and the
 * older tombstones). Throws TokendError('STORE_UNAVAILABLE') with a content-free reason when it is
 * invalid or of another version. Unknown fields (Redis's old `generation`) are ignored.
 */
export function decodeStateDoc(text: string): StateDoc {
  const doc = parseObject(text);
  if (doc.version !== STATE_VERSION) invalid(`version is not ${STATE_VERSION}`);
  const revoked = doc.revoked === true;
  if (doc.revoked !== undefined && typeof doc.revoked !== 'boolean') invalid('revoked is not a boolean');
  const refreshToken = revoked || doc.refresh_token === undefined ? undefined : checkSecret(doc.refresh_token, 'refresh_token');
  const intent = checkIntent(doc.intent);
  if (!revoked && refreshToken === undefined && intent === undefined) invalid('refresh_token is missing');
  return {
    refreshToken,
    seedHash: checkSeedHash(doc.seed_hash),
    revoked: revoked ? true : undefined,
    intent,
    updatedAt: Math.round(checkUnixSeconds(doc.updated_at, 'updated_at') * 1000),
  };
}
