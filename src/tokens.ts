import type { Clock } from './clock.js';
import type { Config } from './config/types.js';
import type { Logger } from './log.js';
import { createTokenSource } from './oauth/grants.js';
import { AssertionMetrics } from './oauth/assertion-metrics.js';
import { createIdpRegistry, type IdpRegistry } from './oauth/idp-registry.js';
import { createTokenListeners, type TokenOutputs } from './output/listeners.js';
import type { RefreshObserver, TokenHandle } from './refresh/handle.js';
import { Refresher } from './refresh/refresher.js';
import { createStore } from './store/create.js';
import type { TokenStore } from './store/store.js';
import type { Registry } from './util/prom.js';

/** Everything that keeps the configured tokens: the store, one refresher per token, their outputs. */
export interface TokenSet {
  readonly store: TokenStore;
  readonly refreshers: readonly Refresher[];
  readonly handles: ReadonlyMap<string, TokenHandle>;
  /** Stops the refreshers (revoking first where configured), then closes outputs, IdP pools and the store. */
  close(revoke?: (r: Refresher) => Promise<void>): Promise<void>;
}

/** What buildTokens needs. */
export interface TokenSetDeps {
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  /** Where the outputs' and notifications' counters go. */
  readonly registry: Registry;
  readonly observer?: RefreshObserver | undefined;
  /** A store to use instead of the configured one (tests). */
  readonly store?: TokenStore | undefined;
}

/**
 * Builds the store (checked: writable, reachable), one IdP registry shared by every token (one
 * discovery, connection pool and grant limiter per IdP), the outputs of every token (checked: a
 * missing directory is a bad config) and one refresher per token. Nothing is obtained yet.
 */
export async function buildTokens(config: Config, d: TokenSetDeps): Promise<TokenSet> {
  const store = d.store ?? (await createStore(config.store, d.logger));
  await store.init();
  const idp: IdpRegistry = createIdpRegistry({ concurrency: config.idpConcurrency, clock: d.clock });
  const outputs: TokenOutputs[] = [];
  try {
    for (const tc of config.tokens) {
      outputs.push(await createTokenListeners(tc, { clock: d.clock, random: d.random, logger: d.logger.child({ token: tc.name }), registry: d.registry }));
    }
  } catch (err) {
    await Promise.all(outputs.map((o) => o.close()));
    await idp.close();
    await store.close().catch(() => undefined);
    throw err;
  }
  // subjectToken: NAME reads another token's handle at grant time (every handle exists by then);
  // the federated files' remaining life is a gauge.
  const byName = new Map<string, TokenHandle>();
  const federation = { tokenLookup: (name: string): TokenHandle | undefined => byName.get(name), credentialExpiry: AssertionMetrics.on(d.registry, d.clock) };
  const refreshers = config.tokens.map(
    (tc, i) =>
      new Refresher({
        config: tc,
        source: createTokenSource(tc, { clock: d.clock, idp, ...federation }),
        store,
        clock: d.clock,
        random: d.random,
        logger: d.logger.child({ token: tc.name }),
        observer: d.observer,
        listeners: outputs[i]?.listeners,
      }),
  );
  for (const r of refreshers) byName.set(r.name, r);
  return {
    store,
    refreshers,
    handles: byName,
    async close(revoke) {
      await Promise.all(
        refreshers.map(async (r) => {
          await revoke?.(r);
          await r.stop();
        }),
      );
      await Promise.all(outputs.map((o) => o.close()));
      await idp.close();
      await store.close();
    },
  };
}
