import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { TokenHandle, TokenStatus } from '../../src/refresh/handle.js';
import { Metrics } from '../../src/server/metrics.js';
import { isUsable, type AccessToken } from '../../src/token.js';
import { FakeClock } from '../support/fake-clock.js';

const SECRET = 'eyJhbGciOiJFUzI1NiJ9.bWV0cmljcy1zZWNyZXQ.c2ln';

class FakeHandle implements TokenHandle {
  token: AccessToken | undefined;
  ready = true;
  constructor(
    readonly name: string,
    private readonly clock: FakeClock,
  ) {}
  current(): AccessToken | undefined {
    return isUsable(this.token, this.clock) ? this.token : undefined;
  }
  ensureFresh(): Promise<AccessToken> {
    return Promise.reject(new Error('not used'));
  }
  status(): TokenStatus {
    return { name: this.name, ready: this.ready, reason: this.ready ? undefined : 'expired' };
  }
  retryAfterMs(): number {
    return 1_000;
  }
}

function setup() {
  const clock = new FakeClock();
  const orders = new FakeHandle('orders', clock);
  orders.token = { accessToken: SECRET, tokenType: 'Bearer', expiresAt: clock.now() + 120_000, obtainedAt: clock.now() };
  const billing = new FakeHandle('billing', clock);
  billing.ready = false;
  const handles = new Map<string, FakeHandle>([
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
    // Durations are in seconds; an adoption made no grant call, so it is not observed.
    expect(sample(text, 'tokend_refresh_duration_seconds_count{token="orders"}')).toBe(3);
    expect(sample(text, 'tokend_refresh_duration_seconds_sum{token="orders"}')).toBeCloseTo(10.2, 6);
    expect(sample(text, 'tokend_refresh_duration_seconds_bucket{le="0.1",token="orders"}')).toBe(1);
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
});
