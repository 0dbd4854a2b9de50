import { systemClock } from './clock.js';
import type { Config, TokenConfig } from './config/types.js';
import { hasCode, TokendError } from './errors.js';
import { createLogger } from './log.js';
import { createTokenSource } from './oauth/grants.js';
import { createIdpRegistry, type IdpRegistry } from './oauth/idp-registry.js';
import { createStore } from './store/create.js';

/** One line of `tokend check`'s report. */
export interface CheckLine {
  readonly ok: boolean;
  readonly text: string;
}

/**
 * `tokend check`: discovery (or the static endpoint) for every token; with `online`, also
 * connects to the store and performs one grant per token whose grant consumes nothing
 * (client_credentials, jwt_bearer, token exchange of a file; the token is discarded, never
 * printed). Never presents a refresh token: that would rotate it. A config error (CONFIG_INVALID)
 * is thrown; everything else is a failed line.
 */
export async function checkConfigOnline(config: Config, online: boolean): Promise<CheckLine[]> {
  const lines: CheckLine[] = [];
  if (online) lines.push(await checkStore(config));
  const idp = createIdpRegistry({ concurrency: config.idpConcurrency });
  try {
    for (const tc of config.tokens) lines.push(await checkToken(tc, online, idp));
  } finally {
    await idp.close();
  }
  return lines;
}

async function checkStore(config: Config): Promise<CheckLine> {
  const logger = createLogger('silent');
  try {
    const store = await createStore(config.store, logger);
    try {
      await store.init();
    } finally {
      await store.close().catch(() => undefined);
    }
    return { ok: true, text: `store ${config.store.type}: reachable and writable` };
  } catch (err) {
    if (hasCode(err, 'CONFIG_INVALID')) throw err;
    return { ok: false, text: `store ${config.store.type}: ${messageOf(err)}` };
  }
}

async function checkToken(tc: TokenConfig, online: boolean, idp: IdpRegistry): Promise<CheckLine> {
  const source = createTokenSource(tc, { clock: systemClock, idp });
  try {
    const ep = await source.discover(AbortSignal.timeout(tc.timeoutMs));
    const where = `${tc.grant} as ${tc.clientId ?? 'an anonymous client'} → token endpoint ${ep.tokenEndpoint}`;
    if (!online) return { ok: true, text: `${tc.name}: ${where}` };
    if (tc.grant === 'refresh_token') {
      // Presenting the refresh token would rotate it; reading the seed proves only that it is there.
      await source.readSeed();
      return { ok: true, text: `${tc.name}: ${where}; refresh token not presented (it would rotate)` };
    }
    if (tc.subjectToken !== undefined) {
      // Its subject is another of tokend's tokens, which only a running daemon holds.
      return { ok: true, text: `${tc.name}: ${where}; not exchanged (its subject is token ${tc.subjectToken}, held by a running daemon)` };
    }
    const result = await source.obtain(undefined, AbortSignal.timeout(tc.timeoutMs));
    const seconds = Math.round((result.token.expiresAt - result.token.obtainedAt) / 1000);
    return { ok: true, text: `${tc.name}: ${where}; grant ok (a ${seconds} s ${result.token.tokenType} token)` };
  } catch (err) {
    if (hasCode(err, 'CONFIG_INVALID')) throw err;
    // tokend's own messages name the token and what was tried (URL, host, status).
    return { ok: false, text: err instanceof TokendError ? messageOf(err) : `token "${tc.name}": ${messageOf(err)}` };
  }
}

function messageOf(err: unknown): string {
  if (err instanceof TokendError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.name : String(err);
}
