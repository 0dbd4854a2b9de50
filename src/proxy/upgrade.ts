/**
 * Protocol upgrades (WebSocket) through the egress proxy: the handshake goes to the upstream with
 * the token header set like any request; on 101 the two connections are spliced together. The
 * same refusals apply (path, no token); a 401 is passed back, not retried (a WebSocket client
 * reconnects, and then gets the new token).
 */
import type http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { EVENTS } from '../log.js';
import { responseHeaders, scanRequest } from './headers.js';
import { retryAfterSeconds } from '../server/responses.js';
import { FAILURE_ANSWER, R, type Fixed } from './responses.js';
import { headerValue, type Route } from './route.js';
import { checkTarget, pathForLog } from './target.js';
import { classifyUpstreamError, UpstreamTimeout } from './upstream.js';


const noop = (): void => undefined;

function statusHead(status: number, message: string | undefined, headers: readonly string[]): string {
  let head = `HTTP/1.1 ${status} ${message ?? ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return head;
}

function rawAnswer(route: Route, socket: Duplex, r: Fixed): void {
  route.meter.answered(r.status);
  socket.end(r.raw);
}

function refuseUpgrade(route: Route, req: http.IncomingMessage, socket: Duplex): void {
  const retryAfter = retryAfterSeconds(route.handle.retryAfterMs());
  route.meter.refused();
  route.meter.answered(503);
  route.log.warn(
    { event: EVENTS.proxyRefused, method: req.method, path: pathForLog(req.url ?? ''), upgrade: true, retry_after_s: Number(retryAfter) },
    'no valid token: upgrade refused, not forwarded',
  );
  const body = route.unavailable;
  const head = statusHead(503, 'Service Unavailable', [
    'Connection', 'close', 'Content-Type', 'application/json; charset=utf-8', 'Cache-Control', 'no-store',
    'Retry-After', retryAfter, 'Content-Length', String(body.length),
  ]);
  socket.end(Buffer.concat([Buffer.from(`${head}\r\n`), body]));
}

/** The upstream switched protocols: its 101 goes to the application, then bytes flow both ways untouched. */
function splice(route: Route, ures: http.IncomingMessage, socket: Duplex, head: Buffer, usocket: net.Socket, uhead: Buffer): void {
  route.meter.answered(101);
  usocket.on('error', noop);
  // An upgraded connection may rightly stay silent for long: the request timeout ends here.
  usocket.setTimeout(0);
  (socket as net.Socket).setTimeout?.(0);
  socket.write(`${statusHead(101, ures.statusMessage, [...responseHeaders(ures.rawHeaders, true), 'Connection', 'Upgrade'])}\r\n`);
  if (uhead.length > 0) socket.write(uhead);
  if (head.length > 0) usocket.write(head);
  usocket.pipe(socket);
  socket.pipe(usocket);
  usocket.once('close', () => socket.destroy());
  socket.once('close', () => usocket.destroy());
}

/** The upstream declined to upgrade (a 401, a 400): its answer goes back, then the connection closes. */
function passDeclined(route: Route, ures: http.IncomingMessage, socket: Duplex): void {
  const status = ures.statusCode ?? 502;
  route.meter.answered(status);
  ures.on('error', noop);
  socket.write(`${statusHead(status, ures.statusMessage, [...responseHeaders(ures.rawHeaders), 'Connection', 'close'])}\r\n`);
  ures.pipe(socket);
}

/**
 * Handles one upgrade request (node:http 'upgrade' event). `track` registers the spliced client
 * socket so that closing the proxy can end it.
 */
export function handleUpgrade(route: Route, req: http.IncomingMessage, socket: Duplex, head: Buffer, track: (s: Duplex) => void): void {
  socket.on('error', noop);
  const target = req.url as string;
  const problem = checkTarget(target);
  if (problem !== undefined) return rawAnswer(route, socket, problem === 'dot_segment' ? R.dotSegment : R.notOriginForm);
  const token = route.handle.current();
  const value = token === undefined ? undefined : headerValue(route, token);
  if (value === undefined) return refuseUpgrade(route, req, socket);

  const up = route.upstream;
  const headers = scanRequest(req.rawHeaders, route.headerLower, true).headers;
  headers.push('Connection', 'Upgrade', 'Host', up.hostHeader, route.header, value);
  const ureq = up.request({
    agent: up.agent,
    hostname: up.hostname,
    port: up.port,
    servername: up.servername,
    method: req.method,
    path: up.prefix + target,
    headers,
    setHost: false,
    timeout: up.timeoutMs,
  });
  const sentAt = route.clock.monotonic();
  let answered = false;
  ureq.on('timeout', () => ureq.destroy(new UpstreamTimeout('response')));
  socket.once('close', () => {
    if (!answered) ureq.destroy();
  });

  ureq.on('upgrade', (ures: http.IncomingMessage, usocket: net.Socket, uhead: Buffer) => {
    answered = true;
    route.meter.upstreamLatency(route.clock.monotonic() - sentAt);
    splice(route, ures, socket, head, usocket, uhead);
    track(socket);
  });
  ureq.on('response', (ures: http.IncomingMessage) => {
    answered = true;
    route.meter.upstreamLatency(route.clock.monotonic() - sentAt);
    passDeclined(route, ures, socket);
  });
  ureq.on('error', (err) => {
    if (answered || socket.destroyed) return;
    answered = true;
    const kind = classifyUpstreamError(err);
    route.meter.upstreamFailed(kind);
    route.log.warn(
      { event: EVENTS.proxyUpstreamFailed, error: kind, code: (err as NodeJS.ErrnoException).code, method: req.method, path: pathForLog(target), upgrade: true },
      'upstream request failed',
    );
    rawAnswer(route, socket, FAILURE_ANSWER[kind]);
  });
  ureq.end();
}
