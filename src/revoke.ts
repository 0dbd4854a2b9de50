import type { Config, TokenConfig } from './config/types.js';
import { systemClock } from './clock.js';
import { createLogger } from './log.js';
import { createStore } from './store/create.js';
import { createTokenSource } from './oauth/grants.js';

/**
 * `tokend revoke NAME`: RFC 7009 revocation of the stored refresh token (or the configured seed
 * when nothing is stored yet) and the stored access token, then removal of every stored copy.
 * Returns a one-line summary without token values.
 */
export async function revokeToken(config: Config, tc: TokenConfig): Promise<string> {
  const logger = createLogger('warn');
  const store = await createStore(config.store, logger);
  await store.init();
  try {
    const source = createTokenSource(tc, { clock: systemClock });
    const state = await store.load(tc.name);
    const refreshToken = state.refreshToken ?? (tc.grant === 'refresh_token' ? await source.readSeed() : undefined);
    const done: string[] = [];
    const signal = AbortSignal.timeout(tc.timeoutMs * 2);
    if (refreshToken) {
      await source.revoke(refreshToken, 'refresh_token', signal);
      done.push('refresh token revoked');
    }
    if (state.access && state.access.expiresAt > systemClock.now()) {
      await source.revoke(state.access.accessToken, 'access_token', signal);
      done.push('access token revoked');
    }
    await store.remove(tc.name);
    done.push(`stored copies removed from the ${store.kind} store`);
    return `${tc.name}: ${done.join(', ')}`;
  } finally {
    await store.close();
  }
}
