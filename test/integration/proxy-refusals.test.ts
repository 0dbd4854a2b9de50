/**
 * What the egress proxy refuses and how it fails, with real parts: it is not an open proxy, dead
 * and slow upstreams get 502/504 with a JSON body saying which, the listener keeps tokend's limits,
 * WebSocket upgrades pass with the token, and no token ever reaches the log.
 */
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { createLogger } from '../../src/log.js';
import { startProxies } from '../../src/proxy/index.js';
import { freePort, scratch } from '../support/daemon.js';
import {
  OK,
  rawExchange,
  refusing,
  send,
  startIdp,
  startTokend,
  startUpstream,
  statusOf,
  websocketAccept,
  type Idp,
  type Tokend,
  type Upstream,
} from './proxy-fixtures.js';

const proxyYaml = (upstream: string, extra: Record<string, string> = {}): string =>
  [`  - listen: 127.0.0.1:0`, `    upstream: ${upstream}`, `    token: orders`, ...Object.entries(extra).map(([k, v]) => `    ${k}: ${v}`)].join('\n');

describe('egress proxy: refusals and failures', () => {
  let idp: Idp;
  let upstream: Upstream;
  let t: Tokend;
  beforeAll(async () => {
    [idp, upstream] = await Promise.all([startIdp(300), startUpstream()]);
    t = await startTokend(idp, proxyYaml(`${upstream.url}/base`));
  });
  afterAll(async () => {
    await t?.stop();
    await Promise.all([idp?.close(), upstream?.close()]);
  });

  it('is not an open proxy: absolute-form targets, CONNECT, asterisk-form and dot segments are refused, and the upstream sees none of them', async () => {
    const before = upstream.seen.length;
    const cases: Array<[string, number, string | undefined]> = [
      ['GET http://other.example/admin HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n', 400, 'invalid_request'],
      ['GET https://other.example:8443/ HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n', 400, 'invalid_request'],
      ['CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n', 405, 'method_not_allowed'],
      ['OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'invalid_request'],
      ['GET /../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'invalid_path'],
      ['GET /a/%2e%2E/%2E%2e/admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'invalid_path'],
      ['GET /a/..%2fadmin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'invalid_path'],
      ['GET /a/..%5Cadmin?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'invalid_path'],
    ];
    for (const [request, status, error] of cases) {
      const raw = await rawExchange(t.proxyUrl, request);
      expect(statusOf(raw), request).toBe(status);
      const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
      expect(JSON.parse(body).error, request).toBe(error);
    }
    expect(upstream.seen.length).toBe(before);
    // Dots that are not a segment of their own are ordinary characters.
    const ok = await send(t.proxyUrl, '/files/a..b/v1.2/..json');
    expect(ok.status).toBe(200);
    expect(upstream.seen.at(-1)!.url).toBe('/base/files/a..b/v1.2/..json');
  });

  it('answers 502 upstream_unreachable when nothing listens upstream', async () => {
    const port = await freePort();
    const dead = await startTokend(idp, proxyYaml(`http://127.0.0.1:${port}`));
    try {
      const a = await send(dead.proxyUrl, '/x');
      expect(a.status).toBe(502);
      expect(JSON.parse(a.body)).toEqual({ error: 'upstream_unreachable', message: 'could not connect to the upstream' });
      expect(dead.events('proxy.upstream_failed')[0]).toMatchObject({ error: 'unreachable', code: 'ECONNREFUSED', path: '/x' });
      const metrics = await (await fetch(`${dead.daemon.url}/metrics`)).text();
      expect(metrics).toContain('tokend_proxy_upstream_errors_total{proxy="orders",error="unreachable"} 1');
    } finally {
      await dead.stop();
    }
  });

  it('answers 504 upstream_timeout when the upstream stays silent past the timeout, and cuts an answer the upstream abandons mid-body', async () => {
    const slow = await startUpstream();
    const s = await startTokend(idp, proxyYaml(slow.url, { timeout: '300ms' }));
    try {
      slow.raw((req) => req.resume()); // never answers
      const a = await send(s.proxyUrl, '/slow');
      expect(a.status).toBe(504);
      expect(JSON.parse(a.body)).toEqual({ error: 'upstream_timeout', message: 'the upstream did not answer in time' });
      expect(s.events('proxy.upstream_failed')[0]).toMatchObject({ error: 'timeout' });

      slow.raw((_req, res) => {
        res.writeHead(200, { 'Content-Length': '1000' });
        res.write('only ten b');
        setImmediate(() => res.socket?.destroy());
      });
      // The application must not take a truncated body for a whole one.
      await expect(send(s.proxyUrl, '/cut')).rejects.toThrow();
    } finally {
      await s.stop();
      await slow.close();
    }
  });

  it('keeps the connection-level limits of tokend: 431 for oversized or too many headers, 408 for slow or silent clients, idle connections closed', async () => {
    const registry = new Registry();
    const proxies = await startProxies(
      [
        {
          name: 'limits',
          listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
          allowRemote: false,
          upstream: upstream.url,
          token: 'orders',
          header: 'Authorization',
          scheme: 'Bearer',
          timeoutMs: 5_000,
          connectTimeoutMs: 1_000,
          retryBodyLimit: 1_024,
        },
      ],
      t.daemon.handles,
      { clock: systemClock, logger: createLogger('warn', { write: () => undefined }), registry, limits: { headersTimeoutMs: 300, keepAliveTimeoutMs: 300 } },
    );
    try {
      const url = proxies.urls.get('limits')!;
      const before = upstream.seen.length;
      const big = await rawExchange(url, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(30_000)}\r\n\r\n`);
      expect(statusOf(big)).toBe(431);
      // node keeps only the first 100 header lines: such a request is refused, never forwarded in part.
      const many = Array.from({ length: 120 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
      const tooMany = await rawExchange(url, `GET / HTTP/1.1\r\nHost: x\r\n${many}\r\n`);
      expect(statusOf(tooMany)).toBe(431);
      const slowHeaders = await rawExchange(url, 'GET / HTTP/1.1\r\nHost: x\r\n');
      expect(statusOf(slowHeaders)).toBe(408);
      const silent = await rawExchange(url, '');
      expect(statusOf(silent)).toBe(408);
      expect(upstream.seen.length).toBe(before);

      // A kept-alive connection that stays idle is closed by the proxy.
      const u = new URL(url);
      const sock = net.connect(Number(u.port), u.hostname);
      let answer = '';
      sock.setEncoding('utf8').on('data', (c: string) => (answer += c));
      sock.write('GET /idle HTTP/1.1\r\nHost: x\r\n\r\n');
      await once(sock, 'close');
      expect(statusOf(answer)).toBe(200);
      expect(upstream.seen.at(-1)!.headers.get('authorization')).toEqual([`Bearer ${t.token()}`]);
    } finally {
      await proxies.close();
    }
  });

  it('listens on a unix socket open to the owner and group only', async () => {
    const dir = scratch('tokend-proxy-sock-');
    const path = `${dir.dir}/orders.sock`;
    const proxies = await startProxies(
      [{ name: 'sock', listen: { kind: 'unix', path }, allowRemote: false, upstream: upstream.url, token: 'orders', header: 'Authorization', scheme: 'Bearer', timeoutMs: 5_000, connectTimeoutMs: 1_000, retryBodyLimit: 1_024 }],
      t.daemon.handles,
      { clock: systemClock, logger: createLogger('warn', { write: () => undefined }) },
    );
    try {
      expect(proxies.urls.get('sock')).toBe(`unix:${path}`);
      expect(statSync(path).mode & 0o777).toBe(0o660);
      const status = await new Promise<number>((resolve, reject) => {
        http.get({ socketPath: path, path: '/over-unix', agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
      expect(status).toBe(200);
      expect(upstream.seen.at(-1)!.url).toBe('/over-unix');
      expect(upstream.seen.at(-1)!.headers.get('authorization')).toEqual([`Bearer ${t.token()}`]);
    } finally {
      await proxies.close();
      dir.cleanup();
    }
  });

  it('passes a WebSocket upgrade through with the token header set, then relays both ways', async () => {
    upstream.onUpgrade((req, socket) => {
      const key = req.headers['sec-websocket-key'] as string;
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`);
      socket.pipe(socket); // echo
    });
    const before = upstream.seen.length;
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const u = new URL(t.proxyUrl);
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: '/ws?room=1',
      agent: false,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': key, Authorization: 'Bearer apps-own' },
    });
    req.end();
    const [res, socket] = (await once(req, 'upgrade')) as [http.IncomingMessage, net.Socket];
    try {
      expect(res.statusCode).toBe(101);
      expect(res.headers['sec-websocket-accept']).toBe(websocketAccept(key));
      expect(res.headers.upgrade).toBe('websocket');
      const seen = upstream.seen[before]!;
      expect(seen.url).toBe('/base/ws?room=1');
      expect(seen.headers.get('authorization')).toEqual([`Bearer ${t.token()}`]);
      expect(seen.headers.get('upgrade')).toEqual(['websocket']);
      socket.write('ping over the tunnel');
      const [echo] = (await once(socket, 'data')) as [Buffer];
      expect(echo.toString()).toBe('ping over the tunnel');
    } finally {
      socket.destroy();
    }
  });

  it('never writes a token, the application credential or a query string to the log, even at debug', async () => {
    const first = t.token();
    upstream.behave(refusing(new Set([first])));
    try {
      const a = await send(t.proxyUrl, '/secret-path?api_key=query-secret-4821', { headers: { authorization: 'Bearer apps-credential-9931' } });
      expect(a.status).toBe(200);
    } finally {
      upstream.behave(OK);
    }
    const second = t.token();
    expect(second).not.toBe(first);
    const log = t.logText();
    expect(t.events('proxy.request').length).toBeGreaterThan(0);
    expect(t.events('proxy.retried')).toHaveLength(1);
    for (const secret of [first, second, 'apps-credential-9931', 'query-secret-4821', 'proxy-secret-value-5c1d']) expect(log).not.toContain(secret);
    expect(log).toContain('/secret-path');
  });
});
