import type { TokenConfig } from '../../src/config/types.js';

/** The refresher tests' token `orders`: client_credentials at a static endpoint, refreshAt 0.75. */
export function tokenConfig(over: Partial<TokenConfig> = {}): TokenConfig {
  return {
    name: 'orders',
    tokenEndpoint: 'https://idp.test/token',
    clientId: 'orders-client',
    grant: 'client_credentials',
    refreshAt: 0.75,
    clientAuth: 'client_secret_basic',
    revokeOnShutdown: false,
    defaultLifetimeMs: 300_000,
    timeoutMs: 10_000,
    allowInsecureHttp: false,
    ...over,
  };
}
