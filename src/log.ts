import type { Writable } from 'node:stream';
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
  /** `tokend run` could not start (or stop cleanly); written by the CLI besides its stderr message. */
  daemonFailed: 'daemon.failed',
  /** Log lines were dropped while stdout was not being read; says how many. */
  logDropped: 'log.dropped',
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
  'subject_token',
  'actor_token',
];
export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  ...SECRET_FIELDS.map((f) => `*.*.${f}`),
  'req.headers.authorization',
  'req.headers.cookie',
];

/** Log output held in memory while stdout is not being read, in characters; beyond it lines are dropped. */
export const DEFAULT_LOG_BUFFER_CHARS = 262_144;

/**
 * A log destination that never blocks the event loop: lines go to a stream (stdout) whose writes
 * are asynchronous when it is a pipe or socket; while the reader is not keeping up, up to
 * maxBuffered characters wait in memory and further lines are dropped and counted. A synchronous
 * stdout (the old design) froze the whole process, /healthz and refresh timers included, once a
 * pipe nobody read was full (about 420 lines). Files and terminals are written synchronously by
 * Node itself and never fill up this way.
 */
export class AsyncLogDestination implements DestinationStream {
  /** Lines dropped since start (the `tokend_log_lines_dropped_total` metric). */
  droppedLines = 0;
  /** Called once writing resumes after drops, with the number dropped meanwhile (createLogger logs it). */
  onResumed: ((dropped: number) => void) | undefined;
  private droppedSinceResume = 0;
  private awaitingDrain = false;
  private broken = false;
  private readonly maxBuffered: number;

  constructor(
    private readonly stream: Writable = process.stdout,
    maxBuffered = DEFAULT_LOG_BUFFER_CHARS,
  ) {
    // Below the high-water mark a full stream would never emit 'drain', and writing would never resume.
    this.maxBuffered = Math.max(maxBuffered, stream.writableHighWaterMark);
    // EPIPE and the like: the reader is gone. Count what follows as dropped instead of crashing.
    stream.on('error', () => {
      this.broken = true;
    });
  }

  /** Writes one line (pino passes them whole), or drops it when too much is still unwritten. */
  write(line: string): void {
    if (this.broken || this.stream.writableLength + line.length > this.maxBuffered) {
      this.droppedLines++;
      this.droppedSinceResume++;
      if (!this.awaitingDrain && !this.broken && this.stream.writableNeedDrain) {
        this.awaitingDrain = true;
        this.stream.once('drain', this.resume);
      }
      return;
    }
    this.stream.write(line);
    // Dropped for a line longer than the room left, without the stream being full: say so now.
    if (this.droppedSinceResume > 0 && !this.awaitingDrain) this.resume();
  }

  /** Calls back once every line written so far has been handed to the OS (pino's logger.flush). */
  flush(cb?: (err?: Error) => void): void {
    if (this.broken || this.stream.writableLength === 0) return cb?.();
    // Writes complete in order: an empty one completes after everything before it.
    this.stream.write('', () => cb?.());
  }

  private readonly resume = (): void => {
    this.awaitingDrain = false;
    const n = this.droppedSinceResume;
    this.droppedSinceResume = 0;
    this.onResumed?.(n);
  };
}

/** Lines a destination has dropped (0 for destinations that never drop). */
export function droppedLogLines(destination: DestinationStream | undefined): number {
  return destination instanceof AsyncLogDestination ? destination.droppedLines : 0;
}

/**
 * Resolves once stdout has handed everything written so far to the OS, or after timeoutMs: exit
 * paths flush what they can, but a reader that is gone or stuck must not hold up the exit.
 */
export function flushStdout(timeoutMs: number): Promise<void> {
  if (process.stdout.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    process.stdout.write('', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Creates the logger. The destination is injected so tests can parse the NDJSON it writes;
 * default: a new {@link AsyncLogDestination} on stdout. On an AsyncLogDestination, one warning
 * line (`log.dropped`, with `dropped`) follows every stretch of dropped lines.
 */
export function createLogger(level: LogLevel | 'silent', destination: DestinationStream = new AsyncLogDestination()): Logger {
  const logger = pino(
    {
      level,
      base: { service: 'tokend' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      // One log key for errors, `error`: a raw error put there is summarized, never dumped.
      serializers: { error: (v: unknown) => (v instanceof Error ? errorSummary(v) : v) },
    },
    destination,
  );
  if (destination instanceof AsyncLogDestination) {
    destination.onResumed = (dropped) =>
      logger.warn({ event: EVENTS.logDropped, dropped }, `stdout was not being read: ${dropped} log lines dropped`);
  }
  return logger;
}

/**
 * The one loggable form of an error, under the log key `error`: a TokendError's code, message,
 * OAuth error, HTTP status and reason (tokend's own messages never hold a secret); for anything
 * else its type, errno code and a bounded message, never its other fields (library errors can
 * carry response bodies or request options with credentials).
 */
export function errorSummary(err: unknown): Record<string, unknown> {
  if (err instanceof TokendError) {
    const out: Record<string, unknown> = { code: err.code, message: err.message };
    if (err.oauthError !== undefined) out.oauth_error = err.oauthError;
    if (err.status !== undefined) out.status = err.status;
    if (err.reason !== undefined) out.reason = err.reason;
    return out;
  }
  const errno = (err as { code?: unknown } | null)?.code;
  const code = typeof errno === 'string' && /^[A-Z0-9_]{1,40}$/.test(errno) ? errno : 'INTERNAL';
  const out: Record<string, unknown> = { code, type: err instanceof Error ? err.name : typeof err };
  // Bounded: a library message may quote more than it should (a URL, a path), never a body.
  if (err instanceof Error && err.message) out.message = err.message.length > 300 ? `${err.message.slice(0, 300)}…` : err.message;
  return out;
}


export type { Logger };
