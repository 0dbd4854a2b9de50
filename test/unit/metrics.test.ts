import { createHook } from 'node:async_hooks';
import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/server/metrics.js';
import { TestHandle } from '../support/http-client.js';
import { FakeClock } from '../support/fake-clock.js';

const SECRET = 'eyJhbGciOiJFUzI1NiJ9.bWV0cmljcy1zZWNyZXQ.c2ln';

function setup() {
  const clock = new FakeClock();
  const orders = new TestHandle('orders', clock);
  orders.token = { accessToken: SECRET, tokenType: 'Bearer', expiresAt: clock.now() + 120_000, obtainedAt: clock.now() };
  const billing = new TestHandle('billing', clock);
  billing.ready = false;
  billing.reason = 'expired';
  const handles = new Map<string, TestHandle>([
    ['orders', orders],
    ['billing', billing],
  ]);
  const metrics = new Metrics({ clock, processMetrics: false });
  metrics.track(handles);
  return { clock, orders, billing, metrics };
}

/** The value of one sample line, e.g. `tokend_token_ready{token="orders"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('Metrics', () => {
  it('computes seconds until expiry at scrape time, 0 for a token with no valid value', async () => {
    const { clock, metrics } = setup();
    let text = await metrics.render();
    expect(sample(text, 'tokend_token_expiry_seconds{token="orders"}')).toBe(120);
    expect(sample(text, 'tokend_token_expiry_seconds{token="billing"}')).toBe(0);
    await clock.advance(30_500);
    text = await metrics.render();
    expect(sample(text, 'tokend_token_expiry_seconds{token="orders"}')).toBe(89.5);
    await clock.advance(90_000);
    text = await metrics.render();
    expect(sample(text, 'tokend_token_expiry_seconds{token="orders"}')).toBe(0);
  });

  it('reports readiness per token as 1 or 0', async () => {
    const { metrics, billing } = setup();
    let text = await metrics.render();
    expect(sample(text, 'tokend_token_ready{token="orders"}')).toBe(1);
    expect(sample(text, 'tokend_token_ready{token="billing"}')).toBe(0);
    billing.ready = true;
    text = await metrics.render();
    expect(sample(text, 'tokend_token_ready{token="billing"}')).toBe(1);
  });

  it('counts refreshes by token and result, starting every tracked series at 0', async () => {
    const { metrics } = setup();
    let text = await metrics.render();
    for (const result of ['success', 'transient_error', 'permanent_error', 'adopted']) {
      expect(sample(text, `tokend_refresh_total{token="billing",result="${result}"}`)).toBe(0);
    }
    metrics.refreshFinished('orders', 'success', 120);
    metrics.refreshFinished('orders', 'success', 80);
    metrics.refreshFinished('orders', 'transient_error', 10_000);
    metrics.refreshFinished('orders', 'adopted', 3);
    text = await metrics.render();
    expect(sample(text, 'tokend_refresh_total{token="orders",result="success"}')).toBe(2);
    expect(sample(text, 'tokend_refresh_total{token="orders",result="transient_error"}')).toBe(1);
    expect(sample(text, 'tokend_refresh_total{token="orders",result="adopted"}')).toBe(1);
    // Durations are in seconds, one histogram for all tokens; an adoption made no grant call, so it is not observed.
    expect(sample(text, 'tokend_refresh_duration_seconds_count')).toBe(3);
    expect(sample(text, 'tokend_refresh_duration_seconds_sum')).toBeCloseTo(10.2, 6);
    expect(sample(text, 'tokend_refresh_duration_seconds_bucket{le="0.1"}')).toBe(1);
    expect(text).not.toMatch(/tokend_refresh_duration_seconds\w*\{[^}]*token=/);
  });

  it('never puts a token value in the output', async () => {
    const { metrics } = setup();
    metrics.refreshFinished('orders', 'success', 50);
    const text = await metrics.render();
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('bWV0cmljcy1zZWNyZXQ');
  });

  it('uses a registry of its own: two instances coexist and the global registry stays clean', async () => {
    const a = setup().metrics;
    const b = new Metrics({ clock: new FakeClock(), processMetrics: false });
    b.refreshFinished('other', 'permanent_error', 5);
    expect(await a.render()).not.toContain('token="other"');
    expect(await b.render()).toContain('tokend_refresh_total{token="other",result="permanent_error"} 1');
    expect(await globalRegistry.metrics()).not.toContain('tokend_');
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('includes process metrics unless turned off', async () => {
    const clock = new FakeClock();
    expect(await new Metrics({ clock }).render()).toContain('process_cpu_user_seconds_total');
    expect(await new Metrics({ clock, processMetrics: false }).render()).not.toContain('process_cpu_user_seconds_total');
  });

  it('exports the process metrics without anything running between scrapes: no timer, no event-loop monitor', async () => {
    // prom-client's default metrics start a 10 ms event-loop-delay monitor (ELDHISTOGRAM): the
    // main idle CPU cost. Every timer created here must be gone after the scrape (an Immediate
    // runs once, at scrape time, and is allowed).
    const TIMERS = new Set(['Timeout', 'ELDHISTOGRAM', 'TIMERWRAP']);
    const live = new Map<number, string>();
    const hook = createHook({
      init(id, type) {
        if (TIMERS.has(type)) live.set(id, type);
      },
      destroy(id) {
        live.delete(id);
      },
    });
    hook.enable();
    let text: string;
    try {
      const metrics = new Metrics({ clock: new FakeClock() });
      expect([...live.values()]).toEqual([]);
      text = await metrics.render();
    } finally {
      hook.disable();
    }
    expect([...live.values()]).toEqual([]);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect(text).toMatch(new RegExp(`^${name} [0-9.e+-]+$`, 'm'));
    }
    expect(text).not.toContain('nodejs_eventloop_lag_p99_seconds');
  });

  it('keeps per-token series to 6 lines per token: ready, seconds to expiry, refreshes by 4 results', async () => {
    const { metrics } = setup();
    const text = await metrics.render();
    const perToken = text.split('\n').filter((l) => l.includes('token="orders"'));
    expect(perToken).toHaveLength(6);
    expect(text.split('\n').filter((l) => l.includes('token="billing"'))).toHaveLength(6);
  });

  it('reports aggregates always: tokens by state and the soonest expiry', async () => {
    const { metrics, billing } = setup();
    let text = await metrics.render();
    expect(sample(text, 'tokend_tokens{state="ready"}')).toBe(1);
    expect(sample(text, 'tokend_tokens{state="not_ready"}')).toBe(1);
    expect(sample(text, 'tokend_token_expiry_min_seconds')).toBe(0);
    billing.ready = true;
    billing.token = { accessToken: SECRET, tokenType: 'Bearer', expiresAt: new FakeClock().now() + 30_000, obtainedAt: 0 };
    text = await metrics.render();
    expect(sample(text, 'tokend_tokens{state="ready"}')).toBe(2);
    expect(sample(text, 'tokend_token_expiry_min_seconds')).toBe(30);
  });

  it('drops every token label with perToken: false, counting refreshes by result only', async () => {
    const clock = new FakeClock();
    const handles = new Map(Array.from({ length: 50 }, (_, i) => [`t${i}`, new TestHandle(`t${i}`, clock)] as const));
    const metrics = new Metrics({ clock, handles, perToken: false, processMetrics: false });
    metrics.refreshFinished('t1', 'success', 20);
    metrics.refreshFinished('t2', 'success', 20);
    metrics.refreshFinished('t3', 'permanent_error', 20);
    const text = await metrics.render();
    expect(text).not.toContain('token=');
    expect(sample(text, 'tokend_refresh_total{result="success"}')).toBe(2);
    expect(sample(text, 'tokend_refresh_total{result="permanent_error"}')).toBe(1);
    expect(sample(text, 'tokend_refresh_total{result="adopted"}')).toBe(0);
    expect(sample(text, 'tokend_tokens{state="ready"}')).toBe(50);
    expect(text.split('\n').length).toBeLessThan(60);
  });

  it('reports log lines dropped, read at scrape time', async () => {
    let dropped = 0;
    const metrics = new Metrics({ clock: new FakeClock(), processMetrics: false, droppedLogLines: () => dropped });
    expect(sample(await metrics.render(), 'tokend_log_lines_dropped_total')).toBe(0);
    dropped = 17;
    expect(sample(await metrics.render(), 'tokend_log_lines_dropped_total')).toBe(17);
  });

  it('renders every family once, with HELP and TYPE, in valid exposition format', async () => {
    const { metrics } = setup();
    const text = await metrics.render();
    const types = text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    expect(new Set(types).size).toBe(types.length);
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('# ')) continue;
      expect(line).toMatch(/^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|NaN|\+Inf)$/);
    }
  });
});
