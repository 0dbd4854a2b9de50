import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../support/world.js';
import { getToken, runCli, until } from '../support/daemon.js';

describe('tokend run against a real identity provider', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: 4 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it('obtains a client_credentials token, serves and writes it, and refreshes it before it expires', async () => {
    const secret = w.file('cc-secret', 'cc-secret-value-1f2e\n');
    const { path, url } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials', scope: 'api:read' }]);
    const p = w.start(path);
    await p.waitForEvent('token.acquired', { token: 'orders' });

    const first = await getToken(url, 'orders');
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('no-store');
    const body = first.json();
    expect(body.token_type).toBe('Bearer');
    expect(body.scope).toBe('api:read');
    expect(typeof body.access_token).toBe('string');
    expect(body.expires_in).toBeGreaterThan(0);
    expect(body.expires_in).toBeLessThanOrEqual(4);
    expect(Math.abs((body.expires_at as number) - (Date.now() / 1000 + (body.expires_in as number)))).toBeLessThan(2);

    const raw = await getToken(url, 'orders', { accept: 'text/plain' });
    expect(raw.body).toBe(body.access_token);

    // The file store: raw token for `cat`, JSON with metadata, both 0600.
    const file = `${w.tokensDir}/orders`;
    // Read the pair once inside the wait: with 4 s tokens a refresh may replace both right after.
    const meta = await until(() => {
      try {
        if (readFileSync(file, 'utf8') !== body.access_token) return undefined;
        const m = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as Record<string, unknown>;
        return m.access_token === body.access_token ? m : undefined;
      } catch {
        return undefined;
      }
    }, 'token files');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(meta.access_token).toBe(body.access_token);
    expect(meta.expires_at).toBe(body.expires_at);
    expect(statSync(`${file}.json`).mode & 0o777).toBe(0o600);

    const refreshed = await p.waitForEvent('token.refreshed', { token: 'orders', timeoutMs: 10_000 });
    // Refreshed before the first token expired, and the new one lives longer.
    expect(Date.parse(refreshed.time as string)).toBeLessThan((body.expires_at as number) * 1000);
    expect(refreshed.expires_at as number).toBeGreaterThan(body.expires_at as number);
    expect(typeof refreshed.duration_ms).toBe('number');
    const second = (await getToken(url, 'orders')).json();
    expect(second.access_token).not.toBe(body.access_token);

    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    const stopped = await p.stop();
    expect(stopped.code).toBe(0);
  });

  it('rotates refresh tokens and never reuses a consumed one across kill -9 and restart', async () => {
    const before = w.idp.stats();
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    const seedFile = w.file('rt-seed', seed + '\n');
    const secret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
    const { path, url } = await w.config([
      { name: 'inventory', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' },
    ]);

    const p1 = w.start(path);
    await p1.waitForEvent('token.refreshed', { token: 'inventory', nth: 2, timeoutMs: 15_000 });
    await p1.kill9();

    // The refresh token on disk is the newest one, not the seed (which the IdP consumed).
    const state = readFileSync(`${w.tokensDir}/.state/inventory.state.json`, 'utf8');
    expect(state).not.toContain(seed);
    expect(statSync(`${w.tokensDir}/.state/inventory.state.json`).mode & 0o077).toBe(0);

    const p2 = w.start(path);
    await p2.waitForEvent('token.refreshed', { token: 'inventory', nth: 2, timeoutMs: 15_000 });
    const res = await getToken(url, 'inventory');
    expect(res.status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);

    const after = w.idp.stats();
    // Reuse detection would have answered invalid_grant and revoked the grant.
    expect(after.errors.invalid_grant ?? 0).toBe(before.errors.invalid_grant ?? 0);
    expect((after.grants.refresh_token ?? 0) - (before.grants.refresh_token ?? 0)).toBeGreaterThanOrEqual(4);
    expect((await p2.stop()).code).toBe(0);
  });

  it('is ready at once from a stored valid token without a new grant, refreshes first for min_ttl, and prints it with tokend get', async () => {
    const w2 = await startWorld({ accessTokenTtlSec: 60 });
    try {
      const secret = w2.file('cc-secret', 'cc-secret-value-1f2e\n');
      const { path, url } = await w2.config([{ name: 'billing', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials' }]);
      const p1 = w2.start(path);
      await p1.waitForEvent('token.acquired', { token: 'billing' });
      const served = (await getToken(url, 'billing')).json();
      expect((await p1.stop()).code).toBe(0);
      const grants = w2.idp.stats().grants.client_credentials ?? 0;

      const p2 = w2.start(path);
      await p2.waitForEvent('token.loaded', { token: 'billing' });
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      expect((await getToken(url, 'billing')).json().access_token).toBe(served.access_token);
      expect(w2.idp.stats().grants.client_credentials ?? 0).toBe(grants);
      expect(p2.events('token.acquired')).toHaveLength(0);

      // ?min_ttl longer than what is left refreshes first (once: forced refreshes are rate-limited).
      const before = w2.idp.stats().grants.client_credentials ?? 0;
      const fresh = await getToken(url, 'billing', { minTtl: 3600 });
      expect(fresh.status).toBe(200);
      // (Once seen failing in CI under load: the log says why the forced refresh did not replace it.)
      const events = (): string => p2.lines.map((l) => `${String(l.event)} ${JSON.stringify(l.error ?? l.reason ?? '')}`).join('\n');
      expect(fresh.json().access_token, events()).not.toBe(served.access_token);
      expect(w2.idp.stats().grants.client_credentials ?? 0).toBe(before + 1);
      const again = await getToken(url, 'billing', { minTtl: 3600 });
      expect(again.json().access_token).toBe(fresh.json().access_token);
      expect(w2.idp.stats().grants.client_credentials ?? 0).toBe(before + 1);
      expect((await getToken(url, 'billing', { minTtl: -1 as number })).status).toBe(400);

      // `tokend get` prints the same raw token and exits 0; an unknown name exits non-zero.
      const got = await runCli(['get', 'billing', '--url', url]);
      expect(got.code).toBe(0);
      expect(got.stdout.trim()).toBe(fresh.json().access_token);
      const missing = await runCli(['get', 'nope', '--url', url]);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toContain('nope');
      await p2.stop();
    } finally {
      await w2.close();
    }
  });

  it('reports a corrupt or truncated stored token, never serves it, and replaces it with a fresh one', async () => {
    const secret = w.file('cc-secret-corrupt', 'cc-secret-value-1f2e\n');
    const dir = `${w.dir}/corrupt-tokens`;
    const { path, url } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials' }], {
      store: `store:\n  type: file\n  dir: ${dir}\n`,
    });
    mkdirSync(dir, { recursive: true });
    const future = Math.floor(Date.now() / 1000) + 3600;
    // A token that would look valid for an hour, but its JSON is cut short mid-write.
    writeFileSync(`${dir}/orders`, 'stale-token-value');
    writeFileSync(`${dir}/orders.json`, `{"access_token":"stale-token-value","token_type":"Bearer","expires_at":${future},"obtai`, { mode: 0o600 });
    const p = w.start(path);
    const corrupt = await p.waitForEvent('store.corrupt', { token: 'orders' });
    expect(String(corrupt.what)).toContain('orders.json');
    expect(JSON.stringify(corrupt)).not.toContain('stale-token-value');
    await p.waitForEvent('token.acquired', { token: 'orders' });
    const served = (await getToken(url, 'orders')).json();
    expect(served.access_token).not.toBe('stale-token-value');
    // The store renames NAME before NAME.json, so wait for the pair rather than for the first file.
    const metaOf = () => {
      try {
        return JSON.parse(readFileSync(`${dir}/orders.json`, 'utf8')) as { access_token?: string };
      } catch {
        return undefined;
      }
    };
    await until(() => readFileSync(`${dir}/orders`, 'utf8') === served.access_token && metaOf()?.access_token === served.access_token, 'both files replaced');
    expect(metaOf()?.access_token).toBe(served.access_token);
    expect((await p.stop()).code).toBe(0);
  });
});
