/**
 * The egress proxy with real parts: tokend started in-process against the dev IdP (real grants),
 * a real upstream on node:http. What the upstream receives, what the application gets, how many
 * grants the IdP issued.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/until.js';
import { refusing, send, startIdp, startTokend, startUpstream, OK, type Idp, type Upstream } from './proxy-fixtures.js';

const proxyYaml = (upstream: string, extra: Record<string, string> = {}): string =>
  [`  - listen: 127.0.0.1:0`, `    upstream: ${upstream}`, `    token: orders`, ...Object.entries(extra).map(([k, v]) => `    ${k}: ${v}`)].join('\n');

/** A PUT with Expect: 100-continue whose body is sent only on the go-ahead; says whether one came. */
function putWithContinue(base: string, body: string): Promise<{ status: number; continued: boolean }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    let continued = false;
    const req = http.request({ host: u.hostname, port: u.port, path: '/upload', method: 'PUT', agent: false, headers: { Expect: '100-continue', 'Content-Length': String(body.length) } });
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, continued }));
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

/** The status of a WebSocket handshake the proxy answers without upgrading. */
function upgradeStatus(base: string): Promise<{ status: number; retryAfter: string | undefined }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: '/ws', agent: false, headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
    });
    req.on('upgrade', () => reject(new Error('upgraded without a token')));
    req.on('error', reject);
    req.end();
  });
}

async function metricsOf(daemonUrl: string): Promise<string> {
  return (await fetch(`${daemonUrl}/metrics`)).text();
}

describe('egress proxy: the token on every request', () => {
  let idp: Idp;
  let upstream: Upstream;
  beforeAll(async () => {
    [idp, upstream] = await Promise.all([startIdp(300), startUpstream()]);
  });
  afterAll(async () => {
    await Promise.all([idp?.close(), upstream?.close()]);
  });

  it("puts the current token in Authorization, replacing every credential the application sent, with the upstream's Host and base path", async () => {
    const t = await startTokend(idp, proxyYaml(`${upstream.url}/api/`));
    try {
      upstream.behave((_req, res) => {
        res.writeHead(200, ['Content-Type', 'application/json', 'Connection', 'X-Hop', 'X-Hop', 'only-for-this-hop', 'Proxy-Authenticate', 'Basic', 'X-End', 'kept']);
        res.end('{"ok":true}');
      });
      const before = upstream.seen.length;
      const a = await send(t.proxyUrl, '/v1/orders?limit=2', {
        headers: [
          'Authorization', 'Bearer the-apps-own-credential',
          'authorization', 'Basic YXBwOnNlY3JldA==',
          'Host', 'evil.example',
          'Connection', 'keep-alive, X-Private',
          'X-Private', 'hop-by-hop',
          'Proxy-Authorization', 'Basic cHJveHk6c2VjcmV0',
          'TE', 'trailers',
          'X-Kept', 'yes',
        ],
      });
      expect(a.status).toBe(200);
      expect(a.body).toBe('{"ok":true}');
      const s = upstream.seen[before]!;
      expect(s.url).toBe('/api/v1/orders?limit=2');
      expect(s.headers.get('authorization')).toEqual([`Bearer ${t.token()}`]);
      expect(s.headers.get('host')).toEqual([new URL(upstream.url).host]);
      for (const dropped of ['x-private', 'proxy-authorization', 'te']) expect(s.headers.get(dropped), dropped).toBeUndefined();
      expect(s.headers.get('x-kept')).toEqual(['yes']);
      // Hop-by-hop answer headers stay on the upstream's hop too.
      expect(a.headers['x-hop']).toBeUndefined();
      expect(a.headers['proxy-authenticate']).toBeUndefined();
      expect(a.headers['x-end']).toBe('kept');
    } finally {
      upstream.behave(OK);
      await t.stop();
    }
  });

  it('gives Expect: 100-continue its go-ahead and forwards the body that follows', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url));
    try {
      const before = upstream.seen.length;
      expect(await putWithContinue(t.proxyUrl, 'the body')).toEqual({ status: 200, continued: true });
      expect(upstream.seen[before]).toMatchObject({ method: 'PUT', bodyBytes: 8 });
      expect(upstream.seen[before]!.headers.get('expect')).toBeUndefined();
    } finally {
      await t.stop();
    }
  });

  it('puts the raw token in a configured header (scheme ""), replacing that header only', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url, { header: 'X-Api-Token', scheme: '""' }));
    try {
      const before = upstream.seen.length;
      const a = await send(t.proxyUrl, '/', { headers: { 'x-api-token': 'apps-value', authorization: 'Bearer apps-bearer' } });
      expect(a.status).toBe(200);
      const s = upstream.seen[before]!;
      expect(s.headers.get('x-api-token')).toEqual([t.token()]);
      expect(s.headers.get('authorization')).toEqual(['Bearer apps-bearer']);
    } finally {
      await t.stop();
    }
  });

  it('answers 503 with Retry-After while the IdP refuses the credential, and the upstream sees nothing', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url), { secret: 'not-the-secret', wait: false });
    try {
      await until(() => t.events('token.refresh_failed').length > 0, 'the grant to fail');
      const before = upstream.seen.length;
      const get = await send(t.proxyUrl, '/v1/orders');
      const post = await send(t.proxyUrl, '/v1/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"order":"secret-order-body"}' });
      for (const a of [get, post]) {
        expect(a.status).toBe(503);
        expect(a.headers['retry-after']).toMatch(/^[1-9]\d*$/);
        expect(JSON.parse(a.body)).toMatchObject({ error: 'token_unavailable' });
      }
      // Expect: 100-continue gets no go-ahead: the upload is never even sent.
      expect(await putWithContinue(t.proxyUrl, 'never-sent')).toEqual({ status: 503, continued: false });
      // Nor does a WebSocket handshake get through.
      const ws = await upgradeStatus(t.proxyUrl);
      expect(ws.status).toBe(503);
      expect(ws.retryAfter).toMatch(/^[1-9]\d*$/);
      expect(upstream.seen.length).toBe(before);
      const refused = t.events('proxy.refused');
      expect(refused).toHaveLength(4);
      expect(refused[0]).toMatchObject({ proxy: 'orders', token: 'orders', method: 'GET', path: '/v1/orders' });
      expect(t.logText()).not.toContain('secret-order-body');
      const metrics = await metricsOf(t.daemon.url);
      expect(metrics).toContain('tokend_proxy_refused_total{proxy="orders"} 4');
      expect(metrics).toContain('tokend_proxy_requests_total{proxy="orders",class="5xx"} 4');
    } finally {
      await t.stop();
    }
  });

  it('never forwards an expired token: 503 once it lapses while the IdP is down, the token again once the IdP is back', async () => {
    const short = await startIdp(3);
    const t = await startTokend(short, proxyYaml(upstream.url));
    try {
      expect((await send(t.proxyUrl, '/')).status).toBe(200);
      await short.faults.setMode('refuse');
      const handle = t.daemon.handles.get('orders')!;
      await until(() => handle.current() === undefined, 'the token to lapse', 15_000);
      const before = upstream.seen.length;
      const a = await send(t.proxyUrl, '/');
      expect(a.status).toBe(503);
      expect(a.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      expect(upstream.seen.length).toBe(before);

      await short.faults.setMode('pass');
      await until(() => handle.current() !== undefined, 'a new token', 20_000);
      const again = await send(t.proxyUrl, '/');
      expect(again.status).toBe(200);
      expect(upstream.seen.at(-1)!.headers.get('authorization')).toEqual([`Bearer ${t.token()}`]);
    } finally {
      await t.stop();
      await short.close();
    }
  });
});

describe('egress proxy: a 401 from the upstream', () => {
  let idp: Idp;
  let upstream: Upstream;
  beforeAll(async () => {
    [idp, upstream] = await Promise.all([startIdp(300), startUpstream()]);
  });
  afterAll(async () => {
    await Promise.all([idp?.close(), upstream?.close()]);
  });

  it('gets exactly one new grant for concurrent rejected requests, and retries each once with the new token', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url));
    try {
      const first = t.token();
      upstream.behave(refusing(new Set([first])));
      const grants = idp.grants();
      const before = upstream.seen.length;
      const body = 'x'.repeat(1_000);
      const answers = await Promise.all([
        ...Array.from({ length: 5 }, (_, i) => send(t.proxyUrl, `/items/${i}`)),
        send(t.proxyUrl, '/items', { method: 'POST', headers: { 'content-type': 'text/plain' }, body }),
      ]);
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
      expect(idp.grants()).toBe(grants + 1);
      const second = t.token();
      expect(second).not.toBe(first);

      const seen = upstream.seen.slice(before);
      const withFirst = seen.filter((s) => s.headers.get('authorization')?.[0] === `Bearer ${first}`);
      const withSecond = seen.filter((s) => s.headers.get('authorization')?.[0] === `Bearer ${second}`);
      // Every request reached the upstream with the new token exactly once; only the rejected ones twice.
      expect(withSecond.map((s) => s.url).sort()).toEqual(['/items', '/items/0', '/items/1', '/items/2', '/items/3', '/items/4']);
      expect(withFirst.length).toBeGreaterThan(0);
      expect(seen).toHaveLength(withFirst.length + withSecond.length);
      // The kept body went again, whole.
      for (const s of seen.filter((x) => x.method === 'POST')) expect(s.bodyBytes).toBe(1_000);
      expect(t.events('proxy.retried')).toHaveLength(withFirst.length);
      expect(await metricsOf(t.daemon.url)).toContain(`tokend_proxy_retries_total{proxy="orders"} ${withFirst.length}`);
    } finally {
      upstream.behave(OK);
      await t.stop();
    }
  });

  it('passes back the 401 of a request whose body was too large to keep, with no grant and no retry (fixed length and chunked)', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url, { retryBodyLimit: '1KiB' }));
    try {
      upstream.behave(refusing(new Set([t.token()])));
      const grants = idp.grants();
      const before = upstream.seen.length;
      const fixed = await send(t.proxyUrl, '/upload', { method: 'PUT', body: Buffer.alloc(10_240, 1) });
      const chunked = await send(t.proxyUrl, '/upload', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: Buffer.alloc(5_000, 2) });
      for (const a of [fixed, chunked]) {
        expect(a.status).toBe(401);
        expect(a.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
        expect(JSON.parse(a.body)).toEqual({ error: 'invalid_token', from: 'upstream' });
      }
      expect(idp.grants()).toBe(grants);
      expect(upstream.seen.slice(before).map((s) => s.bodyBytes)).toEqual([10_240, 5_000]);
      expect(t.events('proxy.retried')).toHaveLength(0);
      expect(t.events('proxy.rejected').map((l) => l.reason)).toEqual(['request body not kept for a retry', 'request body not kept for a retry']);
    } finally {
      upstream.behave(OK);
      await t.stop();
    }
  });

  it('never loops: when the new token is refused too, the second 401 goes back; a further 401 right after gets no new grant', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url));
    try {
      upstream.behave((_req, res) => {
        res.writeHead(401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
        res.end('refused');
      });
      const grants = idp.grants();
      const before = upstream.seen.length;
      const a = await send(t.proxyUrl, '/');
      expect(a.status).toBe(401);
      expect(a.body).toBe('refused');
      expect(idp.grants()).toBe(grants + 1);
      expect(upstream.seen.length).toBe(before + 2);

      // The forced refresh is rate-limited: the next rejection gets the upstream's 401 without a grant.
      const b = await send(t.proxyUrl, '/');
      expect(b.status).toBe(401);
      expect(idp.grants()).toBe(grants + 1);
      expect(upstream.seen.length).toBe(before + 3);
      expect(t.events('proxy.rejected').map((l) => l.reason)).toEqual(['the new token was refused too', 'no other valid token could be obtained']);
    } finally {
      upstream.behave(OK);
      await t.stop();
    }
  });

  it('passes back a 401 that names another error (insufficient_scope) without asking for a token', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url));
    try {
      upstream.behave((_req, res) => {
        res.writeHead(401, { 'WWW-Authenticate': 'Bearer realm="orders", error="insufficient_scope", scope="orders:write"' });
        res.end();
      });
      const grants = idp.grants();
      const before = upstream.seen.length;
      expect((await send(t.proxyUrl, '/')).status).toBe(401);
      expect(idp.grants()).toBe(grants);
      expect(upstream.seen.length).toBe(before + 1);
    } finally {
      upstream.behave(OK);
      await t.stop();
    }
  });
});
