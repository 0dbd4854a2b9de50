import type http from 'node:http';
import { isUsable, remainingMs, TOKEN_NAME_RE, type AccessToken } from '../token.js';
import type { VerifyOutcome } from '../verify/types.js';
import {
  MAX_MIN_TTL_S,
  R_BAD_MIN_TTL,
  R_GET_ONLY,
  R_HEALTHY,
  R_INTERNAL,
  R_NO_BEARER,
  R_NO_VERIFIER,
  R_NOT_FOUND,
  R_POST_ONLY,
  R_READY,
  R_UNKNOWN_TOKEN,
  R_VERIFY_FAILED,
  send,
  sendFixed,
  sendJson,
} from './responses.js';
import { newEntry, refreshEntry, unavailableHeaders, type TokenEntry } from './token-entry.js';
import type { EndpointState, PublicState } from './types.js';

/** Path prefix of the token route. */
export const TOKEN_PREFIX = '/v1/token/';
const MIN_TTL_RE = /^[0-9]{1,5}$/;
const BEARER_RE = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

// ---------------------------------------------------------------------------------------------
// Routes every listener serves: /healthz, /readyz, /metrics (GET or HEAD, no header needed).

/** Answers /healthz, /readyz and /metrics; 404 for any other path (including /v1/...). */
export function routePublic(state: PublicState, req: http.IncomingMessage, res: http.ServerResponse, url: string): void {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return sendFixed(state, res, R_NOT_FOUND);
  if (req.method !== 'GET' && req.method !== 'HEAD') return sendFixed(state, res, R_GET_ONLY);
  if (path === '/healthz') return sendFixed(state, res, R_HEALTHY);
  if (path === '/readyz') return serveReady(state, res);
  serveMetrics(state, res);
}

/** 200 `{"ready":true}` when every token is ready, else 503 naming those that are not. */
function serveReady(state: PublicState, res: http.ServerResponse): void {
  const notReady: Array<{ token: string; reason: string }> = [];
  for (const [name, handle] of state.handles) {
    const s = handle.status();
    if (!s.ready) notReady.push({ token: name, reason: s.reason ?? 'not ready' });
  }
  if (notReady.length === 0) return sendFixed(state, res, R_READY);
  sendJson(state, res, 503, { ready: false, not_ready: notReady });
}

function serveMetrics(state: PublicState, res: http.ServerResponse): void {
  state.metrics.render().then(
    (text) => {
      if (res.destroyed) return;
      // One encoding pass: the length comes with the buffer.
      const body = Buffer.from(text);
      const headers = ['Content-Type', state.metrics.contentType, 'Cache-Control', 'no-store', 'Content-Length', String(body.length)];
      send(state, res, 200, headers, body);
    },
    (err: unknown) => {
      state.logger.warn({ error: err }, 'rendering metrics failed');
      if (!res.destroyed) sendFixed(state, res, R_INTERNAL);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// /v1/ routes: the caller has already checked Tokend-Request, proxies and Host.

/** Routes a checked `/v1/...` request. */
export function routeV1(state: EndpointState, req: http.IncomingMessage, res: http.ServerResponse, url: string, text: boolean): void {
  if (url.startsWith(TOKEN_PREFIX)) return serveToken(state, req, res, url, text);
  const q = url.indexOf('?');
  if ((q < 0 ? url : url.slice(0, q)) === '/v1/verify') return serveVerify(state, req, res);
  sendFixed(state, res, R_NOT_FOUND);
}

/** The entry for a configured token name, created on first use; undefined for any other name. */
function entryFor(state: EndpointState, name: string): TokenEntry | undefined {
  let e = state.entries.get(name);
  if (e === undefined) {
    const handle = state.handles.get(name);
    if (handle === undefined) return undefined;
    e = newEntry(handle);
    state.entries.set(name, e);
  }
  return e;
}

function sendUnavailable(state: EndpointState, res: http.ServerResponse, entry: TokenEntry): void {
  send(state, res, 503, unavailableHeaders(entry), entry.unavailableBody);
}

function sendToken(state: EndpointState, res: http.ServerResponse, entry: TokenEntry, token: AccessToken | undefined, text: boolean): void {
  // The handle promises a valid token; checking again here costs one comparison and makes
  // "never an expired token" this function's own guarantee. A token with under a second left
  // would expire in the caller's hands (and read as expires_in 0), so it counts as expired.
  if (!isUsable(token, state.clock)) {
    // A consumer is waiting: try now rather than at the next scheduled retry (rate-limited there).
    entry.handle.wake();
    return sendUnavailable(state, res, entry);
  }
  const expiresIn = Math.floor(remainingMs(token, state.clock) / 1000);
  if (text) {
    if (entry.token !== token) refreshEntry(entry, token, expiresIn);
    return send(state, res, 200, entry.textHeaders, entry.text);
  }
  if (entry.token !== token || entry.expiresIn !== expiresIn) refreshEntry(entry, token, expiresIn);
  send(state, res, 200, entry.jsonHeaders, entry.json);
}

/** Parses `?min_ttl=S` from a query string; undefined when absent, NaN when invalid. */
export function parseMinTtl(query: string): number | undefined {
  const values = new URLSearchParams(query).getAll('min_ttl');
  if (values.length === 0) return undefined;
  const v = values[0] as string;
  if (values.length > 1 || !MIN_TTL_RE.test(v)) return Number.NaN;
  const n = Number(v);
  return n <= MAX_MIN_TTL_S ? n : Number.NaN;
}

/** `GET /v1/token/NAME[?min_ttl=S]`: no I/O unless min_ttl asks for a refresh. */
function serveToken(state: EndpointState, req: http.IncomingMessage, res: http.ServerResponse, url: string, text: boolean): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') return sendFixed(state, res, R_GET_ONLY);
  // The common request, a known name without a query, is one Map lookup on the whole URL.
  const known = state.byPath.get(url);
  if (known !== undefined) return sendToken(state, res, known, known.handle.current(), text);
  const q = url.indexOf('?', TOKEN_PREFIX.length);
  const name = q < 0 ? url.slice(TOKEN_PREFIX.length) : url.slice(TOKEN_PREFIX.length, q);
  if (!TOKEN_NAME_RE.test(name)) return sendFixed(state, res, R_UNKNOWN_TOKEN);
  const entry = entryFor(state, name);
  if (entry === undefined) return sendFixed(state, res, R_UNKNOWN_TOKEN);
  if (q < 0) {
    // Only configured names get here, so the map stays as small as the config.
    state.byPath.set(url, entry);
    return sendToken(state, res, entry, entry.handle.current(), text);
  }
  const minTtl = parseMinTtl(url.slice(q + 1));
  if (minTtl === undefined) return sendToken(state, res, entry, entry.handle.current(), text);
  if (Number.isNaN(minTtl)) return sendFixed(state, res, R_BAD_MIN_TTL);
  serveFresh(state, res, entry, minTtl * 1000, text);
}

/** Answers once the handle has a token with at least minTtlMs left (or 503 when it cannot get one). */
function serveFresh(state: EndpointState, res: http.ServerResponse, entry: TokenEntry, minTtlMs: number, text: boolean): void {
  // The refresh is abandoned (by this request; others may still share it) if the client leaves.
  const ac = new AbortController();
  const onClose = (): void => ac.abort();
  res.once('close', onClose);
  let pending: Promise<AccessToken>;
  try {
    pending = entry.handle.ensureFresh(minTtlMs, ac.signal);
  } catch (err) {
    pending = Promise.reject(err);
  }
  pending.then(
    (token) => {
      res.off('close', onClose);
      if (!res.destroyed && !res.headersSent) sendToken(state, res, entry, token, text);
    },
    () => {
      res.off('close', onClose);
      if (!res.destroyed && !res.headersSent) sendUnavailable(state, res, entry);
    },
  );
}

/** `POST /v1/verify` with `Authorization: Bearer TOKEN`: the verdict, never the token. */
function serveVerify(state: EndpointState, req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.method !== 'POST') return sendFixed(state, res, R_POST_ONLY);
  const verifier = state.verifier;
  if (verifier === undefined) return sendFixed(state, res, R_NO_VERIFIER);
  const bearer = BEARER_RE.exec(req.headers.authorization ?? '')?.[1];
  if (bearer === undefined) return sendFixed(state, res, R_NO_BEARER);

  // One controller, aborted when the client leaves or the time is up; the timer is cleared as soon
  // as the verdict is in, so nothing lingers.
  const ac = new AbortController();
  const onClose = (): void => ac.abort();
  res.once('close', onClose);
  const timer = setTimeout(() => ac.abort(new Error('verification timed out')), state.verifyTimeoutMs);
  timer.unref();
  const done = (): boolean => {
    clearTimeout(timer);
    res.off('close', onClose);
    return !res.destroyed && !res.headersSent;
  };
  let pending: Promise<VerifyOutcome>;
  try {
    pending = verifier(bearer, ac.signal);
  } catch (err) {
    pending = Promise.reject(err);
  }
  pending.then(
    (outcome) => {
      if (done()) sendVerdict(state, res, outcome);
    },
    (err: unknown) => {
      if (!done()) return;
      state.logger.warn({ error: err }, 'token verification failed unexpectedly');
      sendFixed(state, res, R_VERIFY_FAILED);
    },
  );
}

function sendVerdict(state: EndpointState, res: http.ServerResponse, outcome: VerifyOutcome): void {
  if (outcome.active) {
    return sendJson(state, res, 200, { active: true, issuer: outcome.issuer, claims: outcome.claims });
  }
  const status = outcome.status ?? 401;
  if (status >= 500) return sendJson(state, res, status, { error: 'temporarily_unavailable', reason: outcome.reason });
  // RFC 6750 §3: a refused bearer token gets a WWW-Authenticate challenge.
  const extra = status === 401 ? ['WWW-Authenticate', 'Bearer realm="tokend", error="invalid_token"'] : [];
  sendJson(state, res, status, { error: 'invalid_token', reason: outcome.reason }, extra);
}
