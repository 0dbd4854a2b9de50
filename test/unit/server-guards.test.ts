import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { createTokenServer, type TokenServer, type TokenServerOptions } from '../../src/server/http.js';
import { listenError } from '../../src/server/listen.js';
import { createMetricsServer, type MetricsServer } from '../../src/server/metrics-server.js';
import { Metrics } from '../../src/server/metrics.js';
import { adaptHostPolicy, createHostPolicy, hostAllowed, shownHost } from '../../src/server/request-guard.js';
import { MAX_TOKEN_CHARS } from '../../src/token.js';
import { FakeClock } from '../support/fake-clock.js';
import { rawExchange, request, statusOf, TestHandle, testToken } from '../support/http-client.js';

const SECRET = 'eyJhbGciOiJSUzI1NiJ9.Z3VhcmRzLXNlY3JldA.c2lnbmF0dXJl';
const V1 = { 'Tokend-Request': '1' };

const closers: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((s) => s.close()));
});

const quiet = () => createLogger('error', { write: () => undefined });

async function setup(extra: Partial<TokenServerOptions> = {}): Promise<{ port: number; server: TokenServer; clock: FakeClock }> {
  const clock = new FakeClock();
  const orders = new TestHandle('orders', clock);
  orders.token = testToken(clock, 90_000, SECRET);
  const handles = new Map([['orders', orders]]);
  const server = createTokenServer({ handles, metrics: new Metrics({ clock, handles, processMetrics: false }), clock, logger: quiet(), ...extra });
  closers.push(server);
  const url = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  return { port: Number(new URL(url).port), server, clock };
}

/** GET /v1/token/orders with exactly these header lines (CRLF added), over a raw socket. */
function rawGet(port: number, headerLines: string[], version = '1.1'): Promise<string> {
  const head = [`GET /v1/token/orders HTTP/${version}`, ...headerLines, 'Connection: close'].join('\r\n');
  return rawExchange(port, `${head}\r\n\r\n`);
}

describe('Host on /v1/ (DNS rebinding)', () => {
  it('refuses a page that rebound its own name to 127.0.0.1 with 403, naming the host and allowedHosts', async () => {
    const { port } = await setup();
    const res = await request({ port }, '/v1/token/orders', { headers: { ...V1, Host: 'attacker.example:8477' } });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({
      error: 'forbidden',
      message: 'Host attacker.example is not a loopback name; add it to allowedHosts',
    });
    expect(res.body).not.toContain(SECRET);
    const verify = await request({ port }, '/v1/verify', { method: 'POST', headers: { ...V1, Host: 'attacker.example', Authorization: 'Bearer x' } });
    expect(verify.status).toBe(403);
  });

  it('shows at most a bounded, sanitized part of a hostile Host', async () => {
    const { port } = await setup();
    const hostile = `<script>${'a'.repeat(3_000)}`;
    const got = await rawGet(port, [`Host: ${hostile}`, 'Tokend-Request: 1']);
    expect(statusOf(got)).toBe(403);
    const body = got.slice(got.indexOf('\r\n\r\n') + 4);
    expect(body).not.toContain('<script>');
    expect(body.length).toBeLessThan(200);
    expect(shownHost('evil"\\\n.example:80')).toBe('evil???.example');
  });

  it('accepts loopback names and addresses, with or without a port, and a request without Host (HTTP/1.0)', async () => {
    const { port } = await setup();
    for (const host of ['localhost', `localhost:${port}`, 'LOCALHOST.', '127.0.0.1', `127.0.0.1:${port}`, '127.9.8.7:1', '[::1]', `[::1]:${port}`, '[0:0::1]']) {
      const got = await rawGet(port, [`Host: ${host}`, 'Tokend-Request: 1']);
      expect(statusOf(got), host).toBe(200);
      expect(got).toContain(SECRET);
    }
    expect(statusOf(await rawGet(port, ['Tokend-Request: 1'], '1.0'))).toBe(200);
  });

  it('refuses look-alikes of loopback names and malformed Host values', async () => {
    const { port } = await setup();
    for (const host of ['localhost.attacker.example', '127.0.0.1.nip.io', '0.0.0.0', '::1', '[::1', 'localhost:80x', '', 'a b']) {
      const got = await rawGet(port, [`Host: ${host}`, 'Tokend-Request: 1']);
      expect([400, 403], host).toContain(statusOf(got));
      expect(got, host).not.toContain(SECRET);
    }
  });

  it('accepts the names and addresses listed in allowedHosts, in any case, and only those', async () => {
    const { port } = await setup({ allowedHosts: ['tokend.internal', '10.1.2.3', '[FD00::1]'] });
    for (const host of ['tokend.internal', 'TOKEND.Internal:8477', '10.1.2.3:8477', '[fd00:0:0::1]:1']) {
      expect(statusOf(await rawGet(port, [`Host: ${host}`, 'Tokend-Request: 1'])), host).toBe(200);
    }
    for (const host of ['other.internal', 'tokend.internal.example', '10.1.2.4']) {
      expect(statusOf(await rawGet(port, [`Host: ${host}`, 'Tokend-Request: 1'])), host).toBe(403);
    }
  });

  it('refuses two Host headers with 400', async () => {
    const { port } = await setup();
    const got = await rawGet(port, ['Host: localhost', 'Host: attacker.example', 'Tokend-Request: 1']);
    expect(statusOf(got)).toBe(400);
    expect(got).not.toContain(SECRET);
  });

  it('leaves /healthz, /readyz and /metrics open to any Host (they hold no token)', async () => {
    const { port } = await setup();
    for (const p of ['/healthz', '/readyz', '/metrics']) {
      expect((await request({ port }, p, { headers: { Host: 'attacker.example' } })).status, p).toBe(200);
    }
  });

  it('accepts any Host on a unix socket, which no browser can reach', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tokend-guard-'));
    try {
      const clock = new FakeClock();
      const orders = new TestHandle('orders', clock);
      orders.token = testToken(clock, 60_000, SECRET);
      const handles = new Map([['orders', orders]]);
      const server = createTokenServer({ handles, metrics: new Metrics({ clock, handles, processMetrics: false }), clock, logger: quiet() });
      closers.push(server);
      const sock = path.join(dir, 'tokend.sock');
      await server.listen({ kind: 'unix', path: sock });
      const res = await request({ socketPath: sock }, '/v1/token/orders', { headers: { ...V1, Host: 'anything.example' } });
      expect(res.status).toBe(200);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses, without failing, addresses no Host can carry (an IPv6 zone id)', () => {
    const policy = createHostPolicy(['fe80::1%eth0', 'tokend.internal']);
    expect(hostAllowed(policy, '[fe80::1%eth0]:8477', {})).toBe(false);
    expect(hostAllowed(policy, 'tokend.internal', {})).toBe(true);
  });

  it('accepts its own listen address when listening on a non-loopback one (allowRemote)', () => {
    const named = createHostPolicy();
    adaptHostPolicy(named, { kind: 'tcp', host: '10.0.0.5' });
    expect(hostAllowed(named, '10.0.0.5:8477', {})).toBe(true);
    expect(hostAllowed(named, '10.0.0.6:8477', {})).toBe(false);
    // A wildcard listen: the address the client connected to (as a dual-stack socket reports it).
    const wildcard = createHostPolicy();
    adaptHostPolicy(wildcard, { kind: 'tcp', host: '0.0.0.0' });
    expect(hostAllowed(wildcard, '10.0.0.5:8477', { localAddress: '::ffff:10.0.0.5' })).toBe(true);
    expect(hostAllowed(wildcard, '10.0.0.6:8477', { localAddress: '::ffff:10.0.0.5' })).toBe(false);
    expect(hostAllowed(wildcard, 'attacker.example', { localAddress: '10.0.0.5' })).toBe(false);
    // Loopback listeners accept loopback names only.
    const loop = createHostPolicy();
    adaptHostPolicy(loop, { kind: 'tcp', host: '127.0.0.1' });
    expect(hostAllowed(loop, '127.0.0.1', {})).toBe(true);
    expect(hostAllowed(loop, '10.0.0.5', { localAddress: '10.0.0.5' })).toBe(false);
  });
});

describe('header count', () => {
  const pads = (n: number) => Array.from({ length: n }, (_, i) => `X-Pad-${i}: 1`);

  it('refuses (431) a request whose X-Forwarded-For comes after 1,100 header lines, never serving it', async () => {
    const { port } = await setup();
    // Short lines, so the request stays under any header size limit: only the count matters.
    const lines = Array.from({ length: 1_100 }, () => 'a:1');
    const got = await rawGet(port, ['Host: localhost', 'Tokend-Request: 1', ...lines, 'X-Forwarded-For: 203.0.113.9']);
    expect(statusOf(got)).toBe(431);
    expect(got).not.toContain(SECRET);
  });

  it('serves 99 header lines and refuses 100 (the limit Node is told to keep)', async () => {
    const { port } = await setup();
    // Request lines: Host, Tokend-Request, Connection and the pads.
    expect(statusOf(await rawGet(port, ['Host: localhost', 'Tokend-Request: 1', ...pads(96)]))).toBe(200);
    expect(statusOf(await rawGet(port, ['Host: localhost', 'Tokend-Request: 1', ...pads(97)]))).toBe(431);
  });
});

describe('header size', () => {
  // Headers a real client sends besides the token, about 1.5 KB.
  const ordinary = { 'User-Agent': 'orders-api/1.0 (node)', Accept: 'application/json', Cookie: `session=${'c'.repeat(1_400)}` };

  it(`passes a ${MAX_TOKEN_CHARS}-character bearer token to the verifier, next to ordinary headers`, async () => {
    const seen: number[] = [];
    const { port } = await setup({
      verifier: async (bearer) => {
        seen.push(bearer.length);
        return { active: true, issuer: 'https://idp.example', claims: {} };
      },
    });
    const token = `${'a'.repeat(100)}.${'b'.repeat(MAX_TOKEN_CHARS - 202)}.${'c'.repeat(100)}`;
    expect(token).toHaveLength(MAX_TOKEN_CHARS);
    const res = await request({ port }, '/v1/verify', { method: 'POST', headers: { ...V1, ...ordinary, Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(seen).toEqual([MAX_TOKEN_CHARS]);
  });

  it('refuses a bearer token of 32 KiB with 431', async () => {
    const { port } = await setup({ verifier: async () => ({ active: true, issuer: 'x', claims: {} }) });
    const got = await rawExchange(
      port,
      `POST /v1/verify HTTP/1.1\r\nHost: localhost\r\nTokend-Request: 1\r\nAuthorization: Bearer ${'a'.repeat(32_768)}\r\n\r\n`,
    );
    expect(statusOf(got)).toBe(431);
  });
});

describe('silent connections', () => {
  /** Opens n connections that never send a byte; resolves with what each received once all are closed by the server. */
  async function silentSockets(port: number, n: number): Promise<string[]> {
    return Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<string>((resolve, reject) => {
            const sock = net.connect(port, '127.0.0.1');
            let got = '';
            sock.on('data', (c) => (got += c.toString('latin1')));
            sock.on('error', reject);
            sock.on('close', () => resolve(got));
            // Bounded wait: a connection the server leaves open fails the test.
            sock.setTimeout(4_000, () => sock.destroy(new Error('the server left a silent connection open')));
          }),
      ),
    );
  }

  it('closes connections that never send a byte with 408 on the endpoint', async () => {
    const { port } = await setup({ headersTimeoutMs: 300 });
    for (const got of await silentSockets(port, 5)) expect(statusOf(got)).toBe(408);
  });

  it('closes connections that never send a byte with 408 on the metrics listener', async () => {
    const clock = new FakeClock();
    const server = createMetricsServer({ metrics: new Metrics({ clock, processMetrics: false }), handles: new Map(), logger: quiet(), headersTimeoutMs: 300 });
    closers.push(server);
    const port = Number(new URL(await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 })).port);
    for (const got of await silentSockets(port, 5)) expect(statusOf(got)).toBe(408);
  });
});

describe('listen failures name the setting', () => {
  async function occupiedPort(): Promise<{ port: number; close(): Promise<void> }> {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    return { port: (blocker.address() as net.AddressInfo).port, close: () => new Promise((r) => blocker.close(() => r())) };
  }

  it('says which listen address is in use, suggests another tokend, and keeps code EADDRINUSE', async () => {
    const blocker = await occupiedPort();
    closers.push(blocker);
    const clock = new FakeClock();
    const server = createTokenServer({ handles: new Map(), metrics: new Metrics({ clock, processMetrics: false }), clock, logger: quiet() });
    closers.push(server);
    await expect(server.listen({ kind: 'tcp', host: '127.0.0.1', port: blocker.port })).rejects.toMatchObject({
      code: 'EADDRINUSE',
      message: `listen 127.0.0.1:${blocker.port}: address already in use (EADDRINUSE); is another tokend running? change listen or --listen`,
    });
  });

  it('names metricsListen and --metrics-listen for the metrics listener', async () => {
    const blocker = await occupiedPort();
    closers.push(blocker);
    const metrics: MetricsServer = createMetricsServer({ metrics: new Metrics({ clock: new FakeClock(), processMetrics: false }), handles: new Map(), logger: quiet() });
    closers.push(metrics);
    await expect(metrics.listen({ kind: 'tcp', host: '127.0.0.1', port: blocker.port })).rejects.toMatchObject({
      code: 'EADDRINUSE',
      message: `metricsListen 127.0.0.1:${blocker.port}: address already in use (EADDRINUSE); is another tokend running? change metricsListen or --metrics-listen`,
    });
  });

  it('explains EACCES (a privileged port) and names the setting', () => {
    const denied = Object.assign(new Error('listen EACCES: permission denied 0.0.0.0:80'), { code: 'EACCES' });
    const err = listenError('metricsListen', { kind: 'tcp', host: '::', port: 80 }, denied) as NodeJS.ErrnoException;
    expect(err.code).toBe('EACCES');
    expect(err.message).toBe(
      'metricsListen [::]:80: permission denied (EACCES): ports below 1024 need privileges (CAP_NET_BIND_SERVICE); change metricsListen or --metrics-listen',
    );
  });
});
