import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { TokenConfig } from '../../src/config/types.js';
import type { TokendError } from '../../src/errors.js';
import { createTokenSource } from '../../src/oauth/grants.js';
import { createIdpRegistry } from '../../src/oauth/idp-registry.js';
import { FakeClock } from '../support/fake-clock.js';
import {
  generateClientKey,
  startDevIdp,
  startProxiedIdp,
  testTokenConfig,
  type DevIdp,
  type ProxiedIdp,
} from '../support/idp.js';
import { GRANT_SERVERS, type GrantServer } from '../support/grant-servers.js';
import { failure } from '../support/failure.js';

const SECRET = 'cc-secret-0123456789';
const ecKey = generateClientKey('ES256', 'k-es256');
const otherKey = generateClientKey('ES256', 'k-es256');
const rsaKey = generateClientKey('RS256', 'k-rsa');
const edKey = generateClientKey('EdDSA', 'k-ed');

let idp: DevIdp;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-grants-'));
  idp = await startDevIdp({
    accessTokenTtlSec: 30,
    clients: [
      { clientId: 'cc-basic', clientSecret: SECRET, tokenEndpointAuthMethod: 'client_secret_basic' },
      { clientId: 'cc-post', clientSecret: SECRET, tokenEndpointAuthMethod: 'client_secret_post' },
      { clientId: 'pkjwt', tokenEndpointAuthMethod: 'private_key_jwt', jwks: { keys: [ecKey.publicJwk] } },
      { clientId: 'pkjwt-multi', tokenEndpointAuthMethod: 'private_key_jwt', jwks: { keys: [rsaKey.publicJwk, edKey.publicJwk] } },
    ],
  });
});

afterAll(async () => {
  await idp?.close();
  rmSync(dir, { recursive: true, force: true });
});

function cfg(overrides: Partial<TokenConfig> & Pick<TokenConfig, 'clientId'>): TokenConfig {
  return testTokenConfig({ name: 'orders', issuer: idp.issuer, ...overrides });
}

describe.each(GRANT_SERVERS)('grants against $name', (kind) => {
  let server: GrantServer;
  beforeAll(async () => {
    server = await kind.start({
      clients: [
        { clientId: 'cc-basic', clientSecret: SECRET },
        { clientId: 'cc-post', clientSecret: SECRET, auth: 'client_secret_post' },
        // RFC 3986 unreserved characters other than letters and digits: sent as they are.
        { clientId: 'tokend-client', clientSecret: 'se-cr_et.va~lue' },
        // Reserved characters: form-urlencoded (RFC 6749 §2.3.1), which only a decoding server undoes.
        { clientId: 'team:orders', clientSecret: SECRET },
        { clientId: 'pct-client', clientSecret: 'p%2Fss+w:rd' },
      ],
    });
  });
  afterAll(async () => {
    await server?.close();
  });
  const at = (overrides: Partial<TokenConfig> & Pick<TokenConfig, 'clientId'>): TokenConfig =>
    testTokenConfig({ name: 'orders', ...server.endpoint, ...overrides });
  const literal = (value: string) => ({ kind: 'literal' as const, value });

  it('client_credentials with client_secret_basic: a Bearer token whose expiresAt comes from expires_in and the injected clock', async () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const source = createTokenSource(at({ clientId: 'cc-basic', clientSecret: literal(SECRET), scope: 'api:read' }), { clock });
    const { token, refreshToken } = await source.obtain(undefined);
    expect(token.accessToken.length).toBeGreaterThan(10);
    expect(token.tokenType).toBe('Bearer');
    expect(token.scope).toBe('api:read');
    expect(token.obtainedAt).toBe(Date.UTC(2030, 0, 1));
    // expires_in is whole seconds: node-oauth2-server rounds its remaining time down, so a slow
    // answer can say 29 where oidc-provider says 30.
    expect(token.expiresAt - Date.UTC(2030, 0, 1)).toBeGreaterThanOrEqual(29_000);
    expect(token.expiresAt - Date.UTC(2030, 0, 1)).toBeLessThanOrEqual(30_000);
    expect(token.expiresAt % 1_000).toBe(0);
    expect(refreshToken).toBeUndefined();
  });

  it('client_credentials with client_secret_post, reading the secret file on every grant', async () => {
    const secretFile = join(dir, `post-secret-${kind.name}`);
    writeFileSync(secretFile, 'wrong-secret\n');
    const source = createTokenSource(at({ clientId: 'cc-post', clientAuth: 'client_secret_post', clientSecret: { kind: 'file', path: secretFile } }), {
      clock: systemClock,
    });
    const before = await source.credentialFingerprint();
    const refused = await failure(source.obtain(undefined));
    expect(refused.code).toBe('GRANT_PERMANENT');
    expect(refused.oauthError).toBe('invalid_client');

    writeFileSync(secretFile, `${SECRET}\n`);
    expect(await source.credentialFingerprint()).not.toBe(before);
    const { token } = await source.obtain(undefined);
    expect(token.tokenType).toBe('Bearer');
  });

  it('answers GRANT_PERMANENT invalid_client (HTTP 401) for a wrong secret, without echoing the secret', async () => {
    const source = createTokenSource(at({ clientId: 'cc-basic', clientSecret: literal('not-the-secret') }), { clock: systemClock });
    const err = await failure(source.obtain(undefined));
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.oauthError).toBe('invalid_client');
    expect(err.status).toBe(401);
    expect(err.message).toContain('"orders"');
    expect(err.message).not.toContain('not-the-secret');
    expect(Object.keys(err)).not.toContain('cause');
  });

  it('client_secret_basic sends an id and secret made of unreserved characters (-_.~) as they are: both servers accept them', async () => {
    const source = createTokenSource(at({ clientId: 'tokend-client', clientSecret: literal('se-cr_et.va~lue') }), { clock: systemClock });
    const { token } = await source.obtain(undefined);
    expect(token.tokenType).toBe('Bearer');
  });

  it('client_secret_basic form-urlencodes an id or secret with reserved characters (: % +): a decoding server accepts, a non-decoding one refuses', async () => {
    for (const [clientId, secret] of [['team:orders', SECRET], ['pct-client', 'p%2Fss+w:rd']] as const) {
      const source = createTokenSource(at({ clientId, clientSecret: literal(secret) }), { clock: systemClock });
      const outcome = await source.obtain(undefined).then(
        () => 'accepted',
        (e: unknown) => (e as TokendError).oauthError,
      );
      // node-oauth2-server compares the Basic bytes undecoded; such clients must use client_secret_post there (docs/idp-dialects.md).
      expect(outcome).toBe(server.decodesBasic ? 'accepted' : 'invalid_client');
      const post = createTokenSource(at({ clientId, clientAuth: 'client_secret_post', clientSecret: literal(secret) }), { clock: systemClock });
      if (!server.decodesBasic) expect((await post.obtain(undefined)).token.tokenType).toBe('Bearer');
    }
  });

  it('refresh_token rotates: a new refresh token each time, and the consumed one is refused with GRANT_PERMANENT invalid_grant', async () => {
    const seed = await server.mintRefreshToken('cc-basic');
    const source = createTokenSource(at({ clientId: 'cc-basic', clientSecret: literal(SECRET), grant: 'refresh_token' }), { clock: systemClock });
    const first = await source.obtain(seed);
    expect(first.refreshToken).toBeDefined();
    expect(first.refreshToken).not.toBe(seed);
    const second = await source.obtain(first.refreshToken);
    expect(second.refreshToken).not.toBe(first.refreshToken);

    const err = await failure(source.obtain(seed));
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.oauthError).toBe('invalid_grant');
    expect(err.message).not.toContain(seed);
  });
});

describe('oidc-provider only', () => {
  it('asks for scope and an RFC 8707 resource and gets a JWT access token whose aud is the resource', async () => {
    const source = createTokenSource(
      cfg({ clientId: 'cc-basic', clientSecret: { kind: 'literal', value: SECRET }, scope: 'api:read api:write', resource: 'https://orders.internal' }),
      { clock: systemClock },
    );
    const { token } = await source.obtain(undefined);
    const claims = decodeJwt(token.accessToken);
    expect(claims.aud).toBe('https://orders.internal');
    expect(claims.client_id).toBe('cc-basic');
    expect(claims.scope).toBe('api:read api:write');
  });

  const rtConfig = (): TokenConfig =>
    cfg({ clientId: 'cc-basic', clientSecret: { kind: 'literal', value: SECRET }, grant: 'refresh_token', scope: undefined });

  it('revocation makes the IdP refuse the refresh token', async () => {
    const seed = await idp.mintRefreshToken('cc-basic');
    const source = createTokenSource(rtConfig(), { clock: systemClock });
    const revocationsBefore = idp.stats().revocations;
    await source.revoke(seed, 'refresh_token');
    expect(idp.stats().revocations).toBe(revocationsBefore + 1);
    const err = await failure(source.obtain(seed));
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.oauthError).toBe('invalid_grant');
  });

  it('reads the seed from its file, trimmed', async () => {
    const seedFile = join(dir, 'seed');
    writeFileSync(seedFile, 'seed-value\n');
    const source = createTokenSource({ ...rtConfig(), refreshToken: { kind: 'file', path: seedFile } }, { clock: systemClock });
    expect(await source.readSeed()).toBe('seed-value');
  });
});

describe('private_key_jwt', () => {
  it('authenticates with an ES256 PKCS#8 key file', async () => {
    const keyFile = join(dir, 'key.pem');
    writeFileSync(keyFile, ecKey.privatePem);
    const source = createTokenSource(cfg({ clientId: 'pkjwt', clientAuth: 'private_key_jwt', privateKeyFile: keyFile, privateKeyId: ecKey.kid }), {
      clock: systemClock,
    });
    const { token } = await source.obtain(undefined);
    expect(token.tokenType).toBe('Bearer');
  });

  it('authenticates with a JWK key file, and refuses with invalid_client once the file holds a key the IdP does not know', async () => {
    const keyFile = join(dir, 'key.jwk');
    writeFileSync(keyFile, JSON.stringify(ecKey.privateJwk));
    const source = createTokenSource(cfg({ clientId: 'pkjwt', clientAuth: 'private_key_jwt', privateKeyFile: keyFile }), { clock: systemClock });
    await source.obtain(undefined);

    writeFileSync(keyFile, JSON.stringify(otherKey.privateJwk));
    const err = await failure(source.obtain(undefined));
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.oauthError).toBe('invalid_client');
  });

  it('accepts an RSA PKCS#1 PEM (RS256 inferred), an Ed25519 PEM (EdDSA inferred) and a JWKS picked by privateKeyId', async () => {
    const rsaPkcs1 = createPrivateKey(rsaKey.privatePem).export({ format: 'pem', type: 'pkcs1' }).toString();
    const files = {
      rsa: [join(dir, 'rsa-pkcs1.pem'), rsaPkcs1, rsaKey.kid],
      ed: [join(dir, 'ed.pem'), edKey.privatePem, edKey.kid],
      jwks: [join(dir, 'keys.json'), JSON.stringify({ keys: [ecKey.privateJwk, edKey.privateJwk] }), edKey.kid],
    } as const;
    for (const [path, content, kid] of Object.values(files)) {
      writeFileSync(path, content);
      const source = createTokenSource(cfg({ clientId: 'pkjwt-multi', clientAuth: 'private_key_jwt', privateKeyFile: path, privateKeyId: kid }), {
        clock: systemClock,
      });
      const { token } = await source.obtain(undefined);
      expect(token.tokenType).toBe('Bearer');
    }
  });

  it('refuses a public JWK as CONFIG_INVALID', async () => {
    const keyFile = join(dir, 'public.jwk');
    writeFileSync(keyFile, JSON.stringify(ecKey.publicJwk));
    const source = createTokenSource(cfg({ clientId: 'pkjwt', clientAuth: 'private_key_jwt', privateKeyFile: keyFile }), { clock: systemClock });
    const err = await failure(source.obtain(undefined));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('public key');
  });

  it('reports an unreadable key file as CONFIG_INVALID naming the field, not the content', async () => {
    const keyFile = join(dir, 'garbage.pem');
    writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWdhcmJhZ2U=\n-----END PRIVATE KEY-----\n');
    const source = createTokenSource(cfg({ clientId: 'pkjwt', clientAuth: 'private_key_jwt', privateKeyFile: keyFile }), { clock: systemClock });
    const err = await failure(source.obtain(undefined));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('tokens.orders.privateKeyFile');
    expect(err.message).not.toContain('c2VjcmV0');
  });
});

describe('plain OAuth2 tokenEndpoint (no discovery)', () => {
  it('uses the static endpoints and never fetches discovery metadata', async () => {
    const urls: string[] = [];
    const countingFetch: typeof fetch = (input, init) => {
      urls.push(String(input));
      return fetch(input, init);
    };
    const seed = await idp.mintRefreshToken('cc-basic');
    const source = createTokenSource(
      testTokenConfig({
        name: 'plain',
        clientId: 'cc-basic',
        clientSecret: { kind: 'literal', value: SECRET },
        tokenEndpoint: `${idp.url}/token`,
        revocationEndpoint: `${idp.url}/token/revocation`,
        grant: 'refresh_token',
      }),
      { clock: systemClock, fetch: countingFetch },
    );
    expect(await source.discover()).toEqual({ tokenEndpoint: `${idp.url}/token`, revocationEndpoint: `${idp.url}/token/revocation` });
    const { refreshToken } = await source.obtain(seed);
    await source.revoke(refreshToken as string, 'refresh_token');
    expect(urls).toEqual([`${idp.url}/token`, `${idp.url}/token/revocation`]);
  });

  it('refreshes even when the IdP names an issuer unlike the endpoint origin (ID tokens are ignored)', async () => {
    const realm = await startDevIdp({ issuer: 'http://idp.example/realms/prod', clients: [{ clientId: 'c', clientSecret: SECRET }] });
    try {
      const seed = await realm.mintRefreshToken('c', 'openid offline_access');
      const source = createTokenSource(
        testTokenConfig({ name: 'plain', clientId: 'c', clientSecret: { kind: 'literal', value: SECRET }, tokenEndpoint: `${realm.url}/token`, grant: 'refresh_token' }),
        { clock: systemClock },
      );
      const { token, refreshToken } = await source.obtain(seed);
      expect(token.scope).toBe('openid offline_access');
      expect(refreshToken).toBeDefined();
      expect(realm.stats().grants.refresh_token).toBe(1);
    } finally {
      await realm.close();
    }
  });

  it('signs private_key_jwt assertions for the token endpoint', async () => {
    const keyFile = join(dir, 'plain-key.pem');
    writeFileSync(keyFile, ecKey.privatePem);
    const source = createTokenSource(
      testTokenConfig({ name: 'plain', clientId: 'pkjwt', clientAuth: 'private_key_jwt', privateKeyFile: keyFile, tokenEndpoint: `${idp.url}/token` }),
      { clock: systemClock },
    );
    const { token } = await source.obtain(undefined);
    expect(token.accessToken.length).toBeGreaterThan(10);
  });
});

describe('through a failing network (fault proxy)', () => {
  let proxied: ProxiedIdp;
  beforeAll(async () => {
    proxied = await startProxiedIdp({ clients: [{ clientId: 'cc', clientSecret: SECRET }] });
  });
  afterAll(async () => {
    await proxied?.close();
  });

  // A registry of its own per source: a Retry-After pause from one test must not reach the next.
  const proxiedSource = (timeoutMs = 500, idpRegistry = createIdpRegistry()) =>
    createTokenSource(testTokenConfig({ name: 'flaky', clientId: 'cc', clientSecret: { kind: 'literal', value: SECRET }, issuer: proxied.issuer, timeoutMs }), {
      clock: systemClock,
      idp: idpRegistry,
    });

  it('treats a 500 from the token endpoint as GRANT_TRANSIENT with the status', async () => {
    const source = proxiedSource();
    await source.obtain(undefined);
    await proxied.proxy.setMode('status500', /^\/token$/);
    try {
      const err = await failure(source.obtain(undefined));
      expect(err.code).toBe('GRANT_TRANSIENT');
      expect(err.status).toBe(500);
    } finally {
      await proxied.proxy.setMode('pass');
    }
  });

  it('treats a 429 as GRANT_TRANSIENT with its Retry-After, and sends no grant to that IdP while it is in force', async () => {
    const idpRegistry = createIdpRegistry();
    const source = proxiedSource(500, idpRegistry);
    const other = proxiedSource(500, idpRegistry);
    await proxied.proxy.setMode('status429', /^\/token$/);
    try {
      const err = await failure(source.obtain(undefined));
      expect(err.code).toBe('GRANT_TRANSIENT');
      expect(err.status).toBe(429);
      expect(err.retryAfterMs).toBe(1_000);
      const before = proxied.proxy.count(/^\/token$/);
      const paused = await failure(other.obtain(undefined));
      expect(paused.code).toBe('GRANT_TRANSIENT');
      expect(paused.reason).toBe('idp_paused');
      expect(paused.retryAfterMs).toBeGreaterThan(0);
      expect(paused.retryAfterMs).toBeLessThanOrEqual(1_000);
      expect(proxied.proxy.count(/^\/token$/)).toBe(before);
    } finally {
      await proxied.proxy.setMode('pass');
    }
  });

  it('gives up on a hanging IdP after timeoutMs with GRANT_TRANSIENT', async () => {
    const source = proxiedSource(500);
    await source.discover();
    await proxied.proxy.setMode('hang', /^\/token$/);
    try {
      const started = performance.now();
      const err = await failure(source.obtain(undefined));
      const took = performance.now() - started;
      expect(err.code).toBe('GRANT_TRANSIENT');
      expect(err.message).toContain('timed out');
      expect(took).toBeGreaterThanOrEqual(450);
      expect(took).toBeLessThan(3_000);
    } finally {
      await proxied.proxy.setMode('pass');
    }
  });

  it('stops waiting as soon as the caller aborts', async () => {
    const source = proxiedSource(10_000);
    await source.discover();
    await proxied.proxy.setMode('hang', /^\/token$/);
    try {
      const ctl = new AbortController();
      const pending = failure(source.obtain(undefined, ctl.signal));
      ctl.abort();
      const err = await pending;
      expect(err.code).toBe('GRANT_TRANSIENT');
    } finally {
      await proxied.proxy.setMode('pass');
    }
  });

  it('treats refused and reset connections as GRANT_TRANSIENT, discovery failure as DISCOVERY_FAILED, and recovers', async () => {
    const source = proxiedSource();
    await proxied.proxy.setMode('refuse');
    try {
      expect((await failure(source.obtain(undefined))).code).toBe('GRANT_TRANSIENT');
      expect((await failure(source.discover())).code).toBe('DISCOVERY_FAILED');
    } finally {
      await proxied.proxy.setMode('pass');
    }
    // Discovery failed above; it is re-done now that the IdP answers again.
    await source.obtain(undefined);

    await proxied.proxy.setMode('reset', /^\/token$/);
    try {
      expect((await failure(source.obtain(undefined))).code).toBe('GRANT_TRANSIENT');
    } finally {
      await proxied.proxy.setMode('pass');
    }
    await source.obtain(undefined);
  });
});
