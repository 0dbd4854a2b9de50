import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TokendError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import type { TokenHandle, TokenStatus } from '../../src/refresh/handle.js';
import {
  createTokenServer,
  type TokenServer,
  type TokenServerOptions,
  type VerifyFunction,
} from '../../src/server/http.js';
import { Metrics } from '../../src/server/metrics.js';
import { isUsable, type AccessToken } from '../../src/token.js';
import { FakeClock } from '../support/fake-clock.js';
import { rawExchange, request } from '../support/http-client.js';

const T0 = Date.UTC(2025, 0, 1);
const SECRET = 'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJlLXZhbHVl';

/** A TokenHandle driven by the test: the token, readiness and ensureFresh behaviour are set directly. */
class FakeHandle implements TokenHandle {
  token: AccessToken | undefined;
  ready = true;
  reason: string | undefined;
  retryMs = 2_500;
  /** When true, current() returns the token without checking it (a buggy handle). */
  lies = false;
  readonly ensureCalls: Array<{ minTtlMs: number; signal: AbortSignal | undefined }> = [];
  ensureImpl: ((minTtlMs: number, signal?: AbortSignal) => Promise<AccessToken>) | undefined;

  constructor(
    readonly name: string,
    private readonly clock: FakeClock,
  ) {}

  current(): AccessToken | undefined {
    if (this.lies) return this.token;
    return isUsable(this.token, this.clock) ? this.token : undefined;
  }

  ensureFresh(minTtlMs: number, signal?: AbortSignal): Promise<AccessToken> {
    this.ensureCalls.push({ minTtlMs, signal });
    if (this.ensureImpl) return this.ensureImpl(minTtlMs, signal);
    const t = this.current();
    return t && t.expiresAt - this.clock.now() > minTtlMs
      ? Promise.resolve(t)
      : Promise.reject(new TokendError('TOKEN_UNAVAILABLE', `token ${this.name}: none valid`));
  }

  /** Times a consumer's request woke the handle (no valid token held). */
  wakes = 0;

  wake(): void {
    this.wakes++;
  }

  refreshAfterRejection(): Promise<AccessToken> {
    return this.ensureFresh(Number.MAX_SAFE_INTEGER);
  }

  status(): TokenStatus {
    return { name: this.name, ready: this.ready, reason: this.reason, expiresAt: this.token?.expiresAt };
  }

  retryAfterMs(): number {
    return this.retryMs;
  }
}

function tokenFor(clock: FakeClock, lifetimeMs: number, value = SECRET): AccessToken {
  return {
    accessToken: value,
    tokenType: 'Bearer',
    expiresAt: clock.now() + lifetimeMs,
    obtainedAt: clock.now(),
    scope: 'orders:read',
  };
}

const V1 = { 'Tokend-Request': '1' };

interface Setup {
  clock: FakeClock;
  handles: Map<string, FakeHandle>;
  orders: FakeHandle;
  server: TokenServer;
  port: number;
  logLines: string[];
}

const servers: TokenServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function setup(extra: Partial<TokenServerOptions> = {}): Promise<Setup> {
  const clock = new FakeClock(T0);
  const orders = new FakeHandle('orders', clock);
  orders.token = tokenFor(clock, 90_500);
  const handles = new Map<string, FakeHandle>([['orders', orders]]);
  const logLines: string[] = [];
  const logger = createLogger('debug', { write: (s: string) => void logLines.push(s) });
  const metrics = new Metrics({ clock, handles, processMetrics: false });
  const server = createTokenServer({ handles, metrics, clock, logger, ...extra });
  servers.push(server);
  const url = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const port = Number(new URL(url).port);
  return { clock, handles, orders, server, port, logLines };
}

describe('GET /v1/token/NAME', () => {
  it('answers the token as JSON with Unix-second expiry and whole seconds left, not cacheable', async () => {
    const { port, orders } = await setup();
    const res = await request({ port }, '/v1/token/orders', { headers: V1 });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(res.body)).toEqual({
      access_token: SECRET,
      token_type: 'Bearer',
      expires_at: Math.floor(orders.token!.expiresAt / 1000),
      expires_in: 90,
      scope: 'orders:read',
    });
  });

  it('counts expires_in down as the clock moves, and serves a replaced token at once', async () => {
    const { port, orders, clock } = await setup();
    await request({ port }, '/v1/token/orders', { headers: V1 });
    await clock.advance(1_000);
    expect(JSON.parse((await request({ port }, '/v1/token/orders', { headers: V1 })).body).expires_in).toBe(89);
    orders.token = tokenFor(clock, 300_000, 'second-token');
    const body = JSON.parse((await request({ port }, '/v1/token/orders', { headers: V1 })).body);
    expect(body.access_token).toBe('second-token');
    expect(body.expires_in).toBe(300);
  });

  it('answers the raw token for Accept: text/plain, JSON when application/json comes first', async () => {
    const { port } = await setup();
    const text = await request({ port }, '/v1/token/orders', { headers: { ...V1, Accept: 'text/plain' } });
    expect(text.status).toBe(200);
    expect(text.headers['content-type']).toMatch(/^text\/plain/);
    expect(text.headers['cache-control']).toBe('no-store');
    expect(text.body).toBe(SECRET);
    const both = await request({ port }, '/v1/token/orders', { headers: { ...V1, Accept: 'application/json, text/plain' } });
    expect(JSON.parse(both.body).access_token).toBe(SECRET);
  });

  it('refuses a request without Tokend-Request: 1 with 403, before revealing whether a path exists', async () => {
    const { port } = await setup();
    for (const headers of [{}, { 'Tokend-Request': '0' }, { 'Tokend-Request': 'true' }] as Record<string, string>[]) {
      const res = await request({ port }, '/v1/token/orders', { headers });
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body)).toEqual({ error: 'forbidden', message: 'missing Tokend-Request: 1 header' });
      expect(res.body).not.toContain(SECRET);
    }
    expect((await request({ port }, '/v1/nothing-here', {})).status).toBe(403);
    expect((await request({ port }, '/v1/verify', { method: 'POST' })).status).toBe(403);
  });

  it('matches header names in any case, and only the exact name', async () => {
    const { port } = await setup();
    const ask = (headers: string) =>
      rawExchange(port, `GET /v1/token/orders HTTP/1.1\r\nHost: localhost\r\n${headers}Connection: close\r\n\r\n`);
    expect(await ask('TOKEND-REQUEST: 1\r\n')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await ask('tokend-request: 1\r\nACCEPT: text/plain\r\n')).toMatch(new RegExp(`\r\n\r\n${SECRET}$`));
    expect(await ask('Tokend_Request: 1\r\n')).toMatch(/^HTTP\/1\.1 403 /);
    expect(await ask('Tokend-Request: 1\r\nTokend-Request: 2\r\n')).toMatch(/^HTTP\/1\.1 403 /);
    expect(await ask('tokend-request: 1\r\nx-FORWARDED-for: 10.0.0.1\r\n')).toMatch(/^HTTP\/1\.1 403 /);
  });

  it('refuses proxied requests (X-Forwarded-For, Forwarded) with 403', async () => {
    const { port } = await setup();
    for (const h of [{ 'X-Forwarded-For': '203.0.113.9' }, { Forwarded: 'for=203.0.113.9' }] as Record<string, string>[]) {
      const res = await request({ port }, '/v1/token/orders', { headers: { ...V1, ...h } });
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body).error).toBe('forbidden');
      expect(res.body).not.toContain(SECRET);
    }
  });

  it('answers 404 unknown_token for a name that is not configured', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/v1/token/billing', { headers: V1 });
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toEqual({ error: 'unknown_token' });
  });

  it('answers 404 for odd names without echoing them', async () => {
    const { port } = await setup();
    const long = 'a'.repeat(500);
    for (const name of ['../x', '..', '%2e%2e', '%2e%2e%2forders', 'orders/', 'Orders', '%C3%A9t%C3%A9', long, '', '-orders', 'a'.repeat(64)]) {
      const res = await request({ port }, `/v1/token/${name}`, { headers: V1 });
      expect(res.status, name).toBe(404);
      expect(res.body.length, name).toBeLessThan(100);
      if (name.length > 3) expect(res.body).not.toContain(name);
    }
  });

  it('refuses raw non-ASCII bytes in the path at the parser (400), never serving a token', async () => {
    const { port } = await setup();
    const got = await rawExchange(port, Buffer.from('GET /v1/token/ordérs HTTP/1.1\r\nHost: x\r\nTokend-Request: 1\r\n\r\n'));
    expect(got).toMatch(/^HTTP\/1\.1 400 /);
    expect(got).not.toContain(SECRET);
  });

  it('answers 405 with Allow for a method other than GET/HEAD', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/v1/token/orders', { method: 'DELETE', headers: V1 });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD');
    expect(res.body).not.toContain(SECRET);
  });

  it('answers HEAD with headers only', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/v1/token/orders', { method: 'HEAD', headers: V1 });
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
  });

  it('passes ?min_ttl=S to ensureFresh as milliseconds', async () => {
    const { port, orders } = await setup();
    const res = await request({ port }, '/v1/token/orders?min_ttl=30', { headers: V1 });
    expect(res.status).toBe(200);
    expect(orders.ensureCalls.map((c) => c.minTtlMs)).toEqual([30_000]);
    await request({ port }, '/v1/token/orders?min_ttl=0&other=x', { headers: V1 });
    await request({ port }, '/v1/token/orders?min_ttl=86400', { headers: V1 }).then((r) => expect(r.status).toBe(503));
    expect(orders.ensureCalls.map((c) => c.minTtlMs)).toEqual([30_000, 0, 86_400_000]);
    expect((await request({ port }, '/v1/token/orders?x=1', { headers: V1 })).status).toBe(200);
    expect(orders.ensureCalls).toHaveLength(3);
  });

  it('answers 400 naming min_ttl for a value that is not an integer from 0 to 86400', async () => {
    const { port, orders } = await setup();
    for (const q of ['-1', 'abc', '86401', '1.5', '', '1e3', '+5', '%20%205', '123456', '5&min_ttl=6']) {
      const res = await request({ port }, `/v1/token/orders?min_ttl=${q}`, { headers: V1 });
      expect(res.status, q).toBe(400);
      expect(JSON.parse(res.body).message, q).toContain('min_ttl');
    }
    expect(orders.ensureCalls).toHaveLength(0);
  });

  it('answers 503 with Retry-After when ensureFresh cannot deliver', async () => {
    const { port, orders } = await setup();
    orders.retryMs = 4_200;
    orders.ensureImpl = () => Promise.reject(new TokendError('TOKEN_UNAVAILABLE', 'token orders: IdP unreachable'));
    const res = await request({ port }, '/v1/token/orders?min_ttl=60', { headers: V1 });
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(JSON.parse(res.body)).toMatchObject({ error: 'token_unavailable' });
    expect(typeof JSON.parse(res.body).message).toBe('string');
    expect(res.body).not.toContain(SECRET);
    orders.retryMs = Number.NaN;
    const odd = await request({ port }, '/v1/token/orders?min_ttl=60', { headers: V1 });
    expect(odd.headers['retry-after']).toBe('1');
  });

  it('aborts the ensureFresh signal when the client goes away', async () => {
    const { port, orders } = await setup();
    let aborted!: () => void;
    const abortSeen = new Promise<void>((r) => (aborted = r));
    const started = new Promise<void>((startedResolve) => {
      orders.ensureImpl = (_ms, signal) =>
        new Promise<AccessToken>((_resolve, reject) => {
          signal?.addEventListener('abort', () => {
            aborted();
            reject(new Error('aborted'));
          });
          startedResolve();
        });
    });
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/token/orders?min_ttl=60', headers: V1, agent: false });
    req.on('error', () => undefined);
    req.end();
    await started;
    req.destroy();
    await abortSeen;
    expect(orders.ensureCalls[0]?.signal?.aborted).toBe(true);
  });

  it('answers 503 + Retry-After, never the expired token, once the token expires', async () => {
    const { port, orders, clock } = await setup();
    orders.token = tokenFor(clock, 2_000);
    expect((await request({ port }, '/v1/token/orders', { headers: V1 })).status).toBe(200);
    await clock.advance(2_000);
    for (const accept of ['application/json', 'text/plain']) {
      const res = await request({ port }, '/v1/token/orders', { headers: { ...V1, Accept: accept } });
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('3');
      expect(JSON.parse(res.body).error).toBe('token_unavailable');
      expect(res.body).not.toContain(SECRET);
    }
    // Each of those requests asked the handle to try now (it rate-limits and coalesces them).
    expect(orders.wakes).toBe(2);
  });

  it('never serves an expired token even when the handle wrongly offers one', async () => {
    const { port, orders, clock } = await setup();
    orders.lies = true;
    orders.token = tokenFor(clock, 1_500);
    orders.ensureImpl = () => Promise.resolve(orders.token!);
    await clock.advance(1_500);
    for (const p of ['/v1/token/orders', '/v1/token/orders?min_ttl=0']) {
      for (const accept of ['application/json', 'text/plain']) {
        const res = await request({ port }, p, { headers: { ...V1, Accept: accept } });
        expect(res.status).toBe(503);
        expect(res.body).not.toContain(SECRET);
      }
    }
  });
});

describe('POST /v1/verify', () => {
  const verifier: VerifyFunction = async (bearer) => {
    if (bearer === 'good.token.value') return { active: true, issuer: 'https://idp.example', claims: { sub: 'svc-a', aud: 'orders-api' } };
    if (bearer === 'flaky') return { active: false, reason: 'inactive', status: 503 };
    if (bearer === 'boom') throw new Error('jwks fetch failed');
    return { active: false, reason: 'expired' };
  };

  it('answers 200 with issuer and claims for a valid token', async () => {
    const { port } = await setup({ verifier });
    const res = await request({ port }, '/v1/verify', { method: 'POST', headers: { ...V1, Authorization: 'Bearer good.token.value' } });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ active: true, issuer: 'https://idp.example', claims: { sub: 'svc-a', aud: 'orders-api' } });
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('answers 401 invalid_token with the reason and never echoes the token', async () => {
    const { port } = await setup({ verifier });
    const res = await request({ port }, '/v1/verify', { method: 'POST', headers: { ...V1, Authorization: `bearer ${SECRET}` } });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toEqual({ error: 'invalid_token', reason: 'expired' });
    expect(res.headers['www-authenticate']).toContain('invalid_token');
    expect(JSON.stringify(res.headers) + res.body).not.toContain(SECRET);
  });

  it('uses the status the verifier asks for, and 503 when it throws', async () => {
    const { port, logLines } = await setup({ verifier });
    const flaky = await request({ port }, '/v1/verify', { method: 'POST', headers: { ...V1, Authorization: 'Bearer flaky' } });
    expect(flaky.status).toBe(503);
    expect(JSON.parse(flaky.body).reason).toBe('inactive');
    const boom = await request({ port }, '/v1/verify', { method: 'POST', headers: { ...V1, Authorization: 'Bearer boom' } });
    expect(boom.status).toBe(503);
    expect(boom.body).not.toContain('boom');
    expect(logLines.join('')).toContain('jwks fetch failed');
  });

  it('answers 400 without a bearer token', async () => {
    const { port } = await setup({ verifier });
    for (const auth of [undefined, 'Basic dXNlcjpwYXNz', 'Bearer', 'Bearer  ']) {
      const headers: Record<string, string> = { ...V1 };
      if (auth !== undefined) headers.Authorization = auth;
      const res = await request({ port }, '/v1/verify', { method: 'POST', headers });
      expect(res.status, String(auth)).toBe(400);
      expect(JSON.parse(res.body).error).toBe('invalid_request');
      expect(res.body).not.toContain('dXNlcjpwYXNz');
    }
  });

  it('ignores a request body (the token is read from the header only)', async () => {
    const { port } = await setup({ verifier });
    const res = await request({ port }, '/v1/verify', {
      method: 'POST',
      headers: { ...V1, Authorization: 'Bearer good.token.value', 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: 'other' }),
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).active).toBe(true);
  });

  it('answers 404 when no verifier is configured and 405 for GET', async () => {
    const { port } = await setup();
    expect((await request({ port }, '/v1/verify', { method: 'POST', headers: { ...V1, Authorization: 'Bearer x' } })).status).toBe(404);
    const get = await request({ port }, '/v1/verify', { headers: V1 });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
  });
});

describe('health, readiness, metrics, other paths', () => {
  it('answers /healthz 200 ok without the Tokend-Request header', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/healthz');
    expect(res.status).toBe(200);
    expect(res.body.trim()).toBe('ok');
  });

  it('answers /readyz 200 when every token is ready, else 503 naming those that are not', async () => {
    const { port, handles, clock } = await setup();
    expect((await request({ port }, '/readyz')).status).toBe(200);
    const billing = new FakeHandle('billing', clock);
    billing.ready = false;
    billing.reason = 'permanent failure: invalid_grant';
    handles.set('billing', billing);
    const res = await request({ port }, '/readyz');
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toEqual({
      ready: false,
      not_ready: [{ token: 'billing', reason: 'permanent failure: invalid_grant' }],
    });
  });

  it('serves Prometheus text with the token series and no token value', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toContain('tokend_token_expiry_seconds{token="orders"} 90.5');
    expect(res.body).toContain('tokend_token_ready{token="orders"} 1');
    expect(res.body).toContain('tokend_refresh_total{token="orders",result="success"} 0');
    expect(res.body).not.toContain(SECRET);
  });

  it('answers 404 for other paths and 405 with Allow for a wrong method', async () => {
    const { port } = await setup();
    for (const p of ['/', '/v1', '/healthz/x', '/token/orders', '/V1/token/orders', '/metricsx']) {
      expect((await request({ port }, p, { headers: V1 })).status, p).toBe(404);
    }
    const res = await request({ port }, '/healthz', { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD');
  });
});

describe('hostile input', () => {
  it('answers 414 for a request target over 2 KiB, and for a 10 KiB one', async () => {
    const { port } = await setup();
    expect((await request({ port }, `/v1/token/${'a'.repeat(3_000)}`, { headers: V1 })).status).toBe(414);
    const got = await rawExchange(port, `GET /v1/token/${'a'.repeat(10_240)} HTTP/1.1\r\nHost: x\r\nTokend-Request: 1\r\n\r\n`);
    expect(got).toMatch(/^HTTP\/1\.1 414 /);
  });

  it('answers 431 for 64 KiB of headers', async () => {
    const { port } = await setup();
    const got = await rawExchange(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(65_536)}\r\n\r\n`);
    expect(got).toMatch(/^HTTP\/1\.1 431 /);
  });

  it('disconnects a client that sends half a request, after headersTimeout', async () => {
    const { port } = await setup({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const started = Date.now();
    const got = await rawExchange(port, 'GET /v1/token/orders HTTP/1.1\r\nHost: x\r\nTokend-Req');
    const elapsed = Date.now() - started;
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(3_000);
  });

  it('closes the connection after answering a GET that carried a body', async () => {
    const { port } = await setup();
    const got = await rawExchange(
      port,
      'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
    );
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    expect(got.toLowerCase()).toContain('connection: close');
  });
});

describe('listening and closing', () => {
  it('listens on a unix socket with mode 0660, replacing a stale socket file', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tokend-http-'));
    const sock = path.join(dir, 'tokend.sock');
    // A process killed while listening leaves its socket file behind.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`]);
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await Promise.race([
        new Promise<void>((resolve) => child.stdout.once('data', () => resolve())),
        exited.then((code) => Promise.reject(new Error(`the listening child exited (${String(code)}) before it listened`))),
      ]);
      child.kill('SIGKILL');
      await exited;
      expect((await fs.lstat(sock)).isSocket()).toBe(true);

      const clock = new FakeClock(T0);
      const orders = new FakeHandle('orders', clock);
      orders.token = tokenFor(clock, 60_000);
      const handles = new Map([['orders', orders]]);
      const server = createTokenServer({
        handles,
        metrics: new Metrics({ clock, handles, processMetrics: false }),
        clock,
        logger: createLogger('error', { write: () => undefined }),
      });
      servers.push(server);
      expect(await server.listen({ kind: 'unix', path: sock })).toBe(`unix:${sock}`);
      expect((await fs.stat(sock)).mode & 0o777).toBe(0o660);
      const res = await request({ socketPath: sock }, '/v1/token/orders', { headers: { ...V1, Accept: 'text/plain' } });
      expect(res.body).toBe(SECRET);

      // A live socket is never taken over.
      const second = createTokenServer({
        handles,
        metrics: new Metrics({ clock, processMetrics: false }),
        clock,
        logger: createLogger('error', { write: () => undefined }),
      });
      await expect(second.listen({ kind: 'unix', path: sock })).rejects.toMatchObject({ code: 'EADDRINUSE' });
      await server.close();
      await expect(fs.lstat(sock)).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to replace a regular file at the socket path', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tokend-http-'));
    const file = path.join(dir, 'not-a-socket');
    try {
      await fs.writeFile(file, 'keep me');
      const clock = new FakeClock(T0);
      const server = createTokenServer({
        handles: new Map(),
        metrics: new Metrics({ clock, processMetrics: false }),
        clock,
        logger: createLogger('error', { write: () => undefined }),
      });
      await expect(server.listen({ kind: 'unix', path: file })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
      expect(await fs.readFile(file, 'utf8')).toBe('keep me');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('closes promptly with an idle keep-alive connection open', async () => {
    const { port, server } = await setup({ closeGraceMs: 10_000 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const res = await request({ port }, '/healthz', { agent });
      expect(res.headers.connection).toBe('keep-alive');
      const sockets = Object.values(agent.freeSockets).flat();
      expect(sockets).toHaveLength(1);
      const socketClosed = new Promise((r) => sockets[0]!.once('close', r));
      const started = Date.now();
      await server.close();
      await socketClosed;
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      agent.destroy();
    }
  });

  it('finishes a request in flight on close and then ends its connection', async () => {
    const { port, server, orders } = await setup({ closeGraceMs: 10_000 });
    let release!: (t: AccessToken) => void;
    const started = new Promise<void>((startedResolve) => {
      orders.ensureImpl = () =>
        new Promise<AccessToken>((resolve) => {
          release = resolve;
          startedResolve();
        });
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const pending = request({ port }, '/v1/token/orders?min_ttl=10', { headers: V1, agent });
      await started;
      const closed = server.close();
      release(orders.token!);
      const res = await pending;
      expect(res.status).toBe(200);
      expect(res.headers.connection).toBe('close');
      const t = Date.now();
      await closed;
      expect(Date.now() - t).toBeLessThan(1_000);
    } finally {
      agent.destroy();
    }
  });
});
