import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis.js';
import type { AccessToken } from '../../src/token.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
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

describe('RedisStore key layout', () => {
  it('writes the raw token and its metadata with PX = remaining lifetime, and the state without TTL', async () => {
    const store = makeStore();
    await store.init();
    const seedHash = createHash('sha256').update('seed').digest('hex');
    const t = token('at-layout-1', 60_000);
    await store.saveRefreshToken('orders', 'rt-layout-1', seedHash);
    await store.saveAccessToken('orders', t);

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
    expect(state).toMatchObject({ version: 1, refresh_token: 'rt-layout-1', seed_hash: seedHash, generation: 1 });
    expect(typeof state.updated_at).toBe('number');
    expect(await admin.pttl(`${prefix}orders:state`)).toBe(-1);

    const loaded = await store.load('orders');
    expect(loaded.refreshToken).toBe('rt-layout-1');
    expect(loaded.seedHash).toBe(seedHash);
    expect(loaded.access?.accessToken).toBe('at-layout-1');
    // Milliseconds survive, so replicas adopting it schedule their refresh exactly.
    expect(loaded.access?.expiresAt).toBe(t.expiresAt);
    expect(loaded.access?.obtainedAt).toBe(t.obtainedAt);
    expect(corrupt).toEqual([]);
  });

  it('bumps the generation on every refresh-token write', async () => {
    const store = makeStore();
    await store.init();
    await store.saveRefreshToken('orders', 'rt-a', undefined);
    await store.saveRefreshToken('orders', 'rt-b', undefined);
    const state = JSON.parse((await admin.get(`${prefix}orders:state`)) ?? '{}') as Record<string, unknown>;
    expect(state).toMatchObject({ refresh_token: 'rt-b', generation: 2, seed_hash: null });
  });

  it('never lets a reader see an expired token: both keys vanish at expiry', async () => {
    const store = makeStore();
    await store.init();
    const start = Date.now();
    await store.saveAccessToken('short', token('at-short', 300, start));
    expect(await admin.get(`${prefix}short`)).toBe('at-short');
    await until(async () => (await admin.get(`${prefix}short`)) === null, 'the access token key to expire', 2_000, 20);
    expect(Date.now() - start).toBeGreaterThanOrEqual(250);
    expect(await admin.exists(`${prefix}short:meta`)).toBe(0);
    expect((await store.load('short')).access).toBeUndefined();
  });

  it('does not write a token that has already expired', async () => {
    const store = makeStore();
    await store.init();
    await store.saveAccessToken('old', token('at-expired', -1));
    expect(await admin.exists(`${prefix}old`, `${prefix}old:meta`)).toBe(0);
  });

  it('drops a stale write: an older token never replaces a newer one', async () => {
    const store = makeStore();
    await store.init();
    const now = Date.now();
    await store.saveAccessToken('orders', token('at-newer', 120_000, now));
    await store.saveAccessToken('orders', token('at-older', 60_000, now));
    expect(await admin.get(`${prefix}orders`)).toBe('at-newer');
    await store.saveAccessToken('orders', token('at-newest', 180_000, now));
    expect(await admin.get(`${prefix}orders`)).toBe('at-newest');
    expect((await store.load('orders')).access?.accessToken).toBe('at-newest');
  });

  it('removes the token and metadata, leaving a revocation tombstone without the refresh token in the state', async () => {
    const store = makeStore();
    await store.init();
    const seedHash = 'a'.repeat(64);
    await store.saveRefreshToken('gone', 'rt-gone', seedHash);
    await store.saveAccessToken('gone', token('at-gone', 60_000));
    await store.remove('gone');
    expect(await admin.exists(`${prefix}gone`, `${prefix}gone:meta`)).toBe(0);
    const raw = (await admin.get(`${prefix}gone:state`))!;
    expect(raw).not.toContain('rt-gone');
    expect(JSON.parse(raw)).toMatchObject({ revoked: true, seed_hash: seedHash });
    expect(await store.load('gone')).toEqual({ access: undefined, refreshToken: undefined, seedHash, revoked: true });
    // A new chain (a new seed) replaces the tombstone.
    await store.saveRefreshToken('gone', 'rt-new', 'b'.repeat(64));
    expect(await store.load('gone')).toMatchObject({ refreshToken: 'rt-new', seedHash: 'b'.repeat(64), revoked: undefined });
  });

  it('after FLUSHALL loads nothing, and a rewrite restores the keys', async () => {
    const store = makeStore();
    await store.init();
    const t = token('at-flush', 60_000);
    await store.saveRefreshToken('orders', 'rt-flush', undefined);
    await store.saveAccessToken('orders', t);
    await redis.flushall();
    expect(await store.load('orders')).toEqual({ access: undefined, refreshToken: undefined, seedHash: undefined });
    expect(corrupt).toEqual([]);
    await store.saveRefreshToken('orders', 'rt-flush', undefined);
    await store.saveAccessToken('orders', t);
    const loaded = await store.load('orders');
    expect(loaded.access?.accessToken).toBe('at-flush');
    expect(loaded.refreshToken).toBe('rt-flush');
  });
});

describe('RedisStore encryption at rest', () => {
  const key = Buffer.alloc(32, 0x11);

  it('stores the refresh token encrypted; raw Redis reads do not reveal it', async () => {
    const store = makeStore({ encryptionKey: key });
    await store.init();
    await store.saveRefreshToken('orders', 'rt-plain-secret-value', undefined);
    const raw = (await admin.get(`${prefix}orders:state`)) ?? '';
    expect(raw).not.toContain('rt-plain-secret-value');
    expect((JSON.parse(raw) as { refresh_token: string }).refresh_token.startsWith('enc:v1:')).toBe(true);
    expect((await store.load('orders')).refreshToken).toBe('rt-plain-secret-value');
  });

  it('reports a state it cannot decrypt (wrong key, or no key) as corrupt, never returning or logging it', async () => {
    const writer = makeStore({ encryptionKey: key });
    await writer.init();
    await writer.saveRefreshToken('orders', 'rt-wrong-key-secret', undefined);

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
    await store.saveRefreshToken('orders', 'rt-bound', undefined);
    await admin.set(`${prefix}billing:state`, (await admin.get(`${prefix}orders:state`)) ?? '');
    expect((await store.load('billing')).refreshToken).toBeUndefined();
    expect(corrupt.map((c) => c.what)).toEqual([`${prefix}billing:state`]);
  });

  it('still reads a plaintext state written before a key was configured (the next write encrypts)', async () => {
    const before = makeStore();
    await before.init();
    await before.saveRefreshToken('orders', 'rt-before-key', undefined);
    const after = makeStore({ encryptionKey: key });
    await after.init();
    expect((await after.load('orders')).refreshToken).toBe('rt-before-key');
    await after.saveRefreshToken('orders', 'rt-after-key', undefined);
    expect(await admin.get(`${prefix}orders:state`)).not.toContain('rt-after-key');
  });
});

describe('RedisStore treats what it reads as untrusted', () => {
  it('reports malformed metadata and state as corrupt and treats them as absent', async () => {
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

    // The next write replaces what was corrupt.
    await store.saveAccessToken('orders', token('at-fixed', 60_000));
    await store.saveRefreshToken('orders', 'rt-fixed', undefined);
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

    await store.saveAccessToken('mixed', token('at-real', 60_000));
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
    await store.saveRefreshToken('hash', 'rt-replaced', undefined);
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
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(hasCode(err, 'STORE_UNAVAILABLE')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain(`127.0.0.1:${port}`);
    expect(msg).not.toContain('hunter2-secret');
    expect(logLines.join('\n')).not.toContain('hunter2-secret');
    expect(store.isAvailable()).toBe(false);
  });

  it('authenticates with a password, and refuses a wrong one without revealing either', async () => {
    const secured = await startRedis({ password: 'right-pass-123' });
    try {
      const ok = makeStore({ url: secured.url, password: 'right-pass-123' });
      await ok.init();
      expect(ok.isAvailable()).toBe(true);
      await ok.saveRefreshToken('orders', 'rt-auth', undefined);
      expect((await ok.load('orders')).refreshToken).toBe('rt-auth');
      await ok.close();

      const bad = makeStore({ url: `redis://:wrong-pass-456@127.0.0.1:${secured.port}/0`, initTimeoutMs: 500 });
      const err = await bad.init().catch((e: unknown) => e);
      expect(hasCode(err, 'STORE_UNAVAILABLE')).toBe(true);
      const text = `${(err as Error).message}\n${logLines.join('\n')}`;
      expect(text).not.toContain('wrong-pass-456');
      expect(text).not.toContain('right-pass-123');
    } finally {
      await secured.stop();
    }
  });

  it('refuses a URL that is not redis:// or rediss:// with CONFIG_INVALID', () => {
    expect(() => makeStore({ url: 'http://127.0.0.1:6379' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => makeStore({ cluster: [{ host: '127.0.0.1', port: 7000 }], prefix: 'tokend:' })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });
});
