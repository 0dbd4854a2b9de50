import type http from 'node:http';
import type { Clock } from '../clock.js';
import type { ListenAddress } from '../config/types.js';
import type { Logger } from '../log.js';
import { isLoopbackHost } from '../net.js';
import type { TokenHandle } from '../refresh/handle.js';
import { closeServer, listenAt } from './listen.js';
import {
  adaptHostPolicy,
  admitRequest,
  createHostPolicy,
  F_FORWARDED,
  F_TEXT,
  F_TOKEND_BAD,
  F_TOKEND_OK,
  F_TWO_HOSTS,
  handleSafely,
  hostAllowed,
  newHeaderScan,
  shownHost,
} from './request-guard.js';
import { forbiddenHost, R_FORWARDED, R_NO_HEADER, R_TWO_HOSTS, R_URI_TOO_LONG, sendFixed } from './responses.js';
import { routePublic, routeV1 } from './routes.js';
import { createGuardedServer, DEFAULT_MAX_HEADER_BYTES, requestStarted } from './sockets.js';
import type { EndpointState, MetricsSource, VerifyFunction } from './types.js';

export type { MetricsSource, VerifyFunction } from './types.js';

/** Options of {@link createTokenServer}. Durations in milliseconds. */
export interface TokenServerOptions {
  /** The configured tokens by name. */
  readonly handles: ReadonlyMap<string, TokenHandle>;
  readonly metrics: MetricsSource;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Backs `POST /v1/verify`; without it that route answers 404. */
  readonly verifier?: VerifyFunction | undefined;
  /**
   * Host names and addresses `/v1/` accepts in the Host header besides loopback ones (the
   * `allowedHosts` setting). Default none.
   */
  readonly allowedHosts?: readonly string[] | undefined;
  /** Time a client has, from connecting, to send the request line and headers. Default 5 000. */
  readonly headersTimeoutMs?: number | undefined;
  /** Time a client has to send the whole request. Default 10 000. */
  readonly requestTimeoutMs?: number | undefined;
  /** How long an idle keep-alive connection is kept. Default 5 000. */
  readonly keepAliveTimeoutMs?: number | undefined;
  /**
   * Largest request line plus headers, in bytes (larger: 431, or 414 for a long URL). Default
   * 24 576: a 16 KiB bearer token plus 8 KiB of other headers.
   */
  readonly maxHeaderSize?: number | undefined;
  /** Longest accepted request target (path and query), in bytes. Default 2 048. */
  readonly maxUrlLength?: number | undefined;
  /** How long `close()` lets requests in flight finish before cutting their connections. Default 1 000. */
  readonly closeGraceMs?: number | undefined;
  /** Upper bound on one verification. Default 10 000. */
  readonly verifyTimeoutMs?: number | undefined;
}

/** The localhost endpoint. */
export interface TokenServer {
  /**
   * Starts listening. Resolves to `http://host:port` (the actual port when 0 was asked) or
   * `unix:/path` for a unix socket (the form `tokend get --url` accepts). A failure names the
   * `listen` setting and keeps the system error's `code` (EADDRINUSE, EACCES, ...).
   */
  listen(addr: ListenAddress): Promise<string>;
  /** Stops accepting, ends idle keep-alive connections at once and busy ones after their answer (or the grace period). */
  close(): Promise<void>;
}

/**
 * Creates the localhost endpoint (node:http, no framework). Routes:
 * `GET /v1/token/NAME[?min_ttl=S]`, `POST /v1/verify` (both need `Tokend-Request: 1`, a loopback
 * or allowed Host, and refuse `X-Forwarded-For`), `GET /healthz`, `GET /readyz`, `GET /metrics`.
 * The token route does no I/O: it reads the handle's in-memory token and answers from a per-token
 * cache of response bytes.
 */
export function createTokenServer(opts: TokenServerOptions): TokenServer {
  const state: EndpointState = {
    handles: opts.handles,
    metrics: opts.metrics,
    clock: opts.clock,
    logger: opts.logger,
    verifier: opts.verifier,
    verifyTimeoutMs: opts.verifyTimeoutMs ?? 10_000,
    maxUrl: opts.maxUrlLength ?? 2_048,
    hosts: createHostPolicy(opts.allowedHosts),
    scan: newHeaderScan(),
    entries: new Map(),
    byPath: new Map(),
    closing: false,
  };
  const server = createGuardedServer(
    {
      headersTimeoutMs: opts.headersTimeoutMs ?? 5_000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 5_000,
      maxHeaderSize: opts.maxHeaderSize ?? DEFAULT_MAX_HEADER_BYTES,
      maxUrlLength: state.maxUrl,
    },
    (req, res) => handleSafely(state, req, res, handleEndpointRequest),
  );
  const closeGraceMs = opts.closeGraceMs ?? 1_000;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    state.closing = true;
    closed ??= closeServer(server, closeGraceMs);
    return closed;
  };
  const listen = async (addr: ListenAddress): Promise<string> => {
    adaptHostPolicy(state.hosts, addr);
    const url = await listenAt(server, addr, 'listen');
    if (addr.kind === 'tcp' && !isLoopbackHost(addr.host)) {
      state.logger.warn({ host: addr.host }, 'listening on a non-loopback address: anything that can reach it can ask for tokens');
    }
    return url;
  };
  return { listen, close };
}

function handleEndpointRequest(state: EndpointState, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '';
  if (url.length > state.maxUrl) {
    // Hostile or broken: answer and hang up, as for a target too long to parse at all.
    requestStarted(req.socket);
    res.shouldKeepAlive = false;
    return sendFixed(state, res, R_URI_TOO_LONG);
  }
  if (!admitRequest(state, req, res)) return;
  if (!url.startsWith('/v1/')) return routePublic(state, req, res, url);
  const flags = state.scan.flags;
  if ((flags & (F_TOKEND_OK | F_TOKEND_BAD)) !== F_TOKEND_OK) return sendFixed(state, res, R_NO_HEADER);
  if ((flags & F_FORWARDED) !== 0) return sendFixed(state, res, R_FORWARDED);
  if ((flags & F_TWO_HOSTS) !== 0) return sendFixed(state, res, R_TWO_HOSTS);
  const host = state.scan.host;
  if (!hostAllowed(state.hosts, host, req.socket)) {
    return sendFixed(state, res, forbiddenHost(shownHost(host ?? '')));
  }
  routeV1(state, req, res, url, (flags & F_TEXT) !== 0);
}
