import type { DestinationStream } from 'pino';
import type { Config } from './config/types.js';
import { systemClock, type Clock } from './clock.js';
import { AsyncLogDestination, createLogger, droppedLogLines, errorSummary, EVENTS, type Logger } from './log.js';
import { credentialFiles } from './refresh/credentials.js';
import type { Refresher } from './refresh/refresher.js';
import { buildTokens } from './tokens.js';
import { FileWatcher } from './util/file-watch.js';
import type { TokenHandle } from './refresh/handle.js';
import type { TokenStore } from './store/store.js';
import { createTokenServer, type TokenServer } from './server/http.js';
import { Metrics } from './server/metrics.js';
import { createMetricsServer, type MetricsServer } from './server/metrics-server.js';
import type { Verifier } from './verify/types.js';
import { parseReconcileCron, scheduleReconcile } from './reconcile-cron.js';

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
  /** Where each egress proxy listens, by proxy name (empty without `proxies`). */
  readonly proxyUrls: ReadonlyMap<string, string>;
  readonly logger: Logger;
  /** Resolves once every token's first attempt has finished (successfully or not). */
  readonly started: Promise<void>;
  /** Re-reads secret files and seeds now (SIGHUP), instead of at the next reconcile tick. */
  reload(): void;
  /** Stops timers, lets in-flight writes finish, revokes where configured, closes everything. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Composition root: config → store → token sources → refreshers → servers. Resolves as soon as the
 * endpoint listens (so /healthz answers and a SIGTERM can stop it at once); the first grants run
 * on (see `started`), and /readyz says which tokens are still missing.
 */
export async function startDaemon(config: Config, opts: DaemonOptions = {}): Promise<Daemon> {
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? Math.random;
  // stdout by default, written asynchronously: a log reader that stalls must not stall tokend.
  const logDestination = opts.logDestination ?? (opts.logger ? undefined : new AsyncLogDestination());
  const logger = opts.logger ?? createLogger(config.logLevel, logDestination);
  const metrics = new Metrics({ clock, perToken: config.metricsPerToken, droppedLogLines: () => droppedLogLines(logDestination) });

  const tokens = await buildTokens(config, { clock, random, logger, registry: metrics.registry, observer: metrics, store: opts.store });
  metrics.track(tokens.handles);
  let listeners: Listeners;
  try {
    listeners = await startListeners(config, { handles: tokens.handles, metrics, clock, logger });
  } catch (err) {
    await tokens.close();
    throw err;
  }
  const started = Promise.all(tokens.refreshers.map((r) => r.start())).then(() => undefined);
  const checks = startChecks(config, tokens.refreshers);
  logger.info({ event: EVENTS.daemonStarted, tokens: config.tokens.map((t) => t.name), store: config.store.type }, 'tokend started');

  const revokeOnShutdown = new Set(config.tokens.filter((t) => t.revokeOnShutdown).map((t) => t.name));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ event: EVENTS.daemonStopping }, 'stopping');
      // Proxies first: requests in flight finish with a token before the refreshers stop.
      await listeners.closeProxies();
      await checks.close();
      await tokens.close((r) => (revokeOnShutdown.has(r.name) ? revokeQuietly(r, logger) : Promise.resolve()));
      await listeners.close();
      logger.info({ event: EVENTS.daemonStopped }, 'stopped');
      logger.flush?.();
    })();
    return stopping;
  };
  const reload = (): void => {
    logger.info({ event: EVENTS.daemonReload }, 're-reading secret files');
    for (const r of tokens.refreshers) r.reconcile();
  };
  return { url: listeners.url, metricsUrl: listeners.metricsUrl, handles: tokens.handles, proxyUrls: listeners.proxyUrls, logger, started, reload, stop };
}

/** The endpoint, the metrics listener and the egress proxies, listening. */
interface Listeners {
  readonly url: string;
  readonly metricsUrl: string | undefined;
  readonly proxyUrls: ReadonlyMap<string, string>;
  closeProxies(): Promise<void>;
  close(): Promise<void>;
}

/** Starts every listener; on failure closes those already started and rethrows. */
async function startListeners(
  config: Config,
  d: { handles: ReadonlyMap<string, TokenHandle>; metrics: Metrics; clock: Clock; logger: Logger },
): Promise<Listeners> {
  const { handles, metrics, clock, logger } = d;
  let verifier: Verifier | undefined;
  let server: TokenServer | undefined;
  let metricsServer: MetricsServer | undefined;
  let proxies: { urls: ReadonlyMap<string, string>; close(): Promise<void> } | undefined;
  const close = async (): Promise<void> => {
    await proxies?.close();
    await server?.close();
    await metricsServer?.close();
    await verifier?.close();
  };
  try {
    if (config.verify) {
      // jose and the verifier are loaded only when a verify section asks for them.
      const { loadVerifier } = await import('./verify/load.js');
      verifier = await loadVerifier(config.verify, { clock, logger: logger.child({ component: 'verify' }) });
    }
    const v = verifier;
    const verify = v ? (bearer: string, signal: AbortSignal) => v.verify(bearer, signal) : undefined;
    server = createTokenServer({ handles, metrics, clock, logger, verifier: verify, allowedHosts: config.allowedHosts });
    const url = await server.listen(config.listen);
    logger.info({ event: EVENTS.listening, url }, 'endpoint listening');
    let metricsUrl: string | undefined;
    if (config.metricsListen) {
      metricsServer = createMetricsServer({ metrics, handles, logger });
      metricsUrl = await metricsServer.listen(config.metricsListen);
      logger.info({ event: EVENTS.listening, url: metricsUrl, only: ['/healthz', '/readyz', '/metrics'] }, 'metrics and probes listening');
    }
    // Egress proxies answer 503 until their token arrives, so they may listen before the first grant.
    if (config.proxies !== undefined && config.proxies.length > 0) {
      const { startProxies } = await import('./proxy/index.js');
      proxies = await startProxies(config.proxies, handles, { clock, logger, registry: metrics.registry });
    }
    const p = proxies;
    return {
      url,
      metricsUrl,
      proxyUrls: p?.urls ?? new Map(),
      closeProxies: async () => {
        await p?.close();
        proxies = undefined;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * The periodic check and the secret-file watches. Secret files are watched (inotify, no polling):
 * a rotated Secret or a new seed is noticed at once; tokens whose files cannot be watched are fully
 * reconciled on every tick instead. The tick itself catches every token that is due even when a
 * timer did not fire (timers run on the monotonic clock, which stands still while a VM is
 * suspended), and costs no I/O while nothing is.
 */
function startChecks(config: Config, refreshers: readonly Refresher[]): { close(): Promise<void> } {
  const files = new FileWatcher();
  const unwatched = new Set<Refresher>();
  refreshers.forEach((r, i) => {
    const tc = config.tokens[i];
    if (tc !== undefined && files.watch(credentialFiles(tc), () => r.reconcile()).length > 0) unwatched.add(r);
  });
  const tick = (): void => {
    for (const r of refreshers) {
      if (unwatched.has(r)) r.reconcile();
      else r.tick();
    }
  };
  const task = scheduleReconcile(parseReconcileCron(config.reconcileCron), tick);
  return {
    async close() {
      task.stop();
      files.close();
    },
  };
}

async function revokeQuietly(r: Refresher, logger: Logger): Promise<void> {
  try {
    await r.revoke();
  } catch (err) {
    logger.child({ token: r.name }).warn({ event: EVENTS.revoked, error: errorSummary(err) }, 'revocation on shutdown failed');
  }
}

