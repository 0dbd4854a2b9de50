/**
 * The federated grants of one TokenSource against a federating IdP (test/support/federating-idp.ts,
 * @node-oauth/oauth2-server verifying with jose) that trusts a test cluster issuer (dev/cluster.ts):
 * client assertions from a projected service-account token file, the JWT bearer grant and the
 * token exchange. No client secret, key or refresh token anywhere.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ProjectedVolume, startTestCluster, type TestCluster } from '../../dev/cluster.js';
import { systemClock } from '../../src/clock.js';
import type { TokenConfig } from '../../src/config/types.js';
import { TokendError } from '../../src/errors.js';
import { AssertionMetrics } from '../../src/oauth/assertion-metrics.js';
import { FEDERATED_MIN_REMAINING_MS } from '../../src/oauth/federated.js';
import type { TokenPeer } from '../../src/oauth/federated-grant.js';
import { createTokenSource, type TokenSourceDeps } from '../../src/oauth/grants.js';
import { createIdpRegistry, type IdpRegistry } from '../../src/oauth/idp-registry.js';
import type { AccessToken } from '../../src/token.js';
import { startFederatingIdp, TOKEN_EXCHANGE, JWT_BEARER, type FederatingIdp } from '../support/federating-idp.js';
import { testTokenConfig } from '../support/idp.js';
import { failure } from '../support/failure.js';

const NS = 'shop';
const ORDERS_SA = `system:serviceaccount:${NS}:orders`;
const TT_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';

let cluster: TestCluster;
let idp: FederatingIdp;
let dir: string;
let registry: IdpRegistry;
let volumes = 0;

/** A fresh projected volume holding a token for service account `sa` (default orders). */
async function projected(opts: { sa?: string; audience?: string; expiresInSec?: number; issuedAtMs?: number } = {}): Promise<{ vol: ProjectedVolume; jti: string; token: string }> {
  const vol = new ProjectedVolume(join(dir, `vol-${++volumes}`));
  const m = await cluster.mint({ namespace: NS, serviceAccount: opts.sa ?? 'orders', audience: opts.audience ?? idp.tokenEndpoint, expiresInSec: opts.expiresInSec, issuedAtMs: opts.issuedAtMs });
  vol.write(m.token);
  return { vol, jti: m.jti, token: m.token };
}

function cfg(overrides: Partial<TokenConfig>): TokenConfig {
  return testTokenConfig({ name: 'orders', tokenEndpoint: idp.tokenEndpoint, ...overrides });
}

function source(c: TokenConfig, deps: Partial<TokenSourceDeps> = {}) {
  return createTokenSource(c, { clock: systemClock, idp: registry, ...deps });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-federated-'));
  cluster = await startTestCluster();
  idp = await startFederatingIdp({
    trust: [cluster.issuer],
    allowAnonymous: true,
    clients: [
      { clientId: 'orders', federated: [{ issuer: cluster.issuer, subject: ORDERS_SA }] },
      { clientId: 'exchanger', public: true, grants: [TOKEN_EXCHANGE], exchangeAudiences: ['orders-api'] },
    ],
  });
});

afterAll(async () => {
  await idp?.close();
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  registry = createIdpRegistry({});
});
afterEach(async () => {
  await registry.close();
});

describe('clientAuth client_assertion: the projected service-account token as client assertion (RFC 7523 §2.2)', () => {
  it('obtains a client_credentials token with the cluster token as client assertion, and sends no secret', async () => {
    const { vol, jti } = await projected();
    const result = await source(cfg({ clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: vol.path })).obtain(undefined);

    const seen = idp.requests.at(-1)!;
    expect(seen.outcome).toBe('issued');
    expect(seen.presented).toEqual([expect.objectContaining({ param: 'client_assertion', jti, sub: ORDERS_SA })]);
    expect(seen.body).toMatchObject({ grant_type: 'client_credentials', client_id: 'orders', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' });
    expect(Object.keys(seen.body)).not.toContain('client_secret');
    expect(decodeJwt(result.token.accessToken)).toMatchObject({ sub: ORDERS_SA, client_id: 'orders' });
    expect(result.token.issuedTokenType).toBeUndefined();
  });

  it('reads the file for every grant: after kubelet swaps ..data, the next grant carries the new token', async () => {
    const { vol, jti: first } = await projected();
    const s = source(cfg({ clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: vol.path }));
    await s.obtain(undefined);
    const second = await cluster.mint({ namespace: NS, serviceAccount: 'orders', audience: idp.tokenEndpoint });
    vol.write(second.token);
    await s.obtain(undefined);

    const used = idp.requests.slice(-2).map((r) => r.presented[0]?.jti);
    expect(used).toEqual([first, second.jti]);
    expect(first).not.toBe(second.jti);
  });

  it('never sends an expired assertion, or one about to expire: client_assertion_expired, no request, and the next fresh file works', async () => {
    const metrics = AssertionMetrics.on(new Registry(), systemClock);
    const expired = await projected({ issuedAtMs: Date.now() - 700_000, expiresInSec: 600 });
    const s = source(cfg({ clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: expired.vol.path }), { credentialExpiry: metrics });
    const before = idp.requests.length;

    const err = await failure(s.obtain(undefined));
    expect(err.code).toBe('GRANT_TRANSIENT');
    expect(err.reason).toBe('client_assertion_expired');
    expect(err.message).toContain(expired.vol.path);
    expect(err.message).toMatch(/expired \d+ s ago; not sent/);

    // Five seconds left is under the margin: not sent either.
    const closeToEnd = await cluster.mint({ namespace: NS, serviceAccount: 'orders', audience: idp.tokenEndpoint, issuedAtMs: Date.now() - 595_000, expiresInSec: 600 });
    expired.vol.write(closeToEnd.token);
    const err2 = await failure(s.obtain(undefined));
    expect(err2.reason).toBe('client_assertion_expired');
    expect(err2.message).toContain(`under the ${FEDERATED_MIN_REMAINING_MS / 1000} s margin`);
    expect(idp.requests.length).toBe(before);

    const fresh = await cluster.mint({ namespace: NS, serviceAccount: 'orders', audience: idp.tokenEndpoint });
    expired.vol.write(fresh.token);
    await s.obtain(undefined);
    expect(idp.requests.slice(before).map((r) => r.presented[0]?.jti)).toEqual([fresh.jti]);
    for (const e of [err, err2]) {
      for (const t of [expired.token, closeToEnd.token]) expect(e.message).not.toContain(t.slice(0, 24));
    }
  });

  it('a wrong audience is a permanent invalid_client that names what tokend sent (iss, sub, aud), never the assertion', async () => {
    const { vol, token } = await projected({ audience: 'https://somewhere-else.example' });
    const err = await failure(source(cfg({ clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: vol.path })).obtain(undefined));
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.oauthError).toBe('invalid_client');
    expect(err.message).toContain(`tokend sent the client assertion from ${vol.path} (iss ${cluster.issuer}, sub ${ORDERS_SA}, aud https://somewhere-else.example)`);
    expect(err.message).not.toContain(token.split('.')[1]!.slice(0, 24));
    expect(JSON.stringify(err)).not.toContain(token.slice(0, 24));
  });

  it('a service account the IdP does not map to the client is a permanent invalid_client naming the subject', async () => {
    const { vol } = await projected({ sa: 'stranger' });
    const err = await failure(source(cfg({ clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: vol.path })).obtain(undefined));
    expect(err.code).toBe('GRANT_PERMANENT');
    expect(err.oauthError).toBe('invalid_client');
    expect(err.message).toContain(`sub system:serviceaccount:${NS}:stranger`);
  });

  it('reports the assertion\'s remaining life to the expiry gauge', async () => {
    const reg = new Registry();
    const metrics = AssertionMetrics.on(reg, systemClock);
    const { vol } = await projected({ expiresInSec: 900 });
    await source(cfg({ clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: vol.path }), { credentialExpiry: metrics }).obtain(undefined);
    const text = await reg.metrics();
    const m = /tokend_client_assertion_expiry_seconds\{token="orders"\} (\d+)/.exec(text);
    expect(Number(m?.[1])).toBeGreaterThan(880);
    expect(Number(m?.[1])).toBeLessThanOrEqual(900);
  });
});

describe('grant jwt_bearer: the projected token as the grant itself (RFC 7523 §2.1)', () => {
  it('obtains a token for the mapped service account without any client_id or client authentication', async () => {
    const { vol, jti } = await projected();
    const result = await source(cfg({ clientId: undefined, clientAuth: 'none', grant: 'jwt_bearer', assertionFile: vol.path })).obtain(undefined);
    const seen = idp.requests.at(-1)!;
    expect(seen.outcome).toBe('issued');
    expect(Object.keys(seen.body).sort()).toEqual(['assertion', 'grant_type']);
    expect(seen.body.grant_type).toBe(JWT_BEARER);
    expect(seen.presented[0]?.jti).toBe(jti);
    expect(decodeJwt(result.token.accessToken).sub).toBe(ORDERS_SA);
  });

  it('never sends an expired assertion (assertion_expired), and an unmapped subject is a permanent invalid_grant naming it', async () => {
    const expired = await projected({ issuedAtMs: Date.now() - 700_000, expiresInSec: 600 });
    const before = idp.requests.length;
    const err = await failure(source(cfg({ clientId: undefined, clientAuth: 'none', grant: 'jwt_bearer', assertionFile: expired.vol.path })).obtain(undefined));
    expect(err).toMatchObject({ code: 'GRANT_TRANSIENT', reason: 'assertion_expired' });
    expect(idp.requests.length).toBe(before);

    const stranger = await projected({ sa: 'stranger' });
    const refused = await failure(source(cfg({ clientId: undefined, clientAuth: 'none', grant: 'jwt_bearer', assertionFile: stranger.vol.path })).obtain(undefined));
    expect(refused).toMatchObject({ code: 'GRANT_PERMANENT', oauthError: 'invalid_grant' });
    expect(refused.message).toContain(`tokend sent the assertion from ${stranger.vol.path} (iss ${cluster.issuer}, sub system:serviceaccount:${NS}:stranger`);
  });
});

describe('grant token_exchange (RFC 8693)', () => {
  it('exchanges the projected token for a token of another audience as a public client, and records issued_token_type', async () => {
    const { vol, jti } = await projected();
    const c = cfg({ clientId: 'exchanger', clientAuth: 'none', grant: 'token_exchange', subjectTokenFile: vol.path, subjectTokenType: 'urn:ietf:params:oauth:token-type:jwt', audience: 'orders-api' });
    const result = await source(c).obtain(undefined);
    const seen = idp.requests.at(-1)!;
    expect(seen.body).toMatchObject({ grant_type: TOKEN_EXCHANGE, client_id: 'exchanger', subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', audience: 'orders-api' });
    expect(seen.presented[0]).toMatchObject({ param: 'subject_token', jti });
    expect(decodeJwt(result.token.accessToken)).toMatchObject({ sub: ORDERS_SA, aud: 'orders-api' });
    expect(result.token.issuedTokenType).toBe(TT_ACCESS);
  });

  it('authenticates the exchange with the client assertion too, and an audience the client may not have is a permanent invalid_target', async () => {
    const { vol } = await projected();
    const assertion = { clientId: 'orders', clientAuth: 'client_assertion' as const, clientAssertionFile: vol.path };
    const ok = await source(cfg({ ...assertion, grant: 'token_exchange', subjectTokenFile: vol.path, subjectTokenType: 'urn:ietf:params:oauth:token-type:jwt', audience: 'reports-api' })).obtain(undefined);
    expect(decodeJwt(ok.token.accessToken)).toMatchObject({ aud: 'reports-api', client_id: 'orders' });
    expect(idp.requests.at(-1)!.presented.map((p) => p.param).sort()).toEqual(['client_assertion', 'subject_token']);

    const c = cfg({ clientId: 'exchanger', clientAuth: 'none', grant: 'token_exchange', subjectTokenFile: vol.path, subjectTokenType: 'urn:ietf:params:oauth:token-type:jwt', audience: 'billing-api' });
    const err = await failure(source(c).obtain(undefined));
    expect(err).toMatchObject({ code: 'GRANT_PERMANENT', oauthError: 'invalid_target' });
  });

  it("exchanges another configured token's current value (subjectToken: NAME) for a narrower one, and waits while it has none", async () => {
    const { vol } = await projected();
    const orders = source(cfg({ clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: vol.path }));
    let held: AccessToken | undefined;
    const peer: TokenPeer = {
      current: () => held,
      ensureFresh: async () => {
        if (held === undefined) throw new TokendError('TOKEN_UNAVAILABLE', 'none yet');
        return held;
      },
    };
    const narrow = source(
      cfg({ name: 'narrow', clientId: 'exchanger', clientAuth: 'none', grant: 'token_exchange', subjectToken: 'orders', subjectTokenType: TT_ACCESS, audience: 'orders-api' }),
      { tokenLookup: (name) => (name === 'orders' ? peer : undefined) },
    );

    const waiting = await failure(narrow.obtain(undefined));
    expect(waiting).toMatchObject({ code: 'GRANT_TRANSIENT', reason: 'subject_token_unavailable' });

    held = (await orders.obtain(undefined)).token;
    const result = await narrow.obtain(undefined);
    const seen = idp.requests.at(-1)!;
    expect(seen.body.subject_token).toBe(held.accessToken);
    expect(seen.body.subject_token_type).toBe(TT_ACCESS);
    expect(decodeJwt(result.token.accessToken)).toMatchObject({ sub: ORDERS_SA, aud: 'orders-api' });
    expect(result.token.issuedTokenType).toBe(TT_ACCESS);
    expect(waiting.message).not.toContain(held.accessToken.slice(0, 24));
  });
});
