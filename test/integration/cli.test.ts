import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, scratch, freePort, TokendProcess } from '../support/daemon.js';
import { startDevIdp, type DevIdp } from '../support/idp.js';

describe('tokend command line', () => {
  let idp: DevIdp;
  const s = scratch();
  beforeAll(async () => {
    idp = await startDevIdp({ clients: [{ clientId: 'cc-client', clientSecret: 'cli-secret-3c4d' }] });
  });
  afterAll(async () => {
    await idp?.close();
    s.cleanup();
  });

  const config = (extra = '', issuer?: string): string =>
    s.file(
      `c-${Math.random().toString(36).slice(2)}.yaml`,
      `tokens:\n  orders:\n    issuer: ${issuer ?? idp.issuer}\n    clientId: cc-client\n    clientSecret: \${ORDERS_SECRET}\n    grant: client_credentials\n${extra}`,
    );

  it('prints its version and help, exiting 0', async () => {
    const v = await runCli(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const h = await runCli(['--help']);
    expect(h.code).toBe(0);
    for (const cmd of ['run', 'check', 'get']) expect(h.stdout).toContain(cmd);
  });

  it('check: validates, runs discovery and exits 0 with a summary', async () => {
    const r = await runCli(['check', '--config', config()], { env: { ORDERS_SECRET: 'cli-secret-3c4d' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('orders');
    expect(r.stdout).toContain(`${idp.issuer}/token`);
    expect(r.stdout).not.toContain('cli-secret-3c4d');
  });

  it('check: exits 1 when the IdP is unreachable', async () => {
    const port = await freePort();
    const r = await runCli(['check', '--config', config('', `http://127.0.0.1:${port}`)], { env: { ORDERS_SECRET: 'x' } });
    expect(r.code).toBe(1);
    // Named precisely: the URL tried and what happened; and "config ok" only when every check passed.
    expect(r.stdout).toMatch(/FAIL token "orders": discovery failed: GET http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration: connection refused/);
    expect(r.stdout).not.toContain('config ok');
  });

  it('run and check: exit 2 with one line per problem naming the field, and no stack trace', async () => {
    const bad = s.file('bad.yaml', 'listen: 10.0.0.1:80\ntokens:\n  orders:\n    issuer: https://idp.example.com\n    clientId: x\n    clientSecret: hunter2-secret\n    grant: password\n');
    for (const cmd of ['run', 'check']) {
      const r = await runCli([cmd, '--config', bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('tokens.orders.grant: expected one of client_credentials, refresh_token, token_exchange, jwt_bearer');
      expect(r.stderr).toContain('listen');
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stderr).not.toContain('hunter2-secret');
    }
  });

  it('run: exits 2 naming the field when a secret file is missing, and when the env var is unset', async () => {
    const missing = s.file('missing.yaml', `tokens:\n  orders:\n    issuer: ${idp.issuer}\n    clientId: cc-client\n    clientSecretFile: /nonexistent/secret\n    grant: client_credentials\n`);
    const r1 = await runCli(['run', '--config', missing]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toContain('tokens.orders.clientSecretFile');
    const r2 = await runCli(['run', '--config', config()]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('ORDERS_SECRET');
    const r3 = await runCli(['run', '--config', config()], { env: { ORDERS_SECRET: '' } });
    expect(r3.code).toBe(2);
    expect(r3.stderr).toContain('tokens.orders.clientSecret');
  });

  it('run: takes --config from TOKEND_CONFIG, --listen overrides the file, and SIGTERM stops it with exit 0 promptly', async () => {
    const port = await freePort();
    const p = new TokendProcess(['run', '--listen', `127.0.0.1:${port}`], { TOKEND_CONFIG: config(), ORDERS_SECRET: 'cli-secret-3c4d' });
    try {
      await p.waitForEvent('token.acquired', { token: 'orders' });
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(health.status).toBe(200);
      const t0 = Date.now();
      const { code } = await p.stop();
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(p.events('daemon.stopped')).toHaveLength(1);
    } finally {
      // A failed assertion above must not leave the daemon running.
      await p.kill9();
    }
  });

  it('get: exits non-zero when no sidecar answers', async () => {
    const port = await freePort();
    const r = await runCli(['get', 'orders', '--url', `http://127.0.0.1:${port}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('tokend');
  });
});
