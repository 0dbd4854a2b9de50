import type http from 'node:http';
import type { ListenAddress } from '../config/types.js';
import type { Logger } from '../log.js';
import type { TokenHandle } from '../refresh/handle.js';
import { closeServer, listenAt } from './listen.js';
import { admitRequest, handleSafely, newHeaderScan } from './request-guard.js';
import { routePublic } from './routes.js';
import { createGuardedServer, DEFAULT_MAX_HEADER_BYTES } from './sockets.js';
import type { MetricsSource, PublicState } from './types.js';

/**
 * A listener for probes and scrapes from outside the pod while the token endpoint stays on
 * loopback: `GET /healthz`, `GET /readyz` (same answers as the endpoint's) and `GET /metrics`. It
 * serves no token and no `/v1/` route (404), so it needs no `Tokend-Request` header and may bind a
 * pod address.
 */
export interface MetricsServer {
  /** Resolves to `http://host:port` or `unix:/path`; a failure names the `metricsListen` setting. */
  listen(addr: ListenAddress): Promise<string>;
  /** Stops accepting and closes every connection. */
  close(): Promise<void>;
}

/** Options of {@link createMetricsServer}. Durations in milliseconds. */
export interface MetricsServerOptions {
  readonly metrics: MetricsSource;
  /** The configured tokens, for /readyz. */
  readonly handles: ReadonlyMap<string, TokenHandle>;
  readonly logger: Logger;
  /** Time a client has, from connecting, to send the request line and headers. Default 5 000. */
  readonly headersTimeoutMs?: number | undefined;
  /** Time a client has to send the whole request. Default 10 000. */
  readonly requestTimeoutMs?: number | undefined;
}

/** Creates the probe-and-metrics listener; the same connection limits as the endpoint. */
export function createMetricsServer(opts: MetricsServerOptions): MetricsServer {
  const state: PublicState = {
    handles: opts.handles,
    metrics: opts.metrics,
    logger: opts.logger,
    scan: newHeaderScan(),
    closing: false,
  };
  const server = createGuardedServer(
    {
      headersTimeoutMs: opts.headersTimeoutMs ?? 5_000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      keepAliveTimeoutMs: 5_000,
      maxHeaderSize: DEFAULT_MAX_HEADER_BYTES,
      maxUrlLength: 2_048,
    },
    (req, res) => handleSafely(state, req, res, handleProbe),
  );
  let closed: Promise<void> | undefined;
  return {
    listen: (addr) => listenAt(server, addr, 'metricsListen'),
    close() {
      state.closing = true;
      // Scrapes are short and carry nothing worth waiting for.
      closed ??= closeServer(server, 0);
      return closed;
    },
  };
}

function handleProbe(state: PublicState, req: http.IncomingMessage, res: http.ServerResponse): void {
  if (admitRequest(state, req, res)) routePublic(state, req, res, req.url ?? '');
}
