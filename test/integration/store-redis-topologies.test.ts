import { afterAll, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { RedisStore } from '../../src/store/redis/store.js';
import type { StoredState } from '../../src/store/store.js';
import type { AccessToken } from '../../src/token.js';
import { startRedis, startSentinel } from '../support/redis.js';
import { until } from '../support/until.js';

const logger = createLogger('warn', { write: () => undefined });
const cleanups: Array<() => Promise<void>> = [];

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function token(accessToken: string, lifetimeMs: number): AccessToken {
  const now = Date.now();
  return { accessToken, tokenType: 'Bearer', expiresAt: now + lifetimeMs, obtainedAt: now };
}

/** Lease, fenced commit, watch and read-back: the store protocol's shared parts, once per topology. */
async function exercise(a: RedisStore, b: RedisStore): Promise<void> {
  await Promise.all([a.init(), b.init()]);
  const seen: StoredState[] = [];
  b.watch('orders', (s) => seen.push(s));
  await until(() => seen.length >= 1, 'the watcher to start', 5_000, 20);

  const outcome = await a.withLease('orders', async (lease) => {
    const other = await b.withLease('orders', async () => 'stolen');
    await a.commit(lease, { access: token('at-topology', 60_000), refreshToken: 'rt-topology' });
    return other.acquired;
  });
  expect(outcome).toEqual({ acquired: true, value: false });
  await until(() => seen.some((s) => s.access?.accessToken === 'at-topology'), 'the commit to reach the other replica', 5_000, 20);
  const loaded = await b.load('orders');
  expect(loaded.refreshToken).toBe('rt-topology');
}

describe('RedisStore topologies (through ioredis)', () => {
  it('works against Redis Cluster when the prefix holds a hash tag', async () => {
    const node = await startRedis({ cluster: true });
    cleanups.push(() => node.stop());
    const make = (holderId: string) =>
      new RedisStore({ cluster: [{ host: '127.0.0.1', port: node.port }], prefix: '{tokend}:', leaseMs: 1_000, holderId, logger });
    const a = make('replica-a');
    const b = make('replica-b');
    cleanups.push(() => a.close(), () => b.close());
    await exercise(a, b);
    expect(await node.client().get('{tokend}:orders')).toBe('at-topology');
  });

  it('finds the master through Redis Sentinel', async () => {
    const master = await startRedis();
    cleanups.push(() => master.stop());
    const sentinel = await startSentinel(master);
    cleanups.push(() => sentinel.stop());
    const make = (holderId: string) =>
      new RedisStore({
        sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
        sentinelName: sentinel.name,
        prefix: 'tokend:',
        leaseMs: 1_000,
        holderId,
        logger,
      });
    const a = make('replica-a');
    const b = make('replica-b');
    cleanups.push(() => a.close(), () => b.close());
    await exercise(a, b);
    expect(await master.client().get('tokend:orders')).toBe('at-topology');
  });

  it('names a Sentinel that is unreachable in the init error', async () => {
    const store = new RedisStore({
      sentinels: [{ host: '127.0.0.1', port: 1 }],
      sentinelName: 'mymaster',
      prefix: 'tokend:',
      leaseMs: 1_000,
      logger,
      initTimeoutMs: 300,
    });
    cleanups.push(() => store.close());
    const err = await store.init().catch((e: unknown) => e);
    expect(hasCode(err, 'STORE_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toContain('sentinel "mymaster" via 127.0.0.1:1');
  });
});
