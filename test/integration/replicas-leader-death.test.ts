import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../support/daemon.js';
import { startFleet, type Fleet, type Replica } from '../support/fleet.js';

/**
 * The replica holding the lease dies (kill -9) after recording that it presents the refresh token
 * and before storing the result. The others cannot know whether the IdP rotated (the request may
 * have reached it): they never present that refresh token, say so at error level, keep serving
 * what they hold until it expires, and carry on with the next seed an operator mounts.
 */
describe('replicas sharing Redis: the lease holder dies mid-grant', () => {
  let f: Fleet;
  beforeAll(async () => {
    f = await startFleet();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('never presents the dead holder\'s refresh token, reports it at error level, and recovers with a new seed', async () => {
    // Hold the token endpoint: the next grant hangs there, its lease held and its intent recorded.
    await f.w.proxy.setMode('hang', /^\/token$/);
    const held = f.w.proxy.count(/^\/token$/);
    let leader: Replica | undefined;
    try {
      await until(() => f.w.proxy.count(/^\/token$/) > held, 'a grant hanging at the IdP', 20_000, 20);
      // The hanging grant's replica is the one that took the lease last.
      const lastLease = (r: Replica): string => String(r.proc.events('lease.acquired').at(-1)?.time ?? '');
      leader = f.live().reduce((a, b) => (lastLease(b) > lastLease(a) ? b : a));
      await leader.proc.kill9();
    } finally {
      await f.w.proxy.setMode('pass');
    }
    const presentedBefore = f.grants() + f.invalidGrants();
    expect(f.live()).toHaveLength(3);

    // The survivors wait for the dead holder's write-back, then give up on that refresh token.
    await until(() => f.live().some((r) => r.proc.events('token.refresh_token_lost').length > 0), 'a survivor reporting the lost refresh token', 30_000);
    const lost = f.live().flatMap((r) => r.proc.events('token.refresh_token_lost'));
    expect(lost[0]).toMatchObject({ level: 'error', token: 'shared' });
    // Nothing was presented to the IdP since: no grant, no reuse.
    expect(f.grants() + f.invalidGrants()).toBe(presentedBefore);

    // An operator mounts a new seed: the fleet starts a new chain, one grant, and everyone is ready.
    const seed = await f.w.idp.mintRefreshToken('rt-client', 'openid offline_access');
    writeFileSync(f.seedFile, seed + '\n');
    await f.allReady(30_000);
    await f.everyReplicaServes(3_000);
    expect(f.invalidGrants()).toBe(0);
  }, 90_000);
});
