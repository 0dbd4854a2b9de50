/**
 * The light entry point to token verification: importing this module loads nothing of the
 * verifier (only types), so a process without a `verify:` section never loads it, jose's key
 * handling or keyv. The daemon and `tokend verify` call loadVerifier only when config.verify is set.
 */
import type { VerifyConfig } from '../config/types.js';
import type { VerifierDeps } from './context.js';
import type { Verifier } from './types.js';

export type { VerifierDeps } from './context.js';

/**
 * Loads the verifier module and builds a verifier for cfg (see createVerifier in verifier.ts).
 * keyv, for the introspection cache, is loaded later still: when the first token is introspected.
 * Rejects with ConfigError for a configuration the verifier refuses.
 */
export async function loadVerifier(cfg: VerifyConfig, deps: VerifierDeps): Promise<Verifier> {
  const { createVerifier } = await import('./verifier.js');
  return createVerifier(cfg, deps);
}
