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


/** Version of the refresh-token state document written by encodeState. */
export const STATE_VERSION = 1;

/** A refresh token as stored, with the seed it descends from. */
export interface RefreshState {
  readonly refreshToken: string;
  /** SHA-256 (hex) of the configured seed, when the token descends from one. */
  readonly seedHash: string | undefined;
  /** When it was written (ms since epoch; stored at second precision). */
  readonly updatedAt: number;
}

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
 * `{"access_token","token_type","expires_at","obtained_at","scope"?}`, times in whole Unix
 * seconds (rounded down, so decodeMeta(encodeMeta(t)).expiresAt is up to 999 ms earlier than
 * t.expiresAt, never later). Throws TokendError('STORE_UNAVAILABLE') (message names the field)
 * for a token decodeMeta would refuse, so nothing is ever written that cannot be read back.
 */
export function encodeMeta(token: AccessToken): string {
  const doc: Record<string, unknown> = {
    access_token: checkSecret(token.accessToken, 'access_token'),
    token_type: checkTokenType(token.tokenType),
    expires_at: toSeconds(checkMs(token.expiresAt, 'expires_at')),
    obtained_at: toSeconds(checkMs(token.obtainedAt, 'obtained_at')),
  };
  const scope = checkScope(token.scope);
  if (scope !== undefined) doc.scope = scope;
  if (token.grantKey !== undefined) doc.grant_key = checkGrantKey(token.grantKey);
  const text = JSON.stringify(doc);
  checkSize(text);
  return text;
}

/**
 * Decodes and validates a metadata document written by encodeMeta (times become ms since epoch).
 * Throws TokendError('STORE_UNAVAILABLE') with a content-free reason when the text is empty,
 * oversized, not JSON, or any field has the wrong type or range. Unknown fields are ignored.
 */
export function decodeMeta(text: string): AccessToken {
  const doc = parseObject(text);
  const accessToken = checkSecret(doc.access_token, 'access_token');
  const tokenType = checkTokenType(doc.token_type);
  const expiresAt = Math.round(checkUnixSeconds(doc.expires_at, 'expires_at') * 1000);
  const obtainedAt = Math.round(checkUnixSeconds(doc.obtained_at, 'obtained_at') * 1000);
  const scope = checkScope(doc.scope);
  const grantKey = doc.grant_key === undefined ? undefined : checkGrantKey(doc.grant_key);
  return {
    accessToken,
    tokenType,
    expiresAt,
    obtainedAt,
    ...(scope !== undefined ? { scope } : {}),
    ...(grantKey !== undefined ? { grantKey } : {}),
  };
}

function checkGrantKey(v: unknown): string {
  if (typeof v !== 'string' || !/^[0-9a-f]{16,64}$/.test(v)) invalid('grant_key is not a hex fingerprint');
  return v;
}

/**
 * Encodes refresh-token state as `{"version":1,"refresh_token","seed_hash","updated_at"}`
 * (`seed_hash` null when there is none, `updated_at` in whole Unix seconds). Throws
 * TokendError('STORE_UNAVAILABLE') for a value decodeState would refuse.
 */
export function encodeState(state: RefreshState): string {
  const text = JSON.stringify({
    version: STATE_VERSION,
    refresh_token: checkSecret(state.refreshToken, 'refresh_token'),
    seed_hash: checkSeedHash(state.seedHash) ?? null,
    updated_at: toSeconds(checkMs(state.updatedAt, 'updated_at')),
  });
  checkSize(text);
  return text;
}

/**
 * Decodes and validates a state document written by encodeState (`updatedAt` in ms since epoch).
 * Throws TokendError('STORE_UNAVAILABLE') with a content-free reason when it is invalid or of
 * another version.
 */
export function decodeState(text: string): RefreshState {
  const doc = parseObject(text);
  if (doc.version !== STATE_VERSION) invalid(`version is not ${STATE_VERSION}`);
  return {
    refreshToken: checkSecret(doc.refresh_token, 'refresh_token'),
    seedHash: checkSeedHash(doc.seed_hash),
    updatedAt: Math.round(checkUnixSeconds(doc.updated_at, 'updated_at') * 1000),
  };
}

/**
 * A revocation tombstone, kept where the refresh-token state was (`tokend revoke`), so that no
 * process writes back or presents a refresh token of that chain again:
 * `{"version":1,"revoked":true,"seed_hash","updated_at"}` (+ `generation` in Redis).
 */
export function encodeTombstone(seedHash: string | undefined, updatedAtMs: number, generation?: number): string {
  return JSON.stringify({
    version: STATE_VERSION,
    revoked: true,
    seed_hash: seedHash ?? null,
    updated_at: Math.floor(updatedAtMs / 1000),
    ...(generation !== undefined ? { generation } : {}),
  });
}

/** Decodes a tombstone; undefined for any other text (a state document, or garbage for decodeState to report). */
export function decodeTombstone(text: string): { seedHash: string | undefined; generation: number } | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || (doc as { revoked?: unknown }).revoked !== true) return undefined;
  const d = doc as { seed_hash?: unknown; generation?: unknown };
  const seedHash = typeof d.seed_hash === 'string' && /^[0-9a-f]{64}$/.test(d.seed_hash) ? d.seed_hash : undefined;
  const generation = Number.isSafeInteger(d.generation) && (d.generation as number) >= 0 ? (d.generation as number) : 0;
  return { seedHash, generation };
}
