/**
 * Delivering one change through one notifier: attempts, retries with backoff for the failures
 * that may pass, and the log line and counter for how it ended. Never rejects.
 */
import { sleep, type Clock } from '../clock.js';
import type { NotifyConfig } from '../config/schema-output.js';
import { EVENTS, type Logger } from '../log.js';
import type { OutputMetrics } from '../output/metrics.js';
import type { JobSignals } from '../output/latest.js';
import { retryDelay } from '../refresh/backoff.js';
import { linkSignals } from '../util/abort.js';
import { execNotifier } from './exec.js';
import { httpNotifier, type FetchLike } from './http.js';
import type { ChangeEvent, Notifier, NotifyOutcome } from './notifier.js';
import { signalNotifier } from './signal.js';

/** What deliver needs besides the notifier and the event. */
export interface DeliverDeps {
  readonly clock: Clock;
  /** Uniform in [0, 1), for backoff jitter. */
  readonly random: () => number;
  /** Bound to the token. */
  readonly logger: Logger;
  readonly metrics: OutputMetrics;
}

/** The notifiers a token's notify section asks for (http, signal, exec, in that order). */
export function createNotifiers(cfg: NotifyConfig | undefined, deps: { clock: Clock; fetch?: FetchLike | undefined }): Notifier[] {
  const out: Notifier[] = [];
  if (cfg?.http) out.push(httpNotifier(cfg.http, deps.fetch ? { fetch: deps.fetch } : {}));
  if (cfg?.signal) out.push(signalNotifier(cfg.signal));
  if (cfg?.exec) out.push(execNotifier(cfg.exec, deps.clock));
  return out;
}

function logOutput(log: Logger, n: Notifier, outcome: NotifyOutcome): void {
  const d = outcome.detail as { stdout?: string; stderr?: string } | undefined;
  if (outcome.ok && (d?.stdout || d?.stderr)) {
    log.debug({ event: EVENTS.notifyOutput, notify: n.kind, ...n.target, stdout: d.stdout, stderr: d.stderr }, 'notification command output');
  }
}

/**
 * Delivers event through n: one attempt, then, for retryable failures and as n.retry allows,
 * more after growing, jittered delays. Stops retrying when superseded (a newer change waits:
 * counted `superseded`) or closing. Logs `notify.sent` (info) or `notify.failed` (warn, also
 * for each failed attempt that will be retried, with retry_in_ms) and counts the outcome.
 */
export async function deliver(n: Notifier, event: ChangeEvent, signals: JobSignals, deps: DeliverDeps): Promise<void> {
  const { clock, logger: log, metrics } = deps;
  const started = clock.monotonic();
  for (let attempt = 1; ; attempt++) {
    const outcome = await n.send(event, signals.closing);
    logOutput(log, n, outcome);
    if (outcome.ok) {
      const { stdout: _o, stderr: _e, ...detail } = (outcome.detail ?? {}) as Record<string, unknown>;
      log.info({ event: EVENTS.notifySent, notify: n.kind, ...n.target, ...detail, expires_at: event.expiresAt, attempt }, 'notification sent');
      metrics.notification(event.name, n.kind, 'sent');
      return;
    }
    const fields = { event: EVENTS.notifyFailed, notify: n.kind, ...n.target, ...outcome.detail, reason: outcome.reason, attempt };
    const policy = n.retry;
    const delay = policy === undefined ? 0 : retryDelay(attempt, policy, deps.random());
    const retry =
      outcome.retryable &&
      policy !== undefined &&
      attempt < policy.maxAttempts &&
      clock.monotonic() - started + delay <= policy.maxTotalMs &&
      !signals.closing.aborted;
    if (retry && signals.superseded.aborted) {
      log.debug({ event: EVENTS.notifySuperseded, notify: n.kind, ...n.target, attempt }, 'a newer change replaces this notification');
      metrics.notification(event.name, n.kind, 'superseded');
      return;
    }
    if (!retry) {
      log.warn({ ...fields, final: true }, 'notification failed');
      metrics.notification(event.name, n.kind, 'failed');
      return;
    }
    log.warn({ ...fields, retry_in_ms: delay }, 'notification failed; retrying');
    const wait = linkSignals(signals.superseded, signals.closing);
    try {
      await sleep(clock, delay, wait.signal);
    } catch {
      const superseded = !signals.closing.aborted;
      if (superseded) log.debug({ event: EVENTS.notifySuperseded, notify: n.kind, ...n.target, attempt }, 'a newer change replaces this notification');
      else log.warn({ ...fields, reason: 'stopped before it could be delivered', final: true }, 'notification failed');
      metrics.notification(event.name, n.kind, superseded ? 'superseded' : 'failed');
      return;
    } finally {
      wait.dispose();
    }
  }
}
