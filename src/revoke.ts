import type { Config, TokenConfig } from './config/types.js';
import { systemClock } from './clock.js';
import { createLogger } from './log.js';
import { createTokenSource } from './oauth/grants.js';
import { chainFor } from './refresh/chain.js';
import { revokeToken as revokeChain } from './refresh/revocation.js';
import { createStore } from './store/create.js';

/**
 * `tokend revoke NAME`: RFC 7009 revocation of the stored refresh token (or the configured seed
 * when nothing is stored yet) and the stored access token, then removal of every stored copy
 * (a running daemon sees the tombstone and stops presenting that chain). Returns a one-line
 * summary without token values.
 */
export async function revokeToken(config: Config, tc: TokenConfig): Promise<string> {
  const logger = createLogger('warn');
  const store = await createStore(config.store, logger);
  await store.init();
  try {
    const done = await revokeChain({
      name: tc.name,
      store,
      source: createTokenSource(tc, { clock: systemClock }),
      chain: chainFor(tc),
      held: undefined,
      clock: systemClock,
      log: logger.child({ token: tc.name }),
      signal: AbortSignal.timeout(tc.timeoutMs * 2),
    });
    return `${tc.name}: ${[...done, `stored copies removed from the ${config.store.type} store`].join(', ')}`;
  } finally {
    await store.close();
  }
}
