/**
 * Prometheus metrics of the egress proxies, labelled by proxy name (never a token, path or host):
 *
 * - `tokend_proxy_requests_total{proxy,class}` counter: answers to the application by status class
 *   (1xx..5xx), the proxy's own 502/503/504 included
 * - `tokend_proxy_upstream_duration_seconds{proxy}` histogram: from sending a request to the
 *   upstream's response headers
 * - `tokend_proxy_retries_total{proxy}` counter: requests retried with a new token after a 401
 * - `tokend_proxy_refused_total{proxy}` counter: requests answered 503 for want of a valid token
 *   (the upstream saw nothing)
 * - `tokend_proxy_upstream_errors_total{proxy,error}` counter: unreachable, tls, failed,
 *   connect_timeout, timeout
 *
 * Counters are plain numbers on the hot path, published when scraped.
 */
import { Counter, Histogram, type Registry } from '../util/prom.js';
import type { UpstreamFailure } from './upstream.js';

/** What one proxy records. */
export interface ProxyMeter {
  /** An answer with this status went to the application. */
  answered(status: number): void;
  /** The upstream's response headers arrived ms after the request was sent. */
  upstreamLatency(ms: number): void;
  retried(): void;
  refused(): void;
  upstreamFailed(kind: UpstreamFailure): void;
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const FAILURES: readonly UpstreamFailure[] = ['unreachable', 'tls', 'failed', 'connect_timeout', 'timeout'];
// Upstream round trips: sub-millisecond on loopback, up to the proxy timeout (60 s by default).
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

interface Counts {
  readonly classes: number[];
  readonly failures: Map<UpstreamFailure, number>;
  retries: number;
  refused: number;
}

/** A meter that records nothing (no registry given). */
export const NO_METER: ProxyMeter = {
  answered: () => undefined,
  upstreamLatency: () => undefined,
  retried: () => undefined,
  refused: () => undefined,
  upstreamFailed: () => undefined,
};

/** The proxy metrics on one registry; {@link ProxyMetrics.meter} gives each proxy its recorder. */
export class ProxyMetrics {
  private readonly counts = new Map<string, Counts>();
  private readonly latency: Histogram<'proxy'>;

  constructor(registry: Registry) {
    const counts = this.counts;
    new Counter({
      name: 'tokend_proxy_requests_total',
      help: 'Answers of the egress proxy to the application, by proxy and status class (1xx..5xx).',
      labelNames: ['proxy', 'class'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [proxy, c] of counts) CLASSES.forEach((cls, i) => this.inc({ proxy, class: cls }, c.classes[i] ?? 0));
      },
    });
    new Counter({
      name: 'tokend_proxy_retries_total',
      help: 'Requests retried once with a new token after the upstream answered 401, by proxy.',
      labelNames: ['proxy'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [proxy, c] of counts) this.inc({ proxy }, c.retries);
      },
    });
    new Counter({
      name: 'tokend_proxy_refused_total',
      help: 'Requests answered 503 because no valid token was held (the upstream saw nothing), by proxy.',
      labelNames: ['proxy'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [proxy, c] of counts) this.inc({ proxy }, c.refused);
      },
    });
    new Counter({
      name: 'tokend_proxy_upstream_errors_total',
      help: 'Upstream requests that failed without an answer, by proxy and error (unreachable, tls, failed, connect_timeout, timeout).',
      labelNames: ['proxy', 'error'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [proxy, c] of counts) for (const error of FAILURES) this.inc({ proxy, error }, c.failures.get(error) ?? 0);
      },
    });
    this.latency = new Histogram({
      name: 'tokend_proxy_upstream_duration_seconds',
      help: 'Time from sending a request to the upstream to its response headers, in seconds, by proxy.',
      labelNames: ['proxy'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
  }

  /** The recorder of the proxy with this name (every series starts at 0). */
  meter(proxy: string): ProxyMeter {
    const c: Counts = { classes: [0, 0, 0, 0, 0], failures: new Map(), retries: 0, refused: 0 };
    this.counts.set(proxy, c);
    this.latency.zero({ proxy });
    const bound = this.latency.labels({ proxy });
    return {
      answered(status) {
        const i = Math.floor(status / 100) - 1;
        if (i >= 0 && i < 5) (c.classes[i] as number)++;
      },
      upstreamLatency: (ms) => bound.observe(ms / 1000),
      retried: () => void c.retries++,
      refused: () => void c.refused++,
      upstreamFailed: (kind) => void c.failures.set(kind, (c.failures.get(kind) ?? 0) + 1),
    };
  }
}
