/**
 * Test helpers around the dev IdP (dev/idp.ts): the IdP itself, the IdP behind a fault proxy,
 * client keys for private_key_jwt, and a TokenConfig with test defaults.
 */
import { generateKeyPairSync } from 'node:crypto';
import { startDevIdp, type DevIdp, type DevIdpOptions, type JWK } from '../../dev/idp.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import type { TokenConfig } from '../../src/config/types.js';

export * from '../../dev/idp.js';
export { startFaultProxy, type FaultProxy, type FaultMode } from './fault-proxy.js';

/** The dev IdP announcing the proxy's URL as its issuer, so discovery and grants all go through the proxy. */
export interface ProxiedIdp {
  idp: DevIdp;
  proxy: FaultProxy;
  /** The issuer tokend should be configured with (the proxy's URL). */
  issuer: string;
  close(): Promise<void>;
}

/** Starts a fault proxy, then the dev IdP with the proxy's URL as issuer behind it. */
export async function startProxiedIdp(opts: DevIdpOptions = {}): Promise<ProxiedIdp> {
  const proxy = await startFaultProxy();
  const idp = await startDevIdp({ ...opts, issuer: proxy.url });
  proxy.setTarget(idp.url);
  return {
    idp,
    proxy,
    issuer: proxy.url,
    async close() {
      await proxy.close();
      await idp.close();
    },
  };
}

/** A client key pair for private_key_jwt: the PKCS#8 PEM and JWK of the private key, the public JWK. */
export interface ClientKey {
  privatePem: string;
  privateJwk: JWK;
  publicJwk: JWK;
  kid: string;
}

/** Generates a client key (ES256 on P-256 by default; 'RS256' for RSA 2048, 'EdDSA' for Ed25519). */
export function generateClientKey(alg: 'ES256' | 'RS256' | 'EdDSA' = 'ES256', kid = `client-${alg.toLowerCase()}`): ClientKey {
  const { privateKey, publicKey } =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ed25519');
  const privateJwk = { ...(privateKey.export({ format: 'jwk' }) as JWK), kid, alg };
  const publicJwk = { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' };
  return { privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), privateJwk, publicJwk, kid };
}

/** A TokenConfig for tests: client_credentials with client_secret_basic, insecure http allowed, 5 s timeout. */
export function testTokenConfig(overrides: Partial<TokenConfig> & Pick<TokenConfig, 'clientId'>): TokenConfig {
  return {
    name: 'test',
    grant: 'client_credentials',
    refreshAt: 0.75,
    clientAuth: 'client_secret_basic',
    revokeOnShutdown: false,
    defaultLifetimeMs: 300_000,
    timeoutMs: 5_000,
    allowInsecureHttp: true,
    ...overrides,
  };
}
