import { Histogram, Registry } from '../util/prom.js';
import type { Clock } from '../clock.js';
import type { RefreshObserver, RefreshResult, TokenHandle } from '../refresh/handle.js';
import { remainingMs } from '../token.js';
import { renderProcessMetrics } from './process-metrics.js';

/** Options for {@link Metrics}. */
export interface MetricsOptions {
  /** Reads "now" for the seconds-until-expiry gauges at scrape time. */
  readonly clock: Clock;
  /** The tokens to report on; may also be given later with {@link Metrics.track}. */
  readonly handles?: ReadonlyMap<string, TokenHandle> | undefined;
  /** Also export process metrics (CPU, memory, file descriptors, event-loop lag), read at scrape time. Default true. */
  readonly processMetrics?: boolean | undefined;
  /**
   * Series per token (`token` label). false: aggregates only, for configurations with thousands of
   * tokens (the `metricsPerToken` setting). Default true.
   */
  readonly perToken?: boolean | undefined;
  /** Log lines dropped so far because stdout was not being read (`tokend_log_lines_dropped_total`). */
  readonly droppedLogLines?: (() => number) | undefined;
}

const RESULTS: readonly RefreshResult[] = ['success', 'transient_error', 'permanent_error', 'adopted'];
const RESULT_INDEX: Readonly<Record<RefreshResult, number>> = { success: 0, transient_error: 1, permanent_error: 2, adopted: 3 };

// A grant is one HTTP round trip to the IdP: tens of ms when healthy, up to the request timeout when not.
const DURATION_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const H_READY =
  '# HELP tokend_token_ready 1 when the token is valid and its refresher healthy, else 0.\n# TYPE tokend_token_ready gauge\n';
const H_EXPIRY =
  '# HELP tokend_token_expiry_seconds Seconds until the current access token expires; 0 when there is no valid token.\n' +
  '# TYPE tokend_token_expiry_seconds gauge\n';
const H_REFRESH =
  '# HELP tokend_refresh_total Token grant attempts by result (success, transient_error, permanent_error, adopted).\n' +
  '# TYPE tokend_refresh_total counter\n';
const H_TOKENS = '# HELP tokend_tokens Configured tokens by state (ready, not_ready).\n# TYPE tokend_tokens gauge\n';
const H_EXPIRY_MIN =
  '# HELP tokend_token_expiry_min_seconds Seconds until the first of the configured tokens expires; 0 when any has no valid token.\n' +
  '# TYPE tokend_token_expiry_min_seconds gauge\n';
const H_DROPPED =
  '# HELP tokend_log_lines_dropped_total Log lines dropped because stdout was not being read.\n# TYPE tokend_log_lines_dropped_total counter\n';

/** Refresh counts of one token, and its label text built once. */
interface TokenSeries {
  /** `token="NAME"`. */
  readonly label: string;
  /** By RESULT_INDEX. */
  readonly counts: number[];
}

/** Prometheus label value escaping (backslash, double quote, newline). */
function escapeLabel(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/**
 * Prometheus metrics of one tokend process. Per-token series are few (ready, seconds to expiry,
 * refreshes by result: 6 lines per token) and rendered by hand from precomputed label text, so a
 * scrape stays proportional to the bytes it sends; everything else is on a registry of its own
 * (never prom-client's global one, so several instances and tests do not collide). Labels carry
 * token names only, never a token value. Nothing runs between scrapes.
 *
 * - `tokend_token_ready{token}` gauge: 1 when the token is valid and healthy, else 0
 * - `tokend_token_expiry_seconds{token}` gauge: seconds until the current token expires, 0 when
 *   there is no valid token (so an alert on `< 60` also fires for a missing token)
 * - `tokend_refresh_total{token,result}` counter: grant attempts by outcome (`{result}` only
 *   when per-token series are off)
 * - `tokend_tokens{state}` gauge and `tokend_token_expiry_min_seconds` gauge: aggregates, always
 * - `tokend_refresh_duration_seconds` histogram: grant round-trip time, all tokens together
 * - `tokend_log_lines_dropped_total` counter
 */
export class Metrics implements RefreshObserver {
  /** The registry of the fixed-size metrics (the duration histogram); others may register here too. */
  readonly registry: Registry;
  /** The Content-Type of {@link Metrics.render}'s output (Prometheus text format 0.0.4). */
  readonly contentType: string;

  private handles: ReadonlyMap<string, TokenHandle> = new Map();
  private readonly clock: Clock;
  private readonly perToken: boolean;
  private readonly processMetrics: boolean;
  private readonly droppedLogLines: () => number;
  /** Per-token refresh counts (perToken only), tracked tokens first, in config order. */
  private readonly series = new Map<string, TokenSeries>();
  /** Refresh counts of all tokens together, by RESULT_INDEX. */
  private readonly totals = [0, 0, 0, 0];
  private readonly refreshDuration: Histogram;

  constructor(opts: MetricsOptions) {
    this.clock = opts.clock;
    this.perToken = opts.perToken ?? true;
    this.processMetrics = opts.processMetrics ?? true;
    this.droppedLogLines = opts.droppedLogLines ?? (() => 0);
    this.registry = new Registry();
    this.contentType = this.registry.contentType;
    this.refreshDuration = new Histogram({
      name: 'tokend_refresh_duration_seconds',
      help: 'Duration of token grant requests to the IdP, in seconds (all tokens).',
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
    if (opts.handles) this.track(opts.handles);
  }

  /**
   * Reports on these tokens from now on (replacing any earlier map). Refresh counters start at 0
   * for every result, so `rate()` and `increase()` work from the first scrape.
   */
  track(handles: ReadonlyMap<string, TokenHandle>): void {
    this.handles = handles;
    if (this.perToken) for (const name of handles.keys()) this.seriesFor(name);
  }

  /** RefreshObserver: one grant attempt finished (durationMs in milliseconds). */
  refreshFinished(name: string, result: RefreshResult, durationMs: number): void {
    const i = RESULT_INDEX[result];
    this.totals[i] = (this.totals[i] as number) + 1;
    if (this.perToken) {
      const counts = this.seriesFor(name).counts;
      counts[i] = (counts[i] as number) + 1;
    }
    // An adopted token (written by another replica) cost this process no grant round trip.
    if (result !== 'adopted') this.refreshDuration.observe(Math.max(0, durationMs) / 1000);
  }

  /** The Prometheus text exposition of every metric. */
  async render(): Promise<string> {
    let out = this.renderTokens();
    out += `${H_DROPPED}tokend_log_lines_dropped_total ${this.droppedLogLines()}\n`;
    out += await this.registry.metrics();
    if (this.processMetrics) out += await renderProcessMetrics();
    return out;
  }

  private seriesFor(name: string): TokenSeries {
    let s = this.series.get(name);
    if (s === undefined) {
      s = { label: `token="${escapeLabel(name)}"`, counts: [0, 0, 0, 0] };
      this.series.set(name, s);
    }
    return s;
  }

  /** The token families, from the handles as they are now. */
  private renderTokens(): string {
    const clock = this.clock;
    let ready = '';
    let expiry = '';
    let nReady = 0;
    let minLeft = Number.POSITIVE_INFINITY;
    for (const [name, handle] of this.handles) {
      const token = handle.current();
      const left = token === undefined ? 0 : Math.max(0, remainingMs(token, clock)) / 1000;
      const isReady = handle.status().ready;
      if (isReady) nReady++;
      if (left < minLeft) minLeft = left;
      if (this.perToken) {
        const label = this.seriesFor(name).label;
        ready += `tokend_token_ready{${label}} ${isReady ? 1 : 0}\n`;
        expiry += `tokend_token_expiry_seconds{${label}} ${left}\n`;
      }
    }
    let out = '';
    if (this.perToken) out += H_READY + ready + H_EXPIRY + expiry;
    out += `${H_REFRESH}${this.perToken ? this.renderRefreshPerToken() : this.renderRefreshTotals()}`;
    out += `${H_TOKENS}tokend_tokens{state="ready"} ${nReady}\ntokend_tokens{state="not_ready"} ${this.handles.size - nReady}\n`;
    if (this.handles.size > 0) out += `${H_EXPIRY_MIN}tokend_token_expiry_min_seconds ${minLeft}\n`;
    return out;
  }

  private renderRefreshPerToken(): string {
    let out = '';
    for (const s of this.series.values()) {
      for (let i = 0; i < RESULTS.length; i++) {
        out += `tokend_refresh_total{${s.label},result="${RESULTS[i]}"} ${s.counts[i]}\n`;
      }
    }
    return out;
  }

  private renderRefreshTotals(): string {
    let out = '';
    for (let i = 0; i < RESULTS.length; i++) out += `tokend_refresh_total{result="${RESULTS[i]}"} ${this.totals[i]}\n`;
    return out;
  }
}
