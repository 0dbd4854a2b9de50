import { describe, it, expect } from 'vitest';
import * as client from 'openid-client';
import { startProxiedIdp } from '../support/idp.js';

describe('dev idp smoke', () => {
  it('works through proxy', async () => {
    const p = await startProxiedIdp();
    try {
      const cfg = await client.discovery(new URL(p.issuer), 'tokend', undefined, client.ClientSecretBasic('tokend-dev-secret'), { execute: [client.allowInsecureRequests], timeout: 1 });
      console.log(cfg.serverMetadata().token_endpoint);
      await client.clientCredentialsGrant(cfg, { scope: 'api:read' });
      for (const m of ['status500', 'status429', 'hang', 'refuse', 'reset'] as const) {
        await p.proxy.setMode(m, m === 'refuse' ? undefined : /^\/token$/);
        const err = await client.clientCredentialsGrant(cfg, { scope: 'api:read' }).catch((e) => e);
        console.log(m, err?.constructor?.name, err?.code, err?.message, err?.cause?.code, err?.cause?.constructor?.name, err?.cause?.status, err?.cause?.name);
      }
      await p.proxy.setMode('pass');
      await client.clientCredentialsGrant(cfg, { scope: 'api:read' });
      console.log(p.proxy.requests(), p.idp.stats());
      const bad = await client.clientCredentialsGrant(new client.Configuration(cfg.serverMetadata(), 'tokend', undefined, client.ClientSecretBasic('nope')), {}, ).catch(e => e);
      console.log(bad.constructor.name, bad.error, bad.status, bad.code, Object.keys(bad));
    } finally { await p.close(); }
  });
});
