import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { boundedFetch } from '../../src/util/bounded-fetch.js';

let server: http.Server;
let base: string;
let streamed = 0;
let streamClosed: Promise<void> = Promise.resolve();
let onStreamClosed: () => void = () => undefined;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/small') return void res.end('{"ok":true}');
    if (req.url === '/declared') {
      res.setHeader('content-length', String(10 * 1024 * 1024));
      return void res.write('x'.repeat(1024));
    }
    // Chunked, no Content-Length: keeps sending until the client goes away.
    res.setHeader('content-type', 'application/json');
    const chunk = Buffer.alloc(64 * 1024, 'y');
    const pump = (): void => {
      while (!res.destroyed && streamed < 100 * 1024 * 1024) {
        streamed += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => onStreamClosed());
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('boundedFetch', () => {
  it('returns a small answer whole', async () => {
    const res = await boundedFetch(fetch, 1024)(`${base}/small`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it('refuses an answer whose Content-Length is over the limit without reading it', async () => {
    const err = await boundedFetch(fetch, 1024, 'token endpoint')(`${base}/declared`).catch((e: unknown) => e);
    expect(hasCode(err, 'GRANT_TRANSIENT')).toBe(true);
    expect((err as Error).message).toBe('token endpoint: the answer is larger than 1024 bytes; refused unread');
  });

  it('stops reading a streamed answer as soon as it passes the limit (a 100 MB body is not buffered)', async () => {
    streamed = 0;
    streamClosed = new Promise((r) => (onStreamClosed = r));
    const err = await boundedFetch(fetch, 1024 * 1024)(`${base}/stream`).catch((e: unknown) => e);
    expect(hasCode(err, 'GRANT_TRANSIENT')).toBe(true);
    // The server stops once the client cancels: far less than the 100 MB it would have sent.
    await streamClosed;
    expect(streamed).toBeLessThan(20 * 1024 * 1024);
  });
});
