/**
 * The private key that signs private_key_jwt client assertions (RFC 7523), loaded from a file that
 * may be replaced at any time (a rotated Kubernetes Secret): the file is re-read whenever its
 * mtime, size or content changes, and imported once per content.
 */
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { importJWK, importPKCS8, type JWK } from 'jose';
import { errnoCode, TokendError } from '../errors.js';
import { ASYMMETRIC_JWS_ALGORITHMS } from '../jws.js';
import { transientReadError } from '../config/secrets.js';

/** A loaded signing key: what openid-client's PrivateKeyJwt takes, plus the JWS alg. */
export interface ClientSigningKey {
  readonly key: CryptoKey;
  /** JWS alg, e.g. 'RS256', 'ES256', 'EdDSA'. */
  readonly alg: string;
  readonly kid?: string | undefined;
  /** SHA-256 (hex) of the file content, to notice a rotated key. */
  readonly fingerprint: string;
}

/** Options of createClientKeyLoader. */
export interface ClientKeyOptions {
  /** Token name, for error messages. */
  readonly tokenName: string;
  /** PEM (PKCS#8, or PKCS#1 / SEC1, which are converted) or JWK (or a JWKS holding one private key). */
  readonly path: string;
  /** kid header; default: the JWK's kid. */
  readonly kid?: string | undefined;
  /** JWS alg; default: inferred from the key (RSA: RS256, RSA-PSS: PS256, EC P-256/384/521: ES256/384/512, Ed25519: EdDSA). */
  readonly alg?: string | undefined;
}

/** Loads the key on demand; call on every grant, it only touches the disk for a stat when nothing changed. */
export type ClientKeyLoader = () => Promise<ClientSigningKey>;

const SUPPORTED_ALGS: ReadonlySet<string> = new Set(ASYMMETRIC_JWS_ALGORITHMS);

/**
 * Creates a loader that re-reads the key file when it changes. Errors are CONFIG_INVALID naming the
 * file, never its content; GRANT_TRANSIENT when a local resource ran out (EMFILE, ENOMEM, EIO...).
 */
export function createClientKeyLoader(opts: ClientKeyOptions): ClientKeyLoader {
  const field = `tokens.${opts.tokenName}.privateKeyFile`;
  const fail = (why: string, cause?: unknown): TokendError =>
    new TokendError('CONFIG_INVALID', `${field}: ${why} (${opts.path})`, cause === undefined ? {} : { cause });
  let cached: { stamp: string; value: ClientSigningKey } | undefined;

  return async () => {
    let stamp: string;
    try {
      const st = await stat(opts.path);
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (err) {
      throw transientReadError(err, field, opts.path) ?? fail(`cannot read the key file: ${errnoCode(err)}`, err);
    }
    if (cached && cached.stamp === stamp) return cached.value;

    let text: string;
    try {
      text = await readFile(opts.path, 'utf8');
    } catch (err) {
      throw transientReadError(err, field, opts.path) ?? fail(`cannot read the key file: ${errnoCode(err)}`, err);
    }
    const fingerprint = createHash('sha256').update(text).digest('hex');
    if (cached && cached.value.fingerprint === fingerprint) {
      cached = { stamp, value: cached.value };
      return cached.value;
    }
    const value = await importClientKey(text, opts, fingerprint, fail);
    cached = { stamp, value };
    return value;
  };
}

/** Parses and imports key material (PEM or JWK text). Exported for tests. */
export async function importClientKey(
  text: string,
  opts: Pick<ClientKeyOptions, 'kid' | 'alg'>,
  fingerprint: string,
  fail: (why: string, cause?: unknown) => TokendError,
): Promise<ClientSigningKey> {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) return importJwkText(trimmed, opts, fingerprint, fail);
  if (!trimmed.includes('-----BEGIN')) throw fail('not a PEM private key or a JWK');

  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: trimmed, format: 'pem' });
  } catch (err) {
    throw fail('not a readable unencrypted PEM private key', err);
  }
  const alg = opts.alg ?? inferAlg(keyObject);
  if (!alg || !SUPPORTED_ALGS.has(alg)) throw fail(`cannot sign with this key type (${keyObject.asymmetricKeyType ?? 'unknown'}); set privateKeyAlg`);
  const pkcs8 = keyObject.export({ format: 'pem', type: 'pkcs8' }).toString();
  try {
    const key = await importPKCS8(pkcs8, alg);
    return { key, alg, kid: opts.kid, fingerprint };
  } catch (err) {
    throw fail(`the key does not fit alg ${alg}`, err);
  }
}

async function importJwkText(
  text: string,
  opts: Pick<ClientKeyOptions, 'kid' | 'alg'>,
  fingerprint: string,
  fail: (why: string, cause?: unknown) => TokendError,
): Promise<ClientSigningKey> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's message quotes the content, which is a private key: not passed on.
    throw fail('not valid JSON');
  }
  let jwk = parsed as JWK & { keys?: JWK[] };
  if (Array.isArray(jwk.keys)) {
    const candidates = jwk.keys.filter((k) => typeof k === 'object' && k !== null && 'd' in k);
    const chosen = opts.kid ? candidates.find((k) => k.kid === opts.kid) : candidates.length === 1 ? candidates[0] : undefined;
    if (!chosen) throw fail(opts.kid ? `the JWKS has no private key with kid ${opts.kid}` : 'the JWKS must hold exactly one private key (or set privateKeyId)');
    jwk = chosen;
  }
  if (typeof jwk.kty !== 'string') throw fail('the JWK has no kty');
  if (typeof jwk.d !== 'string') throw fail('the JWK is a public key; a private key is needed');
  const alg = opts.alg ?? (typeof jwk.alg === 'string' ? jwk.alg : inferJwkAlg(jwk));
  if (!alg || !SUPPORTED_ALGS.has(alg)) throw fail(`cannot sign with this key type (${jwk.kty}); set privateKeyAlg`);
  try {
    const key = await importJWK({ ...jwk, alg }, alg);
    if (key instanceof Uint8Array) throw new Error('symmetric key');
    return { key, alg, kid: opts.kid ?? (typeof jwk.kid === 'string' ? jwk.kid : undefined), fingerprint };
  } catch (err) {
    throw fail(`the key does not fit alg ${alg}`, err);
  }
}

/** The conventional JWS alg for a private key (RSA: RS256, EC by curve, Ed25519: EdDSA). */
export function inferAlg(key: KeyObject): string | undefined {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ec':
      return curveAlg(key.asymmetricKeyDetails?.namedCurve);
    case 'ed25519':
      return 'EdDSA';
    default:
      return undefined;
  }
}

function inferJwkAlg(jwk: JWK): string | undefined {
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC') return curveAlg(jwk.crv);
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  return undefined;
}

function curveAlg(curve: string | undefined): string | undefined {
  switch (curve) {
    case 'P-256':
    case 'prime256v1':
      return 'ES256';
    case 'P-384':
    case 'secp384r1':
      return 'ES384';
    case 'P-521':
    case 'secp521r1':
      return 'ES512';
    default:
      return undefined;
  }
}
