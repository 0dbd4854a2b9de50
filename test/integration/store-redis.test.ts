import { createServer } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis/store.js';
import { encodeWrite } from '../../src/store/redis/scripts.js';
import type { StoreUpdate } from '../../src/store/store.js';
import type { AccessToken } from '../../src/token.js';
import { sha256Hex } from '../../src/util/hash.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { describeTokenStore } from '../support/store-contract.js';
import { until } from '../support/until.js';

interface Corruption {
  name: string;
  what: string;
  reason: string;
}

let redis: RedisHandle;
let admin: Redis;
const stores: RedisStore[] = [];
let corrupt: Corruption[] = [];
let logLines: string[] = [];
let prefix = '';
let seq = 0;
const logger = createLogger('debug', { write: (line: string) => void logLines.push(line) });

function makeStore(extra: Partial<RedisStoreOptions> = {}): RedisStore {
  const store = new RedisStore({
    url: redis.url,
    prefix,
    leaseMs: 1_000,
    logger,
    onCorrupt: (name, what, reason) => corrupt.push({ name, what, reason }),
    ...extra,
  });
  stores.push(store);
  return store;
}

function token(accessToken: string, lifetimeMs: number, now = Date.now()): AccessToken {
  return { accessToken, tokenType: 'Bearer', expiresAt: now + lifetimeMs, obtainedAt: now, scope: 'orders:read' };
}

async function commit(store: RedisStore, name: string, update: StoreUpdate): Promise<void> {
  const out = await store.withLease(name, (lease) => store.commit(lease, update));
  expect(out.acquired).toBe(true);
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
  // A fresh prefix per test keeps tests independent without flushing between them.
  prefix = `t${++seq}:`;
  corrupt = [];
  logLines = [];
});

describeTokenStore('RedisStore', async () => {
  const p = `c${++seq}:`;
  const store = new RedisStore({ url: redis.url, prefix: p, leaseMs: 2_000, holderId: 'replica-a', logger });
  const other = new RedisStore({ url: redis.url, prefix: p, leaseMs: 2_000, holderId: 'replica-b', logger });
  await Promise.all([store.init(), other.init()]);
  return { store, other, sharedLease: true, cleanup: async () => void (await Promise.all([store.close(), other.close()])) };
});

describe('RedisStore key layout', () => {
  it('writes the raw token and its metadata with PX = remaining lifetime, and the state without TTL', async () => {
    const store = makeStore();
    await store.init();
    const seedHash = sha256Hex('seed');
    const t = token('at-layout-1', 60_000);
    await commit(store, 'orders', { access: t, refreshToken: 'rt-layout-1', seedHash });

    expect(await admin.get(`${prefix}orders`)).toBe('at-layout-1');
    const ttl = await admin.pttl(`${prefix}orders`);
    expect(ttl).toBeGreaterThan(58_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    const metaTtl = await admin.pttl(`${prefix}orders:meta`);
    expect(Math.abs(metaTtl - ttl)).toBeLessThan(50);

    const meta = JSON.parse((await admin.get(`${prefix}orders:meta`)) ?? 'null') as Record<string, unknown>;
    expect(meta).toEqual({
      access_token: 'at-layout-1',
      token_type: 'Bearer',
      expires_at: Math.floor(t.expiresAt / 1000),
      obtained_at: Math.floor(t.obtainedAt / 1000),
      scope: 'orders:read',
      expires_at_ms: t.expiresAt,
      obtained_at_ms: t.obtainedAt,
    });

    const state = JSON.parse((await admin.get(`${prefix}orders:state`)) ?? 'null') as Record<string, unknown>;
    expect(state).toEqual({ version: 1, refresh_token: 'rt-layout-1', seed_hash: seedHash, updated_at: expect.any(Number) });
    expect(await admin.pttl(`${prefix}orders:state`)).toBe(-1);

    const loaded = await store.load('orders');
    expect(loaded).toMatchObject({ refreshToken: 'rt-layout-1', seedHash, access: { accessToken: 'at-layout-1' } });
    // Milliseconds survive, so replicas adopting it schedule their refresh exactly.
    expect(loaded.access?.expiresAt).toBe(t.expiresAt);
    expect(loaded.access?.obtainedAt).toBe(t.obtainedAt);
    expect(corrupt).toEqual([]);
  });

  it('keeps the intent in the :state document, beside the refresh token', async () => {
    const store = makeStore({ holderId: 'replica-i' });
    await store.init();
    await commit(store, 'orders', { refreshToken: 'rt-1' });
    await store.withLease('orders', async (lease) => {
      await store.recordIntent(lease, sha256Hex('rt-1'));
      const state = JSON.parse((await admin.get(`${prefix}orders:state`)) ?? 'null') as Record<string, unknown>;
      expect(state).toMatchObject({ refresh_token: 'rt-1', intent: { holder: 'replica-i', presented: sha256Hex('rt-1'), at: expect.any(Number) } });
    });
  });

  it('takes the TTL from the monotonic remainder: a wall clock stepped back does not stretch it', async () => {
    // The wall clock reads one hour behind; the token's monotonic deadline says 30 s remain.
    const clock = { now: () => Date.now() - 3_600_000, monotonic: () => performance.now(), setTimer: (fn: () => void, ms: number) => {
      const h = setTimeout(fn, ms);
      return { cancel: () => clearTimeout(h) };
    } };
    const store = makeStore({ clock });
    await store.init();
    const t: AccessToken = { ...token('at-mono', 30_000), deadline: performance.now() + 30_000 };
    await commit(store, 'orders', { access: t });
    const ttl = await admin.pttl(`${prefix}orders`);
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
  });

  it('never lets a reader see an expired token: both keys vanish at expiry', async () => {
    const store = makeStore();
    await store.init();
    const start = Date.now();
    await commit(store, 'short', { access: token('at-short', 300, start) });
    expect(await admin.get(`${prefix}short`)).toBe('at-short');
    await until(async () => (await admin.get(`${prefix}short`)) === null, 'the access token key to expire', 2_000, 20);
    expect(Date.now() - start).toBeGreaterThanOrEqual(250);
    expect(await admin.exists(`${prefix}short:meta`)).toBe(0);
    expect((await store.load('short')).access).toBeUndefined();
  });

  it('does not write a token that has already expired', async () => {
    const store = makeStore();
    await store.init();
    await commit(store, 'old', { access: token('at-expired', -1) });
    expect(await admin.exists(`${prefix}old`, `${prefix}old:meta`)).toBe(0);
  });

  it('publishes {"name"} on the events channel with every commit, and nothing for an intent', async () => {
    const store = makeStore();
    await store.init();
    const sub = admin.duplicate();
    sub.on('error', () => undefined);
    try {
      const got: string[] = [];
      sub.on('message', (_ch: string, msg: string) => got.push(msg));
      await sub.subscribe(`${prefix}events`);
      await store.withLease('orders', (lease) => store.recordIntent(lease, sha256Hex('seed')));
      await commit(store, 'orders', { access: token('at-pub', 60_000), refreshToken: 'rt-pub' });
      await until(() => got.length >= 1, 'the announcement', 5_000, 10);
      expect(got).toEqual(['{"name":"orders"}']);
    } finally {
      sub.disconnect();
    }
  });

  it('after FLUSHALL loads nothing, and a write-back restores the keys', async () => {
    const store = makeStore();
    await store.init();
    const t = token('at-flush', 60_000);
    await commit(store, 'orders', { access: t, refreshToken: 'rt-flush' });
    await redis.flushall();
    expect(await store.load('orders')).toEqual({});
    expect(corrupt).toEqual([]);
    expect(await store.writeBack('orders', new Set(), { access: t, refreshToken: 'rt-flush' })).toBe('written');
    expect(await store.load('orders')).toMatchObject({ refreshToken: 'rt-flush', access: { accessToken: 'at-flush' } });
  });

  it('encodes a write as one JSON object (encodeWrite), leaving out what it does not touch', () => {
    expect(JSON.parse(encodeWrite({ stateWas: null, metaWas: undefined, state: '{"s":1}' }))).toEqual({ stateAbsent: true, state: '{"s":1}' });
    expect(
      JSON.parse(
        encodeWrite({
          lease: { value: 'tokend:a:0011223344556677', fence: 7 },
          stateWas: 'old',
          metaWas: 'm',
          access: { token: 'at', meta: '{}', px: 1234.9 },
          announce: { channel: 'p:events', message: '{"name":"x"}' },
        }),
      ),
    ).toEqual({ lease: 'tokend:a:0011223344556677', fence: '7', stateWas: 'old', metaWas: 'm', access: 'at', meta: '{}', px: '1234', channel: 'p:events', message: '{"name":"x"}' });
    expect(JSON.parse(encodeWrite({ stateWas: undefined, metaWas: undefined, state: null, access: null }))).toEqual({ dropState: true, dropAccess: true });
  });
});

describe('RedisStore encryption at rest', () => {
  const key = Buffer.alloc(32, 0x11);

  it('stores the refresh token encrypted; raw Redis reads do not reveal it', async () => {
    const store = makeStore({ encryptionKey: key });
    await store.init();
    await commit(store, 'orders', { refreshToken: 'rt-plain-secret-value' });
    const raw = (await admin.get(`${prefix}orders:state`)) ?? '';
    expect(raw).not.toContain('rt-plain-secret-value');
    expect((JSON.parse(raw) as { refresh_token: string }).refresh_token.startsWith('enc:v1:')).toBe(true);
    expect((await store.load('orders')).refreshToken).toBe('rt-plain-secret-value');
  });

  it('reports a state it cannot decrypt (wrong key, or no key) as corrupt, never returning or logging it', async () => {
    const writer = makeStore({ encryptionKey: key });
    await writer.init();
    await commit(writer, 'orders', { refreshToken: 'rt-wrong-key-secret' });

    const wrongKey = makeStore({ encryptionKey: Buffer.alloc(32, 0x22) });
    await wrongKey.init();
    expect((await wrongKey.load('orders')).refreshToken).toBeUndefined();
    expect(corrupt).toHaveLength(1);
    expect(corrupt[0]).toMatchObject({ name: 'orders', what: `${prefix}orders:state` });

    const noKey = makeStore();
    await noKey.init();
    expect((await noKey.load('orders')).refreshToken).toBeUndefined();
    expect(corrupt).toHaveLength(2);
    for (const c of corrupt) expect(c.reason).not.toContain('rt-wrong-key-secret');
    expect(logLines.join('\n')).not.toContain('rt-wrong-key-secret');
  });

  it('binds the ciphertext to the token name: a state copied to another token does not decrypt', async () => {
    const store = makeStore({ encryptionKey: key });
    await store.init();
    await commit(store, 'orders', { refreshToken: 'rt-bound' });
    await admin.set(`${prefix}billing:state`, (await admin.get(`${prefix}orders:state`)) ?? '');
    expect((await store.load('billing')).refreshToken).toBeUndefined();
    expect(corrupt.map((c) => c.what)).toEqual([`${prefix}billing:state`]);
  });

  it('still reads a plaintext state written before a key was configured (the next write encrypts)', async () => {
    const before = makeStore();
    await before.init();
    await commit(before, 'orders', { refreshToken: 'rt-before-key' });
    const after = makeStore({ encryptionKey: key });
    await after.init();
    expect((await after.load('orders')).refreshToken).toBe('rt-before-key');
    await commit(after, 'orders', { refreshToken: 'rt-after-key' });
    expect(await admin.get(`${prefix}orders:state`)).not.toContain('rt-after-key');
  });
});

describe('RedisStore treats what it reads as untrusted', () => {
  it('reports malformed metadata and state as corrupt and treats them as absent; the next commit replaces them', async () => {
    const store = makeStore();
    await store.init();
    await admin.set(`${prefix}orders`, 'at-x', 'PX', 60_000);
    await admin.set(`${prefix}orders:meta`, '{"access_token":"at-x", truncated', 'PX', 60_000);
    await admin.set(`${prefix}orders:state`, 'not json at all');
    const loaded = await store.load('orders');
    expect(loaded.access).toBeUndefined();
    expect(loaded.refreshToken).toBeUndefined();
    expect(corrupt.map((c) => c.what).sort()).toEqual([`${prefix}orders:meta`, `${prefix}orders:state`]);
    for (const c of corrupt) expect(c.reason).not.toContain('at-x');

    await commit(store, 'orders', { access: token('at-fixed', 60_000), refreshToken: 'rt-fixed' });
    corrupt = [];
    const fixed = await store.load('orders');
    expect(fixed.access?.accessToken).toBe('at-fixed');
    expect(fixed.refreshToken).toBe('rt-fixed');
    expect(corrupt).toEqual([]);
  });

  it('refuses oversized values, non-string keys and a raw token that disagrees with its metadata', async () => {
    const store = makeStore();
    await store.init();
    await admin.set(`${prefix}big:state`, 'x'.repeat(100_000));
    expect((await store.load('big')).refreshToken).toBeUndefined();
    expect(corrupt.at(-1)).toMatchObject({ what: `${prefix}big:state` });
    expect(corrupt.at(-1)?.reason).toMatch(/larger/);

    await admin.hset(`${prefix}hash:state`, 'refresh_token', 'rt-in-a-hash');
    expect((await store.load('hash')).refreshToken).toBeUndefined();
    expect(corrupt.at(-1)).toMatchObject({ what: `${prefix}hash:state` });

    await commit(store, 'mixed', { access: token('at-real', 60_000) });
    await admin.set(`${prefix}mixed`, 'at-injected', 'KEEPTTL');
    expect((await store.load('mixed')).access).toBeUndefined();
    expect(corrupt.at(-1)).toMatchObject({ what: `${prefix}mixed` });

    // Millisecond fields that contradict the whole seconds are ignored, not trusted.
    const sec = Math.floor(Date.now() / 1000) + 60;
    const forged = { access_token: 'at-ms', token_type: 'Bearer', expires_at: sec, obtained_at: sec - 60, expires_at_ms: sec * 1000 + 5_000_000 };
    await admin.set(`${prefix}ms`, 'at-ms', 'PX', 60_000);
    await admin.set(`${prefix}ms:meta`, JSON.stringify(forged), 'PX', 60_000);
    expect((await store.load('ms')).access?.expiresAt).toBe(sec * 1000);

    // A non-string value is overwritten by the next write, not a reason to fail forever.
    await commit(store, 'hash', { refreshToken: 'rt-replaced' });
    expect((await store.load('hash')).refreshToken).toBe('rt-replaced');
  });
});

describe('RedisStore init', () => {
  it('fails with STORE_UNAVAILABLE naming the address but never the password', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const store = makeStore({ url: `redis://:hunter2-secret@127.0.0.1:${port}/0`, initTimeoutMs: 400 });
    const started = Date.now();
    const err = await store.init().catch((e: unknown) => e);
    // Bounded by initTimeoutMs (400 ms), not by the 5 s default: generous slack for a loaded machine.
    expect(Date.now() - started).toBeLessThan(2_500);
    expect((err as Error).message).toContain('within 400 ms');
    expect(hasCode(err, 'STORE_UNAVAILABLE')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain(`127.0.0.1:${port}`);
    expect(msg).not.toContain('hunter2-secret');
    expect(logLines.join('\n')).not.toContain('hunter2-secret');
    expect(store.isAvailable()).toBe(false);
  });

  it('reports a wrong password at once as STORE_AUTH_FAILED naming the user, never either password', async () => {
    const secured = await startRedis({ password: 'right-pass-123' });
    try {
      const ok = makeStore({ url: secured.url, password: 'right-pass-123' });
      await ok.init();
      await commit(ok, 'orders', { refreshToken: 'rt-auth' });
      expect((await ok.load('orders')).refreshToken).toBe('rt-auth');
      await ok.close();

      // A long init timeout: the refusal must not wait for it.
      const bad = makeStore({ url: `redis://:wrong-pass-456@127.0.0.1:${secured.port}/0`, initTimeoutMs: 60_000 });
      const err = await bad.init().catch((e: unknown) => e);
      expect(hasCode(err, 'STORE_AUTH_FAILED')).toBe(true);
      const msg = (err as Error).message;
      expect(msg).toContain('user "default"');
      expect(msg).toMatch(/WRONGPASS/);
      expect(msg).not.toMatch(/not ready within/);
      const text = `${msg}\n${logLines.join('\n')}`;
      expect(text).not.toContain('wrong-pass-456');
      expect(text).not.toContain('right-pass-123');

      const none = makeStore({ url: secured.url, initTimeoutMs: 60_000 });
      expect(hasCode(await none.init().catch((e: unknown) => e), 'STORE_AUTH_FAILED')).toBe(true);
    } finally {
      await secured.stop();
    }
  });

  it('reports a user without the permissions tokend needs (NOPERM) as STORE_AUTH_FAILED naming the command class', async () => {
    await admin.call('ACL', 'SETUSER', 'noscript', 'on', '>noscript-pass-789', '~*', '&*', '+@all', '-evalsha', '-eval');
    try {
      const store = makeStore({ url: `redis://noscript:noscript-pass-789@127.0.0.1:${redis.port}/0`, initTimeoutMs: 60_000 });
      const err = await store.init().catch((e: unknown) => e);
      expect(hasCode(err, 'STORE_AUTH_FAILED')).toBe(true);
      const msg = (err as Error).message;
      expect(msg).toContain('user "noscript"');
      expect(msg).toMatch(/NOPERM for scripting \(EVAL(SHA)?\)/);
      expect(msg).not.toContain('noscript-pass-789');
    } finally {
      await admin.call('ACL', 'DELUSER', 'noscript');
    }
  });

  it('works with the minimal ACL docs/stores.md documents', async () => {
    const acl = '+get +set +del +exists +strlen +pttl +pexpire +incr +publish +subscribe +evalsha +eval +ping +client|setname +select +hello +info +quit';
    await admin.call('ACL', 'SETUSER', 'minimal', 'on', '>minimal-pass-1', '~tokend:*', '&tokend:*', ...acl.split(' '));
    try {
      const url = `redis://minimal:minimal-pass-1@127.0.0.1:${redis.port}/0`;
      const a = makeStore({ url, prefix: 'tokend:', holderId: 'acl-a' });
      const b = makeStore({ url, prefix: 'tokend:', holderId: 'acl-b' });
      await Promise.all([a.init(), b.init()]);
      const seen: string[] = [];
      b.watch('acl-orders', (s) => seen.push(s.refreshToken ?? 'none'));
      await until(() => seen.length >= 1, 'the first watch call', 5_000, 10);
      await a.withLease('acl-orders', async (lease) => {
        await a.recordIntent(lease, sha256Hex('seed'));
        await a.commit(lease, { access: token('at-acl', 60_000), refreshToken: 'rt-acl' });
      });
      await until(() => seen.includes('rt-acl'), 'the commit to reach the watcher', 5_000, 10);
      expect(await a.writeBack('acl-orders', new Set(), { refreshToken: 'rt-acl' })).toBe('already');
      await a.remove('acl-orders');
      expect((await b.load('acl-orders')).revoked).toBe(true);
    } finally {
      await admin.call('ACL', 'DELUSER', 'minimal');
    }
  });

  it('refuses a URL the config schema refuses, with CONFIG_INVALID and the same reason', () => {
    for (const url of ['http://127.0.0.1:6379', 'redis://127.0.0.1:6379/orders']) {
      expect(() => makeStore({ url })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
    expect(() => makeStore({ cluster: [{ host: '127.0.0.1', port: 7000 }], prefix: 'tokend:' })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
    expect(() => makeStore({ holderId: 'has spaces' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
