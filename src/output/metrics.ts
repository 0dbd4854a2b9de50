/**
 * Counters for outputs and notifications, on a registry the caller owns (the daemon passes its
 * Metrics registry). Labels carry token names, formats' kinds and results only, never a value.
 *
 * - `tokend_output_writes_total{token,result}`: output file writes; result `written`, `unchanged`
 *   (same bytes already there: nothing written), `failed`
 * - `tokend_notifications_total{token,kind,result}`: kind `http`, `signal`, `exec`; result `sent`,
 *   `failed`, `superseded` (a newer change replaced it before it could be delivered)
 */
import { Counter, type Registry } from '../util/prom.js';

/** Result label of an output write. */
export type OutputResult = 'written' | 'unchanged' | 'failed';
/** Notifier kinds. */
export type NotifyKind = 'http' | 'signal' | 'exec';
/** Result label of a notification. */
export type NotifyResult = 'sent' | 'failed' | 'superseded';

const WRITES = 'tokend_output_writes_total';
const NOTIFICATIONS = 'tokend_notifications_total';
const OUTPUT_RESULTS: readonly OutputResult[] = ['written', 'unchanged', 'failed'];
const NOTIFY_RESULTS: readonly NotifyResult[] = ['sent', 'failed', 'superseded'];

/** The two counters; one instance per registry however many tokens share it. */
export class OutputMetrics {
  private constructor(
    private readonly writes: Counter<'token' | 'result'>,
    private readonly notifications: Counter<'token' | 'kind' | 'result'>,
  ) {}

  /** The counters on registry, registered on first use (later calls reuse them). */
  static on(registry: Registry): OutputMetrics {
    const writes =
      (registry.getSingleMetric(WRITES) as Counter<'token' | 'result'> | undefined) ??
      new Counter({
        name: WRITES,
        help: 'Output file writes by token and result (written, unchanged, failed).',
        labelNames: ['token', 'result'],
        registers: [registry],
      });
    const notifications =
      (registry.getSingleMetric(NOTIFICATIONS) as Counter<'token' | 'kind' | 'result'> | undefined) ??
      new Counter({
        name: NOTIFICATIONS,
        help: 'Token change notifications by token, kind (http, signal, exec) and result (sent, failed, superseded).',
        labelNames: ['token', 'kind', 'result'],
        registers: [registry],
      });
    return new OutputMetrics(writes, notifications);
  }

  /** Starts token's series at 0, so rate() and increase() work from the first scrape. */
  track(token: string, hasOutputs: boolean, kinds: readonly NotifyKind[]): void {
    if (hasOutputs) for (const result of OUTPUT_RESULTS) this.writes.inc({ token, result }, 0);
    for (const kind of kinds) for (const result of NOTIFY_RESULTS) this.notifications.inc({ token, kind, result }, 0);
  }

  /** One output file write finished. */
  output(token: string, result: OutputResult): void {
    this.writes.inc({ token, result });
  }

  /** One notification finished. */
  notification(token: string, kind: NotifyKind, result: NotifyResult): void {
    this.notifications.inc({ token, kind, result });
  }
}
