/**
 * The answers the proxy gives itself (the upstream's answers pass through untouched). Each is a
 * JSON body whose `error` says what happened; all are built once at start-up.
 */
import { CT_JSON } from '../server/responses.js';
import type { UpstreamFailure } from './upstream.js';

/** A response whose bytes never change. */
export interface Fixed {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Buffer;
  /** The same answer as raw HTTP/1.1 bytes with Connection: close, for a socket without a response object. */
  readonly raw: Buffer;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A fixed JSON answer. */
export function fixed(status: number, value: Record<string, string>, extra: readonly string[] = []): Fixed {
  const body = Buffer.from(JSON.stringify(value));
  const headers = ['Content-Type', CT_JSON, 'Cache-Control', 'no-store', ...extra, 'Content-Length', String(body.length)];
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\nConnection: close\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return { status, headers, body, raw: Buffer.concat([Buffer.from(`${head}\r\n`), body]) };
}

/** Why the proxy answered in place of the upstream. */
export const R = {
  notOriginForm: fixed(400, {
    error: 'invalid_request',
    message: 'only a path is accepted as request target: this proxy reaches its configured upstream only',
  }),
  dotSegment: fixed(400, { error: 'invalid_path', message: 'dot segments (..) are not accepted in the path' }),
  connect: fixed(
    405,
    { error: 'method_not_allowed', message: 'CONNECT is refused: this proxy reaches its configured upstream only' },
    ['Allow', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'],
  ),
  unreachable: fixed(502, { error: 'upstream_unreachable', message: 'could not connect to the upstream' }),
  tlsFailed: fixed(502, { error: 'upstream_unreachable', message: 'TLS handshake with the upstream failed' }),
  failed: fixed(502, { error: 'upstream_failed', message: 'the upstream closed the connection without a complete response' }),
  connectTimeout: fixed(504, { error: 'upstream_timeout', message: 'connecting to the upstream timed out' }),
  timeout: fixed(504, { error: 'upstream_timeout', message: 'the upstream did not answer in time' }),
  tooManyHeaders: fixed(431, { error: 'request_header_fields_too_large', message: 'too many header lines' }),
} as const;

/** The answer for each way an upstream request can fail without a response. */
export const FAILURE_ANSWER: Readonly<Record<UpstreamFailure, Fixed>> = {
  unreachable: R.unreachable,
  tls: R.tlsFailed,
  failed: R.failed,
  connect_timeout: R.connectTimeout,
  timeout: R.timeout,
};
