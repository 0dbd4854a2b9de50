/**
 * What the token endpoint answers, against real servers (oidc-provider and node-oauth2-server,
 * both rotating refresh tokens) behind a proxy that rewrites their answers into the defects and
 * dialects other IdPs produce: the grant and its rotation really happen, only the JSON changes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { TokenConfig } from '../../src/config/types.js';
import type { TokendError } from '../../src/errors.js';
import { createTokenSource } from '../../src/oauth/grants.js';
import { createIdpRegistry } from '../../src/oauth/idp-registry.js';
import { GRANT_SERVERS, type GrantServer } from '../support/grant-servers.js';
import { testTokenConfig } from '../support/idp.js';
import { startOAuth2Server, type RunningOAuth2Server } from '../support/oauth2-server.js';
import { startRewriteProxy, type RewriteProxy } from '../support/rewrite-proxy.js';
import { failure } from '../support/failure.js';

const SECRET = 'answers-secret';

type Rewrite = (body: Record<string, unknown>) => Record<string, unknown>;
const without = (key: string): Rewrite => (b) => {
  const { [key]: _dropped, ...rest } = b;
  return rest;
};
const set = (key: string, value: unknown): Rewrite => (b) => ({ ...b, [key]: value });

const DEFECTS: Array<{ defect: string; rewrite: Rewrite; code: 'GRANT_TRANSIENT' | 'GRANT_PERMANENT'; reason?: string }> = [
  { defect: 'no token_type', rewrite: without('token_type'), code: 'GRANT_TRANSIENT' },
  { defect: 'token_type N_A', rewrite: set('token_type', 'N_A'), code: 'GRANT_PERMANENT', reason: 'unsupported_token_type' },
  { defect: 'token_type mac', rewrite: set('token_type', 'mac'), code: 'GRANT_PERMANENT', reason: 'unsupported_token_type' },
  { defect: 'token_type DPoP', rewrite: set('token_type', 'DPoP'), code: 'GRANT_PERMANENT', reason: 'unsupported_token_type' },
  { defect: 'a negative expires_in', rewrite: set('expires_in', -30), code: 'GRANT_TRANSIENT' },
  { defect: 'a string expires_in', rewrite: set('expires_in', 'soon'), code: 'GRANT_TRANSIENT' },
  { defect: 'no access_token', rewrite: without('access_token'), code: 'GRANT_TRANSIENT' },
  { defect: 'a numeric scope', rewrite: set('scope', 42), code: 'GRANT_TRANSIENT' },
];

describe.each(GRANT_SERVERS)('a rotating $name whose answers are defective', (kind) => {
  let proxy: RewriteProxy;
  let server: GrantServer;
  beforeAll(async () => {
    proxy = await startRewriteProxy();
    server = await kind.start({ clients: [{ clientId: 'rt-client', clientSecret: SECRET }], proxy });
  });
  afterAll(async () => {
    await proxy?.close();
    await server?.close();
  });
  const source = (overrides: Partial<TokenConfig> = {}) =>
    createTokenSource(
      testTokenConfig({ name: 'chain', clientId: 'rt-client', clientSecret: { kind: 'literal', value: SECRET }, grant: 'refresh_token', ...server.endpoint, ...overrides }),
      { clock: systemClock, idp: createIdpRegistry() },
    );

  it.each(DEFECTS)('$defect: the error carries the new refresh token, which the server accepts; the consumed one is refused', async ({ rewrite, code, reason }) => {
    const seed = await server.mintRefreshToken('rt-client');
    const s = source();
    proxy.rewriteToken(rewrite);
    let err: TokendError;
    try {
      err = await failure(s.obtain(seed));
    } finally {
      proxy.rewriteToken(undefined);
    }
    expect(err.code).toBe(code);
    if (reason) expect(err.reason).toBe(reason);
    const rotated = err.rotatedRefreshToken;
    expect(rotated).toEqual(expect.any(String));
    expect(rotated).not.toBe(seed);
    // Never serialised, never in the message.
    expect(JSON.stringify(err)).not.toContain(rotated as string);
    expect(err.message).not.toContain(rotated as string);

    const next = await s.obtain(rotated);
    expect(next.token.tokenType).toBe('Bearer');
    const refused = await failure(s.obtain(seed));
    expect(refused.oauthError).toBe('invalid_grant');
  });

  it('names the token type it cannot serve', async () => {
    const seed = await server.mintRefreshToken('rt-client');
    proxy.rewriteToken(set('token_type', 'N_A'));
    try {
      const err = await failure(source().obtain(seed));
      expect(err.message).toContain('the IdP issued a token of type N_A; tokend serves Bearer tokens');
      expect(err.message).not.toContain('not supported');
    } finally {
      proxy.rewriteToken(undefined);
    }
  });

  it('takes a scope sent as a list of strings, and keeps the rotation', async () => {
    const seed = await server.mintRefreshToken('rt-client');
    proxy.rewriteToken(set('scope', ['offline_access', 'api:read']));
    try {
      const result = await source().obtain(seed);
      expect(result.token.scope).toBe('offline_access api:read');
      expect(result.refreshToken).toEqual(expect.any(String));
    } finally {
      proxy.rewriteToken(undefined);
    }
  });

  it('"refresh_token": null means no new refresh token, not a broken answer', async () => {
    proxy.rewriteToken(set('refresh_token', null));
    try {
      const result = await source({ grant: 'client_credentials' }).obtain(undefined);
      expect(result.refreshToken).toBeUndefined();
      expect(result.token.tokenType).toBe('Bearer');
    } finally {
      proxy.rewriteToken(undefined);
    }
  });
});

describe('expires_in longer than the JWT access token says (node-oauth2-server issuing 6 s JWTs with expires_in 3600)', () => {
  let server: RunningOAuth2Server;
  beforeAll(async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    server = await startOAuth2Server({
      clients: [{ clientId: 'jwt-client', clientSecret: SECRET }],
      accessTokenLifetimeSec: 3600,
      accessToken: () => {
        const now = Math.floor(Date.now() / 1000);
        return `${b64({ alg: 'none' })}.${b64({ iat: now, exp: now + 6, sub: 'svc' })}.sig`;
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('believes the shorter JWT lifetime and reports the disagreement', async () => {
    const s = createTokenSource(
      testTokenConfig({ name: 'short', clientId: 'jwt-client', clientSecret: { kind: 'literal', value: SECRET }, tokenEndpoint: server.tokenEndpoint }),
      { clock: systemClock, idp: createIdpRegistry() },
    );
    const result = await s.obtain(undefined);
    expect(result.token.expiresAt - result.token.obtainedAt).toBe(6_000);
    // node-oauth2-server computes expires_in as whole seconds left, rounded down: 3600, or 3599
    // when a second boundary passes between issuing and answering.
    expect(result.lifetimeDisagreement?.jwtLifetimeMs).toBe(6_000);
    expect([3_599_000, 3_600_000]).toContain(result.lifetimeDisagreement?.expiresInMs);
  });
});

describe('Retry-After on 429 and 503 (node-oauth2-server throttling)', () => {
  let server: RunningOAuth2Server;
  beforeAll(async () => {
    server = await startOAuth2Server({ clients: [{ clientId: 'busy', clientSecret: SECRET }] });
  });
  afterAll(async () => {
    await server?.close();
  });
  const source = () =>
    createTokenSource(
      testTokenConfig({ name: 'busy', clientId: 'busy', clientSecret: { kind: 'literal', value: SECRET }, tokenEndpoint: server.tokenEndpoint }),
      { clock: systemClock, idp: createIdpRegistry() },
    );

  it('reads delta-seconds on a 429', async () => {
    server.throttle(429, '7');
    const err = await failure(source().obtain(undefined));
    expect(err.code).toBe('GRANT_TRANSIENT');
    expect(err.status).toBe(429);
    expect(err.retryAfterMs).toBe(7_000);
  });

  it('reads an HTTP-date on a 503', async () => {
    server.throttle(503, new Date(Date.now() + 30_000).toUTCString());
    const err = await failure(source().obtain(undefined));
    expect(err.status).toBe(503);
    expect(err.retryAfterMs).toBeGreaterThan(28_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  it('caps a wait of days at one hour, and ignores garbage', async () => {
    server.throttle(429, '864000');
    expect((await failure(source().obtain(undefined))).retryAfterMs).toBe(3_600_000);
    server.throttle(503, 'soon, maybe');
    const err = await failure(source().obtain(undefined));
    expect(err.status).toBe(503);
    expect(err.retryAfterMs).toBeUndefined();
  });
});

describe('an answer larger than 1 MiB', () => {
  let server: Server;
  let url: string;
  let sent = 0;
  beforeAll(async () => {
    // 100 MB of JSON-looking bytes, streamed with back-pressure (the server itself holds 64 KiB).
    server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      res.write('{"access_token":"');
      const pump = (): void => {
        while (!res.destroyed && sent < 100 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end('"}');
      };
      pump();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('is refused as GRANT_TRANSIENT while it streams in, without buffering it', async () => {
    const s = createTokenSource(
      testTokenConfig({ name: 'huge', clientId: 'c', clientSecret: { kind: 'literal', value: SECRET }, tokenEndpoint: url }),
      { clock: systemClock, idp: createIdpRegistry() },
    );
    const rssBefore = process.memoryUsage().rss;
    const err = await failure(s.obtain(undefined));
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    expect(err.code).toBe('GRANT_TRANSIENT');
    expect(err.message).toContain('larger than 1048576 bytes');
    expect(err.message).toContain(`POST ${url}`);
    // The reader stopped after 1 MiB: the server got rid of a few socket buffers' worth, not 100 MB.
    expect(sent).toBeLessThan(16 * 1024 * 1024);
    expect(rssGrowth).toBeLessThan(16 * 1024 * 1024);
  });
});
