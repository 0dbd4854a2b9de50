/**
 * One request through the egress proxy: the application's request goes to the upstream with the
 * current token in place of whatever credential it carried, and the upstream's answer streams
 * back. Bodies stream both ways with backpressure (memory per request is bounded by the stream
 * buffers, plus at most retryBodyLimit for a body kept for a retry).
 *
 * A 401 that says the token is invalid gets one forced refresh (coalesced across requests by the
 * TokenHandle) and exactly one retry, for a request that can be replayed: no body, or a body kept
 * whole within retryBodyLimit. Never a loop: the retry's answer goes back as it is.
 */
import type http from 'node:http';
import { EVENTS } from '../log.js';
import type { AccessToken } from '../token.js';
import { rejectsToken, responseHeaders, scanRequest, type RequestScan } from './headers.js';
import { FAILURE_ANSWER, R } from './responses.js';
import { answer, headerValue, refuse, type Route } from './route.js';
import { checkTarget, pathForLog } from './target.js';
import { classifyUpstreamError, UpstreamTimeout } from './upstream.js';

/** Largest 401 body kept while a new token is fetched (the answer if none comes); larger ones pass through unretried. */
const MAX_KEPT_401_BODY = 16 * 1024;


// RFC 9110 §9.2.2: a request with one of these methods may be sent again after a connection failure.
const IDEMPOTENT: ReadonlySet<string | undefined> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

const noop = (): void => undefined;

// Listeners are shared functions that find their Exchange on the emitter (node calls a listener
// with `this` set to the emitter), so a request allocates no closure per event.
const EX = Symbol('exchange');
type Tagged<T> = T & { [EX]?: Exchange };

function onClientClose(this: Tagged<http.ServerResponse>): void {
  this[EX]?.clientClosed();
}
function onUpstreamResponse(this: Tagged<http.ClientRequest>, ures: http.IncomingMessage): void {
  this[EX]?.onResponse(ures);
}
function onUpstreamError(this: Tagged<http.ClientRequest>, err: Error): void {
  this[EX]?.onError(this, err);
}
function onUpstreamTimeout(this: http.ClientRequest): void {
  this.destroy(new UpstreamTimeout('response'));
}
/** The upstream's body broke off (reset, timeout): the application must not take it for complete. */
function onUpstreamBodyError(this: http.IncomingMessage & { req?: Tagged<http.ClientRequest> }): void {
  this.req?.[EX]?.cut();
}

/** The request handler of one proxy (node:http 'request' event). */
export function handleRequest(route: Route, req: http.IncomingMessage, res: http.ServerResponse): void {
  const target = req.url as string;
  const problem = checkTarget(target);
  if (problem !== undefined) return answer(route, res, problem === 'dot_segment' ? R.dotSegment : R.notOriginForm, true);
  const scan = scanRequest(req.rawHeaders, route.headerLower, false);
  const hasBody = scan.contentLength > 0 || scan.chunked;
  // Checked before the body is read, so a refused upload costs nothing; checked again at sending.
  if (route.handle.current() === undefined) return refuse(route, req, res, hasBody);
  new Exchange(route, req, res, target, scan).begin(hasBody);
}

/**
 * Reads a request body until it ends or exceeds limit bytes. `done(true, chunks, n)` when it ended
 * within the limit; `done(false, chunks, n)` with the request paused once it went over (the rest is
 * still unread).
 */
function collectBody(req: http.IncomingMessage, limit: number, done: (complete: boolean, chunks: Buffer[], size: number) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    size += chunk.length;
    if (size > limit) {
      stop();
      req.pause();
      done(false, chunks, size);
    }
  };
  const onEnd = (): void => {
    stop();
    done(true, chunks, size);
  };
  const stop = (): void => {
    req.off('data', onData);
    req.off('end', onEnd);
  };
  req.on('data', onData);
  req.on('end', onEnd);
}

class Exchange {
  private readonly method: string;
  /** The request's headers to forward, then Host, the token header and framing; see headersFor. */
  private readonly headers: string[];
  private valueAt = -1;
  private body: Buffer | undefined;
  /** The first chunks of a body that streams (read before it was known to be too large to keep). */
  private streamed: Buffer[] | undefined;
  private replayable = false;
  private token: AccessToken | undefined;
  private attempt = 0;
  private resent = false;
  private ureq: http.ClientRequest | undefined;
  private sentAt = 0;
  /** When the request arrived (monotonic ms), read only for debug access lines. */
  private readonly startedAt: number;
  private responded = false;
  private gone = false;
  private abort: AbortController | undefined;

  constructor(
    private readonly route: Route,
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
    private readonly target: string,
    private readonly scan: RequestScan,
  ) {
    this.method = req.method ?? 'GET';
    this.headers = scan.headers;
    this.startedAt = route.debug ? route.clock.monotonic() : 0;
    (res as Tagged<http.ServerResponse>)[EX] = this;
    res.once('close', onClientClose);
    req.on('error', noop); // an aborted upload; 'close' above does the cleanup
    if (route.debug) res.once('finish', () => this.logAccess());
  }

  /** The response closed: if it had not finished, the application went away. */
  clientClosed(): void {
    if (this.res.writableFinished) return;
    // Stop the upstream request and any refresh it waits for.
    this.gone = true;
    this.ureq?.destroy();
    this.abort?.abort();
  }

  /** The upstream's answer broke off mid-body. */
  cut(): void {
    this.res.destroy();
  }

  begin(hasBody: boolean): void {
    const { contentLength } = this.scan;
    if (!hasBody) {
      this.replayable = true;
      return this.send();
    }
    if (contentLength > this.route.retryBodyLimit) {
      this.streamed = [];
      return this.send();
    }
    collectBody(this.req, this.route.retryBodyLimit, (complete, chunks, size) => {
      if (this.gone) return;
      if (complete) {
        this.body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
        this.replayable = true;
      } else {
        this.streamed = chunks;
      }
      this.send();
    });
  }

  /** Sends the request upstream (again, after a 401 or a dead pooled connection). */
  private send(): void {
    const { route, req } = this;
    const token = this.attempt === 0 ? route.handle.current() : this.token;
    const value = token === undefined ? undefined : headerValue(route, token);
    if (token === undefined || value === undefined) return refuse(route, req, this.res, !req.complete);
    this.token = token;
    const up = route.upstream;
    const ureq = up.request({
      agent: up.agent,
      hostname: up.hostname,
      port: up.port,
      servername: up.servername,
      method: this.method,
      path: up.prefix + this.target,
      headers: this.headersFor(value),
      setHost: false,
      timeout: up.timeoutMs,
    });
    this.ureq = ureq;
    (ureq as Tagged<http.ClientRequest>)[EX] = this;
    ureq.on('response', onUpstreamResponse);
    ureq.on('error', onUpstreamError);
    ureq.on('timeout', onUpstreamTimeout);
    this.sentAt = route.clock.monotonic();
    if (this.streamed === undefined) {
      ureq.end(this.body);
      return;
    }
    for (const chunk of this.streamed) ureq.write(chunk);
    this.streamed = [];
    req.pipe(ureq);
  }

  /** The forwarded headers plus Host, the token header and the framing of the body sent. */
  private headersFor(value: string): string[] {
    const h = this.headers;
    if (this.valueAt >= 0) {
      h[this.valueAt] = value;
      return h;
    }
    h.push('Host', this.route.upstream.hostHeader, this.route.header, value);
    this.valueAt = h.length - 1;
    const { contentLength, chunked } = this.scan;
    if (this.body !== undefined) h.push('Content-Length', String(this.body.length));
    else if (contentLength >= 0) h.push('Content-Length', String(contentLength));
    else if (chunked) h.push('Transfer-Encoding', 'chunked');
    return h;
  }

  onResponse(ures: http.IncomingMessage): void {
    this.route.meter.upstreamLatency(this.route.clock.monotonic() - this.sentAt);
    ures.on('error', onUpstreamBodyError);
    if (this.gone) return void ures.resume();
    if (ures.statusCode === 401 && this.attempt === 0 && rejectsToken(ures.headers['www-authenticate'])) {
      if (this.replayable) return this.keep401(ures);
      this.logRejected('request body not kept for a retry');
    } else if (ures.statusCode === 401 && this.attempt > 0 && rejectsToken(ures.headers['www-authenticate'])) {
      this.logRejected('the new token was refused too');
    }
    this.pass(ures, undefined);
  }

  /** Streams the upstream's answer to the application (after `head`, chunks already read of it). */
  private pass(ures: http.IncomingMessage, head: Buffer[] | undefined): void {
    const { res } = this;
    const status = ures.statusCode ?? 502;
    this.responded = true;
    this.route.meter.answered(status);
    // An answer before the upload ended (413, 401 on a streamed body): the rest of the upload is
    // not wanted, and the connection cannot carry another request behind it.
    if (!this.req.complete) res.shouldKeepAlive = false;
    res.writeHead(status, ures.statusMessage, responseHeaders(ures.rawHeaders));
    if (head !== undefined) for (const chunk of head) res.write(chunk);
    ures.pipe(res);
  }

  /** Keeps a 401 (bounded) while a new token is fetched: it is the answer if none comes. */
  private keep401(ures: http.IncomingMessage): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (size <= MAX_KEPT_401_BODY) return;
      ures.off('data', onData).off('end', onEnd);
      this.logRejected('401 body too large to keep for a retry');
      this.pass(ures, chunks);
    };
    const onEnd = (): void => this.retry(ures, chunks);
    ures.on('data', onData).on('end', onEnd);
  }

  private retry(ures: http.IncomingMessage, kept: Buffer[]): void {
    const { route } = this;
    const rejected = this.token as AccessToken;
    this.abort = new AbortController();
    let next: Promise<AccessToken>;
    try {
      next = route.handle.refreshAfterRejection(rejected, this.abort.signal);
    } catch (err) {
      next = Promise.reject(err);
    }
    next.then(
      (token) => {
        if (this.gone) return;
        this.attempt = 1;
        this.token = token;
        route.meter.retried();
        route.log.info({ event: EVENTS.proxyRetried, method: this.method, path: pathForLog(this.target) }, 'upstream refused the token; retrying once with a new one');
        this.send();
      },
      () => {
        if (this.gone) return;
        this.logRejected('no other valid token could be obtained');
        this.responded = true;
        const status = ures.statusCode ?? 401;
        route.meter.answered(status);
        this.res.writeHead(status, ures.statusMessage, responseHeaders(ures.rawHeaders));
        this.res.end(Buffer.concat(kept));
      },
    );
  }

  onError(ureq: http.ClientRequest, err: Error): void {
    // Once the answer streams, its own 'error' decides (a request write failing after an early
    // answer, a 413 say, must not cut that answer).
    if (this.gone || ureq !== this.ureq || this.responded) return;
    const code = (err as NodeJS.ErrnoException).code;
    // A pooled connection the upstream had already closed: the request never reached it, so an
    // idempotent one goes once more on a fresh connection (node's documented reusedSocket pattern).
    if (ureq.reusedSocket && !this.resent && this.replayable && IDEMPOTENT.has(this.method) && (code === 'ECONNRESET' || code === 'EPIPE')) {
      this.resent = true;
      return this.send();
    }
    const kind = classifyUpstreamError(err);
    this.route.meter.upstreamFailed(kind);
    this.route.log.warn(
      { event: EVENTS.proxyUpstreamFailed, error: kind, code, method: this.method, path: pathForLog(this.target) },
      'upstream request failed',
    );
    answer(this.route, this.res, FAILURE_ANSWER[kind], !this.req.complete);
  }

  private logRejected(reason: string): void {
    this.route.log.warn({ event: EVENTS.proxyRejected, reason, method: this.method, path: pathForLog(this.target) }, 'upstream refused the token (401)');
  }

  private logAccess(): void {
    this.route.log.debug(
      {
        event: EVENTS.proxyRequest,
        method: this.method,
        path: pathForLog(this.target),
        status: this.res.statusCode,
        retried: this.attempt > 0,
        duration_ms: Math.round((this.route.clock.monotonic() - this.startedAt) * 1000) / 1000,
      },
      'proxied',
    );
  }
}
