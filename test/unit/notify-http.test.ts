import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { deliver } from '../../src/notify/deliver.js';
import { httpNotifier, HTTP_RETRY } from '../../src/notify/http.js';
import type { ChangeEvent, RetryPolicy } from '../../src/notify/notifier.js';
import { LatestOnly } from '../../src/output/latest.js';
import { OutputMetrics } from '../../src/output/metrics.js';
import { until } from '../support/until.js';
import { logSink, startReceiver, type Receiver } from './output-support.js';

const FAST: RetryPolicy = { maxAttempts: 50, maxTotalMs: 20_000, minMs: 20, maxMs: 100 };
const SECRET = 'eyJ.secret-access-token.sig';

const event = (expiresAt: number): ChangeEvent => ({ name: 'orders', expiresAt, scrub: (t) => t.split(SECRET).join('[redacted]') });

let receivers: Receiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  receivers = [];
});

/** A port nothing listens on (yet): taken from the OS, then released. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function harness() {
  const sink = logSink();
  const registry = new Registry();
  const metrics = OutputMetrics.on(registry);
  const count = async (result: string): Promise<number> => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'tokend_notifications_total');
    return (m?.values as Array<{ labels: Record<string, string>; value: number }> | undefined)?.find((v) => v.labels.result === result)?.value ?? 0;
  };
  const deps = { clock: systemClock, random: () => 0.5, logger: sink.logger, metrics };
  return { sink, count, deps };
}

describe('HTTP notifications', () => {
  it('POSTs the token name, expiry and event as JSON, never the token', async () => {
    const r = await startReceiver();
    receivers.push(r);
    const h = harness();
    const n = httpNotifier({ url: `${r.url}?key=receiver-shared-secret`, timeoutMs: 5_000 });
    await deliver(n, event(1735689900), { superseded: new AbortController().signal, closing: new AbortController().signal }, h.deps);
    expect(r.received).toEqual([{ method: 'POST', contentType: 'application/json', body: '{"token":"orders","expires_at":1735689900,"event":"token.changed"}' }]);
    expect(h.sink.events('notify.sent')).toEqual([expect.objectContaining({ notify: 'http', status: 204, attempt: 1, url: `http://127.0.0.1:${r.port}/-/reload` })]);
    // The query string may hold the receiver's own secret: it is not logged.
    expect(h.sink.raw.join('\n')).not.toContain('receiver-shared-secret');
    expect(await h.count('sent')).toBe(1);
  });

  it('retries while the receiver is down and delivers exactly once when it comes up', async () => {
    const port = await closedPort();
    const h = harness();
    const n = httpNotifier({ url: `http://127.0.0.1:${port}/-/reload`, timeoutMs: 5_000 }, { retry: FAST });
    const done = deliver(n, event(1000), { superseded: new AbortController().signal, closing: new AbortController().signal }, h.deps);
    const failed = await until(() => h.sink.events('notify.failed')[0], 'a failed attempt');
    expect(failed).toMatchObject({ level: 'warn', reason: 'request failed (ECONNREFUSED)', attempt: 1 });
    expect(failed.retry_in_ms).toBeGreaterThanOrEqual(FAST.minMs);
    const r = await startReceiver(port);
    receivers.push(r);
    await done;
    expect(r.received).toHaveLength(1);
    const sent = h.sink.events('notify.sent');
    expect(sent).toHaveLength(1);
    expect(sent[0]!.attempt as number).toBeGreaterThan(1);
    expect(await h.count('sent')).toBe(1);
  });

  it('does not retry an answer that will not change (4xx) nor follow a redirect', async () => {
    const r = await startReceiver();
    receivers.push(r);
    const h = harness();
    const n = httpNotifier({ url: r.url, timeoutMs: 5_000 }, { retry: FAST });
    const signals = { superseded: new AbortController().signal, closing: new AbortController().signal };
    r.status = 404;
    await deliver(n, event(1), signals, h.deps);
    r.status = 302;
    await deliver(n, event(2), signals, h.deps);
    expect(r.received).toHaveLength(2);
    expect(h.sink.events('notify.failed').map((l) => [l.reason, l.final])).toEqual([
      ['answered HTTP 404', true],
      ['answered HTTP 302 (redirects are not followed)', true],
    ]);
    // 503 is the receiver's passing trouble: retried until it answers 2xx.
    r.status = 503;
    const third = deliver(n, event(3), signals, h.deps);
    await r.waitFor(4);
    r.status = 200;
    await third;
    expect(h.sink.events('notify.sent')).toHaveLength(1);
    expect(await h.count('failed')).toBe(2);
  });

  it('a newer change supersedes the older ones waiting: 1000 changes while the receiver is down make one POST', async () => {
    const port = await closedPort();
    const h = harness();
    const n = httpNotifier({ url: `http://127.0.0.1:${port}/hook`, timeoutMs: 5_000 }, { retry: FAST });
    const q = new LatestOnly<ChangeEvent>((ev, s) => deliver(n, ev, s, h.deps), (ev) => h.deps.metrics.notification(ev.name, 'http', 'superseded'));
    q.offer(event(1));
    await until(() => h.sink.events('notify.failed').length >= 1, 'a failed attempt');
    for (let i = 2; i <= 1000; i++) q.offer(event(i));
    const r = await startReceiver(port);
    receivers.push(r);
    await until(() => h.sink.events('notify.sent').length >= 1, 'the delivery');
    await q.settle(systemClock, 5_000);
    expect(r.received.map((x) => (JSON.parse(x.body) as { expires_at: number }).expires_at)).toEqual([1000]);
    expect(await h.count('superseded')).toBe(999);
  });

  it('gives up after the bounded number of attempts', async () => {
    const port = await closedPort();
    const h = harness();
    const n = httpNotifier({ url: `http://127.0.0.1:${port}/hook`, timeoutMs: 5_000 }, { retry: { ...FAST, maxAttempts: 3 } });
    await deliver(n, event(1), { superseded: new AbortController().signal, closing: new AbortController().signal }, h.deps);
    expect(h.sink.events('notify.failed').map((l) => l.attempt)).toEqual([1, 2, 3]);
    expect(h.sink.events('notify.failed')[2]).toMatchObject({ final: true });
    expect(await h.count('failed')).toBe(1);
    // The default policy is bounded too.
    expect(HTTP_RETRY.maxAttempts).toBeLessThanOrEqual(10);
    expect(HTTP_RETRY.maxTotalMs).toBeLessThanOrEqual(120_000);
  });
});
