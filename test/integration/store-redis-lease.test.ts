import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis/store.js';
import type { Lease, StoredState } from '../../src/store/store.js';
import type { AccessToken } from '../../src/token.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { until } from '../support/until.js';

const LEASE_MS = 600;

let redis: RedisHandle;
let admin: Redis;
const stores: RedisStore[] = [];
let prefix = '';
let seq = 0;
let logLines: string[] = [];
const logger = createLogger('info', { write: (line: string) => void logLines.push(line) });

function logged(event: string): Array<Record<string, unknown>> {
  return logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === event);
}

function makeStore(holderId: string, extra: Partial<RedisStoreOptions> = {}): RedisStore {
  const store = new RedisStore({ url: redis.url, prefix, leaseMs: LEASE_MS, holderId, logger, ...extra });
  stores.push(store);
  return store;
}

async function pair(): Promise<[RedisStore, RedisStore]> {
  const a = makeStore('replica-a');
  const b = makeStore('replica-b');
  await Promise.all([a.init(), b.init()]);
  return [a, b];
}

function token(accessToken: string, lifetimeMs: number, now = Date.now()): AccessToken {
  return { accessToken, tokenType: 'Bearer', expiresAt: now + lifetimeMs, obtainedAt: now };
}

async function commitAs(store: RedisStore, name: string, access: AccessToken): Promise<void> {
  await store.withLease(name, (lease) => store.commit(lease, { access }));
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function aborted(signal: AbortSignal): Promise<unknown> {
  return signal.aborted
    ? Promise.resolve(signal.reason)
    : new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
}

beforeAll(async () => {
  redis = await startRedis();
  admin = redis.client();
});

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await redis.stop();
});

beforeEach(() => {
  prefix = `l${++seq}:`;
  logLines = [];
});

describe('refresh lease', () => {
  it('has one holder at a time; the other learns how long it still holds it, then takes it after release', async () => {
    const [a, b] = await pair();
    let bRan = false;
    const outer = await a.withLease('orders', async (lease) => {
      // The holder id and a nonce of this attempt.
      expect(await admin.get(`${prefix}orders:lease`)).toMatch(/^tokend:replica-a:[0-9a-f]{16}$/);
      expect(await admin.get(`${prefix}orders:fence`)).toBe(String(lease.fence));
      const pttl = await admin.pttl(`${prefix}orders:lease`);
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(LEASE_MS);
      const inner = await b.withLease('orders', async () => {
        bRan = true;
      });
      expect(inner.acquired).toBe(false);
      if (!inner.acquired) {
        expect(inner.holderTtlMs).toBeGreaterThan(0);
        expect(inner.holderTtlMs).toBeLessThanOrEqual(LEASE_MS);
      }
      return lease.fence;
    });
    expect(bRan).toBe(false);
    expect(outer).toEqual({ acquired: true, value: expect.any(Number) });
    expect(await admin.exists(`${prefix}orders:lease`)).toBe(0);

    const again = await b.withLease('orders', async (lease) => lease.fence);
    expect(again.acquired).toBe(true);
    if (again.acquired && outer.acquired) expect(again.value).toBeGreaterThan(outer.value);
  });

  it('is also exclusive between two calls of the same replica', async () => {
    const [a] = await pair();
    const gate = deferred();
    const first = a.withLease('orders', () => gate.promise);
    await until(async () => (await admin.exists(`${prefix}orders:lease`)) === 1, 'the first lease to be taken', 5_000, 20);
    const second = await a.withLease('orders', async () => 'ran');
    expect(second.acquired).toBe(false);
    gate.resolve();
    expect((await first).acquired).toBe(true);
  });

  it('is renewed while the holder works longer than leaseMs', async () => {
    const [a, b] = await pair();
    const result = await a.withLease('orders', async (lease) => {
      // Work for 2.5 lease periods; without renewal the lease would have lapsed twice.
      await new Promise((r) => setTimeout(r, LEASE_MS * 2.5));
      const other = await b.withLease('orders', async () => 'stolen');
      return { aborted: lease.signal.aborted, otherAcquired: other.acquired };
    });
    expect(result).toEqual({ acquired: true, value: { aborted: false, otherAcquired: false } });
  });

  it('is released when the holder fails, and the error reaches the caller', async () => {
    const [a, b] = await pair();
    await expect(
      a.withLease('orders', async () => {
        throw new Error('grant failed');
      }),
    ).rejects.toThrow('grant failed');
    expect((await b.withLease('orders', async () => 1)).acquired).toBe(true);
  });

  it('lapses within leaseMs when its holder dies, and the holder is told it lost it', async () => {
    // No reconnects for A: killing its connection is a crash as far as Redis can tell.
    const a = makeStore('replica-dies', { redisOptions: { retryStrategy: () => null } });
    const b = makeStore('replica-b');
    await Promise.all([a.init(), b.init()]);
    const taken = deferred<Lease>();
    const held = a.withLease('orders', async (lease) => {
      taken.resolve(lease);
      return aborted(lease.signal);
    });
    const lease = await taken.promise;

    const clients = await admin.client('LIST');
    const line = String(clients)
      .split('\n')
      .find((l) => l.includes('name=tokend-replica-dies'));
    const id = /\bid=(\d+)/.exec(line ?? '')?.[1];
    expect(id).toBeDefined();
    const killedAt = Date.now();
    await admin.client('KILL', 'ID', id as string);

    await until(
      async () => (await b.withLease('orders', async () => true)).acquired,
      'B to take the lease',
      LEASE_MS * 3,
      20,
    );
    expect(Date.now() - killedAt).toBeLessThanOrEqual(LEASE_MS + 250);

    const reason = await held;
    expect(hasCode((reason as { value: unknown }).value, 'LEASE_LOST')).toBe(true);
    expect(lease.signal.aborted).toBe(true);
  });
});

describe('fenced commit', () => {
  it('stores state, token and metadata when the lease is current', async () => {
    const [a] = await pair();
    const t = token('at-commit-1', 60_000);
    await a.withLease('orders', (lease) => a.commit(lease, { access: t, refreshToken: 'rt-commit-1', seedHash: 'seed-1' }));
    const loaded = await a.load('orders');
    expect(loaded.access?.accessToken).toBe('at-commit-1');
    expect(loaded.refreshToken).toBe('rt-commit-1');
    expect(loaded.seedHash).toBe('seed-1');
    const ttl = await admin.pttl(`${prefix}orders`);
    expect(ttl).toBeGreaterThan(58_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('refuses the commit of a holder whose lease expired after another replica took over; the successor data stay', async () => {
    const [a, b] = await pair();
    const aHasLease = deferred<Lease>();
    const aMayCommit = deferred();
    const aResult = a.withLease('orders', async (lease) => {
      aHasLease.resolve(lease);
      await aMayCommit.promise;
      return a.commit(lease, { access: token('at-from-a', 120_000), refreshToken: 'rt-from-a' });
    });
    const aLease = await aHasLease.promise;
    // A stalls (GC pause, network partition) and its lease lapses: simulated by deleting it.
    await admin.del(`${prefix}orders:lease`);

    const bCommit = await b.withLease('orders', async (lease) => {
      expect(lease.fence).toBeGreaterThan(aLease.fence);
      await b.commit(lease, { access: token('at-from-b', 60_000), refreshToken: 'rt-from-b' });
      aMayCommit.resolve();
      // A commits while B still holds the lease.
      return aResult.then(
        () => 'A committed',
        (err: unknown) => (hasCode(err, 'LEASE_LOST') ? 'LEASE_LOST' : String(err)),
      );
    });
    expect(bCommit).toEqual({ acquired: true, value: 'LEASE_LOST' });
    expect(aLease.signal.aborted).toBe(true);

    const loaded = await b.load('orders');
    expect(loaded.access?.accessToken).toBe('at-from-b');
    expect(loaded.refreshToken).toBe('rt-from-b');
    expect(await admin.get(`${prefix}orders`)).toBe('at-from-b');
  });

  it('refuses the commit of an old lease of the same replica (the fence differs, the holder id does not)', async () => {
    const [a] = await pair();
    const outcome = await a.withLease('orders', async (old) => {
      await admin.del(`${prefix}orders:lease`);
      const renewed = await a.withLease('orders', async (fresh) => {
        await a.commit(fresh, { access: token('at-fresh', 60_000), refreshToken: 'rt-fresh' });
        return a.commit(old, { access: token('at-old', 90_000), refreshToken: 'rt-old' }).catch((e: unknown) => e);
      });
      return renewed.acquired ? renewed.value : 'not acquired';
    });
    expect(outcome.acquired && hasCode(outcome.value, 'LEASE_LOST')).toBe(true);
    expect((await a.load('orders')).refreshToken).toBe('rt-fresh');
  });

  it('refuses a commit after the lease was released, writing nothing', async () => {
    const [a] = await pair();
    let kept: Lease | undefined;
    await a.withLease('orders', async (lease) => {
      kept = lease;
    });
    const err = await a.commit(kept as Lease, { access: token('at-late', 60_000), refreshToken: 'rt-late' }).catch((e: unknown) => e);
    expect(hasCode(err, 'LEASE_LOST')).toBe(true);
    expect(await admin.exists(`${prefix}orders`, `${prefix}orders:meta`, `${prefix}orders:state`)).toBe(0);
  });

  it('keeps a newer stored access token but still stores the rotated refresh token', async () => {
    const [a] = await pair();
    const now = Date.now();
    await a.withLease('orders', (lease) => a.commit(lease, { access: token('at-long', 300_000, now) }));
    await a.withLease('orders', (lease) => a.commit(lease, { access: token('at-short', 60_000, now), refreshToken: 'rt-rotated' }));
    const loaded = await a.load('orders');
    expect(loaded.access?.accessToken).toBe('at-long');
    expect(loaded.refreshToken).toBe('rt-rotated');
  });
});

describe('watch', () => {
  it('delivers another replica’s commit to a watcher at once', async () => {
    const [a, b] = await pair();
    const seen = deferred<StoredState>();
    const stop = b.watch('orders', (state) => {
      if (state.access?.accessToken === 'at-watched') seen.resolve(state);
    });
    await until(async () => Number(await admin.pubsub('NUMSUB', `${prefix}events`).then((r) => (r as unknown[])[1])) >= 1, 'the watcher to be subscribed', 5_000, 20);
    await a.withLease('orders', (lease) => a.commit(lease, { access: token('at-watched', 60_000), refreshToken: 'rt-watched' }));
    const state = await seen.promise;
    expect(state.refreshToken).toBe('rt-watched');
    stop();
  });

  it('ignores other tokens and malformed messages, and stops after unsubscribe', async () => {
    const [a, b] = await pair();
    const calls: string[] = [];
    const stop = b.watch('orders', (state) => calls.push(state.access?.accessToken ?? 'none'));
    // The first call reports the current state (nothing yet), once the subscription is up.
    await until(() => calls.length === 1, 'the initial state', 5_000, 20);
    expect(calls).toEqual(['none']);
    calls.length = 0;
    await admin.publish(`${prefix}events`, '{"name": 42}');
    await admin.publish(`${prefix}events`, 'x'.repeat(10_000));
    await commitAs(a, 'billing', token('at-billing', 60_000));
    await commitAs(a, 'orders', token('at-orders-1', 60_000));
    await until(() => calls.includes('at-orders-1'), 'the orders change to arrive', 5_000, 20);
    expect(calls).toEqual(['at-orders-1']);
    stop();
    await commitAs(a, 'orders', token('at-orders-2', 120_000));
    // Messages arrive in publish order: once a later billing change is seen, the orders one was too.
    const c2: string[] = [];
    const stop2 = b.watch('billing', (s) => c2.push(s.access?.accessToken ?? 'none'));
    await until(() => c2.includes('at-billing'), 'the initial billing state', 5_000, 20);
    await commitAs(a, 'billing', token('at-billing-2', 120_000));
    await until(() => c2.includes('at-billing-2'), 'the billing change to arrive', 5_000, 20);
    expect(calls).toEqual(['at-orders-1']);
    stop2();
  });
});

describe('a lease tokend did not set (issue 9.7)', () => {
  const cases: Array<{ what: string; set: (key: string) => Promise<unknown>; ttl: (ttl: unknown) => boolean }> = [
    { what: 'a value that is not a tokend holder, without expiry', set: (k) => admin.set(k, 'ops-maintenance\u0007lock'), ttl: (t) => t === -1 },
    { what: 'a tokend-shaped value with a TTL longer than the lease', set: (k) => admin.set(k, 'tokend:replica-x:0011223344556677', 'PX', 600_000), ttl: (t) => typeof t === 'number' && t > LEASE_MS },
    { what: 'a value that is not a tokend holder, with a short TTL', set: (k) => admin.set(k, 'someone-else', 'PX', LEASE_MS), ttl: (t) => typeof t === 'number' && t > 0 && t <= LEASE_MS },
  ];

  for (const c of cases) {
    it(`distrusts ${c.what}: logged once at error level with holder and TTL; deleting the key resumes at once`, async () => {
      const [a] = await pair();
      await c.set(`${prefix}orders:lease`);
      for (let i = 0; i < 3; i++) {
        const out = await a.withLease('orders', async () => 'ran');
        expect(out).toEqual({ acquired: false, distrusted: true, holderTtlMs: expect.any(Number) });
        if (!out.acquired) {
          expect(out.holderTtlMs).toBeGreaterThan(0);
          expect(out.holderTtlMs).toBeLessThanOrEqual(LEASE_MS);
        }
      }
      const lines = logged('lease.distrusted');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 'error', token: 'orders', holder: expect.any(String), ttl_ms: expect.anything() });
      expect(c.ttl(lines[0]!.ttl_ms)).toBe(true);
      expect(String(lines[0]!.holder)).not.toMatch(/[^\x20-\x7e…]/);

      await admin.del(`${prefix}orders:lease`);
      expect(await a.withLease('orders', async () => 'ran')).toEqual({ acquired: true, value: 'ran' });
    });
  }

  it('logs a distrusted holder bounded and printable, and a new episode again', async () => {
    const [a] = await pair();
    await admin.set(`${prefix}orders:lease`, `x${'\n'.repeat(10)}${'y'.repeat(500)}`);
    await a.withLease('orders', async () => 'ran');
    const [line] = logged('lease.distrusted');
    expect(String(line?.holder).length).toBeLessThanOrEqual(65);
    expect(String(line?.holder)).toMatch(/^x\?{10}y+…$/);
    await admin.del(`${prefix}orders:lease`);
    await a.withLease('orders', async () => 'ran');
    await admin.set(`${prefix}orders:lease`, 'again');
    await a.withLease('orders', async () => 'ran');
    expect(logged('lease.distrusted')).toHaveLength(2);
  });

  it('trusts another replica’s lease: refused, not distrusted, nothing logged', async () => {
    const [a, b] = await pair();
    const out = await a.withLease('orders', () => b.withLease('orders', async () => 'ran'));
    expect(out).toEqual({ acquired: true, value: { acquired: false, holderTtlMs: expect.any(Number) } });
    expect(logged('lease.distrusted')).toEqual([]);
  });
});

describe('a corrupt :fence key (issue 9.9)', () => {
  for (const [what, corrupt] of [
    ['a non-integer string', (k: string) => admin.set(k, 'not-a-number')],
    ['an integer too large to count on', (k: string) => admin.set(k, '9'.repeat(30))],
    ['a hash', (k: string) => admin.del(k).then(() => admin.hset(k, 'f', '1'))],
  ] as const) {
    it(`is restarted above any earlier fence from the current time, logged at error level, when it holds ${what}`, async () => {
      const [a] = await pair();
      const first = await a.withLease('orders', async (lease) => lease.fence);
      await corrupt(`${prefix}orders:fence`);
      const before = Date.now();
      const out = await a.withLease('orders', async (lease) => {
        await a.commit(lease, { access: token('at-after-repair', 60_000), refreshToken: 'rt-after-repair' });
        return lease.fence;
      });
      expect(out.acquired).toBe(true);
      if (!out.acquired || !first.acquired) return;
      expect(out.value).toBeGreaterThan(first.value);
      expect(out.value).toBeGreaterThanOrEqual(before);
      expect((await a.load('orders')).refreshToken).toBe('rt-after-repair');
      const lines = logged('store.corrupt');
      expect(lines).toEqual([expect.objectContaining({ level: 'error', token: 'orders', what: `${prefix}orders:fence` })]);
      // And it keeps counting from there.
      const next = await a.withLease('orders', async (lease) => lease.fence);
      expect(next.acquired && next.value).toBe(out.value + 1);
    });
  }
});
