import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { errnoCode, TokendError } from '../errors.js';

/** Prefix of a refresh token encrypted at rest; the version lets the format change later. */
export const ENCRYPTED_PREFIX = 'enc:v1:';

/** AES-256 key length, in bytes. */
export const KEY_BYTES = 32;

// NIST SP 800-38D: a 96-bit IV is the recommended (and fastest) size for GCM. Random IVs are safe
// here: a token is re-encrypted once per refresh, far below the 2^32 messages per key limit.
const IV_BYTES = 12;
const TAG_BYTES = 16;

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new TokendError('CONFIG_INVALID', `store.encryptionKeyFile: the key must be ${KEY_BYTES} bytes`);
  }
}

/** True when a stored refresh token is in the encrypted format (it may still fail to decrypt). */
export function isEncrypted(stored: string): boolean {
  return stored.startsWith(ENCRYPTED_PREFIX);
}

/**
 * Encrypts a refresh token with AES-256-GCM for storage: `enc:v1:` + base64(iv | tag | ciphertext),
 * with a random 12-byte IV. `aad` (the token name) is authenticated, so a ciphertext copied to
 * another token's key does not decrypt there.
 */
export function encryptRefreshToken(plain: string, key: Buffer, aad: string): string {
  checkKey(key);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return ENCRYPTED_PREFIX + Buffer.concat([iv, tag, ciphertext]).toString('base64');
}

/**
 * Decrypts what encryptRefreshToken produced for the same `aad`. Throws
 * TokendError('STORE_UNAVAILABLE') when the value is malformed, was encrypted with another key or
 * for another name, or was altered: the message says which token, never any content.
 */
export function decryptRefreshToken(stored: string, key: Buffer, aad: string): string {
  checkKey(key);
  const fail = (why: string): never => {
    throw new TokendError('STORE_UNAVAILABLE', `encrypted refresh token of "${aad}" ${why}`);
  };
  if (!isEncrypted(stored)) fail('is not in the enc:v1 format');
  const b64 = stored.slice(ENCRYPTED_PREFIX.length);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) fail('is not valid base64');
  const raw = Buffer.from(b64, 'base64');
  if (raw.length <= IV_BYTES + TAG_BYTES) fail('is too short');
  const iv = raw.subarray(0, IV_BYTES);
  const tag = raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES);
  const ciphertext = raw.subarray(IV_BYTES + TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
  } catch {
    return fail('cannot be decrypted with the configured key (wrong key, other token, or altered)');
  }
}

/**
 * Reads the refresh-token encryption key from a file: exactly 32 raw bytes, or 64 hex digits, or
 * base64 of 32 bytes (surrounding whitespace ignored for the text forms). Anything else, or an
 * unreadable file, is TokendError('CONFIG_INVALID') naming the path, never the content.
 */
export async function loadEncryptionKey(path: string): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    const code = errnoCode(err);
    throw new TokendError('CONFIG_INVALID', `store.encryptionKeyFile: cannot read ${path} (${code})`);
  }
  const key = parseEncryptionKey(data);
  if (!key) {
    throw new TokendError(
      'CONFIG_INVALID',
      `store.encryptionKeyFile: ${path} must hold ${KEY_BYTES} raw bytes, 64 hex digits or base64 of ${KEY_BYTES} bytes`,
    );
  }
  return key;
}

/** Parses key material (raw, hex or base64 of 32 bytes); undefined when it is none of these. */
export function parseEncryptionKey(data: Buffer): Buffer | undefined {
  // Checked first: 32 raw bytes can never be valid 64-digit hex or 44-character base64.
  if (data.length === KEY_BYTES) return Buffer.from(data);
  const text = data.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  // base64 (standard or URL-safe, padding optional) of 32 bytes is 43 characters plus one '='.
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length === KEY_BYTES) return key;
  }
  return undefined;
}
