import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock } from '../clock.js';
import type { ListenAddress } from '../config/types.js';
import { TokendError } from '../errors.js';
import type { Logger } from '../log.js';
import { isLoopbackHost } from '../net.js';

import type { TokenHandle } from '../refresh/handle.js';
import { isUsable, remainingMs, TOKEN_NAME_RE, type AccessToken } from '../token.js';
import type { VerifyOutcome } from '../verify/types.js';

/** Verifies a bearer token; `signal` aborts when the client goes away or the server closes. */
export type VerifyFunction = (bearer: string, signal: AbortSignal) => Promise<VerifyOutcome>;

/** What the server needs of the metrics: the Prometheus text and its content type. */
export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
}

/** Options of {@link createTokenServer}. Durations in milliseconds. */
export interface TokenServerOptions {
  /** The configured tokens by name. */
  readonly handles: ReadonlyMap<string, TokenHandle>;
  readonly metrics: MetricsSource;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Backs `POST /v1/verify`; without it that route answers 404. */
  readonly verifier?: VerifyFunction | undefined;
  /** Time a client has to send the request line and headers. Default 5 000. */
  readonly headersTimeoutMs?: number | undefined;
  /** Time a client has to send the whole request. Default 10 000. */
  readonly requestTimeoutMs?: number | undefined;
  /** How long an idle keep-alive connection is kept. Default 5 000. */
  readonly keepAliveTimeoutMs?: number | undefined;
  /** Largest request line plus headers, in bytes (larger: 431, or 414 for a long URL). Default 8 192. */
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
   * `unix:/path` for a unix socket (the form `tokend get --url` accepts).
   */
  listen(addr: ListenAddress): Promise<string>;
  /** Stops accepting, ends idle keep-alive connections at once and busy ones after their answer (or the grace period). */
  close(): Promise<void>;
}

const MIN_TTL_RE = /^[0-9]{1,5}$/;
const MAX_MIN_TTL_S = 86_400;
/** Largest body read (and discarded) from a request that should have none, in bytes. */
const MAX_DISCARDED_BODY = 16_384;
const TOKEN_PREFIX = '/v1/token/';
const BEARER_RE = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

const CT_JSON = 'application/json; charset=utf-8';
const CT_TEXT = 'text/plain; charset=utf-8';

// Header flags found by one pass over rawHeaders (no `req.headers` object is built on the hot path).
const F_TOKEND_OK = 1;
const F_TOKEND_BAD = 2;
const F_FORWARDED = 4;
const F_TEXT = 8;
const F_BODY = 16;

/** A response whose bytes never change, built once. */
interface Fixed {
  readonly status: number;
  readonly headers: http.OutgoingHttpHeader[];
  readonly body: Buffer;
}

function fixed(status: number, contentType: string, body: string, extra: http.OutgoingHttpHeader[] = []): Fixed {
  const buf = Buffer.from(body);
  return {
    status,
    headers: ['Content-Type', contentType, 'Cache-Control', 'no-store', 'Content-Length', String(buf.length), ...extra],
    body: buf,
  };
}

function json(status: number, value: unknown, extra?: http.OutgoingHttpHeader[]): Fixed {
  return fixed(status, CT_JSON, JSON.stringify(value), extra);
}

const R_NO_HEADER = json(403, { error: 'forbidden', message: 'missing Tokend-Request: 1 header' });
const R_FORWARDED = json(403, {
  error: 'forbidden',
  message: 'proxied requests (X-Forwarded-For or Forwarded header) are refused',
});
const R_UNKNOWN_TOKEN = json(404, { error: 'unknown_token' });
const R_NOT_FOUND = json(404, { error: 'not_found' });
const R_NO_VERIFIER = json(404, { error: 'not_found', message: 'token verification is not configured' });
const R_GET_ONLY = json(405, { error: 'method_not_allowed' }, ['Allow', 'GET, HEAD']);
const R_POST_ONLY = json(405, { error: 'method_not_allowed' }, ['Allow', 'POST']);
const R_BAD_MIN_TTL = json(400, {
  error: 'invalid_request',
  message: `min_ttl must be an integer number of seconds from 0 to ${MAX_MIN_TTL_S}, given once`,
});
const R_NO_BEARER = json(
  400,
  { error: 'invalid_request', message: 'missing Authorization: Bearer header' },
  ['WWW-Authenticate', 'Bearer realm="tokend"'],
);
const R_URI_TOO_LONG = json(414, { error: 'uri_too_long' });
const R_HEALTHY = fixed(200, CT_TEXT, 'ok\n');
const R_READY = json(200, { ready: true });
const R_VERIFY_FAILED = json(503, {
  error: 'temporarily_unavailable',
  message: 'token verification could not be completed',
});
const R_INTERNAL = json(500, { error: 'internal_error' });

/** Raw answers for errors node's parser raises before a request object exists. */
function rawResponse(status: number, statusText: string, error: string): Buffer {
  const body = JSON.stringify({ error });
  return Buffer.from(
    `HTTP/1.1 ${status} ${statusText}\r\nConnection: close\r\nContent-Type: ${CT_JSON}\r\n` +
      `Cache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
const RAW_414 = rawResponse(414, 'URI Too Long', 'uri_too_long');
const RAW_431 = rawResponse(431, 'Request Header Fields Too Large', 'request_header_fields_too_large');
const RAW_408 = rawResponse(408, 'Request Timeout', 'request_timeout');
const RAW_413 = rawResponse(413, 'Payload Too Large', 'payload_too_large');
const RAW_400 = rawResponse(400, 'Bad Request', 'bad_request');

/** Per-token response cache: the JSON body only changes when the token or its whole seconds left change. */
interface TokenEntry {
  readonly handle: TokenHandle;
  token: AccessToken | undefined;
  expiresIn: number;
  json: Buffer;
  jsonHeaders: http.OutgoingHttpHeader[];
  text: Buffer;
  textHeaders: http.OutgoingHttpHeader[];
  readonly unavailableBody: Buffer;
}

function newEntry(handle: TokenHandle): TokenEntry {
  const empty = Buffer.alloc(0);
  return {
    handle,
    token: undefined,
    expiresIn: -1,
    json: empty,
    jsonHeaders: [],
    text: empty,
    textHeaders: [],
    unavailableBody: Buffer.from(
      JSON.stringify({ error: 'token_unavailable', message: `no valid access token for "${handle.name}" right now` }),
    ),
  };
}

function refreshEntry(entry: TokenEntry, token: AccessToken, expiresIn: number): void {
  if (entry.token !== token) {
    entry.text = Buffer.from(token.accessToken);
    entry.textHeaders = ['Content-Type', CT_TEXT, 'Cache-Control', 'no-store', 'Content-Length', String(entry.text.length)];
  }
  entry.token = token;
  entry.expiresIn = expiresIn;
  entry.json = Buffer.from(
    JSON.stringify({
      access_token: token.accessToken,
      token_type: token.tokenType,
      expires_at: Math.floor(token.expiresAt / 1000),
      expires_in: expiresIn,
      scope: token.scope,
    }),
  );
  entry.jsonHeaders = ['Content-Type', CT_JSON, 'Cache-Control', 'no-store', 'Content-Length', String(entry.json.length)];
}

/**
 * Whether an Accept header asks for the raw token: `text/plain` listed before `application/json`
 * (q-values are not weighed; clients of this endpoint send one type).
 */
function prefersText(accept: string): boolean {
  const t = accept.indexOf('text/plain');
  if (t < 0) return false;
  const j = accept.indexOf('application/json');
  return j < 0 || t < j;
}

/**
 * Case-insensitive equality with a lower-case ASCII name, without allocating a lowered copy.
 * `| 0x20` lowers letters and leaves '-' and digits alone; the only other byte it maps onto
 * '-' is CR, which the parser never lets into a header name.
 */
function isName(k: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((k.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

function scanHeaders(raw: readonly string[]): number {
  let f = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i] as string;
    // Compare lengths first so most headers cost one integer comparison.
    switch (k.length) {
      case 14:
        if (isName(k, 'tokend-request')) f |= raw[i + 1] === '1' ? F_TOKEND_OK : F_TOKEND_BAD;
        else if (isName(k, 'content-length') && raw[i + 1] !== '0') f |= F_BODY;
        break;
      case 15:
        if (isName(k, 'x-forwarded-for')) f |= F_FORWARDED;
        break;
      case 9:
        if (isName(k, 'forwarded')) f |= F_FORWARDED;
        break;
      case 6:
        if (isName(k, 'accept') && prefersText(raw[i + 1] as string)) f |= F_TEXT;
        break;
      case 17:
        if (isName(k, 'transfer-encoding')) f |= F_BODY;
        break;
    }
  }
  return f;
}

/** Reads and drops a body nobody asked for, cutting the connection if it is large. */
function discardBody(req: http.IncomingMessage): void {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > MAX_DISCARDED_BODY) req.socket.destroy();
  });
}

/** Parses `?min_ttl=S` from a query string; undefined when absent, NaN when invalid. */
function parseMinTtl(query: string): number | undefined {
  const values = new URLSearchParams(query).getAll('min_ttl');
  if (values.length === 0) return undefined;
  const v = values[0] as string;
  if (values.length > 1 || !MIN_TTL_RE.test(v)) return Number.NaN;
  const n = Number(v);
  return n <= MAX_MIN_TTL_S ? n : Number.NaN;
}

/**
 * Creates the localhost endpoint (node:http, no framework). Routes:
 * `GET /v1/token/NAME[?min_ttl=S]`, `POST /v1/verify` (both need `Tokend-Request: 1` and refuse
 * `X-Forwarded-For`), `GET /healthz`, `GET /readyz`, `GET /metrics`. The token route does no I/O:
 * it reads the handle's in-memory token and answers from a per-token cache of response bytes.
 */
export function createTokenServer(opts: TokenServerOptions): TokenServer {
  const { handles, metrics, clock, logger, verifier } = opts;
  const headersTimeout = opts.headersTimeoutMs ?? 5_000;
  const requestTimeout = Math.max(opts.requestTimeoutMs ?? 10_000, headersTimeout);
  const maxUrl = opts.maxUrlLength ?? 2_048;
  const closeGraceMs = opts.closeGraceMs ?? 1_000;
  const verifyTimeoutMs = opts.verifyTimeoutMs ?? 10_000;
  const entries = new Map<string, TokenEntry>();
  const byPath = new Map<string, TokenEntry>();
  let closing = false;

  const entryFor = (name: string): TokenEntry | undefined => {
    let e = entries.get(name);
    if (e === undefined) {
      const handle = handles.get(name);
      if (handle === undefined) return undefined;
      e = newEntry(handle);
      entries.set(name, e);
    }
    return e;
  };

  const send = (res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeader[], body: Buffer | string): void => {
    // While closing, each answer ends its connection so close() does not wait on keep-alive.
    if (closing) res.shouldKeepAlive = false;
    res.writeHead(status, headers);
    res.end(body);
  };
  const sendFixed = (res: http.ServerResponse, r: Fixed): void => send(res, r.status, r.headers, r.body);
  const sendJson = (res: http.ServerResponse, status: number, value: unknown, extra: http.OutgoingHttpHeader[] = []): void => {
    const r = json(status, value, extra);
    send(res, status, r.headers, r.body);
  };

  const sendUnavailable = (res: http.ServerResponse, entry: TokenEntry): void => {
    const ms = entry.handle.retryAfterMs();
    // RFC 9110 §10.2.3: delay-seconds is a non-negative integer; never tell a client to hammer us.
    const retryAfter = Number.isFinite(ms) ? Math.max(1, Math.ceil(ms / 1000)) : 1;
    send(
      res,
      503,
      [
        'Content-Type',
        CT_JSON,
        'Cache-Control',
        'no-store',
        'Retry-After',
        String(retryAfter),
        'Content-Length',
        String(entry.unavailableBody.length),
      ],
      entry.unavailableBody,
    );
  };

  const sendToken = (res: http.ServerResponse, entry: TokenEntry, token: AccessToken | undefined, text: boolean): void => {
    // The handle promises a valid token; checking again here costs one comparison and makes
    // "never an expired token" this function's own guarantee. A token with under a second left
    // would expire in the caller's hands (and read as expires_in 0), so it counts as expired.
    if (!isUsable(token, clock)) return sendUnavailable(res, entry);
    const expiresIn = Math.floor(remainingMs(token, clock) / 1000);
    if (text) {
      if (entry.token !== token) refreshEntry(entry, token, expiresIn);
      return send(res, 200, entry.textHeaders, entry.text);
    }
    if (entry.token !== token || entry.expiresIn !== expiresIn) refreshEntry(entry, token, expiresIn);
    send(res, 200, entry.jsonHeaders, entry.json);
  };

  const serveToken = (req: http.IncomingMessage, res: http.ServerResponse, url: string, flags: number): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendFixed(res, R_GET_ONLY);
    const text = (flags & F_TEXT) !== 0;
    // The common request, a known name without a query, is one Map lookup on the whole URL.
    const known = byPath.get(url);
    if (known !== undefined) return sendToken(res, known, known.handle.current(), text);
    const q = url.indexOf('?', TOKEN_PREFIX.length);
    const name = q < 0 ? url.slice(TOKEN_PREFIX.length) : url.slice(TOKEN_PREFIX.length, q);
    if (!TOKEN_NAME_RE.test(name)) return sendFixed(res, R_UNKNOWN_TOKEN);
    const entry = entryFor(name);
    if (entry === undefined) return sendFixed(res, R_UNKNOWN_TOKEN);
    if (q < 0) {
      // Only configured names get here, so the map stays as small as the config.
      byPath.set(url, entry);
      return sendToken(res, entry, entry.handle.current(), text);
    }
    const minTtl = parseMinTtl(url.slice(q + 1));
    if (minTtl === undefined) return sendToken(res, entry, entry.handle.current(), text);
    if (Number.isNaN(minTtl)) return sendFixed(res, R_BAD_MIN_TTL);

    // The refresh is abandoned (by this request; others may still share it) if the client leaves.
    const ac = new AbortController();
    const onClose = (): void => ac.abort();
    res.once('close', onClose);
    let pending: Promise<AccessToken>;
    try {
      pending = entry.handle.ensureFresh(minTtl * 1000, ac.signal);
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (token) => {
        res.off('close', onClose);
        if (!res.destroyed && !res.headersSent) sendToken(res, entry, token, text);
      },
      () => {
        res.off('close', onClose);
        if (!res.destroyed && !res.headersSent) sendUnavailable(res, entry);
      },
    );
  };

  const serveVerify = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.method !== 'POST') return sendFixed(res, R_POST_ONLY);
    if (verifier === undefined) return sendFixed(res, R_NO_VERIFIER);
    const m = BEARER_RE.exec(req.headers.authorization ?? '');
    const bearer = m?.[1];
    if (bearer === undefined) return sendFixed(res, R_NO_BEARER);

    const ac = new AbortController();
    const onClose = (): void => ac.abort();
    res.once('close', onClose);
    const signal = AbortSignal.any([ac.signal, AbortSignal.timeout(verifyTimeoutMs)]);
    let pending: Promise<VerifyOutcome>;
    try {
      pending = verifier(bearer, signal);
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (outcome) => {
        res.off('close', onClose);
        if (res.destroyed || res.headersSent) return;
        if (outcome.active) {
          return sendJson(res, 200, { active: true, issuer: outcome.issuer, claims: outcome.claims });
        }
        const status = outcome.status ?? 401;
        if (status >= 500) return sendJson(res, status, { error: 'temporarily_unavailable', reason: outcome.reason });
        // RFC 6750 §3: a refused bearer token gets a WWW-Authenticate challenge.
        const extra = status === 401 ? ['WWW-Authenticate', 'Bearer realm="tokend", error="invalid_token"'] : [];
        sendJson(res, status, { error: 'invalid_token', reason: outcome.reason }, extra);
      },
      (err: unknown) => {
        res.off('close', onClose);
        if (res.destroyed || res.headersSent) return;
        logger.warn({ err }, 'token verification failed unexpectedly');
        sendFixed(res, R_VERIFY_FAILED);
      },
    );
  };

  const serveReady = (res: http.ServerResponse): void => {
    const notReady: Array<{ token: string; reason: string }> = [];
    for (const [name, handle] of handles) {
      const s = handle.status();
      if (!s.ready) notReady.push({ token: name, reason: s.reason ?? 'not ready' });
    }
    if (notReady.length === 0) return sendFixed(res, R_READY);
    sendJson(res, 503, { ready: false, not_ready: notReady });
  };

  const serveMetrics = (res: http.ServerResponse): void => {
    metrics.render().then(
      (text) => {
        if (res.destroyed) return;
        send(res, 200, ['Content-Type', metrics.contentType, 'Cache-Control', 'no-store', 'Content-Length', String(Buffer.byteLength(text))], text);
      },
      (err: unknown) => {
        logger.warn({ err }, 'rendering metrics failed');
        if (!res.destroyed) sendFixed(res, R_INTERNAL);
      },
    );
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = req.url ?? '';
    if (url.length > maxUrl) return sendFixed(res, R_URI_TOO_LONG);
    const flags = scanHeaders(req.rawHeaders);
    if ((flags & F_BODY) !== 0) {
      // No route reads a body (verify takes the token from the header): drop it, then the connection.
      res.shouldKeepAlive = false;
      discardBody(req);
    }
    if (url.startsWith('/v1/')) {
      if ((flags & (F_TOKEND_OK | F_TOKEND_BAD)) !== F_TOKEND_OK) return sendFixed(res, R_NO_HEADER);
      if ((flags & F_FORWARDED) !== 0) return sendFixed(res, R_FORWARDED);
      if (url.startsWith(TOKEN_PREFIX)) return serveToken(req, res, url, flags);
      const q = url.indexOf('?');
      if ((q < 0 ? url : url.slice(0, q)) === '/v1/verify') return serveVerify(req, res);
      return sendFixed(res, R_NOT_FOUND);
    }
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return sendFixed(res, R_NOT_FOUND);
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendFixed(res, R_GET_ONLY);
    if (path === '/healthz') return sendFixed(res, R_HEALTHY);
    if (path === '/readyz') return serveReady(res);
    serveMetrics(res);
  };

  const server = http.createServer(
    {
      maxHeaderSize: opts.maxHeaderSize ?? 8_192,
      requestTimeout,
      headersTimeout,
      // Node checks both timeouts on this period (default 30 s, far longer than the timeouts).
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(headersTimeout / 4))),
      noDelay: true,
    },
    (req, res) => {
      try {
        onRequest(req, res);
      } catch (err) {
        logger.error({ err }, 'request handler failed');
        if (!res.headersSent) sendFixed(res, R_INTERNAL);
        else res.destroy();
      }
    },
  );
  server.keepAliveTimeout = opts.keepAliveTimeoutMs ?? 5_000;
  server.headersTimeout = headersTimeout;
  server.requestTimeout = requestTimeout;

  // Node's parser counts the request line against maxHeaderSize, so an overlong URL arrives here
  // as a header overflow; tell the two apart by whether the request line ended within the limit.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const s = socket as net.Socket;
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
  });

  let listening = false;
  let closed: Promise<void> | undefined;

  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      closing = true;
      if (!listening) return resolve();
      const grace = setTimeout(() => server.closeAllConnections(), closeGraceMs);
      grace.unref();
      server.close(() => {
        clearTimeout(grace);
        resolve();
      });
      server.closeIdleConnections();
    });
    return closed;
  };

  const listen = async (addr: ListenAddress): Promise<string> => {
    if (addr.kind === 'unix') {
      await removeStaleSocket(addr.path);
      // The socket is created with the process umask: tighten it so the socket never exists, even
      // for an instant, with more than owner and group access (chmod 0660 below makes it exact).
      const umask = process.umask(0o117);
      try {
        await listenOn(server, { path: addr.path });
      } finally {
        process.umask(umask);
      }
      listening = true;
      try {
        // Group access lets another container's user (same fsGroup) reach a shared socket.
        await fs.chmod(addr.path, 0o660);
      } catch (err) {
        await close();
        throw err;
      }
      return `unix:${addr.path}`;
    }
    await listenOn(server, { host: addr.host, port: addr.port });
    listening = true;
    if (!isLoopbackHost(addr.host)) {
      logger.warn({ host: addr.host }, 'listening on a non-loopback address: anything that can reach it can ask for tokens');
    }
    const bound = server.address() as net.AddressInfo;
    const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    return `http://${host}:${bound.port}`;
  };

  return { listen, close };
}

function listenOn(server: http.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * A socket file left by a crashed tokend would make listen fail with EADDRINUSE: remove it, but
 * only if it is a socket nobody answers on (never a regular file, never a live server's socket).
 */
export async function removeStaleSocket(path: string, field = 'listen'): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isSocket()) {
    throw new TokendError('CONFIG_INVALID', `${field}: ${path} exists and is not a unix socket`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) {
    const err: NodeJS.ErrnoException = new Error(`${field}: unix socket ${path} is in use by another process`);
    err.code = 'EADDRINUSE';
    throw err;
  }
  await fs.unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
