/**
 * Small helpers for tests of the HTTP listeners: a TokenHandle driven by the test, a request
 * helper on node's client, and a raw-socket exchange for requests node's client will not send.
 */
import http from 'node:http';
import net from 'node:net';
import type { TokenHandle, TokenStatus } from '../../src/refresh/handle.js';
import { isUsable, type AccessToken } from '../../src/token.js';
import type { FakeClock } from './fake-clock.js';

/** A TokenHandle whose token and readiness the test sets directly. */
export class TestHandle implements TokenHandle {
  token: AccessToken | undefined;
  ready = true;
  reason: string | undefined;

  constructor(
    readonly name: string,
    private readonly clock: FakeClock,
  ) {}

  current(): AccessToken | undefined {
    return isUsable(this.token, this.clock) ? this.token : undefined;
  }
  ensureFresh(): Promise<AccessToken> {
    const t = this.current();
    return t ? Promise.resolve(t) : Promise.reject(new Error('none valid'));
  }
  refreshAfterRejection(): Promise<AccessToken> {
    return this.ensureFresh();
  }
  wake(): void {}
  status(): TokenStatus {
    return { name: this.name, ready: this.ready, reason: this.reason, expiresAt: this.token?.expiresAt };
  }
  retryAfterMs(): number {
    return 1_000;
  }
}

/** A token valid for lifetimeMs from the clock's now. */
export function testToken(clock: FakeClock, lifetimeMs: number, value: string): AccessToken {
  return { accessToken: value, tokenType: 'Bearer', expiresAt: clock.now() + lifetimeMs, obtainedAt: clock.now(), scope: 'orders:read' };
}

/** An answer as the tests look at it. */
export interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request with node's client (no keep-alive unless an agent is given). */
export function request(
  target: { port?: number; socketPath?: string },
  reqPath: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; setHost?: boolean; agent?: http.Agent } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', ...target, path: reqPath, method: init.method ?? 'GET', headers: init.headers ?? {}, agent: init.agent ?? false, setHost: init.setHost ?? true },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/** Sends raw bytes and collects everything the server sends until it closes the connection (5 s at most). */
export function rawExchange(port: number, data: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    sock.on('data', (c) => (got += c.toString('latin1')));
    // The server may reset the connection while we still write; what it sent first still counts.
    sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err)));
    sock.on('close', () => resolve(got));
    sock.on('connect', () => sock.write(data));
    sock.setTimeout(5_000, () => sock.destroy(new Error('raw exchange timed out')));
  });
}

/** The status code of a raw HTTP answer (0 when there was none). */
export function statusOf(raw: string): number {
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(raw);
  return m ? Number(m[1]) : 0;
}
