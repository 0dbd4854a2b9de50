/**
 * Helpers shared by the output and notification tests: a log sink parsing the real NDJSON, sample
 * tokens, and a real HTTP receiver on 127.0.0.1 that records the notifications it gets.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AccessToken } from '../../src/token.js';

export { logSink } from '../support/log-sink.js';

/** 2025-01-01T00:00:00Z, in ms. */
export const T0 = Date.UTC(2025, 0, 1);

/** The token the golden files were rendered from (obtained at T0, five minutes of life). */
export const GOLDEN_TOKEN: AccessToken = {
  accessToken: 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJvcmRlcnMiLCJhdWQiOiJhcGkifQ.c2lnbmF0dXJlLXBsYWNlaG9sZGVy',
  tokenType: 'Bearer',
  expiresAt: T0 + 300_000,
  obtainedAt: T0,
  scope: 'orders:read orders:write',
  grantKey: 'internal-fingerprint',
};

/** A distinct token: number n, valid for an hour from now (real time), of `length` characters. */
export function tokenNo(n: number, length = 64, nowMs = Date.now()): AccessToken {
  const head = `tok-${String(n).padStart(6, '0')}-`;
  return {
    accessToken: head + 'x'.repeat(Math.max(0, length - head.length)),
    tokenType: 'Bearer',
    obtainedAt: nowMs,
    expiresAt: nowMs + 3_600_000 + n * 1000,
  };
}

/** A notification as the receiver recorded it. */
export interface Received {
  readonly method: string;
  readonly contentType: string | undefined;
  readonly body: string;
}

/** A real HTTP receiver on 127.0.0.1 answering `status` (default 204) and recording every request. */
export interface Receiver {
  readonly url: string;
  readonly port: number;
  readonly received: Received[];
  /** The status the next requests get. */
  status: number;
  /** Resolves once `n` requests have arrived. */
  waitFor(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a receiver on port (0: the OS picks). */
export async function startReceiver(port = 0): Promise<Receiver> {
  const received: Received[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  let server: Server;
  const r: Receiver = {
    url: '',
    port: 0,
    received,
    status: 204,
    waitFor(n) {
      if (received.length >= n) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      server.closeAllConnections();
      await new Promise((res) => server.close(res));
    },
  };
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', contentType: req.headers['content-type'], body });
      res.statusCode = r.status;
      res.end();
      for (const w of waiters.splice(0)) {
        if (received.length >= w.n) w.resolve();
        else waiters.push(w);
      }
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const actual = (server.address() as AddressInfo).port;
  Object.assign(r, { port: actual, url: `http://127.0.0.1:${actual}/-/reload` });
  return r;
}
