import type { IncomingHttpHeaders } from 'node:http';
import { http } from './util/node-http.js';

/** A small HTTP GET against a running sidecar, over TCP (`http://host:port`) or a unix socket (`unix:/path`). */
export interface SidecarResponse {
  readonly status: number;
  readonly body: string;
  readonly headers: IncomingHttpHeaders;
}

/** Default endpoint of a sidecar started with the default `listen`. */
export const DEFAULT_URL = 'http://127.0.0.1:8477';

/**
 * GETs `path` from the sidecar at `base` with the `Tokend-Request: 1` header.
 * `timeoutMs` bounds the whole exchange (default 5 000).
 */
export function sidecarGet(
  base: string,
  path: string,
  opts: { accept?: string; timeoutMs?: number } = {},
): Promise<SidecarResponse> {
  const target = parseBase(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        ...target,
        path: target.pathPrefix + path,
        method: 'GET',
        headers: { 'Tokend-Request': '1', Accept: opts.accept ?? 'application/json' },
        signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          // A sidecar answer is small; anything huge is not ours.
          if (size > 1_048_576) req.destroy(new Error('answer larger than 1 MiB'));
          else chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function parseBase(base: string): { socketPath?: string; host?: string; port?: number; pathPrefix: string } {
  if (base.startsWith('unix:')) return { socketPath: base.slice('unix:'.length), pathPrefix: '' };
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new Error(`--url: expected http://host:port or unix:/path, got ${JSON.stringify(base.slice(0, 100))}`);
  }
  if (url.protocol !== 'http:') throw new Error('--url: only http:// and unix: are supported (the sidecar listens on loopback)');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { host, port: Number(url.port || 80), pathPrefix: url.pathname.replace(/\/$/, '') };
}
