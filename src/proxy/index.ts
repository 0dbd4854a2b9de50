/**
 * Egress proxy mode: for each configured upstream, a local reverse proxy that puts the current
 * token on every request the application sends through it (docs/proxy.md). The daemon starts them
 * with the token handles of its refreshers; the proxies read tokens and never obtain them.
 */
import type { Registry } from '../util/prom.js';
import type { Clock } from '../clock.js';
import type { ProxyConfig } from '../config/types.js';
import { TokendError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TokenHandle } from '../refresh/handle.js';
import { NO_METER, ProxyMetrics } from './metrics.js';
import { createRoute } from './route.js';
import { listenProxy, type ListenerLimits, type ProxyListener } from './server.js';
import { createUpstream } from './upstream.js';

export { type ListenerLimits } from './server.js';

/** What the proxies need from the daemon. */
export interface ProxyDeps {
  readonly clock: Clock;
  /** Each proxy logs through a child bound to `{ proxy, token }`. */
  readonly logger: Logger;
  /** Where the proxy metrics are registered (the daemon's registry); none are kept without one. */
  readonly registry?: Registry | undefined;
  /** Listener limits (tests shorten them). */
  readonly limits?: ListenerLimits | undefined;
}

/** The running proxies. */
export interface RunningProxies {
  /** Where each proxy listens, by proxy name: `http://host:port` or `unix:/path`. */
  readonly urls: ReadonlyMap<string, string>;
  /** Stops every proxy: no new requests, those in flight finish (up to a short grace), pools closed. */
  close(): Promise<void>;
}

/**
 * Starts one proxy per config, each reading its token from `handles` (by token name). If one
 * cannot start (a port in use, an unreadable CA file), those already started are closed and the
 * error is thrown.
 */
export async function startProxies(
  configs: readonly ProxyConfig[],
  handles: ReadonlyMap<string, TokenHandle>,
  deps: ProxyDeps,
): Promise<RunningProxies> {
  const metrics = deps.registry === undefined ? undefined : new ProxyMetrics(deps.registry);
  const listeners: ProxyListener[] = [];
  const urls = new Map<string, string>();
  const close = async (): Promise<void> => {
    await Promise.all(listeners.map((l) => l.close()));
  };
  try {
    for (const cfg of configs) {
      const handle = handles.get(cfg.token);
      // The schema checks this; a composition error is still not a silent proxy without a token.
      if (handle === undefined) throw new TokendError('CONFIG_INVALID', `proxies (${cfg.name}).token: no such token is configured`);
      const upstream = await createUpstream(cfg);
      const route = createRoute(cfg, handle, upstream, {
        clock: deps.clock,
        logger: deps.logger.child({ proxy: cfg.name, token: cfg.token }),
        meter: metrics?.meter(cfg.name) ?? NO_METER,
      });
      let listener: ProxyListener;
      try {
        listener = await listenProxy(route, cfg.listen, deps.limits);
      } catch (err) {
        upstream.agent.destroy();
        throw err;
      }
      listeners.push(listener);
      urls.set(cfg.name, listener.url);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { urls, close };
}
