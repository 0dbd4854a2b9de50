import type http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { MAX_TOKEN_CHARS } from '../token.js';
import { http as nodeHttp } from '../util/node-http.js';
import { RAW_400, RAW_408, RAW_413, RAW_414, RAW_431 } from './responses.js';

/**
 * Node keeps at most this many header lines of a request and silently drops the rest, so a request
 * that reaches it is refused (431) rather than served on a partial view of its headers (an
 * X-Forwarded-For placed after the limit would otherwise go unseen). 99 lines are accepted.
 */
export const MAX_HEADERS_COUNT = 100;

/**
 * Default largest request line plus headers, in bytes: a bearer token of MAX_TOKEN_CHARS (16 KiB)
 * in `Authorization: Bearer ...` plus 8 KiB of ordinary headers.
 */
export const DEFAULT_MAX_HEADER_BYTES = MAX_TOKEN_CHARS + 8_192;

/** Connection-level limits of a listener. Durations in milliseconds. */
export interface SocketLimits {
  /** Time a client has, from connecting (or from its first byte), to send the request line and headers. */
  readonly headersTimeoutMs: number;
  /** Time a client has to send the whole request (at least headersTimeoutMs). */
  readonly requestTimeoutMs: number;
  /** How long an idle keep-alive connection is kept. */
  readonly keepAliveTimeoutMs: number;
  /** Largest request line plus headers, in bytes (larger: 431, or 414 for a long URL). */
  readonly maxHeaderSize: number;
  /** Longest accepted request target, in bytes: a header overflow within the request line is a 414. */
  readonly maxUrlLength: number;
}

const kIdleTimer = Symbol('tokend.idleTimer');
type TrackedSocket = net.Socket & { [kIdleTimer]?: NodeJS.Timeout | undefined };

/**
 * A node:http server with tokend's limits and connection guards: timeouts, header size and count,
 * raw answers for parser errors, and an idle timer that closes (408) a connection that never sends
 * a request. The handler must call {@link requestStarted} first thing.
 */
export function createGuardedServer(limits: SocketLimits, handler: http.RequestListener): http.Server {
  const headersTimeout = limits.headersTimeoutMs;
  const requestTimeout = Math.max(limits.requestTimeoutMs, headersTimeout);
  const server = nodeHttp.createServer(
    {
      maxHeaderSize: limits.maxHeaderSize,
      requestTimeout,
      headersTimeout,
      // Node checks both timeouts on this period (default 30 s, far longer than the timeouts).
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(headersTimeout / 4))),
      noDelay: true,
    },
    handler,
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.headersTimeout = headersTimeout;
  server.requestTimeout = requestTimeout;
  server.maxHeadersCount = MAX_HEADERS_COUNT;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket as net.Socket, limits.maxUrlLength));
  // Node's own headersTimeout starts only once the first byte arrives in some versions, and its
  // check runs on connectionsCheckingInterval: a connection that never says anything is closed by
  // this timer instead, so silent clients cannot hold file descriptors.
  server.on('connection', (socket: TrackedSocket) => {
    const timer = setTimeout(closeSilent, headersTimeout, socket);
    timer.unref();
    socket[kIdleTimer] = timer;
    socket.once('close', () => requestStarted(socket));
  });
  return server;
}

/** Clears the connection's idle timer (a request arrived, or the connection closed). */
export function requestStarted(socket: net.Socket): void {
  const s = socket as TrackedSocket;
  const timer = s[kIdleTimer];
  if (timer !== undefined) {
    clearTimeout(timer);
    s[kIdleTimer] = undefined;
  }
}

function closeSilent(socket: TrackedSocket): void {
  socket[kIdleTimer] = undefined;
  if (socket.writable && socket.bytesWritten === 0) socket.write(RAW_408);
  socket.destroy();
}

/**
 * Answers an error node's parser raised before a request object existed. Node's parser counts the
 * request line against maxHeaderSize, so an overlong URL arrives here as a header overflow; the two
 * are told apart by whether the request line ended within the URL limit.
 */
function answerClientError(err: NodeJS.ErrnoException, s: net.Socket, maxUrl: number): void {
  if (err.code !== 'ECONNRESET' && s.writable && s.bytesWritten === 0) {
    let response = RAW_400;
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      const raw = (err as { rawPacket?: unknown }).rawPacket;
      const lineEnd = Buffer.isBuffer(raw) ? raw.indexOf('\r\n') : 0;
      response = lineEnd < 0 || lineEnd > maxUrl ? RAW_414 : RAW_431;
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      response = RAW_408;
    } else if (err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') {
      response = RAW_413;
    }
    s.write(response);
  }
  s.destroy();
}
