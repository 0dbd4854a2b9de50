import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../support/world.js';
import { getToken } from '../support/daemon.js';
import type { FaultMode } from '../support/fault-proxy.js';
import { FakeClock } from '../support/fake-clock.js';
import { InProcessTokend } from '../support/inprocess.js';

const TOKEN_PATH = /^\/token$/;
const SECOND = 1_000;

/**
 * The daemon in this process with an injected clock, against the real IdP behind a fault proxy:
 * token lifetimes pass when the test advances the clock, not in real time.
 */
describe('tokend when the identity provider fails', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: 60 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it.each<FaultMode>(['status500', 'hang', 'refuse'])(
    'answers 503, never an expired token, while the token endpoint fails (%s), and recovers within seconds of the IdP coming back',
    async (mode) => {
      const secret = w.file(`secret-${mode}`, 'cc-secret-value-1f2e\n');
      const { path } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials' }], {
        store: 'store:\n  type: memory\n',
        port: 0,
      });
      const clock = new FakeClock(Date.now());
      const t = await InProcessTokend.start(path, { clock, random: () => 0.5 });
      try {
        await t.daemon.started;
        const first = await getToken(t.url, 'orders');
        expect(first.status).toBe(200);
        await w.proxy.setMode(mode, TOKEN_PATH);

        // Across the token's life and past its expiry, every 200 carries a token that is still valid.
        let saw503: Response | undefined;
        let served = 0;
        for (let s = 0; s < 70 && !saw503; s++) {
          await clock.advance(SECOND);
          const res = await getToken(t.url, 'orders');
          if (res.status === 200) {
            served++;
            expect(res.json().expires_in as number).toBeGreaterThan(0);
            expect(res.json().expires_in as number).toBeLessThanOrEqual(60 - s);
          } else {
            expect(res.status).toBe(503);
            expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
            expect(res.json().error).toBe('token_unavailable');
            expect(JSON.stringify(res.json())).not.toMatch(/eyJ|access_token/);
            saw503 = res as unknown as Response;
          }
        }
        expect(saw503).toBeDefined();
        // The held token keeps being served through the outage, up to its last usable second.
        expect(served).toBeGreaterThan(50);
        const failed = await t.waitForEvent('token.refresh_failed', { token: 'orders' });
        expect(typeof failed.attempt).toBe('number');
        expect(typeof failed.retry_in_ms).toBe('number');
        await t.waitForEvent('token.expired', { token: 'orders' });
        const ready = await fetch(`${t.url}/readyz`);
        expect(ready.status).toBe(503);
        expect(await ready.text()).toContain('orders');

        // Without a valid token, retries come at most 5 s apart: the IdP's return is followed closely.
        const failures = t.lines.filter((l) => l.event === 'token.refresh_failed' && l.token === 'orders');
        expect(failures.at(-1)!.retry_in_ms as number).toBeLessThanOrEqual(5 * SECOND);
      } finally {
        await w.proxy.setMode('pass');
      }
      const mark = t.lines.length;
      await clock.advance(5 * SECOND);
      await t.waitForEvent('token.refreshed', { token: 'orders', from: mark });
      expect((await getToken(t.url, 'orders')).status).toBe(200);
      expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
      await t.stop();
    },
  );

  it('stops retrying on invalid_grant, reports not ready, and recovers when a new refresh token is mounted', async () => {
    const seedFile = w.file('bad-seed', 'not-a-real-refresh-token\n');
    const secret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
    const { path } = await w.config(
      [{ name: 'inventory', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' }],
      { store: 'store:\n  type: memory\n', port: 0 },
    );
    const clock = new FakeClock(Date.now());
    const t = await InProcessTokend.start(path, { clock });
    try {
      const failed = await t.waitFor((l) => l.token === 'inventory' && l.level === 'error' && JSON.stringify(l).includes('invalid_grant'), 10_000, 'permanent failure');
      expect(JSON.stringify(failed)).not.toContain('not-a-real-refresh-token');
      const ready = await fetch(`${t.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toMatch(/inventory[\s\S]*invalid_grant/);
      expect((await getToken(t.url, 'inventory')).status).toBe(503);

      // No retry loop: a day of clock time passes without another grant attempt.
      const attempts = w.proxy.count(TOKEN_PATH);
      await clock.advance(86_400 * SECOND);
      expect(w.proxy.count(TOKEN_PATH)).toBe(attempts);

      // A new Secret mounted: the seed file changes and tokend picks it up (inotify) without a restart.
      const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
      writeFileSync(seedFile, seed + '\n');
      await t.waitForEvent('token.acquired', { token: 'inventory' });
      expect((await getToken(t.url, 'inventory')).status).toBe(200);
      expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    } finally {
      await t.stop();
    }
  });
});
