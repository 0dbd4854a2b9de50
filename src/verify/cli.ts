import { pino } from 'pino';
import { systemClock } from '../clock.js';
import type { Config } from '../config/types.js';
import { ConfigError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { loadVerifier, type VerifierDeps } from './load.js';

/**
 * `tokend verify`: verifies tokenText (surrounding whitespace and a leading `Bearer ` are
 * ignored) against `config.verify` and prints the verdict as one JSON line through out:
 * `{"active":true,"issuer","claims"}` or `{"active":false,"reason"}`. Returns the exit code:
 * 0 valid, 1 invalid. Throws ConfigError when no `verify:` section is configured and
 * TokendError GRANT_TRANSIENT when the issuer cannot be reached (no verdict: the caller maps it).
 * Logs go to stderr so stdout holds only the verdict. deps is for tests.
 */
export async function runVerifyCommand(
  config: Config,
  tokenText: string,
  out: (s: string) => void,
  deps: Partial<VerifierDeps> & { logger?: Logger } = {},
): Promise<number> {
  if (!config.verify || config.verify.issuers.length === 0) {
    throw new ConfigError(['verify: no trusted issuers configured (verify.issuers)']);
  }
  const logger = deps.logger ?? createLogger(config.logLevel, pino.destination({ dest: 2, sync: true }));
  const verifier = await loadVerifier(config.verify, { ...deps, clock: deps.clock ?? systemClock, logger });
  try {
    const outcome = await verifier.verify(tokenText.trim().replace(/^bearer\s+/i, ''));
    out(JSON.stringify(outcome));
    return outcome.active ? 0 : 1;
  } finally {
    await verifier.close();
  }
}
