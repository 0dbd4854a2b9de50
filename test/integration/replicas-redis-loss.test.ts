import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until, type LogLine } from '../support/daemon.js';
import { startFleet, type Fleet } from '../support/fleet.js';

describe('replicas sharing Redis: Redis loses its data', () => {
  let f: Fleet;
  beforeAll(async () => {
    f = await startFleet();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('keeps serving while Redis is killed and restarted empty, rewrites what it holds, and never reuses a refresh token', async () => {
    await until(
      async () => (await Promise.all(f.live().map(async (r) => (await fetch(`${r.url}/readyz`).catch(() => undefined))?.status === 200))).every(Boolean),
      'all ready',
      20_000,
    );
    await f.redis.kill9();
    try {
      // Shorter than a token lifetime: replicas serve what they hold.
      await f.everyReplicaServes(1_500);
    } finally {
      await f.redis.restart();
    }
    const c = f.redis.client();
    // The data is gone; the replicas write back the refresh token they hold.
    await until(async () => (await c.exists(`${f.prefix}shared:state`).catch(() => 0)) === 1, 'refresh-token state rewritten', 15_000);
    const g0 = f.grants();
    await f.everyReplicaServes(12_000, 1);
    expect(f.grants() - g0).toBeGreaterThanOrEqual(1);
    expect(f.invalidGrants()).toBe(0);
  });

  it('survives FLUSHALL: the refresh token is restored from a replica and nothing is lost', async () => {
    await f.redis.flushall();
    const c = f.redis.client();
    await until(async () => (await c.exists(`${f.prefix}shared:state`)) === 1, 'refresh-token state rewritten after FLUSHALL', 15_000);
    const g0 = f.grants();
    await f.everyReplicaServes(12_000, 1);
    expect(f.grants() - g0).toBeGreaterThanOrEqual(1);
    expect(f.invalidGrants()).toBe(0);
    // No replica reported a lost refresh token.
    const lost: LogLine[] = f.replicas.flatMap((r) => r.proc.events('token.refresh_token_lost'));
    expect(lost).toHaveLength(0);
  });
});
