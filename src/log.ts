import { pino, type Logger, type DestinationStream } from 'pino';

/** pino levels a config may name, quietest first. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Token event names, as in the public contract. Every log line for a token carries one. */
export const EVENTS = {
  acquired: 'token.acquired',
  refreshed: 'token.refreshed',
  refreshFailed: 'token.refresh_failed',
  expired: 'token.expired',
  seedChanged: 'token.seed_changed',
  loaded: 'token.loaded',
  storeCorrupt: 'store.corrupt',
  storeFailed: 'store.write_failed',
  revoked: 'token.revoked',
  leaseAcquired: 'lease.acquired',
  leaseLost: 'lease.lost',
  refreshTokenLost: 'token.refresh_token_lost',
  storeRestored: 'store.restored',
  storeUnavailable: 'store.unavailable',
  storeAvailable: 'store.available',
  daemonStarted: 'daemon.started',
  daemonStopping: 'daemon.stopping',
  daemonStopped: 'daemon.stopped',
  listening: 'server.listening',
  verifyRejected: 'verify.rejected',
  verifyUnavailable: 'verify.unavailable',
  verifyDiscovered: 'verify.discovered',
  /** Egress proxy: a request answered 503 because no valid token was held (never forwarded). */
  proxyRefused: 'proxy.refused',
  /** Egress proxy: the upstream refused the token (401); retried once with a new one. */
  proxyRetried: 'proxy.retried',
  /** Egress proxy: the upstream refused the token and the 401 went back to the application. */
  proxyRejected: 'proxy.rejected',
  /** Egress proxy: the upstream could not be reached or did not answer (502/504). */
  proxyUpstreamFailed: 'proxy.upstream_failed',
  /** Egress proxy: one forwarded request (debug level only). */
  proxyRequest: 'proxy.request',
} as const;

export type EventName = (typeof EVENTS)[keyof typeof EVENTS];

/**
 * Every field name that could hold a secret, at the depths tokend logs them. pino's redact needs
 * real paths (`**.x` silently redacts nothing), so both top level and one level down are listed.
 */
const SECRET_FIELDS = [
  'access_token',
  'accessToken',
  'refresh_token',
  'refreshToken',
  'id_token',
  'client_secret',
  'clientSecret',
  'password',
  'authorization',
  'Authorization',
  'token_value',
  'assertion',
  'client_assertion',
];
export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  ...SECRET_FIELDS.map((f) => `*.*.${f}`),
  'req.headers.authorization',
  'req.headers.cookie',
];

// Log lines are rare (one per token event), so a synchronous stdout costs nothing and loses no line at exit.
/** Creates the logger. The destination is injected so tests can parse the NDJSON it writes. */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tokend' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: serializeError },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/**
 * Errors are logged by code and message only: library errors can carry response bodies or
 * request options (with credentials), so their other fields are never serialized.
 */
export function serializeError(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    const out: Record<string, unknown> = { type: err.name, message: err.message };
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') out.code = code;
    const oauthError = (err as { oauthError?: unknown }).oauthError;
    if (typeof oauthError === 'string') out.oauth_error = oauthError;
    return out;
  }
  return { message: String(err) };
}

export type { Logger };
