import cron from 'node-cron';
import type { DestinationStream } from 'pino';
import type { Config } from './config/types.js';
import { systemClock, type Clock } from './clock.js';
import { createLogger, EVENTS, type Logger } from './log.js';
import { createTokenSource } from './oauth/grants.js';
import { Refresher } from './refresh/refresher.js';
import type { TokenHandle } from './refresh/handle.js';
import { createStore } from './store/create.js';
import { createTokenServer, type TokenServer } from './server/http.js';
import { Metrics } from './server/metrics.js';
import { createMetricsServer, type MetricsServer } from './server/metrics-server.js';
import { createVerifier, type Verifier } from './verify/verifier.js';

/** What the composition root may be given instead of the real thing (tests inject these). */
export interface DaemonDeps {
  readonly clock?: Clock;
  readonly random?: () => number;
  /** Where log lines go (default stdout). */
  readonly logDestination?: DestinationStream;
  readonly logger?: Logger;
}

/** A running tokend. */
export interface Daemon {
  /** `http://host:port` or the unix socket path the endpoint listens on. */
  readonly url: string;
  readonly handles: ReadonlyMap<string, TokenHandle>;
  /** Where each egress proxy listens, by proxy name (empty without `proxies`). */
  readonly proxyUrls: ReadonlyMap<string, string>;
  readonly logger: Logger;
  /** Stops timers, lets in-flight writes finish, revokes where configured, closes everything. */
  stop(): Promise<void>;
}

/**
 * Composition root: config → store → token sources → refreshers → server.
 * The endpoint listens before the first grants so /healthz answers at once and /readyz says
 * which tokens are still missing.
 */
export async function startDaemon(config: Config, deps: DaemonDeps = {}): Promise<Daemon> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const logger = deps.logger ?? createLogger(config.logLevel, deps.logDestination);

  const store = await createStore(config.store, logger);
  await store.init();

  const metrics = new Metrics({ clock });
  const refreshers: Refresher[] = [];
  const handles = new Map<string, TokenHandle>();
  for (const tc of config.tokens) {
    const refresher = new Refresher({
      config: tc,
      source: createTokenSource(tc, { clock }),
      store,
      clock,
      random,
      logger: logger.child({ token: tc.name }),
      observer: metrics,
    });
    refreshers.push(refresher);
    handles.set(tc.name, refresher);
  }
  metrics.track(handles);

  let verifier: Verifier | undefined;
  if (config.verify) verifier = createVerifier(config.verify, { clock, logger: logger.child({ component: 'verify' }) });

  const server: TokenServer = createTokenServer({
    handles,
    metrics,
    clock,
    logger,
    verifier: verifier ? (bearer, signal) => verifier.verify(bearer, signal) : undefined,
  });
  let url: string;
  try {
    url = await server.listen(config.listen);
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  logger.info({ event: EVENTS.listening, url }, 'endpoint listening');
  let metricsServer: MetricsServer | undefined;
  if (config.metricsListen) {
    metricsServer = createMetricsServer(metrics);
    try {
      const metricsUrl = await metricsServer.listen(config.metricsListen);
      logger.info({ event: EVENTS.listening, url: metricsUrl, only: '/metrics' }, 'metrics listening');
    } catch (err) {
      await server.close();
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  // Egress proxies answer 503 until their token arrives, so they may listen before the first grant.
  let proxies: { urls: ReadonlyMap<string, string>; close(): Promise<void> } | undefined;
  if (config.proxies !== undefined && config.proxies.length > 0) {
    const { startProxies } = await import('./proxy/index.js');
    try {
      proxies = await startProxies(config.proxies, handles, { clock, logger, registry: metrics.registry });
    } catch (err) {
      await metricsServer?.close();
      await server.close();
      await store.close().catch(() => undefined);
      throw err;
    }
  }

  await Promise.all(refreshers.map((r) => r.start()));

  // A periodic wall-clock check: setTimeout-based timers drift or stall when the VM is suspended
  // or the wall clock jumps; this catches every token that is due regardless.
  const reconcileTask = cron.schedule(
    config.reconcileCron,
    () => {
      for (const r of refreshers) r.reconcile();
    },
    { name: 'tokend-reconcile', noOverlap: true, logger: cronLogger(logger) },
  );

  logger.info({ event: EVENTS.daemonStarted, tokens: config.tokens.map((t) => t.name), store: store.kind }, 'tokend started');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ event: EVENTS.daemonStopping }, 'stopping');
      // Proxies first: requests in flight finish with a token before the refreshers stop.
      await proxies?.close();
      await reconcileTask.stop();
      await reconcileTask.destroy?.();
      await Promise.all(
        refreshers.map(async (r, i) => {
          const tc = config.tokens[i];
          if (tc?.revokeOnShutdown) {
            try {
              await r.revoke();
            } catch (err) {
              logger.child({ token: tc.name }).warn({ event: EVENTS.revoked, err }, 'revocation on shutdown failed');
            }
          }
          await r.stop();
        }),
      );
      await server.close();
      await metricsServer?.close();
      await verifier?.close();
      await store.close();
      logger.info({ event: EVENTS.daemonStopped }, 'stopped');
      logger.flush?.();
    })();
    return stopping;
  };

  return { url, handles, proxyUrls: proxies?.urls ?? new Map(), logger, stop };
}

// node-cron prints its own warnings to the console; route them into the JSON log instead.
function cronLogger(logger: Logger) {
  const l = logger.child({ component: 'cron' });
  return {
    info: (m: string) => l.debug(m),
    warn: (m: string) => l.debug(m),
    error: (m: string | Error) => l.warn({ err: m }, "cron error"),
    debug: (m: string | Error) => l.trace(String(m)),
  };
}
