import cron from 'node-cron';
import type { DestinationStream } from 'pino';
import type { Config } from './config/types.js';
import { systemClock, type Clock } from './clock.js';
import { createLogger, errorSummary, EVENTS, type Logger } from './log.js';
import { createTokenSource } from './oauth/grants.js';
import { Refresher } from './refresh/refresher.js';
import type { TokenHandle } from './refresh/handle.js';
import { createStore } from './store/create.js';
import type { TokenStore } from './store/store.js';
import { createTokenServer, type TokenServer } from './server/http.js';
import { Metrics } from './server/metrics.js';
import { createMetricsServer, type MetricsServer } from './server/metrics-server.js';
import type { Verifier } from './verify/types.js';

/** What the composition root may be given instead of the real thing (tests inject these). */
export interface DaemonOptions {
  readonly clock?: Clock | undefined;
  /** Uniform random in [0, 1) (backoff). Default Math.random. */
  readonly random?: (() => number) | undefined;
  /** Where log lines go (default stdout). */
  readonly logDestination?: DestinationStream | undefined;
  readonly logger?: Logger | undefined;
  /** A store to use instead of the configured one (tests). */
  readonly store?: TokenStore | undefined;
}

/** A running tokend. */
export interface Daemon {
  /** `http://host:port` or `unix:/path` the endpoint listens on. */
  readonly url: string;
  /** The metrics listener's URL, when one is configured. */
  readonly metricsUrl: string | undefined;
  readonly handles: ReadonlyMap<string, TokenHandle>;
  readonly logger: Logger;
  /** Resolves once every token's first attempt has finished (successfully or not). */
  readonly started: Promise<void>;
  /** Re-reads secret files and seeds now (SIGHUP), instead of at the next reconcile tick. */
  reload(): void;
  /** Stops timers, lets in-flight writes finish, revokes where configured, closes everything. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Composition root: config → store → token sources → refreshers → server. Resolves as soon as the
 * endpoint listens (so /healthz answers and a SIGTERM can stop it at once); the first grants run
 * on (see `started`), and /readyz says which tokens are still missing.
 */
export async function startDaemon(config: Config, opts: DaemonOptions = {}): Promise<Daemon> {
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? Math.random;
  const logger = opts.logger ?? createLogger(config.logLevel, opts.logDestination);

  const store = opts.store ?? (await createStore(config.store, logger));
  await store.init();

  const metrics = new Metrics({ clock });
  const refreshers = config.tokens.map(
    (tc) =>
      new Refresher({
        config: tc,
        source: createTokenSource(tc, { clock }),
        store,
        clock,
        random,
        logger: logger.child({ token: tc.name }),
        observer: metrics,
      }),
  );
  const handles = new Map<string, TokenHandle>(refreshers.map((r) => [r.name, r]));
  metrics.track(handles);

  let verifier: Verifier | undefined;
  let server: TokenServer | undefined;
  let metricsServer: MetricsServer | undefined;
  let url: string;
  let metricsUrl: string | undefined;
  try {
    if (config.verify) {
      // jose and the verifier are loaded only when a verify section asks for them.
      const { createVerifier } = await import('./verify/verifier.js');
      verifier = createVerifier(config.verify, { clock, logger: logger.child({ component: 'verify' }) });
    }
    const v = verifier;
    server = createTokenServer({ handles, metrics, clock, logger, verifier: v ? (bearer, signal) => v.verify(bearer, signal) : undefined });
    url = await server.listen(config.listen);
    logger.info({ event: EVENTS.listening, url }, 'endpoint listening');
    if (config.metricsListen) {
      metricsServer = createMetricsServer(metrics);
      metricsUrl = await metricsServer.listen(config.metricsListen);
      logger.info({ event: EVENTS.listening, url: metricsUrl, only: '/metrics' }, 'metrics listening');
    }
  } catch (err) {
    await server?.close();
    await verifier?.close();
    await store.close().catch(() => undefined);
    throw err;
  }

  const started = Promise.all(refreshers.map((r) => r.start())).then(() => undefined);

  // A periodic wall-clock check: timers run on the monotonic clock, which stands still while a VM
  // is suspended; this catches every token that is due regardless.
  const reconcileTask = cron.schedule(
    config.reconcileCron,
    () => {
      for (const r of refreshers) r.reconcile();
    },
    { name: 'tokend-reconcile', noOverlap: true, logger: cronLogger(logger) },
  );

  logger.info({ event: EVENTS.daemonStarted, tokens: config.tokens.map((t) => t.name), store: config.store.type }, 'tokend started');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ event: EVENTS.daemonStopping }, 'stopping');
      await reconcileTask.stop();
      await reconcileTask.destroy?.();
      await Promise.all(refreshers.map((r, i) => stopRefresher(r, config.tokens[i]?.revokeOnShutdown === true, logger)));
      await server?.close();
      await metricsServer?.close();
      await verifier?.close();
      await store.close();
      logger.info({ event: EVENTS.daemonStopped }, 'stopped');
      logger.flush?.();
    })();
    return stopping;
  };

  const reload = (): void => {
    logger.info({ event: EVENTS.daemonReload }, 're-reading secret files');
    for (const r of refreshers) r.reconcile();
  };

  return { url, metricsUrl, handles, logger, started, reload, stop };
}

async function stopRefresher(r: Refresher, revokeFirst: boolean, logger: Logger): Promise<void> {
  if (revokeFirst) {
    try {
      await r.revoke();
    } catch (err) {
      logger.child({ token: r.name }).warn({ event: EVENTS.revoked, error: errorSummary(err) }, 'revocation on shutdown failed');
    }
  }
  await r.stop();
}

// node-cron prints its own warnings to the console; route them into the JSON log instead.
function cronLogger(logger: Logger) {
  const l = logger.child({ component: 'cron' });
  return {
    info: (m: string) => l.debug(m),
    warn: (m: string) => l.debug(m),
    error: (m: string | Error) => l.warn({ error: errorSummary(m) }, 'cron error'),
    debug: (m: string | Error) => l.trace(String(m)),
  };
}
