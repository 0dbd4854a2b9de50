import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis.js';
import type { StoredState } from '../../src/store/store.js';
import type { AccessToken } from '../../src/token.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { until } from '../support/until.js';

let redis: RedisHandle;
let stores: RedisStore[] = [];
let logLines: string[] = [];
const logger = createLogger('debug', { write: (line: string) => void logLines.push(line) });

function makeStore(holderId: string, extra: Partial<RedisStoreOptions> = {}): RedisStore {
  const store = new RedisStore({ url: redis.url, prefix: 'f:', leaseMs: 600, holderId, logger, ...extra });
  stores.push(store);
  return store;
}

function token(accessToken: string, lifetimeMs: number): AccessToken {
  const now = Date.now();
  return { accessToken, tokenType: 'Bearer', expiresAt: now + lifetimeMs, obtainedAt: now };
}

/** Runs op, expecting STORE_UNAVAILABLE; resolves to how long the rejection took (ms). */
async function failsWithin(op: () => Promise<unknown>): Promise<number> {
  const started = Date.now();
  const err = await op().then(
    () => new Error('expected STORE_UNAVAILABLE, but the call succeeded'),
    (e: unknown) => e,
  );
  if (!hasCode(err, 'STORE_UNAVAILABLE')) throw err;
  return Date.now() - started;
}

beforeEach(async () => {
  redis = await startRedis();
  stores = [];
  logLines = [];
});

afterEach(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis.stop();
});

describe('RedisStore when Redis fails', () => {
  it('fails fast while Redis is down, says so, and works again after a restart without being recreated', async () => {
    const store = makeStore('replica-a');
    await store.init();
    await store.saveAccessToken('orders', token('at-before', 60_000));
    expect(store.isAvailable()).toBe(true);

    await redis.kill9();
    await until(() => !store.isAvailable(), 'the store to notice the outage', 3_000, 20);

    const ops: Array<() => Promise<unknown>> = [
      () => store.load('orders'),
      () => store.saveAccessToken('orders', token('at-during', 60_000)),
      () => store.saveRefreshToken('orders', 'rt-during', undefined),
      () => store.withLease('orders', async () => 'never'),
      () => store.remove('orders'),
    ];
    for (const op of ops) expect(await failsWithin(op)).toBeLessThan(1_500);

    await redis.restart();
    await until(() => store.isAvailable(), 'the store to reconnect', 5_000, 20);
    // The restarted server is empty (no persistence): the data are gone, not corrupt.
    expect((await store.load('orders')).access).toBeUndefined();
    await store.saveAccessToken('orders', token('at-after', 60_000));
    expect((await store.load('orders')).access?.accessToken).toBe('at-after');
    expect(logLines.some((l) => l.includes('redis unreachable'))).toBe(true);
    expect(logLines.some((l) => l.includes('redis reachable again'))).toBe(true);
  });

  it('fails a command that a hung Redis never answers within commandTimeoutMs', async () => {
    const store = makeStore('replica-a', { commandTimeoutMs: 300 });
    await store.init();
    redis.pause();
    try {
      const took = await failsWithin(() => store.load('orders'));
      expect(took).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(1_500);
    } finally {
      redis.resume();
    }
    await until(async () => (await store.load('orders').then(() => true, () => false)), 'the store to answer again', 5_000, 20);
  });

  it('aborts the lease when renewals fail for leaseMs during an outage', async () => {
    const store = makeStore('replica-a');
    await store.init();
    const result = await store.withLease('orders', async (lease) => {
      await redis.kill9();
      const reason = await new Promise<unknown>((resolve) => lease.signal.addEventListener('abort', () => resolve(lease.signal.reason)));
      return hasCode(reason, 'LEASE_LOST');
    });
    expect(result).toEqual({ acquired: true, value: true });
  });

  it('keeps watching across a restart: a watcher resyncs on reconnect and sees later commits', async () => {
    const a = makeStore('replica-a');
    const b = makeStore('replica-b');
    await Promise.all([a.init(), b.init()]);
    const states: StoredState[] = [];
    b.watch('orders', (s) => states.push(s));
    await until(() => states.length === 1, 'the initial state', 5_000, 20);
    await a.saveAccessToken('orders', token('at-1', 60_000));
    await until(() => states.some((s) => s.access?.accessToken === 'at-1'), 'the first change', 5_000, 20);

    await redis.kill9();
    await until(() => !a.isAvailable() && !b.isAvailable(), 'both stores to notice the outage', 3_000, 20);
    const before = states.length;
    await redis.restart();
    await until(() => a.isAvailable() && b.isAvailable(), 'both stores to reconnect', 5_000, 20);
    // After reconnecting, the watcher reloads: Redis came back empty, and it is told so.
    await until(() => states.slice(before).some((s) => s.access === undefined), 'the resync after reconnect', 5_000, 20);

    await until(
      async () => {
        await a.saveAccessToken('orders', token(`at-2-${Date.now()}`, 60_000 + states.length));
        return states.some((s) => s.access?.accessToken.startsWith('at-2-'));
      },
      'a commit after the restart to reach the watcher',
      5_000,
      20,
    );
  });
});
