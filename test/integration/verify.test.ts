import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import * as oidc from 'openid-client';
import { SignJWT, decodeProtectedHeader, generateKeyPair } from 'jose';
import { startDevIdp, startProxiedIdp, type ProxiedIdp } from '../support/idp.js';
import { systemClock, type Clock } from '../../src/clock.js';
import type { VerifyIssuerConfig } from '../../src/config/types.js';
import { TokendError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { createVerifier, type VerifierDeps } from '../../src/verify/verifier.js';
import type { Verifier } from '../../src/verify/types.js';

const API = 'https://api.local';
const CLIENT = { id: 'tokend', secret: 'tokend-dev-secret' };

let world: ProxiedIdp;
let client: oidc.Configuration;
let verifiers: Verifier[] = [];
let logLines: string[] = [];

/** The real clock moved by a settable offset, to look at tokens "later" without waiting. */
function offsetClock(): Clock & { offsetMs: number } {
  const c = { offsetMs: 0, now: () => Date.now() + c.offsetMs, monotonic: () => systemClock.monotonic() + c.offsetMs, setTimer: systemClock.setTimer };
  return c;
}

function issuerConfig(over: Partial<VerifyIssuerConfig> = {}): VerifyIssuerConfig {
  return { issuer: world.issuer, audience: [API], clockToleranceSec: 0, requiredClaims: ['sub'], allowInsecureHttp: true, ...over };
}

function verifier(issuers: VerifyIssuerConfig[] = [issuerConfig()], deps: Partial<VerifierDeps> = {}): Verifier {
  const logger = createLogger('debug', { write: (s: string) => void logLines.push(s) });
  const v = createVerifier({ issuers }, { clock: systemClock, logger, timeoutMs: 2_000, ...deps });
  verifiers.push(v);
  return v;
}

async function clientCredentials(resource?: string): Promise<string> {
  const res = await oidc.clientCredentialsGrant(client, { scope: 'api:read', ...(resource ? { resource } : {}) });
  return res.access_token;
}

const jwksFetches = (): number => world.proxy.count(/^\/jwks$/);
const introspections = (): number => world.proxy.count(/^\/token\/introspection$/);
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

beforeAll(async () => {
  world = await startProxiedIdp({ jwtAccessTokenAudience: API, accessTokenTtlSec: 600 });
  client = await oidc.discovery(new URL(world.issuer), CLIENT.id, undefined, oidc.ClientSecretBasic(CLIENT.secret), {
    execute: [oidc.allowInsecureRequests],
  });
});

afterEach(async () => {
  vi.useRealTimers();
  await world.proxy.setMode('pass');
  await Promise.all(verifiers.map((v) => v.close()));
  verifiers = [];
  logLines = [];
});

afterAll(async () => {
  await world.close();
});

describe('JWT access tokens from oidc-provider', () => {
  it('verifies a client_credentials token issued for the resource, with its claims', async () => {
    const token = await clientCredentials(API);
    const outcome = await verifier().verify(token, new AbortController().signal);
    expect(outcome).toMatchObject({
      active: true,
      issuer: world.issuer,
      claims: { iss: world.issuer, aud: API, client_id: CLIENT.id, scope: 'api:read' },
    });
  });

  it('refuses the tampered, expired, wrong-audience, wrong-issuer, alg-none and unknown-key variants with their reasons', async () => {
    const later = offsetClock();
    const v = verifier();
    const token = await clientCredentials(API);
    const [h, p, s] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;

    expect(await v.verify(`${h}.${b64({ ...claims, scope: 'api:read api:write' })}.${s}`)).toEqual({ active: false, reason: 'signature' });
    expect(await v.verify(`${b64({ alg: 'none', typ: 'at+jwt' })}.${p}.`)).toEqual({ active: false, reason: 'algorithm' });
    expect(await v.verify(await clientCredentials('https://billing.local'))).toEqual({ active: false, reason: 'audience' });

    const other = await startDevIdp({ jwtAccessTokenAudience: API });
    try {
      const foreign = await oidc.clientCredentialsGrant(
        await oidc.discovery(new URL(other.issuer), CLIENT.id, undefined, oidc.ClientSecretBasic(CLIENT.secret), {
          execute: [oidc.allowInsecureRequests],
        }),
        { scope: 'api:read' },
      );
      expect(await v.verify(foreign.access_token)).toEqual({ active: false, reason: 'issuer' });
    } finally {
      await other.close();
    }

    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'not-published' }).sign(privateKey);
    expect(await v.verify(forged)).toEqual({ active: false, reason: 'unknown_key' });

    const late = verifier([issuerConfig()], { clock: later });
    later.offsetMs = 601_000;
    expect(await late.verify(token)).toEqual({ active: false, reason: 'expired' });
    expect(logLines.join('')).not.toContain(s);
  });

  it('follows a key rotation at the IdP with one JWKS fetch and no failed verification', async () => {
    const v = verifier();
    const before = await clientCredentials(API);
    const verdicts: boolean[] = [(await v.verify(before)).active];
    const fetchesAfterWarmup = jwksFetches();

    // Rotations happen long after the last JWKS fetch; move the wall clock past jose's cooldown.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 31_000);
    const newKids = await world.idp.rotateKeys();
    const after = await clientCredentials(API);
    expect(newKids).toContain(decodeProtectedHeader(after).kid);

    for (let i = 0; i < 5; i++) {
      verdicts.push((await v.verify(after)).active, (await v.verify(before)).active);
      verdicts.push((await v.verify(await clientCredentials(API))).active);
    }
    expect(verdicts.every(Boolean)).toBe(true);
    expect(jwksFetches() - fetchesAfterWarmup).toBe(1);
  });

  it('makes one discovery and one JWKS request for 50 concurrent verifications on a cold verifier', async () => {
    const tokens = await Promise.all(Array.from({ length: 50 }, () => clientCredentials(API)));
    const discoveries = (): number => world.proxy.count(/^\/\.well-known\/openid-configuration$/);
    const [discoveryStart, jwksStart] = [discoveries(), jwksFetches()];
    const v = verifier();
    const verdicts = await Promise.all(tokens.map((t) => v.verify(t)));
    expect(verdicts.filter((o) => o.active)).toHaveLength(50);
    expect(discoveries() - discoveryStart).toBe(1);
    expect(jwksFetches() - jwksStart).toBe(1);
  });

  it('answers a burst of 1,000 tokens with random kids with at most a handful of JWKS fetches', async () => {
    const v = verifier();
    const genuine = await clientCredentials(API);
    expect((await v.verify(genuine)).active).toBe(true);
    const start = jwksFetches();
    const claims = JSON.parse(Buffer.from(genuine.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        new SignJWT({ ...claims, jti: `f${i}` }).setProtectedHeader({ alg: 'ES256', kid: `rnd-${i}-${Math.random()}` }).sign(privateKey),
      ),
    );
    const verdicts = await Promise.all(forged.map((t) => v.verify(t)));
    expect(verdicts.filter((o) => !o.active && o.reason === 'unknown_key')).toHaveLength(1000);
    expect(jwksFetches() - start).toBeLessThanOrEqual(3);
    expect((await v.verify(genuine)).active).toBe(true);
  });

});

describe('opaque tokens through RFC 7662 introspection at oidc-provider', () => {
  const introspecting = (): VerifyIssuerConfig =>
    issuerConfig({
      introspection: { clientId: CLIENT.id, clientSecret: { kind: 'literal', value: CLIENT.secret }, clientAuth: 'client_secret_basic' },
      requiredClaims: [],
    });

  /** An opaque (non-JWT) access token for API, minted at the IdP as its token endpoint would. */
  async function opaqueAccessToken(): Promise<string> {
    const { provider } = world.idp;
    const c = await provider.Client.find(CLIENT.id);
    const token = new provider.ClientCredentials({ client: c, scope: 'api:read', aud: API });
    return (await token.save()) as string;
  }

  it('accepts an active opaque token, answers repeats from the cache, and refuses it once revoked and the cache expired', async () => {
    const clock = offsetClock();
    const v = verifier([introspecting()], { clock });
    const token = await opaqueAccessToken();
    expect(token.split('.')).toHaveLength(1);
    const start = introspections();

    expect(await v.verify(token)).toMatchObject({ active: true, issuer: world.issuer, claims: { aud: API, client_id: CLIENT.id } });
    expect((await v.verify(token)).active).toBe(true);
    expect(introspections() - start).toBe(1);

    await oidc.tokenRevocation(client, token);
    // Within the cache lifetime (≤ 60 s) the revocation is not seen yet, by design.
    expect((await v.verify(token)).active).toBe(true);
    clock.offsetMs = 61_000;
    expect(await v.verify(token)).toEqual({ active: false, reason: 'inactive' });
    expect(introspections() - start).toBe(2);
    expect(logLines.join('')).not.toContain(token);
  });

  it('refuses a refresh token presented as a bearer token, and calls it inactive after revocation', async () => {
    const refreshToken = await world.idp.mintRefreshToken(CLIENT.id);
    // Active at the IdP, but it names no audience: not a credential for this API.
    expect(await verifier([introspecting()]).verify(refreshToken)).toEqual({ active: false, reason: 'audience' });
    await oidc.tokenRevocation(client, refreshToken, { token_type_hint: 'refresh_token' });
    expect(await verifier([introspecting()]).verify(refreshToken)).toEqual({ active: false, reason: 'inactive' });
  });

  it('calls an unknown opaque token inactive', async () => {
    expect(await verifier([introspecting()]).verify('x'.repeat(43))).toEqual({ active: false, reason: 'inactive' });
  });
});

// Last in the file: 'refuse' closes sockets that other tests' keep-alive pools may still hold.
describe('while the IdP is down', () => {
  it('keeps verifying from the cached JWKS, and reports an outage as GRANT_TRANSIENT (HTTP 503), never as an invalid token', async () => {
    const warm = verifier();
    const token = await clientCredentials(API);
    expect((await warm.verify(token)).active).toBe(true);

    await world.proxy.setMode('status500', /^\/jwks$/);
    await expect(verifier().verify(token)).rejects.toMatchObject({ code: 'GRANT_TRANSIENT' });

    await world.proxy.setMode('refuse');
    const err = await verifier().verify(token).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokendError);
    expect((err as TokendError).code).toBe('GRANT_TRANSIENT');
    expect((await warm.verify(token)).active).toBe(true);
  });
});
