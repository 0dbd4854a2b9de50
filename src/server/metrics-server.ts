import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config/types.js';
import { removeStaleSocket, type MetricsSource } from './http.js';

/**
 * A listener that serves only `GET /metrics` (and `/healthz`), for Prometheus to scrape from
 * outside the pod while the token endpoint stays on loopback. It holds no token, so it needs no
 * `Tokend-Request` header and may bind a pod address.
 */
export interface MetricsServer {
  /** Resolves to `http://host:port` or `unix:/path`. */
  listen(addr: ListenAddress): Promise<string>;
  close(): Promise<void>;
}

/** Creates the metrics-only listener; timeouts are short because scrapes are small and quick. */
export function createMetricsServer(metrics: MetricsSource): MetricsServer {
  const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 5_000, maxHeaderSize: 8_192 }, (req, res) => {
    const path = (req.url ?? '').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: this listener serves /metrics only\n');
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store' }).end(text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  server.keepAliveTimeout = 5_000;
  return {
    async listen(addr) {
      if (addr.kind === 'unix') await removeStaleSocket(addr.path, 'metricsListen');
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const done = (): void => {
          server.off('error', reject);
          resolve();
        };
        if (addr.kind === 'unix') server.listen(addr.path, done);
        else server.listen(addr.port, addr.host, done);
      });
      if (addr.kind === 'unix') return `unix:${addr.path}`;
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      return `http://${host}:${a.port}`;
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
