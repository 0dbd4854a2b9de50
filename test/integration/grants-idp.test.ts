/**
 * Talking to the IdP as a whole, against real servers: what discovery failures say, an IdP that
 * names another issuer, the private_key_jwt audience, and no stampede (one discovery per issuer,
 * a bounded number of grants and connections per IdP, Retry-After pausing every token).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { TokenConfig } from '../../src/config/types.js';
import type { TokendError } from '../../src/errors.js';
import { createTokenSource } from '../../src/oauth/grants.js';
import { createIdpRegistry } from '../../src/oauth/idp-registry.js';
import { FakeClock } from '../support/fake-clock.js';
import { generateClientKey, startDevIdp, testTokenConfig, type DevIdp } from '../support/idp.js';
import { startOAuth2Server, type RunningOAuth2Server } from '../support/oauth2-server.js';
import { startRewriteProxy, type RewriteProxy } from '../support/rewrite-proxy.js';
import { until } from '../support/until.js';
import { failure } from '../support/failure.js';

const SECRET = 'idp-secret';
const LEAK = 'LEAKED-BODY-CONTENT';
const literal = (value: string) => ({ kind: 'literal' as const, value });

/** A port that was just free: connections to it are refused. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

describe('discovery failures name the URL tried and what happened', () => {
  let idp: DevIdp;
  let proxy: RewriteProxy;
  beforeAll(async () => {
    proxy = await startRewriteProxy();
    idp = await startDevIdp({ issuer: proxy.url, clients: [{ clientId: 'c', clientSecret: SECRET }] });
    proxy.setTarget(idp.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await idp?.close();
  });
  const at = (issuer: string, overrides: Partial<TokenConfig> = {}) =>
    createTokenSource(testTokenConfig({ name: 'orders', clientId: 'c', clientSecret: literal(SECRET), issuer, ...overrides }), {
      clock: systemClock,
      idp: createIdpRegistry(),
    });

  it('a 404 names both well-known URLs tried, never the body', async () => {
    proxy.answer((req, res) => {
      if (!req.url?.includes('/.well-known/')) return false;
      res.writeHead(404, { 'content-type': 'text/html' }).end(`<html>${LEAK}</html>`);
      return true;
    });
    try {
      const err = await failure(at(`${proxy.url}/realms/nope`).discover());
      expect(err.code).toBe('DISCOVERY_FAILED');
      expect(err.status).toBe(404);
      expect(err.message).toContain(`GET ${proxy.url}/realms/nope/.well-known/openid-configuration → 404`);
      expect(err.message).toContain(`GET ${proxy.url}/.well-known/oauth-authorization-server/realms/nope → 404`);
      expect(err.message).not.toContain(LEAK);
    } finally {
      proxy.answer(undefined);
    }
  });

  it('a DNS failure names the host', async () => {
    const err = await failure(at('http://idp.invalid/realms/x').discover());
    expect(err.code).toBe('DISCOVERY_FAILED');
    expect(err.message).toMatch(/GET http:\/\/idp\.invalid\/realms\/x\/\.well-known\/openid-configuration: cannot resolve idp\.invalid: (ENOTFOUND|EAI_AGAIN)/);
  });

  it('a refused connection names host:port; a grant says the same, as GRANT_TRANSIENT', async () => {
    const port = await closedPort();
    const source = at(`http://127.0.0.1:${port}`);
    const err = await failure(source.discover());
    expect(err.code).toBe('DISCOVERY_FAILED');
    expect(err.message).toContain(`GET http://127.0.0.1:${port}/.well-known/openid-configuration: connection refused by 127.0.0.1:${port} (ECONNREFUSED)`);
    const grant = await failure(source.obtain(undefined));
    expect(grant.code).toBe('GRANT_TRANSIENT');
    expect(grant.message).toContain(`connection refused by 127.0.0.1:${port}`);
  });

  it('a 503 with Retry-After carries the wait', async () => {
    proxy.answer((req, res) => {
      if (!req.url?.includes('/.well-known/')) return false;
      res.writeHead(503, { 'retry-after': '5', 'content-type': 'text/plain' }).end('busy');
      return true;
    });
    try {
      const err = await failure(at(proxy.url).discover());
      expect(err.code).toBe('DISCOVERY_FAILED');
      expect(err.retryAfterMs).toBe(5_000);
      expect(err.message).toContain(`GET ${proxy.url}/.well-known/openid-configuration → 503`);
    } finally {
      proxy.answer(undefined);
    }
  });

  it('an IdP that calls itself localhost while configured as 127.0.0.1 is CONFIG_INVALID naming both issuers and what to set', async () => {
    const front = await startRewriteProxy();
    const port = new URL(front.url).port;
    const local = await startDevIdp({ issuer: `http://localhost:${port}`, clients: [{ clientId: 'c', clientSecret: SECRET }] });
    front.setTarget(local.url);
    try {
      const source = at(`http://127.0.0.1:${port}`);
      for (const err of [await failure(source.discover()), await failure(source.obtain(undefined))]) {
        expect(err.code).toBe('CONFIG_INVALID');
        expect(err.reason).toBe('issuer_mismatch');
        expect(err.message).toContain('tokens.orders.issuer');
        expect(err.message).toContain(`names the issuer http://localhost:${port}, not the configured http://127.0.0.1:${port}`);
        expect(err.message).toContain(`Set issuer: http://localhost:${port}`);
        expect(err.message).not.toContain('not a valid OAuth response');
      }
    } finally {
      await front.close();
      await local.close();
    }
  });
});

describe('private_key_jwt: the assertion audience', () => {
  const key = generateClientKey('ES256', 'aud-key');
  let idp: DevIdp;
  let proxy: RewriteProxy;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tokend-aud-'));
    writeFileSync(join(dir, 'key.pem'), key.privatePem);
    proxy = await startRewriteProxy();
    idp = await startDevIdp({
      issuer: proxy.url,
      clients: [{ clientId: 'pk', tokenEndpointAuthMethod: 'private_key_jwt', jwks: { keys: [key.publicJwk] } }],
    });
    proxy.setTarget(idp.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await idp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The aud of the client assertion oidc-provider received with the last token request. */
  const lastAud = (): unknown => {
    const body = proxy.bodies(/\/token$/).at(-1) ?? '';
    return decodeJwt(new URLSearchParams(body).get('client_assertion') ?? '').aud;
  };

  it.each([
    ['unset', undefined, '/token'],
    ['token_endpoint', 'token_endpoint', '/token'],
    ['issuer', 'issuer', ''],
  ] as const)('privateKeyAudience %s: aud is the %s, and the IdP accepts it', async (_label, privateKeyAudience, path) => {
    const source = createTokenSource(
      testTokenConfig({
        name: 'pk',
        clientId: 'pk',
        clientAuth: 'private_key_jwt',
        privateKeyFile: join(dir, 'key.pem'),
        issuer: proxy.url,
        ...(privateKeyAudience ? { privateKeyAudience } : {}),
      }),
      { clock: systemClock, idp: createIdpRegistry() },
    );
    const { token } = await source.obtain(undefined);
    expect(token.tokenType).toBe('Bearer');
    expect(lastAud()).toBe(`${proxy.url}${path}`);
  });
});

describe('no stampede', () => {
  it('twenty tokens with one issuer make one discovery request, which is made again after the max age', async () => {
    const proxy = await startRewriteProxy();
    const idp = await startDevIdp({ issuer: proxy.url, clients: [{ clientId: 'c', clientSecret: SECRET }] });
    proxy.setTarget(idp.url);
    const clock = new FakeClock();
    const registry = createIdpRegistry({ clock, metadataMaxAgeMs: 60_000 });
    try {
      const sources = Array.from({ length: 20 }, (_, i) =>
        createTokenSource(testTokenConfig({ name: `t${i}`, clientId: 'c', clientSecret: literal(SECRET), issuer: proxy.url }), { clock: systemClock, idp: registry }),
      );
      await Promise.all(sources.map((s) => s.obtain(undefined)));
      await Promise.all(sources.map((s) => s.obtain(undefined)));
      expect(proxy.count(/openid-configuration$/)).toBe(1);
      expect(idp.stats().grants.client_credentials).toBe(40);
      await clock.advance(60_001);
      await Promise.all(sources.map((s) => s.obtain(undefined)));
      expect(proxy.count(/openid-configuration$/)).toBe(2);
    } finally {
      await registry.close();
      await proxy.close();
      await idp.close();
    }
  });

  it('discovers again when the token endpoint answers 404 (the IdP moved it), not on every grant', async () => {
    const proxy = await startRewriteProxy();
    const idp = await startDevIdp({ issuer: proxy.url, clients: [{ clientId: 'c', clientSecret: SECRET }] });
    proxy.setTarget(idp.url);
    const registry = createIdpRegistry();
    try {
      const source = createTokenSource(testTokenConfig({ name: 'moved', clientId: 'c', clientSecret: literal(SECRET), issuer: proxy.url }), {
        clock: systemClock,
        idp: registry,
      });
      await source.obtain(undefined);
      await source.obtain(undefined);
      expect(proxy.count(/openid-configuration$/)).toBe(1);
      proxy.answer((req, res) => (req.url === '/token' ? (res.writeHead(404).end(), true) : false));
      expect((await failure(source.obtain(undefined))).status).toBe(404);
      proxy.answer(undefined);
      await source.obtain(undefined);
      expect(proxy.count(/openid-configuration$/)).toBe(2);
    } finally {
      await registry.close();
      await proxy.close();
      await idp.close();
    }
  });

  describe('per IdP (node-oauth2-server)', () => {
    let server: RunningOAuth2Server;
    beforeAll(async () => {
      server = await startOAuth2Server({ clients: [{ clientId: 'c', clientSecret: SECRET }] });
    });
    afterAll(async () => {
      await server?.close();
    });
    const sources = (n: number, registry: ReturnType<typeof createIdpRegistry>) =>
      Array.from({ length: n }, (_, i) =>
        createTokenSource(testTokenConfig({ name: `t${i}`, clientId: 'c', clientSecret: literal(SECRET), tokenEndpoint: server.tokenEndpoint }), {
          clock: systemClock,
          idp: registry,
        }),
      );

    it('holds the concurrency cap: with idpConcurrency 3, ten tokens have at most 3 grants in flight at the server', async () => {
      const registry = createIdpRegistry({ concurrency: 3 });
      const before = server.stats().maxInFlight;
      expect(before).toBeLessThanOrEqual(1);
      const gate = server.hold();
      try {
        const pending = sources(10, registry).map((s) => s.obtain(undefined));
        const limiter = registry.limiter(new URL(server.url).origin);
        await until(() => gate.waiting() === 3 && limiter.queued === 7, '3 grants at the server and 7 queued');
        gate.release();
        const results = await Promise.all(pending);
        expect(results).toHaveLength(10);
        expect(server.stats().maxInFlight).toBe(3);
      } finally {
        gate.release();
        await registry.close();
      }
    });

    it('bounds the keep-alive connections per IdP: 8 grants in flight share 2 connections', async () => {
      const registry = createIdpRegistry({ concurrency: 8, connections: 2 });
      const connectionsBefore = server.stats().connections;
      const gate = server.hold();
      try {
        const pending = sources(8, registry).map((s) => s.obtain(undefined));
        const limiter = registry.limiter(new URL(server.url).origin);
        await until(() => gate.waiting() === 2 && limiter.inFlight === 8, '2 requests at the server, 8 grants in flight');
        gate.release();
        await Promise.all(pending);
        expect(server.stats().connections - connectionsBefore).toBe(2);
      } finally {
        gate.release();
        await registry.close();
      }
    });

    it('a grant queued behind others longer than its own timeout still runs when its turn comes (no idp_busy while the IdP progresses)', async () => {
      // The limiter's waits run on the fake clock; the grants themselves on real time (5 s timeout).
      const clock = new FakeClock();
      const registry = createIdpRegistry({ concurrency: 1, clock });
      const gate = server.hold();
      try {
        const pending = sources(3, registry).map((s) =>
          s.obtain(undefined).then(
            () => 'ok',
            (e: unknown) => (e as TokendError).reason ?? 'failed',
          ),
        );
        const limiter = registry.limiter(new URL(server.url).origin);
        await until(() => gate.waiting() === 1 && limiter.queued === 2, '1 grant at the server, 2 queued');
        // Longer than one grant timeout: the queued grants are behind, not failing.
        await clock.advance(8_000);
        expect(limiter.queued).toBe(2);
        gate.release();
        expect(await Promise.all(pending)).toEqual(['ok', 'ok', 'ok']);
      } finally {
        gate.release();
        await registry.close();
      }
    });

    it('a 429 with Retry-After pauses every token of that IdP until it has passed', async () => {
      const clock = new FakeClock();
      const registry = createIdpRegistry({ clock });
      const [first, ...others] = sources(5, registry);
      server.throttle(429, '30');
      const requestsBefore = server.stats().requests;
      const err = await failure((first as (typeof others)[number]).obtain(undefined));
      expect(err.retryAfterMs).toBe(30_000);
      for (const s of others) {
        const paused = await failure(s.obtain(undefined));
        expect(paused.code).toBe('GRANT_TRANSIENT');
        expect(paused.reason).toBe('idp_paused');
        expect(paused.retryAfterMs).toBe(30_000);
      }
      expect(server.stats().requests).toBe(requestsBefore + 1);
      await clock.advance(30_000);
      await Promise.all(others.map((s) => s.obtain(undefined)));
      expect(server.stats().requests).toBe(requestsBefore + 5);
      await registry.close();
    });
  });
});
