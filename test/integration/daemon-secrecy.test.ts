import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../support/world.js';
import { getToken } from '../support/daemon.js';

describe('secrecy of tokens and secrets', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: 3 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it('never writes a token, refresh token or client secret to any log line, error or metric, through acquire, refresh and failure', async () => {
    const secrets = new Set<string>(['cc-secret-value-1f2e', 'rt-secret-value-9a8b']);
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    secrets.add(seed);
    const ccSecret = w.file('cc-secret', 'cc-secret-value-1f2e\n');
    const rtSecret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
    const seedFile = w.file('seed', seed + '\n');
    const { path, url } = await w.config(
      [
        { name: 'orders', clientId: 'cc-client', secretFile: ccSecret, grant: 'client_credentials' },
        { name: 'inventory', clientId: 'rt-client', secretFile: rtSecret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' },
      ],
      { top: 'logLevel: trace' },
    );
    const p = w.start(path);
    const stateFile = `${w.tokensDir}/.state/inventory.state.json`;
    const collect = async (): Promise<void> => {
      for (const name of ['orders', 'inventory']) {
        const res = await getToken(url, name);
        if (res.status === 200) secrets.add(res.json().access_token as string);
      }
      try {
        secrets.add((JSON.parse(readFileSync(stateFile, 'utf8')) as { refresh_token: string }).refresh_token);
      } catch {
        // Not written yet.
      }
    };

    // Acquire and two refresh cycles, collecting every token value served or stored.
    await p.waitForEvent('token.acquired', { token: 'inventory' });
    await collect();
    await p.waitForEvent('token.refreshed', { token: 'orders', nth: 1, timeoutMs: 10_000 });
    await collect();
    await p.waitForEvent('token.refreshed', { token: 'inventory', nth: 2, timeoutMs: 10_000 });
    await collect();

    // Failures: a 500 from the token endpoint, then a wrong client secret (invalid_client).
    await w.proxy.setMode('status500', /^\/token$/);
    await p.waitForEvent('token.refresh_failed', { token: 'orders', timeoutMs: 10_000 });
    await w.proxy.setMode('pass');
    writeFileSync(ccSecret, 'wrong-secret-value-77\n');
    secrets.add('wrong-secret-value-77');
    await p.waitFor((l) => l.token === 'orders' && JSON.stringify(l).includes('invalid_client'), 15_000, 'invalid_client');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('tokend_refresh_total');
    await collect();
    expect((await p.stop()).code).toBe(0);

    expect(secrets.size).toBeGreaterThanOrEqual(8);
    const everything = p.output + metrics;
    expect(p.lines.length).toBeGreaterThan(10);
    for (const s of secrets) {
      expect(everything.includes(s), `a secret value of length ${s.length} appeared in the output`).toBe(false);
      // Also not a recognisable prefix of it (e.g. a truncated token in an error message).
      expect(everything.includes(s.slice(0, 24))).toBe(false);
    }
  });
});
