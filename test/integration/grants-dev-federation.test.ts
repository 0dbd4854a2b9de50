/**
 * The federated grants against the dev IdP (oidc-provider 9 with the JWT bearer and token exchange
 * grants registered, dev/idp-federation.ts), found by OIDC discovery: what `DEMO_SECRETLESS=1 npm
 * run demo` runs. The second IdP dialect besides test/support/federating-idp.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectedVolume, startTestCluster, type TestCluster } from '../../dev/cluster.js';
import { systemClock } from '../../src/clock.js';
import { TokendError } from '../../src/errors.js';
import { createTokenSource } from '../../src/oauth/grants.js';
import { createIdpRegistry } from '../../src/oauth/idp-registry.js';
import type { AccessToken } from '../../src/token.js';
import { JWT_BEARER_GRANT, startDevIdp, TOKEN_EXCHANGE_GRANT, testTokenConfig, type DevIdp } from '../support/idp.js';

const SA = 'system:serviceaccount:demo:orders';
let cluster: TestCluster;
let idp: DevIdp;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-dev-federation-'));
  cluster = await startTestCluster();
  idp = await startDevIdp({
    accessTokenTtlSec: 30,
    federation: { trust: [cluster.issuer], subjects: [SA] },
    clients: [
      { clientId: 'batch', tokenEndpointAuthMethod: 'none', grantTypes: [JWT_BEARER_GRANT] },
      { clientId: 'exchanger', tokenEndpointAuthMethod: 'none', grantTypes: [TOKEN_EXCHANGE_GRANT] },
    ],
  });
});

afterAll(async () => {
  await idp?.close();
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function volume(name: string, serviceAccount = 'orders'): Promise<ProjectedVolume> {
  const vol = new ProjectedVolume(join(dir, name));
  vol.write((await cluster.mint({ namespace: 'demo', serviceAccount, audience: `${idp.issuer}/token` })).token);
  return vol;
}

describe('the dev IdP federates with a cluster: no secret for tokend to hold', () => {
  it('grants a JWT bearer token for the projected token, then exchanges it for a narrower audience', async () => {
    const registry = createIdpRegistry({});
    try {
      const vol = await volume('ok');
      const batch = createTokenSource(
        testTokenConfig({ name: 'federated', issuer: idp.issuer, clientId: 'batch', clientAuth: 'none', grant: 'jwt_bearer', assertionFile: vol.path, resource: 'https://api.demo' }),
        { clock: systemClock, idp: registry },
      );
      const federated = await batch.obtain(undefined);
      expect(decodeJwt(federated.token.accessToken)).toMatchObject({ aud: 'https://api.demo', federated_sub: SA, client_id: 'batch' });

      const held: AccessToken = federated.token;
      const narrow = createTokenSource(
        testTokenConfig({
          name: 'narrow',
          issuer: idp.issuer,
          clientId: 'exchanger',
          clientAuth: 'none',
          grant: 'token_exchange',
          subjectToken: 'federated',
          subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
          audience: 'https://orders.demo',
        }),
        { clock: systemClock, idp: registry, tokenLookup: () => ({ current: () => held, ensureFresh: async () => held }) },
      );
      const exchanged = await narrow.obtain(undefined);
      expect(decodeJwt(exchanged.token.accessToken)).toMatchObject({ aud: 'https://orders.demo', federated_sub: SA, client_id: 'exchanger' });
      expect(exchanged.token.issuedTokenType).toBe('urn:ietf:params:oauth:token-type:access_token');
      expect(idp.stats().grants).toMatchObject({ [JWT_BEARER_GRANT]: 1, [TOKEN_EXCHANGE_GRANT]: 1 });
    } finally {
      await registry.close();
    }
  });

  it('refuses a service account it does not know with a permanent invalid_grant that names it', async () => {
    const registry = createIdpRegistry({});
    try {
      const vol = await volume('stranger', 'stranger');
      const err = await createTokenSource(
        testTokenConfig({ name: 'federated', issuer: idp.issuer, clientId: 'batch', clientAuth: 'none', grant: 'jwt_bearer', assertionFile: vol.path }),
        { clock: systemClock, idp: registry },
      )
        .obtain(undefined)
        .catch((e: unknown) => e as TokendError);
      expect(err).toBeInstanceOf(TokendError);
      expect(err).toMatchObject({ code: 'GRANT_PERMANENT', oauthError: 'invalid_grant' });
      expect((err as TokendError).message).toContain('sub system:serviceaccount:demo:stranger');
    } finally {
      await registry.close();
    }
  });
});
