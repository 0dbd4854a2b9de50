/**
 * The listener of one egress proxy (node:http): request limits like tokend's endpoint, refusals
 * of what a forward proxy would take (CONNECT), upgrades, and a bounded close.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenAddress } from '../config/types.js';
import { EVENTS } from '../log.js';
import { isLoopbackHost } from '../net.js';
import { removeStaleSocket } from '../server/http.js';
import { handleRequest } from './exchange.js';
import { R } from './responses.js';
import type { Route } from './route.js';
import { checkTarget } from './target.js';
import { handleUpgrade } from './upgrade.js';

/** Limits of the proxy listener. Durations in milliseconds. */
export interface ListenerLimits {
  /** Time a client has to send the request line and headers. Default 5 000 (as tokend's endpoint). */
  readonly headersTimeoutMs?: number | undefined;
  /** How long an idle keep-alive connection from the application is kept. Default 5 000. */
  readonly keepAliveTimeoutMs?: number | undefined;
  /**
   * Largest request line plus headers, in bytes (larger: 431). Default 16 384: twice the token
   * endpoint's, since applications send cookies and long query strings through a proxy.
   */
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
  const url = await listenOn(server, addr);
  route.log.info({ event: EVENTS.listening, url }, 'proxy listening');
  if (addr.kind === 'tcp' && !isLoopbackHost(addr.host)) {
    route.log.warn({ host: addr.host }, 'proxy listening on a non-loopback address: anything that can reach it can send requests with the token');
  }
  return { url, close: closer(server, route, state, limits.closeGraceMs ?? 1_000) };
}

function createServer(route: Route, limits: ListenerLimits, state: ListenerState): http.Server {
  const headersTimeout = limits.headersTimeoutMs ?? 5_000;
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (state.closing) res.shouldKeepAlive = false;
    try {
      handleRequest(route, req, res);
    } catch (err) {
      route.log.error({ err }, 'proxy request handler failed');
      if (!res.headersSent) res.writeHead(500, ['Content-Length', '0']).end();
      else res.destroy();
    }
  };
  const server = http.createServer(
    {
      maxHeaderSize: limits.maxHeaderSize ?? 16_384,
      headersTimeout,
      // A request may rightly take long (a large upload); silence is bounded by the socket timeout below.
      requestTimeout: 0,
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(headersTimeout / 4))),
      noDelay: true,
    },
    onRequest,
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs ?? 5_000;
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
    if (state.closing) return void socket.destroy();
    handleUpgrade(route, req, socket, head, (s) => {
      state.upgraded.add(s);
      s.once('close', () => state.upgraded.delete(s));
    });
  });
  // CONNECT is how a forward proxy opens a tunnel to any host: refused.
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    route.meter.answered(405);
    socket.on('error', () => undefined);
    socket.end(R.connect.raw);
  });
  server.on('clientError', answerClientError);
  return server;
}

/** Errors node's parser raises before a request exists (oversized or slow headers, garbage). */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const s = socket as net.Socket;
  if (err.code !== 'ECONNRESET' && s.writable && s.bytesWritten === 0) {
    const r = err.code === 'HPE_HEADER_OVERFLOW' ? R.headersTooLarge : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? R.requestTimeout : R.badRequest;
    s.write(r.raw);
  }
  s.destroy();
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

async function listenOn(server: http.Server, addr: ListenAddress): Promise<string> {
  if (addr.kind === 'unix') {
    await removeStaleSocket(addr.path, 'proxies.listen');
    // Created under a tight umask so the socket is never, even briefly, open to other users.
    const umask = process.umask(0o117);
    try {
      await bind(server, { path: addr.path });
    } finally {
      process.umask(umask);
    }
    try {
      await fs.chmod(addr.path, 0o660);
    } catch (err) {
      await new Promise((r) => server.close(r));
      throw err;
    }
    return `unix:${addr.path}`;
  }
  await bind(server, { host: addr.host, port: addr.port });
  const bound = server.address() as net.AddressInfo;
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return `http://${host}:${bound.port}`;
}

function bind(server: http.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
