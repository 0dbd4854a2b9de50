import type { TokenConfig } from '../config/types.js';
import { hasCode } from '../errors.js';
import type { TokenSource } from '../oauth/source.js';
import { sha256Hex } from '../util/hash.js';

/** What one attempt reads from the secret files when it starts. */
export interface Credentials {
  /** The refresh-token seed's value, when one is configured and could be read. */
  readonly seed: string | undefined;
  /** SHA-256 of the seed (or the last known one when the file could not be read now). */
  readonly seedHash: string | undefined;
  /** Why the seed could not be read, if it could not. */
  readonly seedError: unknown;
  /**
   * Changes whenever the seed or (if the source can tell) the client credentials change: after a
   * permanent failure, a new fingerprint means "try again" (a rotated Kubernetes Secret).
   */
  readonly fingerprint: string;
}

/**
 * The files a token's credentials come from (client secret, refresh-token seed, private key,
 * client assertion, JWT bearer assertion, token exchange subject and actor tokens): a change to any
 * of them is worth a reconcile (a rotated Kubernetes Secret, a new seed, kubelet's rotation of a
 * projected service-account token).
 */
export function credentialFiles(tc: TokenConfig): string[] {
  const files: string[] = [];
  for (const src of [tc.clientSecret, tc.refreshToken]) if (src?.kind === 'file') files.push(src.path);
  for (const path of [tc.privateKeyFile, tc.clientAssertionFile, tc.assertionFile, tc.subjectTokenFile, tc.actorTokenFile]) {
    if (path !== undefined) files.push(path);
  }
  return files;
}

/**
 * Reads the seed (when the chain presents refresh tokens) and the credential fingerprint, fresh.
 * Never rejects: an unreadable file is reported in seedError and shows in the fingerprint.
 */
export async function readCredentials(source: TokenSource, presents: boolean, lastSeedHash: string | undefined): Promise<Credentials> {
  let seed: string | undefined;
  let seedHash = lastSeedHash;
  let seedError: unknown;
  let seedPart = 'none';
  if (presents) {
    try {
      seed = await source.readSeed();
      seedHash = seed === undefined ? undefined : sha256Hex(seed);
      seedPart = seedHash ?? 'none';
    } catch (err) {
      seedError = err;
      seedPart = `unreadable:${hasCode(err) ? err.code : 'error'}`;
    }
  }
  let credPart = '';
  if (source.credentialFingerprint) {
    try {
      credPart = await source.credentialFingerprint();
    } catch (err) {
      credPart = `unreadable:${hasCode(err) ? err.code : 'error'}`;
    }
  }
  return { seed, seedHash, seedError, fingerprint: `${seedPart}|${credPart}` };
}
