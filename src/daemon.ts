import cron from 'node-cron';
import type { DestinationStream } from 'pino';
import type { Config } from './config/types.js';
import { systemClock, type Clock } from './clock.js';
import { AsyncLogDestination, createLogger, droppedLogLines, errorSummary, EVENTS, type Logger } from './log.js';
import { AssertionMetrics } from './oauth/assertion-metrics.js';
import { createTokenSource } from './oauth/grants.js';
import { createIdpRegistry } from './oauth/idp-registry.js';
import { credentialFiles } from './refresh/credentials.js';
import { createTokenListeners, type TokenOutputs } from './output/listeners.js';
import { Refresher } from './refresh/refresher.js';
import { FileWatcher } from './util/file-watch.js';
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
  // stdout by default, written asynchronously: a log reader that stalls must not stall tokend.
  const logDestination = opts.logDestination ?? (opts.logger ? undefined : new AsyncLogDestination());
  const logger = opts.logger ?? createLogger(config.logLevel, logDestination);

  const store = opts.store ?? (await createStore(config.store, logger));
  await store.init();

  const metrics = new Metrics({
    clock,
    perToken: config.metricsPerToken,
    droppedLogLines: () => droppedLogLines(logDestination),
  });
  // One discovery, connection pool and grant limiter per IdP, shared by every token.
  const idp = createIdpRegistry({ concurrency: config.idpConcurrency, clock });
  // Output files and change notifications, checked before anything is obtained (a missing
  // directory is a bad config: exit 2).
  const outputs: TokenOutputs[] = [];
  try {
    for (const tc of config.tokens) {
      outputs.push(await createTokenListeners(tc, { clock, random, logger: logger.child({ token: tc.name }), registry: metrics.registry }));
    }
  } catch (err) {
    await Promise.all(outputs.map((o) => o.close()));
    await store.close().catch(() => undefined);
    throw err;
  }
  // subjectToken: NAME reads another token's handle at grant time (handles exists by then).
  const federation = { tokenLookup: (name: string): TokenHandle | undefined => handles.get(name), credentialExpiry: AssertionMetrics.on(metrics.registry, clock) };
  const refreshers = config.tokens.map(
    (tc, i) =>
      new Refresher({
        config: tc,
        source: createTokenSource(tc, { clock, idp, ...federation }),
        store,
        clock,
        random,
        logger: logger.child({ token: tc.name }),
        observer: metrics,
        listeners: outputs[i]?.listeners,
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
    server = createTokenServer({
      handles,
      metrics,
      clock,
      logger,
      verifier: v ? (bearer, signal) => v.verify(bearer, signal) : undefined,
      allowedHosts: config.allowedHosts,
    });
    url = await server.listen(config.listen);
    logger.info({ event: EVENTS.listening, url }, 'endpoint listening');
    if (config.metricsListen) {
      metricsServer = createMetricsServer({ metrics, handles, logger });
      metricsUrl = await metricsServer.listen(config.metricsListen);
      logger.info({ event: EVENTS.listening, url: metricsUrl, only: ['/healthz', '/readyz', '/metrics'] }, 'metrics and probes listening');
    }
  } catch (err) {
    await server?.close();
    await verifier?.close();
    await Promise.all(outputs.map((o) => o.close()));
    await store.close().catch(() => undefined);
    throw err;
  }

  const started = Promise.all(refreshers.map((r) => r.start())).then(() => undefined);

  // Secret files are watched (inotify, no polling): a rotated Secret or a new seed is noticed at
  // once. Tokens whose files cannot be watched are fully reconciled on every tick instead.
  const files = new FileWatcher();
  const unwatched = new Set<Refresher>();
  refreshers.forEach((r, i) => {
    const tc = config.tokens[i];
    if (tc !== undefined && files.watch(credentialFiles(tc), () => r.reconcile()).length > 0) unwatched.add(r);
  });

  // A periodic check: timers run on the monotonic clock, which stands still while a VM is
  // suspended; this catches every token that is due regardless. It costs no I/O while nothing is.
  const reconcileTask = cron.schedule(
    config.reconcileCron,
    () => {
      for (const r of refreshers) {
        if (unwatched.has(r)) r.reconcile();
        else r.tick();
      }
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
      files.close();
      await Promise.all(refreshers.map((r, i) => stopRefresher(r, config.tokens[i]?.revokeOnShutdown === true, logger)));
      await Promise.all(outputs.map((o) => o.close()));
      await server?.close();
      await metricsServer?.close();
      await verifier?.close();
      await idp.close();
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
