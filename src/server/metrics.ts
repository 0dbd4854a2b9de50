import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { RefreshObserver, RefreshResult, TokenHandle } from '../refresh/handle.js';

/** Options for {@link Metrics}. */
export interface MetricsOptions {
  /** Reads "now" for the seconds-until-expiry gauge at scrape time. */
  readonly clock: Clock;
  /** The tokens to report on; may also be given later with {@link Metrics.track}. */
  readonly handles?: ReadonlyMap<string, TokenHandle> | undefined;
  /** Also export the process metrics prom-client collects (CPU, memory, event loop). Default true. */
  readonly processMetrics?: boolean | undefined;
}

const RESULTS: readonly RefreshResult[] = ['success', 'transient_error', 'permanent_error', 'adopted'];

// A grant is one HTTP round trip to the IdP: tens of ms when healthy, up to the request timeout when not.
const DURATION_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Prometheus metrics of one tokend process, on a registry of its own (never prom-client's global
 * one, so several instances and tests do not collide). Labels carry token names only, never a
 * token value.
 *
 * - `tokend_refresh_total{token,result}` counter: grant attempts by outcome
 * - `tokend_refresh_duration_seconds{token}` histogram: grant round-trip time
 * - `tokend_token_expiry_seconds{token}` gauge: seconds until the current token expires, 0 when
 *   there is no valid token (so an alert on `< 60` also fires for a missing token)
 * - `tokend_token_ready{token}` gauge: 1 when the token is valid and healthy, else 0
 */
export class Metrics implements RefreshObserver {
  /** The registry every tokend metric is registered on. */
  readonly registry: Registry;
  /** The Content-Type of {@link Metrics.render}'s output (Prometheus text format 0.0.4). */
  readonly contentType: string;

  private handles: ReadonlyMap<string, TokenHandle> = new Map();
  private readonly refreshTotal: Counter<'token' | 'result'>;
  private readonly refreshDuration: Histogram<'token'>;

  constructor(opts: MetricsOptions) {
    const clock = opts.clock;
    const registry = new Registry();
    this.registry = registry;
    this.contentType = registry.contentType;

    this.refreshTotal = new Counter({
      name: 'tokend_refresh_total',
      help: 'Token grant attempts by token and result (success, transient_error, permanent_error, adopted).',
      labelNames: ['token', 'result'],
      registers: [registry],
    });
    this.refreshDuration = new Histogram({
      name: 'tokend_refresh_duration_seconds',
      help: 'Duration of token grant requests to the IdP, in seconds.',
      labelNames: ['token'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    });
    // Gauges are computed from the handles at scrape time: nothing to keep in sync, never stale.
    const self = this;
    new Gauge({
      name: 'tokend_token_expiry_seconds',
      help: 'Seconds until the current access token expires; 0 when there is no valid token.',
      labelNames: ['token'],
      registers: [registry],
      collect() {
        this.reset();
        const now = clock.now();
        for (const [name, handle] of self.handles) {
          const token = handle.current();
          const left = token ? Math.max(0, token.expiresAt - now) / 1000 : 0;
          this.set({ token: name }, left);
        }
      },
    });
    new Gauge({
      name: 'tokend_token_ready',
      help: '1 when the token is valid and its refresher healthy, else 0.',
      labelNames: ['token'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [name, handle] of self.handles) this.set({ token: name }, handle.status().ready ? 1 : 0);
      },
    });
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
    if (opts.handles) this.track(opts.handles);
  }

  /**
   * Reports on these tokens from now on (replacing any earlier map). Refresh counters start at 0
   * for every result, so `rate()` and `increase()` work from the first scrape.
   */
  track(handles: ReadonlyMap<string, TokenHandle>): void {
    this.handles = handles;
    for (const name of handles.keys()) {
      for (const result of RESULTS) this.refreshTotal.inc({ token: name, result }, 0);
    }
  }

  /** RefreshObserver: one grant attempt finished (durationMs in milliseconds). */
  refreshFinished(name: string, result: RefreshResult, durationMs: number): void {
    this.refreshTotal.inc({ token: name, result });
    // An adopted token (written by another replica) cost this process no grant round trip.
    if (result !== 'adopted') this.refreshDuration.observe({ token: name }, Math.max(0, durationMs) / 1000);
  }

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
