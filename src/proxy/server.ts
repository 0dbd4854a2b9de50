/**
 * The listener of one egress proxy (node:http): request limits like tokend's endpoint, refusals
 * of what a forward proxy would take (CONNECT), upgrades, and a bounded close.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { ListenAddress } from '../config/types.js';
import { EVENTS } from '../log.js';
import { isLoopbackHost } from '../net.js';
import { TokendError } from '../errors.js';
import { describeAddress, listenAt } from '../server/listen.js';
import { createGuardedServer, DEFAULT_MAX_HEADER_BYTES, MAX_HEADERS_COUNT, requestStarted } from '../server/sockets.js';
import { handleRequest } from './exchange.js';
import { R } from './responses.js';
import { answer, type Route } from './route.js';
import { checkTarget } from './target.js';
import { handleUpgrade } from './upgrade.js';

/** Limits of the proxy listener. Durations in milliseconds. Defaults are the token endpoint's. */
export interface ListenerLimits {
  /** Time a client has, from connecting, to send the request line and headers. Default 5 000. */
  readonly headersTimeoutMs?: number | undefined;
  /** How long an idle keep-alive connection from the application is kept. Default 5 000. */
  readonly keepAliveTimeoutMs?: number | undefined;
  /** Largest request line plus headers, in bytes (larger: 431). Default DEFAULT_MAX_HEADER_BYTES (24 KiB). */
  readonly maxHeaderSize?: number | undefined;
  /** How long close() lets requests in flight finish before cutting their connections. Default 1 000. */
  readonly closeGraceMs?: number | undefined;
}

/** A running proxy listener. */
export interface ProxyListener {
  /** `http://host:port` (the actual port when 0 was asked) or `unix:/path`. */
  readonly url: string;
  /** Stops accepting, ends idle connections at once and busy ones after their answer (or the grace period). */
  close(): Promise<void>;
}

/** What the listener's handlers and close() share. */
interface ListenerState {
  closing: boolean;
  /** Client sockets spliced to the upstream after an upgrade, ended by close(). */
  readonly upgraded: Set<Duplex>;
}

/** Starts the listener of one proxy at addr. */
export async function listenProxy(route: Route, addr: ListenAddress, limits: ListenerLimits = {}): Promise<ProxyListener> {
  const state: ListenerState = { closing: false, upgraded: new Set() };
  const server = createServer(route, limits, state);
  const url = await listenOn(server, addr, route.name);
  route.log.info({ event: EVENTS.listening, url }, 'proxy listening');
  if (addr.kind === 'tcp' && !isLoopbackHost(addr.host)) {
    route.log.warn({ host: addr.host }, 'proxy listening on a non-loopback address: anything that can reach it can send requests with the token');
  }
  return { url, close: closer(server, route, state, limits.closeGraceMs ?? 1_000) };
}

function createServer(route: Route, limits: ListenerLimits, state: ListenerState): http.Server {
  const headersTimeoutMs = limits.headersTimeoutMs ?? 5_000;
  const maxHeaderSize = limits.maxHeaderSize ?? DEFAULT_MAX_HEADER_BYTES;
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requestStarted(req.socket);
    if (state.closing) res.shouldKeepAlive = false;
    // node keeps only maxHeadersCount header lines: never forward a partial view of a request.
    if (req.rawHeaders.length >= 2 * MAX_HEADERS_COUNT) return answer(route, res, R.tooManyHeaders, true);
    try {
      handleRequest(route, req, res);
    } catch (err) {
      route.log.error({ error: err }, 'proxy request handler failed');
      if (!res.headersSent) res.writeHead(500, ['Content-Length', '0']).end();
      else res.destroy();
    }
  };
  // The endpoint's guards: header and silence timeouts, header size and count, raw parser errors.
  // A whole request may rightly take long here (a large upload): its silence is bounded instead.
  const server = createGuardedServer(
    { headersTimeoutMs, requestTimeoutMs: headersTimeoutMs, keepAliveTimeoutMs: limits.keepAliveTimeoutMs ?? 5_000, maxHeaderSize, maxUrlLength: maxHeaderSize },
    onRequest,
  );
  server.requestTimeout = 0;
  // Silence from the application, in either direction: a little longer than the upstream's, so the
  // upstream timeout answers 504 first.
  server.timeout = route.upstream.timeoutMs + 5_000;
  // Expect: 100-continue: the client waits for a go-ahead before sending its body. Given only when
  // the request will be forwarded, so a refused upload is never sent at all.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (checkTarget(req.url ?? '') === undefined && route.handle.current() !== undefined) res.writeContinue();
    onRequest(req, res);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    requestStarted(req.socket);
    if (state.closing) return void socket.destroy();
    handleUpgrade(route, req, socket, head, (s) => {
      state.upgraded.add(s);
      s.once('close', () => state.upgraded.delete(s));
    });
  });
  // CONNECT is how a forward proxy opens a tunnel to any host: refused.
  server.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
    requestStarted(req.socket);
    route.meter.answered(405);
    socket.on('error', () => undefined);
    socket.end(R.connect.raw);
  });
  return server;
}

/** close(): stop accepting, end idle connections now and busy ones after their answer or graceMs. */
function closer(server: http.Server, route: Route, state: ListenerState, graceMs: number): () => Promise<void> {
  let closed: Promise<void> | undefined;
  return () => {
    closed ??= new Promise<void>((resolve) => {
      state.closing = true;
      const grace = setTimeout(() => {
        server.closeAllConnections();
        for (const s of state.upgraded) s.destroy();
      }, graceMs);
      grace.unref();
      server.close(() => {
        clearTimeout(grace);
        route.upstream.agent.destroy();
        resolve();
      });
      server.closeIdleConnections();
      for (const s of state.upgraded) s.end();
    });
    return closed;
  };
}

/**
 * Listens through the one listen helper (stale unix sockets, umask, mode 0660), naming the proxy
 * in failures instead of the endpoint's `listen` setting.
 */
async function listenOn(server: http.Server, addr: ListenAddress, name: string): Promise<string> {
  try {
    return await listenAt(server, addr, 'listen');
  } catch (err) {
    const where = `proxies (${name}).listen ${describeAddress(addr)}`;
    // removeStaleSocket's refusal of a path that is not a socket.
    if (err instanceof TokendError) throw new TokendError(err.code, `${where}: the path exists and is not a unix socket`, { cause: err });
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === undefined ? 'cannot listen' : (LISTEN_REASONS[code] ?? code);
    const out: NodeJS.ErrnoException = new Error(`${where}: ${reason}`, { cause: err });
    if (code !== undefined) out.code = code;
    throw out;
  }
}

const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: 'address already in use (EADDRINUSE)',
  EACCES: 'permission denied (EACCES)',
  EADDRNOTAVAIL: 'address not available on this machine (EADDRNOTAVAIL)',
};
