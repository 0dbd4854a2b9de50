import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../support/world.js';
import { getToken, type LogLine } from '../support/daemon.js';
import type { FaultMode } from '../support/fault-proxy.js';

const TOKEN_PATH = /^\/token$/;

describe('tokend when the identity provider fails', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: 3 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it.each<FaultMode>(['status500', 'hang', 'refuse'])(
    'answers 503, never an expired token, while the token endpoint fails (%s), and recovers after',
    async (mode) => {
      const secret = w.file(`secret-${mode}`, 'cc-secret-value-1f2e\n');
      const { path, url } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials' }], {
        store: 'store:\n  type: memory\n',
      });
      const p = w.start(path);
      await p.waitForEvent('token.acquired', { token: 'orders' });
      await w.proxy.setMode(mode, TOKEN_PATH);
      let linesBeforeRecovery = 0;
      try {
        // Poll the endpoint across the token's expiry: every 200 carries a token that is still valid.
        let saw503: { retryAfter: string | null; body: Record<string, unknown> } | undefined;
        let served = 0;
        const deadline = Date.now() + 8_000;
        while (!saw503 && Date.now() < deadline) {
          const res = await getToken(url, 'orders');
          const now = Date.now() / 1000;
          if (res.status === 200) {
            served++;
            const body = res.json();
            expect(body.expires_in as number).toBeGreaterThan(0);
            expect(body.expires_at as number).toBeGreaterThan(Math.floor(now) - 1);
          } else {
            expect(res.status).toBe(503);
            saw503 = { retryAfter: res.headers.get('retry-after'), body: res.json() };
          }
          await new Promise((r) => setTimeout(r, 25));
        }
        expect(served).toBeGreaterThan(0);
        expect(saw503).toBeDefined();
        expect(Number(saw503!.retryAfter)).toBeGreaterThanOrEqual(1);
        expect(saw503!.body.error).toBe('token_unavailable');
        expect(JSON.stringify(saw503!.body)).not.toMatch(/eyJ|access_token/);

        const failed = await p.waitForEvent('token.refresh_failed', { token: 'orders' });
        expect(typeof failed.attempt).toBe('number');
        expect(typeof failed.retry_in_ms).toBe('number');
        expect(failed.error).toBeDefined();
        await p.waitForEvent('token.expired', { token: 'orders' });

        const ready = await fetch(`${url}/readyz`);
        expect(ready.status).toBe(503);
        expect(await ready.text()).toContain('orders');
      } finally {
        linesBeforeRecovery = p.lines.length;
        await w.proxy.setMode('pass');
      }
      // Back to normal: the retry the daemon scheduled obtains a token, without a restart. Once the
      // token has expired the backoff is no longer capped by it and a step can be 16 s or more, so
      // await the new token and check it came with the announced retry, rather than a fixed wait.
      const isNewToken = (l: LogLine): boolean =>
        l.token === 'orders' && (l.event === 'token.refreshed' || l.event === 'token.acquired') && p.lines.indexOf(l) >= linesBeforeRecovery;
      const fresh = await p.waitFor(isNewToken, 45_000, 'a token after the IdP recovered');
      const lastFailure = p.lines
        .slice(0, p.lines.indexOf(fresh))
        .filter((l) => l.event === 'token.refresh_failed' && l.token === 'orders')
        .at(-1)!;
      // The retry fires retry_in_ms after the failure; the grant itself may take up to its 1 s timeout.
      expect(Date.parse(fresh.time as string) - Date.parse(lastFailure.time as string)).toBeLessThanOrEqual((lastFailure.retry_in_ms as number) + 3_000);
      expect((await getToken(url, 'orders')).status).toBe(200);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      expect((await p.stop()).code).toBe(0);
    },
    // The backoff step after expiry is random up to 2^attempt s (16 s at the 4th attempt).
    60_000,
  );

  it('stops retrying on invalid_grant, reports not ready, and recovers when a new refresh token is mounted', async () => {
    const seedFile = w.file('bad-seed', 'not-a-real-refresh-token\n');
    const secret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
    const { path, url } = await w.config(
      [{ name: 'inventory', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' }],
      { store: 'store:\n  type: memory\n' },
    );
    const p = w.start(path);
    const failed = await p.waitFor((l) => l.token === 'inventory' && l.level === 'error' && JSON.stringify(l).includes('invalid_grant'), 10_000, 'permanent failure');
    expect(JSON.stringify(failed)).not.toContain('not-a-real-refresh-token');

    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toMatch(/inventory[\s\S]*invalid_grant/);
    expect((await getToken(url, 'inventory')).status).toBe(503);

    // No retry loop: several reconcile ticks (1 s in this config) pass without another grant attempt.
    const attempts = w.proxy.count(TOKEN_PATH);
    await new Promise((r) => setTimeout(r, 2_500));
    expect(w.proxy.count(TOKEN_PATH)).toBe(attempts);

    // A new Secret mounted: the seed file changes and tokend picks it up without a restart.
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    writeFileSync(seedFile, seed + '\n');
    await p.waitForEvent('token.acquired', { token: 'inventory', timeoutMs: 10_000 });
    expect((await getToken(url, 'inventory')).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect((await p.stop()).code).toBe(0);
  });
});
