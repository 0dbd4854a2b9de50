import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, getToken, runCli, scratch, TokendProcess } from '../support/daemon.js';
import { startDevIdp, type DevIdp } from '../support/idp.js';
import { startRedis, type RedisHandle } from '../support/redis.js';

// The image ships `npm run bundle`'s output (scripts/bundle.mjs) and no node_modules. This runs
// that output from a directory with no node_modules above it, so a dependency the bundle failed to
// include cannot be found by accident: both grants, rotation, the Redis store (loaded on demand,
// with ioredis), the endpoint, metrics, `check` and `--version`.
const ROOT = resolve(import.meta.dirname, '../..');
const REPORT_PRELOAD = pathToFileURL(resolve(import.meta.dirname, '../support/module-report.mjs')).href;
const CC_SECRET = 'bundle-cc-secret-40d1';
const RT_SECRET = 'bundle-rt-secret-9e77';

/** Every directory from dir up to the root that holds a node_modules. */
function nodeModulesAbove(dir: string): string[] {
  const found: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules'))) found.push(d);
    if (dirname(d) === d) return found;
  }
}

describe('the bundle the image ships (npm run bundle)', () => {
  let out: string;
  let cli: string;
  let idp: DevIdp;
  let redis: RedisHandle;
  const s = scratch('tokend-bundle-run-');

  beforeAll(async () => {
    out = mkdtempSync(join(tmpdir(), 'tokend-bundle-'));
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/bundle.mjs'), out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    cli = join(out, 'dist/cli.js');
    [idp, redis] = await Promise.all([
      startDevIdp({
        clients: [
          { clientId: 'cc-client', clientSecret: CC_SECRET },
          { clientId: 'rt-client', clientSecret: RT_SECRET, tokenEndpointAuthMethod: 'client_secret_post' },
        ],
        accessTokenTtlSec: 3,
      }),
      startRedis(),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([idp?.close(), redis?.stop()]);
    rmSync(out, { recursive: true, force: true });
    s.cleanup();
  });

  it('is self-contained: node builtins only, and nothing to resolve from a node_modules', () => {
    expect(nodeModulesAbove(out)).toEqual([]);
    expect(JSON.parse(readFileSync(join(out, 'package.json'), 'utf8'))).toMatchObject({ type: 'module', version: JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version });
    expect(readdirSync(out).sort()).toEqual(['dist', 'package.json']);
    const v = spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8' });
    expect(v.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });

  it('is ASCII only: V8 keeps a module with one non-ASCII character as two bytes per character', () => {
    const files = readdirSync(join(out, 'dist')).filter((f) => f.endsWith('.js'));
    expect(files.length).toBeGreaterThan(1);
    const nonAscii = files.filter((f) => /[^\x00-\x7f]/.test(readFileSync(join(out, 'dist', f), 'utf8')));
    expect(nonAscii).toEqual([]);
  });

  it('runs both grants with rotation on the Redis store, serves them, and passes `check`', async () => {
    const seed = await idp.mintRefreshToken('rt-client', 'openid offline_access');
    const config = s.file(
      'tokend.yaml',
      [
        'store:',
        '  type: redis',
        `  url: ${redis.url}`,
        '  prefix: "bundle:"',
        'tokens:',
        '  orders:',
        `    issuer: ${idp.issuer}`,
        '    clientId: cc-client',
        `    clientSecretFile: ${s.file('cc-secret', `${CC_SECRET}\n`)}`,
        '    grant: client_credentials',
        '  inventory:',
        `    issuer: ${idp.issuer}`,
        '    clientId: rt-client',
        `    clientSecretFile: ${s.file('rt-secret', `${RT_SECRET}\n`)}`,
        '    clientAuth: client_secret_post',
        '    grant: refresh_token',
        `    refreshTokenFile: ${s.file('seed', `${seed}\n`)}`,
        '',
      ].join('\n'),
    );
    // Asynchronously: the IdP answers from this process.
    const check = await runCli(['check', '--config', config], { cli });
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('config ok');

    const port = await freePort();
    const report = join(s.dir, 'modules.json');
    const p = new TokendProcess(['run', '--config', config, '--listen', `127.0.0.1:${port}`], { NODE_OPTIONS: `--import ${REPORT_PRELOAD}`, TOKEND_TEST_MODULE_REPORT: report }, cli);
    try {
      await p.waitForEvent('token.acquired', { token: 'orders' });
      await p.waitForEvent('token.acquired', { token: 'inventory' });
      // 3 s tokens: the refresh token is presented and rotated within seconds.
      await p.waitForEvent('token.refreshed', { token: 'inventory', timeoutMs: 15_000 });
      const url = `http://127.0.0.1:${port}`;
      for (const name of ['orders', 'inventory']) {
        const res = await getToken(url, name);
        expect(res.status, name).toBe(200);
        expect(typeof res.json().access_token).toBe('string');
      }
      expect(await (await fetch(`${url}/metrics`)).text()).toContain('tokend_token_ready{token="inventory"} 1');
      // The rotated chain is in Redis (the store module and ioredis came from the bundle).
      expect(await redis.client().exists('bundle:inventory:state')).toBe(1);
    } finally {
      expect((await p.stop()).code).toBe(0);
    }
    expect(p.stderr).toBe('');
    const loaded = JSON.parse(readFileSync(report, 'utf8')) as string[];
    expect(loaded.filter((m) => m.includes('undici'))).toEqual([]);
    expect(idp.stats().errors.invalid_grant ?? 0).toBe(0);
  });
});
