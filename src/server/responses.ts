import type http from 'node:http';

/** The 503 body for a token without a valid access token, naming it (a name, never a value). */
export function tokenUnavailableBody(name: string): Buffer {
  return Buffer.from(JSON.stringify({ error: 'token_unavailable', message: `no valid access token for "${name}" right now` }));
}

/** RFC 9110 §10.2.3 delay-seconds: whole seconds, at least 1 (an odd value never tells a client to hammer). */
export function retryAfterSeconds(ms: number): string {
  return String(Number.isFinite(ms) ? Math.max(1, Math.ceil(ms / 1000)) : 1);
}

/** Content types of tokend's own answers. */
export const CT_JSON = 'application/json; charset=utf-8';
export const CT_TEXT = 'text/plain; charset=utf-8';

/** A response whose bytes never change, built once at start-up. */
export interface Fixed {
  readonly status: number;
  /** Flat [name, value, ...] list: the cheapest form writeHead takes. */
  readonly headers: http.OutgoingHttpHeader[];
  readonly body: Buffer;
}

/** Builds a fixed response: `Cache-Control: no-store` and `Content-Length` always, `extra` headers after them. */
export function fixed(status: number, contentType: string, body: string, extra: http.OutgoingHttpHeader[] = []): Fixed {
  const buf = Buffer.from(body);
  return {
    status,
    headers: ['Content-Type', contentType, 'Cache-Control', 'no-store', 'Content-Length', String(buf.length), ...extra],
    body: buf,
  };
}

/** A fixed JSON response. */
export function json(status: number, value: unknown, extra?: http.OutgoingHttpHeader[]): Fixed {
  return fixed(status, CT_JSON, JSON.stringify(value), extra);
}

/** Largest `min_ttl` a client may ask for, in seconds (one day). */
export const MAX_MIN_TTL_S = 86_400;

/** 403: a /v1/ request without `Tokend-Request: 1`. */
export const R_NO_HEADER = json(403, { error: 'forbidden', message: 'missing Tokend-Request: 1 header' });
/** 403: a /v1/ request relayed by a proxy. */
export const R_FORWARDED = json(403, {
  error: 'forbidden',
  message: 'proxied requests (X-Forwarded-For or Forwarded header) are refused',
});
/** 400: more than one Host header (RFC 9112 §3.2). */
export const R_TWO_HOSTS = json(400, { error: 'invalid_request', message: 'more than one Host header' });
/** 404: a token name that is not configured (never echoed). */
export const R_UNKNOWN_TOKEN = json(404, { error: 'unknown_token' });
/** 404: any other path. */
export const R_NOT_FOUND = json(404, { error: 'not_found' });
/** 404: /v1/verify without a verify section. */
export const R_NO_VERIFIER = json(404, { error: 'not_found', message: 'token verification is not configured' });
/** 405 for routes that take GET and HEAD. */
export const R_GET_ONLY = json(405, { error: 'method_not_allowed' }, ['Allow', 'GET, HEAD']);
/** 405 for /v1/verify. */
export const R_POST_ONLY = json(405, { error: 'method_not_allowed' }, ['Allow', 'POST']);
/** 400: a min_ttl that is not an integer from 0 to MAX_MIN_TTL_S, or given twice. */
export const R_BAD_MIN_TTL = json(400, {
  error: 'invalid_request',
  message: `min_ttl must be an integer number of seconds from 0 to ${MAX_MIN_TTL_S}, given once`,
});
/** 400: /v1/verify without `Authorization: Bearer`. */
export const R_NO_BEARER = json(
  400,
  { error: 'invalid_request', message: 'missing Authorization: Bearer header' },
  ['WWW-Authenticate', 'Bearer realm="tokend"'],
);
/** 414: a request target over the URL limit. */
export const R_URI_TOO_LONG = json(414, { error: 'uri_too_long' });
/** 200 `ok`: /healthz. */
export const R_HEALTHY = fixed(200, CT_TEXT, 'ok\n');
/** 200: /readyz when every token is ready. */
export const R_READY = json(200, { ready: true });
/** 503: verification threw (logged) or timed out. */
export const R_VERIFY_FAILED = json(503, {
  error: 'temporarily_unavailable',
  message: 'token verification could not be completed',
});
/** 500: a handler threw (logged). */
export const R_INTERNAL = json(500, { error: 'internal_error' });

/**
 * 403 for a Host that is neither loopback nor allowed. `shownHost` must already be sanitized
 * (see request-guard.ts): it is attacker-chosen text.
 */
export function forbiddenHost(shownHost: string): Fixed {
  return json(403, {
    error: 'forbidden',
    message: `Host ${shownHost} is not a loopback name; add it to allowedHosts`,
  });
}

/** 431 for a request with too many header lines (some would have been dropped unseen). */
export function tooManyHeaders(limit: number): Fixed {
  return json(431, {
    error: 'request_header_fields_too_large',
    message: `more than ${limit - 1} header lines`,
  });
}

/** Raw answers for errors node's parser raises before a request object exists. */
function rawResponse(status: number, statusText: string, error: string): Buffer {
  const body = JSON.stringify({ error });
  return Buffer.from(
    `HTTP/1.1 ${status} ${statusText}\r\nConnection: close\r\nContent-Type: ${CT_JSON}\r\n` +
      `Cache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
/** Raw answers written straight to the socket (Connection: close) for parser errors and silent connections. */
export const RAW_414 = rawResponse(414, 'URI Too Long', 'uri_too_long');
export const RAW_431 = rawResponse(431, 'Request Header Fields Too Large', 'request_header_fields_too_large');
export const RAW_408 = rawResponse(408, 'Request Timeout', 'request_timeout');
export const RAW_413 = rawResponse(413, 'Payload Too Large', 'payload_too_large');
export const RAW_400 = rawResponse(400, 'Bad Request', 'bad_request');

/** What sending needs to know of its server: whether it is closing. */
export interface SendState {
  /** Set by close(): each answer then ends its connection so close() does not wait on keep-alive. */
  closing: boolean;
}

/** Writes one whole response. */
export function send(
  state: SendState,
  res: http.ServerResponse,
  status: number,
  headers: http.OutgoingHttpHeader[],
  body: Buffer | string,
): void {
  if (state.closing) res.shouldKeepAlive = false;
  res.writeHead(status, headers);
  res.end(body);
}

/** Writes a prebuilt response. */
export function sendFixed(state: SendState, res: http.ServerResponse, r: Fixed): void {
  send(state, res, r.status, r.headers, r.body);
}

/** Writes a JSON response built for this request (rare answers only: it allocates). */
export function sendJson(
  state: SendState,
  res: http.ServerResponse,
  status: number,
  value: unknown,
  extra: http.OutgoingHttpHeader[] = [],
): void {
  sendFixed(state, res, json(status, value, extra));
}
