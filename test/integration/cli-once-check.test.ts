import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runCli } from '../support/daemon.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { startWorld, type World } from '../support/world.js';

/** `tokend run --once` (issue 14 item 3) and `tokend check --online` (issue 10 item 15), through the built CLI. */
describe('tokend run --once and check --online', () => {
  let w: World;
  let redis: RedisHandle;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: 60 });
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
    await w?.close();
  });

  const ccToken = (secretValue = 'cc-secret-value-1f2e') => ({
    name: 'orders',
    clientId: 'cc-client',
    secretFile: w.file(`secret-${Math.random().toString(36).slice(2)}`, `${secretValue}\n`),
    grant: 'client_credentials' as const,
  });

  it('run --once obtains the token, writes the store, and exits 0 leaving nothing running', async () => {
    const dir = `${w.dir}/once-${Date.now()}`;
    const { path } = await w.config([ccToken()], { store: `store:\n  type: file\n  dir: ${dir}\n` });
    const r = await runCli(['run', '--once', '--config', path]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readFileSync(`${dir}/orders`, 'utf8')).toMatch(/^[\w.~+/-]+=*$/);
    expect(JSON.parse(readFileSync(`${dir}/orders.json`, 'utf8'))).toMatchObject({ token_type: 'Bearer' });
  });

  it('run --once exits 1 naming the token when the IdP does not answer within --timeout, and 2 for a bad config', async () => {
    await w.proxy.setMode('refuse', /^\/token$/);
    try {
      const { path } = await w.config([ccToken()], { store: 'store:\n  type: memory\n' });
      const r = await runCli(['run', '--once', '--timeout', '2s', '--config', path]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^tokend: orders: no token \(/m);
    } finally {
      await w.proxy.setMode('pass');
    }
    const bad = w.file('bad.yaml', 'tokens:\n  orders:\n    clientId: x\n    grant: password\n');
    const r2 = await runCli(['run', '--once', '--config', bad]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('tokens.orders.grant');
  });

  it('run --once with Redis: several concurrent runs share one grant and store the rotated refresh token', async () => {
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    const seedFile = w.file(`seed-${Date.now()}`, `${seed}\n`);
    const secret = w.file(`rt-secret-${Date.now()}`, 'rt-secret-value-9a8b\n');
    const prefix = `once${Date.now()}:`;
    const { path } = await w.config(
      [{ name: 'shared', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' }],
      { store: `store:\n  type: redis\n  url: ${redis.url}\n  prefix: "${prefix}"\n  lease: 2s\n` },
    );
    const before = w.idp.stats().grants.refresh_token ?? 0;
    const runs = await Promise.all([0, 1, 2].map(() => runCli(['run', '--once', '--config', path])));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0]);
    expect((w.idp.stats().grants.refresh_token ?? 0) - before).toBe(1);
    const state = JSON.parse((await redis.client().get(`${prefix}shared:state`)) ?? '{}') as { refresh_token?: string };
    expect(state.refresh_token).toBeDefined();
    expect(state.refresh_token).not.toBe(seed);
    expect(w.idp.stats().errors.invalid_grant ?? 0).toBe(0);
  });

  it('check --online performs one client_credentials grant and says "config ok" only when every check passed', async () => {
    const { path } = await w.config([ccToken()], { store: 'store:\n  type: memory\n' });
    const before = w.idp.stats().grants.client_credentials ?? 0;
    const ok = await runCli(['check', '--online', '--config', path]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^config ok: /);
    expect(ok.stdout).toMatch(/ok {3}token|ok +orders: client_credentials as cc-client .* grant ok/);
    expect((w.idp.stats().grants.client_credentials ?? 0) - before).toBe(1);
    expect(ok.stdout).not.toMatch(/eyJ|cc-secret-value/);
  });

  it('check --online fails on a wrong client secret and on a dead Redis, which plain check does not notice', async () => {
    const { path } = await w.config([ccToken('wrong-secret')], { store: 'store:\n  type: memory\n' });
    expect((await runCli(['check', '--config', path])).code).toBe(0);
    const wrong = await runCli(['check', '--online', '--config', path]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).not.toContain('config ok');
    expect(wrong.stdout).toMatch(/FAIL .*orders.*invalid_client/);

    const dead = await freePort();
    const { path: p2 } = await w.config([ccToken()], { store: `store:\n  type: redis\n  url: redis://127.0.0.1:${dead}/0\n` });
    const down = await runCli(['check', '--online', '--config', p2], { timeoutMs: 30_000 });
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/FAIL store redis: .*127\.0\.0\.1/);
  });

  it('check --online never presents a refresh token (it would rotate it)', async () => {
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    const { path } = await w.config(
      [{ name: 'inv', clientId: 'rt-client', secretFile: w.file(`s-${Date.now()}`, 'rt-secret-value-9a8b\n'), grant: 'refresh_token', refreshTokenFile: w.file(`seed2-${Date.now()}`, `${seed}\n`), clientAuth: 'client_secret_post' }],
      { store: 'store:\n  type: memory\n' },
    );
    const before = w.idp.stats().grants.refresh_token ?? 0;
    const r = await runCli(['check', '--online', '--config', path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('refresh token not presented');
    expect(w.idp.stats().grants.refresh_token ?? 0).toBe(before);
    expect(existsSync(path)).toBe(true);
  });
});
