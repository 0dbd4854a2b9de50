/**
 * One proxy's fixed parts, resolved at start-up (pino's habit: do once what can be done once),
 * the token header value, and the answers the proxy gives without asking the upstream.
 */
import type http from 'node:http';
import type { Clock } from '../clock.js';
import type { ProxyConfig } from '../config/types.js';
import { EVENTS, type Logger } from '../log.js';
import type { TokenHandle } from '../refresh/handle.js';
import type { AccessToken } from '../token.js';
import { isFieldValue } from './headers.js';
import type { ProxyMeter } from './metrics.js';
import { retryAfterSeconds, tokenUnavailableBody } from '../server/responses.js';
import type { Fixed } from './responses.js';
import { pathForLog } from './target.js';
import type { Upstream } from './upstream.js';

/** What every request of one proxy needs. */
export interface Route {
  readonly name: string;
  readonly handle: TokenHandle;
  readonly upstream: Upstream;
  /** The header the token goes in, as configured, and lower-case (to drop the application's copies). */
  readonly header: string;
  readonly headerLower: string;
  /** Written before the token: `Bearer ` (scheme and a space) or ''. */
  readonly prefix: string;
  readonly retryBodyLimit: number;
  readonly clock: Clock;
  readonly log: Logger;
  /** Per-request access lines are built only when the logger is at debug. */
  readonly debug: boolean;
  readonly meter: ProxyMeter;
  readonly unavailable: Buffer;
  /** The last token seen and its header value (undefined: not sendable as a header). */
  lastToken: AccessToken | undefined;
  lastValue: string | undefined;
}

/** Builds the route of one proxy. */
export function createRoute(cfg: ProxyConfig, handle: TokenHandle, upstream: Upstream, deps: { clock: Clock; logger: Logger; meter: ProxyMeter }): Route {
  return {
    name: cfg.name,
    handle,
    upstream,
    header: cfg.header,
    headerLower: cfg.header.toLowerCase(),
    prefix: cfg.scheme === '' ? '' : `${cfg.scheme} `,
    retryBodyLimit: cfg.retryBodyLimit,
    clock: deps.clock,
    log: deps.logger,
    debug: deps.logger.isLevelEnabled('debug'),
    meter: deps.meter,
    unavailable: tokenUnavailableBody(cfg.token),
    lastToken: undefined,
    lastValue: undefined,
  };
}

/**
 * The header value for token, computed once per token. A token that cannot be a header value
 * (a control character from a broken IdP) gives undefined: the request is refused, never sent
 * with a header node would reject or, worse, split.
 */
export function headerValue(route: Route, token: AccessToken): string | undefined {
  if (token === route.lastToken) return route.lastValue;
  const value = isFieldValue(token.accessToken) ? route.prefix + token.accessToken : undefined;
  if (value === undefined) route.log.error({ event: EVENTS.proxyRefused, reason: 'token is not a valid header value' }, 'the token cannot be sent in a header');
  route.lastToken = token;
  route.lastValue = value;
  return value;
}

/**
 * Answers 503 + Retry-After because no valid token is held: the upstream sees nothing. With an
 * unread request body the connection is closed after the answer.
 */
export function refuse(route: Route, req: http.IncomingMessage, res: http.ServerResponse, unreadBody: boolean): void {
  const retryAfter = retryAfterSeconds(route.handle.retryAfterMs());
  route.meter.refused();
  route.meter.answered(503);
  route.log.warn(
    { event: EVENTS.proxyRefused, method: req.method, path: pathForLog(req.url ?? ''), retry_after_s: Number(retryAfter) },
    'no valid token: request refused, not forwarded',
  );
  if (unreadBody) res.shouldKeepAlive = false;
  const body = route.unavailable;
  res.writeHead(503, ['Content-Type', 'application/json; charset=utf-8', 'Cache-Control', 'no-store', 'Retry-After', retryAfter, 'Content-Length', String(body.length)]);
  res.end(body);
}

/** Sends one of the proxy's fixed answers and counts it; `close` ends the connection after it. */
export function answer(route: Route, res: http.ServerResponse, r: Fixed, close: boolean): void {
  route.meter.answered(r.status);
  if (close) res.shouldKeepAlive = false;
  res.writeHead(r.status, r.headers as string[]);
  res.end(r.body);
}
