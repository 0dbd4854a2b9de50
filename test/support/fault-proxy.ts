/**
 * A reverse proxy placed between tokend and the dev IdP that can be told to misbehave, so tests
 * meet real network failures (refused connections, resets, hangs, 5xx) rather than mocked ones;
 * and a TCP proxy (startTcpFaultProxy) that cuts a connection at a chosen command, e.g. between a
 * store and redis-server.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { listenBelowEphemeral, listenOn } from '../../dev/ports.js';

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

/** Starts the proxy on 127.0.0.1 (a free port unless given). targetUrl may be set later with setTarget. */
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

  const listen = (port: number): Promise<void> => listenOn(server, port);
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });

  // Below the ephemeral range: 'refuse' listens again on the same port later (dev/ports.ts says why).
  await (opts.port === undefined ? listenBelowEphemeral(listen) : listen(opts.port));
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

/** Where a TCP cut falls relative to the matched client bytes. */
export type CutPoint =
  /** The matched bytes never reach the server: the command never ran. */
  | 'before-forward'
  /** The matched bytes reach the server and its answer is awaited, then dropped: the command ran, the reply is lost. */
  | 'after-forward';

/** A TCP proxy (e.g. between tokend and redis-server) that can cut a connection at a chosen command. */
export interface TcpFaultProxy {
  readonly port: number;
  /** `redis://127.0.0.1:PORT/DB` */
  url(db?: number): string;
  /**
   * Arms one cut: the next client chunk for which match returns true is cut at point (both sides
   * of that connection are destroyed). Resolves once the cut happened. Other connections and
   * chunks pass unchanged.
   */
  cutNext(match: (chunk: Buffer) => boolean, point: CutPoint): Promise<void>;
  /** Connections cut so far. */
  cuts(): number;
  close(): Promise<void>;
}

/** Starts a TCP proxy on 127.0.0.1 (OS-chosen port) forwarding to 127.0.0.1:targetPort. */
export async function startTcpFaultProxy(targetPort: number): Promise<TcpFaultProxy> {
  let armed: { match: (chunk: Buffer) => boolean; point: CutPoint; done: () => void } | undefined;
  let cutCount = 0;
  const sockets = new Set<Socket>();

  const server = createTcpServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let cutting: (() => void) | undefined;
    const cut = (): void => {
      cutCount++;
      client.destroy();
      upstream.destroy();
      cutting?.();
    };
    client.on('data', (chunk: Buffer) => {
      const a = armed;
      if (a !== undefined && a.match(chunk)) {
        armed = undefined;
        if (a.point === 'before-forward') {
          cutting = a.done;
          return cut();
        }
        // Forward, then cut as soon as the server answers (the answer is not relayed).
        cutting = a.done;
        upstream.write(chunk);
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutting !== undefined) return cut();
      client.write(chunk);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    cutNext(match, point) {
      return new Promise<void>((resolve) => {
        armed = { match, point, done: resolve };
      });
    },
    cuts: () => cutCount,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
