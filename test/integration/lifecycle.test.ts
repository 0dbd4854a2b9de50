import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../support/world.js';
import { generateClientKey } from '../support/idp.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { freePort, getToken, runCli, until, TokendProcess } from '../support/daemon.js';

const API = 'https://api.local';

/** Presents a refresh token straight to the IdP's token endpoint (as any client could), returning the OAuth error if refused. */
async function tryRefresh(w: World, refreshToken: string): Promise<string | undefined> {
  const res = await fetch(`${w.proxy.url}/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'rt-client', client_secret: 'rt-secret-value-9a8b' }),
  });
  if (res.ok) return undefined;
  return ((await res.json()) as { error?: string }).error;
}

describe('the rest of the token lifecycle: verify, revoke, private_key_jwt', () => {
  const key = generateClientKey('ES256', 'k1');
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      accessTokenTtlSec: 30,
      clients: [{ clientId: 'pkjwt-client', tokenEndpointAuthMethod: 'private_key_jwt', jwks: { keys: [key.publicJwk] }, scope: 'api:read' }],
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  it('verifies incoming tokens on POST /v1/verify and with `tokend verify`, never echoing the token', async () => {
    const secret = w.file('cc-secret', 'cc-secret-value-1f2e\n');
    const { path, url } = await w.config([{ name: 'api', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials', extra: { resource: API } }], {
      top: `verify:\n  issuers:\n    - issuer: ${w.proxy.url}\n      audience: [${API}]\n      requiredClaims: [client_id]\n`,
    });
    const p = w.start(path);
    await p.waitForEvent('token.acquired', { token: 'api' });
    const token = (await getToken(url, 'api')).json().access_token as string;
    expect(token.split('.')).toHaveLength(3);

    const verify = (bearer: string, headers: Record<string, string> = { 'Tokend-Request': '1' }) =>
      fetch(`${url}/v1/verify`, { method: 'POST', headers: { ...headers, Authorization: `Bearer ${bearer}` } });
    const ok = await verify(token);
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { active: boolean; issuer: string; claims: Record<string, unknown> };
    expect(body).toMatchObject({ active: true, issuer: w.proxy.url, claims: { aud: API, client_id: 'cc-client' } });

    const [h, pl, sig] = token.split('.') as [string, string, string];
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(pl, 'base64url').toString()), client_id: 'evil' })).toString('base64url')}.${sig}`;
    const bad = await verify(tampered);
    expect(bad.status).toBe(401);
    const badText = await bad.text();
    expect(JSON.parse(badText)).toEqual({ error: 'invalid_token', reason: 'signature' });
    expect(badText).not.toContain(pl);
    expect((await verify('garbage')).status).toBe(401);
    expect((await verify(token, {})).status).toBe(403);

    const cli = await runCli(['verify', '--config', path], { input: token });
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ active: true });
    const cliBad = await runCli(['verify', '--config', path], { input: tampered });
    expect(cliBad.code).toBe(1);
    expect(JSON.parse(cliBad.stdout)).toMatchObject({ active: false, reason: 'signature' });
    expect(cliBad.stdout + cliBad.stderr).not.toContain(pl);
    expect((await p.stop()).code).toBe(0);
  });

  it('authenticates with private_key_jwt from a mounted key file, and fails clearly with a wrong key', async () => {
    const keyFile = w.file('client-key.pem', key.privatePem);
    const { path, url } = await w.config([{ name: 'signed', clientId: 'pkjwt-client', grant: 'client_credentials', clientAuth: 'private_key_jwt', privateKeyFile: keyFile, scope: 'api:read' }], {
      store: 'store:\n  type: memory\n',
    });
    const p = w.start(path);
    await p.waitForEvent('token.acquired', { token: 'signed' });
    expect((await getToken(url, 'signed')).status).toBe(200);
    await p.stop();

    const wrong = generateClientKey('ES256', 'k1');
    writeFileSync(keyFile, wrong.privatePem);
    const p2 = w.start(path);
    const failed = await p2.waitForEvent('token.refresh_failed', { token: 'signed' });
    expect(failed).toMatchObject({ permanent: true, error: { code: 'GRANT_PERMANENT', oauth_error: 'invalid_client' } });
    expect(p2.output).not.toContain('PRIVATE KEY');
    // The key file is re-read when it changes: the right key mounted again recovers without a restart.
    writeFileSync(keyFile, key.privatePem);
    await p2.waitForEvent('token.acquired', { token: 'signed', timeoutMs: 10_000 });
    expect((await getToken(url, 'signed')).status).toBe(200);
    await p2.stop();
  });

  it('`tokend revoke` beside a running daemon revokes at the IdP, removes the stored copies, and the daemon never presents it again', async () => {
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    const seedFile = w.file('revoke-seed', seed + '\n');
    const secret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
    const dir = `${w.dir}/revoke-tokens`;
    const { path, url } = await w.config(
      [{ name: 'inv', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' }],
      { store: `store:\n  type: file\n  dir: ${dir}\n` },
    );
    const p = w.start(path);
    await p.waitForEvent('token.acquired', { token: 'inv' });
    const stateFile = `${dir}/.state/inv.state.json`;
    const rt = await until(() => {
      try {
        return (JSON.parse(readFileSync(stateFile, 'utf8')) as { refresh_token?: string }).refresh_token;
      } catch {
        return undefined;
      }
    }, 'state file');
    const invalidBefore = w.idp.stats().errors.invalid_grant ?? 0;

    const r = await runCli(['revoke', 'inv', '--config', path]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('refresh token revoked');
    expect(r.stdout).not.toContain(rt);
    for (const f of [`${dir}/inv`, `${dir}/inv.json`]) expect(existsSync(f)).toBe(false);
    // The state file keeps a tombstone, without the refresh token.
    const tombstone = readFileSync(stateFile, 'utf8');
    expect(tombstone).not.toContain(rt);
    expect(JSON.parse(tombstone)).toMatchObject({ revoked: true });

    // The running daemon notices at its next reconcile tick and stops serving the revoked token.
    await p.waitForEvent('token.revoked', { token: 'inv', timeoutMs: 10_000 });
    expect((await getToken(url, 'inv')).status).toBe(503);
    expect(await (await fetch(`${url}/readyz`)).text()).toContain('revoked');
    // Past the token's refresh time (30 s tokens refresh after ~21 s: force one with min_ttl), nothing is presented.
    expect((await getToken(url, 'inv', { minTtl: 3600 })).status).toBe(503);
    expect(w.idp.stats().errors.invalid_grant ?? 0).toBe(invalidBefore);
    expect((await p.stop()).code).toBe(0);
    expect(await tryRefresh(w, rt)).toBe('invalid_grant');
  });

  it('revokeOnShutdown: SIGTERM revokes the refresh token and removes the stored copies', async () => {
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    const seedFile = w.file('shutdown-seed', seed + '\n');
    const secret = w.file('rt-secret2', 'rt-secret-value-9a8b\n');
    const dir = `${w.dir}/shutdown-tokens`;
    const { path, url } = await w.config(
      [
        {
          name: 'inv',
          clientId: 'rt-client',
          secretFile: secret,
          grant: 'refresh_token',
          refreshTokenFile: seedFile,
          clientAuth: 'client_secret_post',
          extra: { revokeOnShutdown: true },
        },
      ],
      { store: `store:\n  type: file\n  dir: ${dir}\n` },
    );
    const p = w.start(path);
    await p.waitForEvent('token.acquired', { token: 'inv' });
    const rt = await until(() => {
      try {
        return (JSON.parse(readFileSync(`${dir}/.state/inv.state.json`, 'utf8')) as { refresh_token: string }).refresh_token;
      } catch {
        return undefined;
      }
    }, 'state file');
    const revocations = w.idp.stats().revocations;
    expect((await p.stop()).code).toBe(0);
    expect(w.idp.stats().revocations).toBeGreaterThan(revocations);
    expect(readFileSync(`${dir}/.state/inv.state.json`, 'utf8')).not.toContain(rt);
    // A restart with the same (consumed) seed is refused with a clear reason, without asking the IdP.
    const p2 = w.start(path);
    await p2.waitFor((l) => l.token === 'inv' && l.event === 'token.revoked', 10_000, 'token.revoked at start');
    expect(await (await fetch(`${url}/readyz`)).text()).toContain('revoked');
    await p2.stop();
    expect(await tryRefresh(w, rt)).toBe('invalid_grant');
  });

  it('serves Prometheus metrics on metricsListen without the header, and no token there', async () => {
    const secret = w.file('cc-secret-m', 'cc-secret-value-1f2e\n');
    const metricsPort = await freePort();
    const { path, url } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials' }], {
      store: 'store:\n  type: memory\n',
      top: `metricsListen: 127.0.0.1:${metricsPort}`,
    });
    const p = w.start(path);
    await p.waitForEvent('token.acquired', { token: 'orders' });
    const m = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(m.status).toBe(200);
    const text = await m.text();
    expect(text).toMatch(/tokend_token_ready\{token="orders"\} 1/);
    expect(text).toMatch(/tokend_refresh_total\{token="orders",result="success"\} 1/);
    const token = (await getToken(url, 'orders')).json().access_token as string;
    expect(text).not.toContain(token);
    const t = await fetch(`http://127.0.0.1:${metricsPort}/v1/token/orders`, { headers: { 'Tokend-Request': '1' } });
    expect(t.status).toBe(404);
    expect(await t.text()).not.toContain(token);
    await p.stop();
  });
});

describe('revocation with replicas sharing Redis', () => {
  let w: World;
  let redis: RedisHandle;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: 6 });
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
    await w?.close();
  });

  it('no replica uses a revoked refresh token again; a new seed brings them back', async () => {
    const seed = await w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    const seedFile = w.file('fleet-seed', seed + '\n');
    const secret = w.file('rt-secret', 'rt-secret-value-9a8b\n');
    const { path } = await w.config(
      [{ name: 'shared', clientId: 'rt-client', secretFile: secret, grant: 'refresh_token', refreshTokenFile: seedFile, clientAuth: 'client_secret_post' }],
      { store: `store:\n  type: redis\n  url: ${redis.url}\n  prefix: "rv:"\n  lease: 1s\n` },
    );
    const urls: string[] = [];
    const procs: TokendProcess[] = [];
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      urls.push(`http://127.0.0.1:${port}`);
      procs.push(new TokendProcess(['run', '--config', path, '--listen', `127.0.0.1:${port}`]));
    }
    try {
      await Promise.all(procs.map((p) => p.waitFor((l) => l.event === 'token.acquired' || l.event === 'token.loaded', 20_000)));
      const invalidBefore = w.idp.stats().errors.invalid_grant ?? 0;
      const r = await runCli(['revoke', 'shared', '--config', path]);
      expect(r.code).toBe(0);
      // Every replica hears of it and stops serving the revoked chain.
      await Promise.all(procs.map((p) => p.waitForEvent('token.revoked', { token: 'shared' })));
      for (const u of urls) {
        expect((await getToken(u, 'shared')).status).toBe(503);
        expect(await (await fetch(`${u}/readyz`)).text()).toContain('revoked');
      }
      // Past the old token's refresh time, nobody has presented the revoked refresh token.
      const tombstone = JSON.parse((await redis.client().get('rv:shared:state'))!) as Record<string, unknown>;
      expect(tombstone.revoked).toBe(true);
      expect(tombstone.refresh_token).toBeUndefined();
      await new Promise((res) => setTimeout(res, 6_000));
      expect(w.idp.stats().errors.invalid_grant ?? 0).toBe(invalidBefore);

      // A new Secret: both replicas pick it up (one grant), and serve again.
      const grants = w.idp.stats().grants.refresh_token ?? 0;
      writeFileSync(seedFile, (await w.idp.mintRefreshToken('rt-client', 'openid offline_access')) + '\n');
      await until(async () => (await Promise.all(urls.map(async (u) => (await getToken(u, 'shared')).status === 200))).every(Boolean), 'replicas serving again', 20_000, 100);
      expect((w.idp.stats().grants.refresh_token ?? 0) - grants).toBeLessThanOrEqual(2);
      expect(w.idp.stats().errors.invalid_grant ?? 0).toBe(invalidBefore);
    } finally {
      await Promise.all(procs.map((p) => p.kill9()));
    }
  });
});
