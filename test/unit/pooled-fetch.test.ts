/**
 * The fetch tokend talks to IdPs with (node's http client over bounded keep-alive pools), against
 * real node:http servers on 127.0.0.1: what it sends and answers, the socket bound, keep-alive,
 * how failures and aborts reject, and that an unread or cancelled body frees its socket.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createPooledFetch, type PooledFetch } from '../../src/oauth/pooled-fetch.js';
import { readBounded } from '../../src/util/bounded-fetch.js';
import { until } from '../support/until.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A server counting sockets (open, peak, total) and requests in flight (peak). */
async function startServer(handler: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void) {
  const stats = { open: 0, peakOpen: 0, sockets: 0, inFlight: 0, peakInFlight: 0, closed: 0 };
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    stats.inFlight++;
    stats.peakInFlight = Math.max(stats.peakInFlight, stats.inFlight);
    res.on('close', () => stats.inFlight--);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      seen.push(s);
      handler(req, res, s);
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    stats.open++;
    stats.sockets++;
    stats.peakOpen = Math.max(stats.peakOpen, stats.open);
    socket.on('close', () => {
      sockets.delete(socket);
      stats.open--;
      stats.closed++;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    stats,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

let cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(handler: Parameters<typeof startServer>[0], connections = 2) {
  const server = await startServer(handler);
  const pool: PooledFetch = createPooledFetch({ connections });
  cleanup.push(() => server.close(), () => pool.close());
  return { server, pool };
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));

describe('pooled fetch', () => {
  it('sends the method, headers and a form body, and answers status, headers and body as fetch does', async () => {
    const { server, pool } = await setup((_req, res) => json(res, 201, { ok: true }, { 'x-answer': 'yes' }));
    const res = await pool.fetch(`${server.url}/token?a=1`, {
      method: 'POST',
      headers: new Headers({ authorization: 'Basic abc', accept: 'application/json' }),
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'a b' }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-answer')).toBe('yes');
    expect(await res.json()).toEqual({ ok: true });
    const [seen] = server.seen;
    expect(seen?.method).toBe('POST');
    expect(seen?.url).toBe('/token?a=1');
    expect(seen?.headers.authorization).toBe('Basic abc');
    expect(seen?.headers['content-type']).toBe('application/x-www-form-urlencoded;charset=UTF-8');
    expect(seen?.body).toBe('grant_type=client_credentials&scope=a+b');
  });

  it('never opens more than `connections` sockets to one origin: 6 requests at once share 2', async () => {
    // Answers go out in pairs, so two requests must be at the server at once to finish at all.
    const held: ServerResponse[] = [];
    const { server, pool } = await setup((_req, res) => {
      held.push(res);
      if (held.length === 2) for (const r of held.splice(0)) json(r, 200, {});
    }, 2);
    const answers = await Promise.all(Array.from({ length: 6 }, () => pool.fetch(`${server.url}/x`).then((r) => r.arrayBuffer())));
    expect(answers).toHaveLength(6);
    expect(server.stats.sockets).toBe(2);
    expect(server.stats.peakInFlight).toBe(2);
  });

  it('keeps connections alive: requests one after another reuse one socket', async () => {
    const { server, pool } = await setup((_req, res) => json(res, 200, {}));
    for (let i = 0; i < 3; i++) await (await pool.fetch(`${server.url}/x`)).arrayBuffer();
    expect(server.stats.sockets).toBe(1);
  });

  it('closes an idle pooled socket after idleMs', async () => {
    const server = await startServer((_req, res) => json(res, 200, {}));
    const pool = createPooledFetch({ connections: 1, idleMs: 50 });
    cleanup.push(() => server.close(), () => pool.close());
    await (await pool.fetch(`${server.url}/x`)).arrayBuffer();
    await until(() => server.stats.closed === 1, 'the idle socket closed');
  });

  it('does not follow redirects: a 302 is the answer', async () => {
    const { server, pool } = await setup((_req, res) => res.writeHead(302, { location: '/elsewhere' }).end());
    const res = await pool.fetch(`${server.url}/x`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/elsewhere');
    expect(server.seen.map((s) => s.url)).toEqual(['/x']);
  });

  it('decodes a gzip answer', async () => {
    const { server, pool } = await setup((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync('{"zipped":true}')),
    );
    expect(await (await pool.fetch(`${server.url}/x`)).json()).toEqual({ zipped: true });
  });

  it('rejects a refused connection like fetch: TypeError "fetch failed" with the node error code as cause', async () => {
    const { server, pool } = await setup(() => undefined);
    const url = server.url;
    await server.close();
    const err = await pool.fetch(`${url}/x`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TypeError);
    expect((err as TypeError).message).toBe('fetch failed');
    expect(((err as TypeError).cause as { code?: string }).code).toBe('ECONNREFUSED');
  });

  it('an abort before the answer rejects with the signal reason and closes the socket', async () => {
    const { server, pool } = await setup(() => undefined);
    const ac = new AbortController();
    const pending = pool.fetch(`${server.url}/x`, { signal: ac.signal });
    await until(() => server.seen.length === 1, 'the request at the server');
    ac.abort(new DOMException('stop', 'TimeoutError'));
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as DOMException).name).toBe('TimeoutError');
    await until(() => server.stats.open === 0, 'the socket closed');
  });

  it('an oversized answer is refused unread and its socket closed, and the pool still serves', async () => {
    const big = 'x'.repeat(64 * 1024);
    const { server, pool } = await setup((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        // Never ends: the client must stop reading, not wait for the end.
        res.write(big);
        res.write(big);
      } else json(res, 200, { small: true });
    }, 1);
    const res = await pool.fetch(`${server.url}/big`);
    await expect(readBounded(res, 1024, 'test')).rejects.toMatchObject({ code: 'GRANT_TRANSIENT' });
    await until(() => server.stats.closed === 1, 'the oversized answer socket closed');
    expect(await (await pool.fetch(`${server.url}/small`)).json()).toEqual({ small: true });
  });

  it('close() ends the pooled sockets; the fetch keeps working with new ones', async () => {
    const { server, pool } = await setup((_req, res) => json(res, 200, {}));
    await (await pool.fetch(`${server.url}/x`)).arrayBuffer();
    pool.close();
    await until(() => server.stats.open === 0, 'the pooled socket closed');
    await (await pool.fetch(`${server.url}/x`)).arrayBuffer();
    expect(server.stats.sockets).toBe(2);
  });
});
