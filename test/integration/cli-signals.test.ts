import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getToken } from '../support/daemon.js';
import { startWorld, type World } from '../support/world.js';

/** Signals at the process boundary (issue 10 item 10). */
describe('tokend and signals', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({ accessTokenTtlSec: 60 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it('stops within 2 s on SIGTERM while its first client_credentials grant hangs at the IdP', async () => {
    const secret = w.file('secret-hang', 'cc-secret-value-1f2e\n');
    const { path } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials', extra: { timeout: '10s' } }], {
      store: 'store:\n  type: memory\n',
    });
    await w.proxy.setMode('hang', /^\/token$/);
    try {
      const p = w.start(path);
      await p.waitForEvent('server.listening');
      const sent = Date.now();
      p.child.kill('SIGTERM');
      const { code } = await p.exited;
      // The grant's own timeout is 10 s: the stop did not wait for it.
      expect(Date.now() - sent).toBeLessThan(2_000);
      expect(code).toBe(0);
      expect(p.events('daemon.stopped')).toHaveLength(1);
    } finally {
      await w.proxy.setMode('pass');
    }
  });

  it('logs SIGHUP, re-reads its secret files and keeps serving (the default action would kill it silently)', async () => {
    const secret = w.file('secret-hup', 'cc-secret-value-1f2e\n');
    const { path, url } = await w.config([{ name: 'orders', clientId: 'cc-client', secretFile: secret, grant: 'client_credentials' }], {
      store: 'store:\n  type: memory\n',
    });
    const p = w.start(path);
    await p.waitForEvent('token.acquired', { token: 'orders' });
    p.child.kill('SIGHUP');
    await p.waitForEvent('daemon.reload');
    expect(p.child.exitCode).toBeNull();
    expect((await getToken(url, 'orders')).status).toBe(200);
    expect((await p.stop()).code).toBe(0);
  });
});
