import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getToken, until } from '../support/daemon.js';
import { startFleet, type Fleet } from '../support/fleet.js';

describe('replicas sharing Redis: steady state', () => {
  let f: Fleet;
  beforeAll(async () => {
    f = await startFleet();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('serves a valid token from every replica through several refresh cycles, with one grant per cycle and no invalid_grant', async () => {
    const g0 = f.grants();
    const t0 = Date.now();
    const answers = await f.everyReplicaServes(18_000);
    const elapsed = Date.now() - t0;
    const fleetGrants = f.grants() - g0;
    expect(answers).toBeGreaterThan(100);
    // A single instance: one grant per 0.65–0.75 of the lifetime. Four uncoordinated replicas would do four times that.
    const singleInstanceMax = Math.ceil(elapsed / (0.65 * f.ttlSec * 1000)) + 1;
    expect(fleetGrants).toBeGreaterThanOrEqual(Math.floor(elapsed / (0.75 * f.ttlSec * 1000)) - 1);
    expect(fleetGrants).toBeLessThanOrEqual(singleInstanceMax);
    expect(f.invalidGrants()).toBe(0);

    // Key layout: raw token with a TTL no longer than its lifetime, metadata JSON, refresh-token state.
    // One snapshot of the keys and the endpoint: a refresh may land between two reads, so read
    // again (for at most 3 s) until none did; the assertions are on that snapshot.
    const c = f.redis.client();
    const snap = await until(
      async () => {
        const raw = await c.get(`${f.prefix}shared`);
        const pttl = await c.pttl(`${f.prefix}shared`);
        const metaJson = await c.get(`${f.prefix}shared:meta`);
        const served = (await getToken(f.replicas[0]!.url, 'shared')).json();
        // A replica adopts a new commit within milliseconds (pub/sub): retry rather than race it.
        const settled = served.access_token === raw && (await c.get(`${f.prefix}shared`)) === raw;
        return settled ? { raw, pttl, metaJson, served } : undefined;
      },
      'a snapshot without a refresh in between',
      3_000,
    );
    expect(snap.raw).toBe(snap.served.access_token);
    expect(snap.pttl).toBeGreaterThan(0);
    expect(snap.pttl).toBeLessThanOrEqual(f.ttlSec * 1000);
    const meta = JSON.parse(snap.metaJson!) as Record<string, unknown>;
    expect(meta.expires_at).toBe(snap.served.expires_at);
    expect(await c.exists(`${f.prefix}shared:state`)).toBe(1);
  });
});
