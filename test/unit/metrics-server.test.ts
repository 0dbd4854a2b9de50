import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { createMetricsServer, type MetricsServer } from '../../src/server/metrics-server.js';
import { Metrics } from '../../src/server/metrics.js';
import { FakeClock } from '../support/fake-clock.js';
import { request, TestHandle, testToken } from '../support/http-client.js';

const SECRET = 'eyJhbGciOiJFUzI1NiJ9.cHJvYmUtc2VjcmV0.c2ln';

const servers: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function setup() {
  const clock = new FakeClock();
  const orders = new TestHandle('orders', clock);
  orders.token = testToken(clock, 60_000, SECRET);
  const handles = new Map([['orders', orders]]);
  const server = createMetricsServer({
    metrics: new Metrics({ clock, handles, processMetrics: false }),
    handles,
    logger: createLogger('error', { write: () => undefined }),
  });
  servers.push(server);
  const port = Number(new URL(await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 })).port);
  return { port, orders };
}

describe('metrics listener (metricsListen): probes and scrapes, never a token', () => {
  it('answers GET /healthz 200 ok, as the endpoint does', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/healthz');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toBe('ok\n');
  });

  it('answers GET /readyz 200 {"ready":true}, and 503 naming the tokens that are not ready', async () => {
    const { port, orders } = await setup();
    const ok = await request({ port }, '/readyz');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ ready: true });
    orders.ready = false;
    orders.reason = 'permanent failure: invalid_client';
    const not = await request({ port }, '/readyz');
    expect(not.status).toBe(503);
    expect(JSON.parse(not.body)).toEqual({ ready: false, not_ready: [{ token: 'orders', reason: 'permanent failure: invalid_client' }] });
  });

  it('answers GET /metrics with the Prometheus text', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toContain('tokend_token_ready{token="orders"} 1');
  });

  it('serves no /v1/ route, with or without Tokend-Request (404), and never the token', async () => {
    const { port } = await setup();
    for (const p of ['/v1/token/orders', '/v1/token/orders?min_ttl=10', '/v1/verify']) {
      const res = await request({ port }, p, { headers: { 'Tokend-Request': '1', Accept: 'text/plain' } });
      expect(res.status, p).toBe(404);
      expect(res.body).not.toContain(SECRET);
    }
  });

  it('answers 405 with Allow for other methods, 404 for other paths', async () => {
    const { port } = await setup();
    const post = await request({ port }, '/readyz', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect((await request({ port }, '/')).status).toBe(404);
  });
});
