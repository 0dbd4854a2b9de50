import { pino, type Logger, type DestinationStream } from 'pino';
import { TokendError } from './errors.js';

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
  leaseDistrusted: 'lease.distrusted',
  refreshTokenLost: 'token.refresh_token_lost',
  lifetimeDisagreement: 'token.lifetime_disagreement',
  storeRestored: 'store.restored',
  storeUnavailable: 'store.unavailable',
  storeAvailable: 'store.available',
  daemonStarted: 'daemon.started',
  daemonStopping: 'daemon.stopping',
  daemonStopped: 'daemon.stopped',
  daemonReload: 'daemon.reload',
  listening: 'server.listening',
  verifyRejected: 'verify.rejected',
  verifyUnavailable: 'verify.unavailable',
  verifyDiscovered: 'verify.discovered',
  outputWritten: 'output.written',
  outputUnchanged: 'output.unchanged',
  outputFailed: 'output.failed',
  notifySent: 'notify.sent',
  notifyFailed: 'notify.failed',
  notifySuperseded: 'notify.superseded',
  notifyOutput: 'notify.output',
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
export function createLogger(level: LogLevel | 'silent', destination?: DestinationStream): Logger {
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
 * The one loggable form of an error, under the log key `error`: a TokendError's code, message,
 * OAuth error, HTTP status and reason (tokend's own messages never hold a secret); for anything
 * else only its type and errno code, because library errors can carry response bodies or request
 * options (with credentials).
 */
export function errorSummary(err: unknown): Record<string, unknown> {
  if (err instanceof TokendError) {
    const out: Record<string, unknown> = { code: err.code, message: err.message };
    if (err.oauthError !== undefined) out.oauth_error = err.oauthError;
    if (err.status !== undefined) out.status = err.status;
    if (err.reason !== undefined) out.reason = err.reason;
    return out;
  }
  const out: Record<string, unknown> = { code: 'INTERNAL', type: err instanceof Error ? err.name : typeof err };
  const errno = (err as { code?: unknown } | null)?.code;
  if (typeof errno === 'string' && /^[A-Z0-9_]{1,40}$/.test(errno)) out.errno = errno;
  return out;
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
