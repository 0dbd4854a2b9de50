/**
 * A reverse proxy placed between tokend and the dev IdP that can be told to misbehave, so tests
 * meet real network failures (refused connections, resets, hangs, 5xx) rather than mocked ones.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * - pass: forward to the target unchanged (Host header preserved)
 * - status500: answer 500 with an HTML body, as a broken gateway does
 * - status429: answer 429 with Retry-After: 1 and a text body
 * - hang: accept the request and never answer
 * - refuse: stop listening, so connections are refused (the whole proxy; pathRegex is ignored)
 * - reset: destroy the socket without answering
 */
export type FaultMode = 'pass' | 'status500' | 'status429' | 'hang' | 'refuse' | 'reset';

export interface FaultProxy {
  /** http://127.0.0.1:PORT; stays the same across 'refuse'. */
  readonly url: string;
  readonly port: number;
  readonly mode: FaultMode;
  /** Where requests are forwarded (origin, e.g. the dev IdP's `url`). */
  setTarget(targetUrl: string): void;
  /**
   * Switches the behaviour. With pathRegex, only requests whose path matches misbehave (e.g.
   * /^\/token$/ keeps discovery working). Resolves once the listening socket is closed/reopened.
   */
  setMode(mode: FaultMode, pathRegex?: RegExp): Promise<void>;
  /** Requests seen so far, by path (without query). */
  requests(): Record<string, number>;
  /** Requests seen for paths matching re. */
  count(re: RegExp): number;
  close(): Promise<void>;
}

/** Starts the proxy on 127.0.0.1 (port 0 = OS picks). targetUrl may be set later with setTarget. */
export async function startFaultProxy(targetUrl?: string, opts: { port?: number } = {}): Promise<FaultProxy> {
  let target = targetUrl ? new URL(targetUrl) : undefined;
  let mode: FaultMode = 'pass';
  let only: RegExp | undefined;
  const counts: Record<string, number> = {};
  const sockets = new Set<Socket>();

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    counts[path] = (counts[path] ?? 0) + 1;
    const faulty = mode !== 'pass' && (only === undefined || only.test(path));
    if (faulty) {
      switch (mode) {
        case 'status500':
          res.writeHead(500, { 'content-type': 'text/html' }).end('<html><body>502 upstream broke</body></html>');
          return;
        case 'status429':
          res.writeHead(429, { 'content-type': 'text/plain', 'retry-after': '1' }).end('Too Many Requests');
          return;
        case 'hang':
          req.resume();
          return;
        case 'reset':
        case 'refuse':
          req.socket.destroy();
          return;
      }
    }
    if (!target) {
      res.writeHead(502, { 'content-type': 'text/plain' }).end('fault proxy: no target');
      return;
    }
    // Host is preserved so the IdP builds endpoint URLs that point back at the proxy.
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end();
    });
    req.pipe(upstream);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });

  await listen(opts.port ?? 0);
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  let closed = false;

  return {
    url,
    port,
    get mode() {
      return mode;
    },
    setTarget(t) {
      target = new URL(t);
    },
    async setMode(next, pathRegex) {
      const prev = mode;
      mode = next;
      only = pathRegex;
      if (next === 'refuse' && prev !== 'refuse') await stop();
      if (prev === 'refuse' && next !== 'refuse' && !closed) await listen(port);
    },
    requests() {
      return { ...counts };
    },
    count(re) {
      return Object.entries(counts).reduce((n, [p, c]) => (re.test(p) ? n + c : n), 0);
    },
    async close() {
      closed = true;
      if (server.listening) await stop();
      for (const s of sockets) s.destroy();
    },
  };
}
