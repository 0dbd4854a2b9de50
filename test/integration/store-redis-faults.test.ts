import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis/store.js';
import type { StoredState, StoreUpdate } from '../../src/store/store.js';
import { sha256Hex } from '../../src/util/hash.js';
import { startTcpFaultProxy, type CutPoint } from '../support/fault-proxy.js';
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

async function commit(store: RedisStore, name: string, update: StoreUpdate): Promise<void> {
  const out = await store.withLease(name, (lease) => store.commit(lease, update));
  if (!out.acquired) throw new Error('lease not acquired');
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
    await commit(store, 'orders', { access: token('at-before', 60_000) });
    expect(store.isAvailable()).toBe(true);

    await redis.kill9();
    await until(() => !store.isAvailable(), 'the store to notice the outage', 3_000, 20);

    const ops: Array<() => Promise<unknown>> = [
      () => store.load('orders'),
      () => store.writeBack('orders', new Set(), { access: token('at-during', 60_000) }),
      () => store.writeBack('orders', new Set(), { refreshToken: 'rt-during' }),
      () => store.withLease('orders', async () => 'never'),
      () => store.remove('orders'),
    ];
    for (const op of ops) expect(await failsWithin(op)).toBeLessThan(1_500);

    await redis.restart();
    await until(() => store.isAvailable(), 'the store to reconnect', 5_000, 20);
    // The restarted server is empty (no persistence): the data are gone, not corrupt.
    expect((await store.load('orders')).access).toBeUndefined();
    await commit(store, 'orders', { access: token('at-after', 60_000) });
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
    await commit(a, 'orders', { access: token('at-1', 60_000) });
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
        await commit(a, 'orders', { access: token(`at-2-${Date.now()}`, 60_000 + states.length) });
        return states.some((s) => s.access?.accessToken.startsWith('at-2-'));
      },
      'a commit after the restart to reach the watcher',
      5_000,
      20,
    );
  });
});

describe('a lease request tokend gave up on (issue 9.8)', () => {
  it('is released once the frozen Redis resumes, instead of blocking other replicas for the lease length', async () => {
    // A long lease, so that a request left standing would block far longer than the wait below.
    const a = makeStore('replica-a', { commandTimeoutMs: 200, leaseMs: 20_000 });
    const b = makeStore('replica-b', { leaseMs: 20_000 });
    await Promise.all([a.init(), b.init()]);
    redis.pause();
    let ran = false;
    try {
      // Sent to a frozen Redis: it times out on the client, but Redis will run it when it resumes.
      const err = await a.withLease('orders', async () => {
        ran = true;
      }).catch((e: unknown) => e);
      expect(hasCode(err, 'STORE_UNAVAILABLE')).toBe(true);
    } finally {
      redis.resume();
    }
    expect(ran).toBe(false);
    await until(async () => (await b.withLease('orders', async () => true)).acquired, 'replica B to get the lease', 3_000, 50);
  });
});

describe('a commit whose reply is lost, or that never ran (issue 9.1, the store side)', () => {
  for (const point of ['after-forward', 'before-forward'] as const satisfies readonly CutPoint[]) {
    it(`rejects STORE_UNAVAILABLE when cut ${point}, and the write-back lands exactly once`, async () => {
      const proxy = await startTcpFaultProxy(redis.port);
      try {
        const a = makeStore('replica-a', { url: proxy.url() });
        await a.init();
        const admin = redis.client();
        await commit(a, 'orders', { access: token('at-1', 60_000), refreshToken: 'rt-1-consumed' });
        const update = { access: token('at-2', 120_000), refreshToken: 'rt-2-rotated' };

        const cut = proxy.cutNext((chunk) => chunk.includes('rt-2-rotated'), point);
        const out = await a.withLease('orders', async (lease) => {
          await a.recordIntent(lease, sha256Hex('rt-1-consumed'));
          return a.commit(lease, update).then(() => 'committed', (e: unknown) => e);
        });
        await cut;
        expect(out.acquired && hasCode(out.value, 'STORE_UNAVAILABLE')).toBe(true);
        const raw = JSON.parse((await admin.get('f:orders:state')) ?? '{}') as { refresh_token?: string; intent?: unknown };
        if (point === 'after-forward') expect(raw).toMatchObject({ refresh_token: 'rt-2-rotated' });
        else expect(raw).toMatchObject({ refresh_token: 'rt-1-consumed', intent: { presented: sha256Hex('rt-1-consumed') } });

        await until(() => a.isAvailable(), 'the store to reconnect', 5_000, 20);
        const consumed = new Set([sha256Hex('rt-1-consumed')]);
        expect(await a.writeBack('orders', consumed, update)).toBe(point === 'after-forward' ? 'already' : 'written');
        expect(await a.writeBack('orders', consumed, update)).toBe('already');
        const stored = await a.load('orders');
        expect([stored.refreshToken, stored.access?.accessToken, stored.intent]).toEqual(['rt-2-rotated', 'at-2', undefined]);
        expect(proxy.cuts()).toBe(1);
      } finally {
        await proxy.close();
      }
    });
  }
});

describe('credentials refused after start-up (issue 10.13)', () => {
  it('reports STORE_AUTH_FAILED, not "not connected", once Redis refuses the password on reconnect', async () => {
    const admin = redis.client();
    await admin.call('ACL', 'SETUSER', 'tokend', 'on', '>first-pass-111', '~*', '&*', '+@all');
    const store = makeStore('replica-a', { url: `redis://tokend:first-pass-111@127.0.0.1:${redis.port}/0` });
    await store.init();
    await commit(store, 'orders', { refreshToken: 'rt-1' });
    // The password is rotated in Redis but not in tokend's config, and the connection drops.
    await admin.call('ACL', 'SETUSER', 'tokend', 'resetpass', '>second-pass-222');
    await admin.call('CLIENT', 'KILL', 'USER', 'tokend');
    const err = await until(
      async () => {
        const e = await store.load('orders').then(() => undefined, (x: unknown) => x);
        return hasCode(e, 'STORE_AUTH_FAILED') ? e : undefined;
      },
      'the load to fail with STORE_AUTH_FAILED',
      5_000,
      20,
    );
    expect((err as Error).message).toContain('user "tokend"');
    expect((err as Error).message).not.toMatch(/first-pass|second-pass/);
    expect(logLines.join('\n')).not.toMatch(/first-pass|second-pass/);
  });
});
